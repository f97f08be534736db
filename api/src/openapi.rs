//! The OpenAPI document (utoipa): routes register themselves; this adds the bearer
//! scheme and the error answers every operation can give.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::ErrorBody;

/// The document skeleton.
#[derive(OpenApi)]
#[openapi(
    info(title = "Copains API", description = "Accounts, sessions and the instance policy of a Copains server. Errors are JSON `{code, message}`. Ids are decimal strings."),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags((name = "auth", description = "Accounts and sessions"), (name = "users", description = "Profiles"), (name = "admin", description = "Instance administration"), (name = "voice", description = "Calls: ICE servers"), (name = "servers", description = "Servers"), (name = "channels", description = "Channels and permission overwrites"), (name = "roles", description = "Roles and permissions"), (name = "members", description = "Server members"), (name = "invites", description = "Invites"), (name = "friends", description = "Friends and blocks"), (name = "moderation", description = "Kicks, bans, timeouts and the audit log"), (name = "messages", description = "Messages, reactions, pins, threads, DMs, read states and search"), (name = "whiteboard", description = "Per-channel whiteboards: strokes and clear"), (name = "keys", description = "End-to-end encryption: device keys, prekey bundles, the to-device queue, key backup"))
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Doc) {
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds to every operation the error answers it may give (400, 404, 413, 415, 422, 429, 503;
/// 401 and 403 where it needs a token), so clients and the schema fuzzer know them.
pub fn finish(doc: &mut Doc) {
    let err = |desc: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(desc)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ErrorBody::schema()))
                        .build(),
                )
                .build(),
        )
    };
    let _ = <ErrorBody as ToSchema>::name();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = op.request_body.is_some();
            let r = &mut op.responses.responses;
            let mut add = |code: &str, desc: &str| {
                r.entry(code.to_owned()).or_insert_with(|| err(desc));
            };
            add("400", "Malformed request");
            add("404", "No such object, or not visible to you");
            add("422", "Invalid fields");
            add("429", "Rate limited; see Retry-After");
            add("503", "Temporarily unavailable");
            if has_body {
                add("413", "Body too large");
                add("415", "Body is not JSON");
            }
            if secured {
                add("401", "Missing, invalid or expired access token");
                add("403", "Not allowed");
            }
        }
    }
}
