//! The one string rule (#17 item 2), as a property of the whole API: every string field of
//! every JSON request body in the OpenAPI document, given a NUL, is refused at extraction
//! with 422 `validation` naming the field — never a 5xx. Query parameters too; a path
//! parameter with one names nothing (404).

use copains_crypto::device::Device;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::support::TestServer;

/// One step from a body's root to a string leaf.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Resolves `#/components/schemas/X` references.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn is_null_schema(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

/// A body shaped like `schema` with every property present (optional ones included) and
/// placeholder values; strings are `"x"`. The values need not be valid: the string rule runs
/// before the body is deserialized into its type.
fn template(doc: &Value, schema: &Value, depth: usize) -> Value {
    let s = resolve(doc, schema);
    if depth > 8 {
        return Value::Null;
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(vs) = s.get(key).and_then(Value::as_array) {
            if key == "allOf" {
                let mut merged = Map::new();
                for v in vs {
                    if let Value::Object(o) = template(doc, v, depth + 1) {
                        merged.extend(o);
                    }
                }
                return Value::Object(merged);
            }
            return vs
                .iter()
                .find(|v| !is_null_schema(resolve(doc, v)))
                .map_or(Value::Null, |v| template(doc, v, depth + 1));
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_owned(),
        _ if s.get("properties").is_some() => "object".to_owned(),
        _ => "string".to_owned(),
    };
    match ty.as_str() {
        "object" => {
            let mut o = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    o.insert(k.clone(), template(doc, v, depth + 1));
                }
            }
            match s.get("additionalProperties") {
                Some(ap @ Value::Object(_)) => {
                    o.insert("k".into(), template(doc, ap, depth + 1));
                }
                _ if o.is_empty() => {
                    // A free-form object (`Object`): one string member.
                    o.insert("k".into(), json!("x"));
                }
                _ => {}
            }
            Value::Object(o)
        }
        "array" => json!([template(
            doc,
            s.get("items").unwrap_or(&json!({})),
            depth + 1
        )]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => match s
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            Some(first) => first.clone(),
            None => json!("x"),
        },
    }
}

/// The paths to every string leaf of `v`.
fn string_leaves(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::String(_) => out.push(at.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                string_leaves(item, at, out);
                at.pop();
            }
        }
        Value::Object(o) => {
            for (k, item) in o {
                at.push(Step::Key(k.clone()));
                string_leaves(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn leaf_mut<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// The field name the API reports: the object keys on the way, dotted.
fn field_name(path: &[Step]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut rb = s
        .http
        .request(method, s.url(path))
        .bearer_auth(token)
        .header("X-Copains-Device", "NULDEV");
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let resp = rb.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (st, v)
}

#[tokio::test]
async fn every_string_field_of_the_openapi_document_refuses_nul_with_a_422_naming_it() {
    let s = TestServer::start().await;
    // Realistic objects for the path parameters, so each request gets as far as its body.
    let alice = s.register("alice").await; // the first account: an instance admin
    let bob = s.register("bob").await;
    s.befriend(&alice, &bob).await;
    let mut dev = Device::new(&alice.id, "NULDEV").unwrap();
    dev.generate_one_time_keys(2);
    dev.generate_fallback_key();
    let (st, v) = s
        .post(
            "/api/v1/keys/upload",
            Some(&alice.token),
            serde_json::to_value(dev.keys_for_upload()).unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, server) = s
        .post("/api/v1/servers", Some(&alice.token), json!({"name": "S"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{server}");
    let server_id = server["id"].as_str().unwrap().to_owned();
    let (st, channel) = s
        .post(
            &format!("/api/v1/servers/{server_id}/channels"),
            Some(&alice.token),
            json!({"name": "talk", "kind": "text"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{channel}");
    let channel_id = channel["id"].as_str().unwrap().to_owned();
    let (st, invite) = s
        .post(
            &format!("/api/v1/servers/{server_id}/invites"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{invite}");
    let code = invite["code"].as_str().unwrap().to_owned();
    let (st, v) = s
        .post(
            &format!("/api/v1/invites/{code}"),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    let (st, msg) = s
        .post(
            &format!("/api/v1/channels/{channel_id}/messages"),
            Some(&alice.token),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{msg}");
    let message_id = msg["id"].as_str().unwrap().to_owned();
    let (st, role) = s
        .post(
            &format!("/api/v1/servers/{server_id}/roles"),
            Some(&alice.token),
            json!({"name": "mods"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{role}");
    let role_id = role["id"].as_str().unwrap().to_owned();
    let params: Vec<(&str, String)> = vec![
        ("server_id", server_id.clone()),
        ("channel_id", channel_id.clone()),
        ("message_id", message_id),
        ("user_id", bob.id.clone()),
        ("target_id", bob.id.clone()),
        ("role_id", role_id),
        ("rule_id", "1".into()),
        ("session_id", "1".into()),
        ("domain", "example.com".into()),
        ("code", code),
        ("emoji", "%F0%9F%91%8D".into()),
        ("txn_id", "txn-1".into()),
        ("device_id", "NULDEV".into()),
    ];

    let (st, doc) = s.get("/api/v1/openapi.json", &alice.token).await;
    assert_eq!(st, StatusCode::OK);
    let mut operations = 0;
    let mut cases = 0;
    let mut failures = Vec::new();
    let paths = doc["paths"].as_object().unwrap();
    for (route, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Some(schema) = op
                .pointer("/requestBody/content/application~1json/schema")
                .cloned()
            else {
                continue;
            };
            let mut path = route.clone();
            for (name, value) in &params {
                path = path.replace(&format!("{{{name}}}"), value);
            }
            assert!(!path.contains('{'), "no value for a parameter of {route}");
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = template(&doc, &schema, 0);
            let mut leaves = Vec::new();
            string_leaves(&body, &mut Vec::new(), &mut leaves);
            operations += 1;
            for leaf in leaves {
                let mut b = body.clone();
                *leaf_mut(&mut b, &leaf) = json!("a\u{0}b");
                let name = field_name(&leaf);
                let token = if route.starts_with("/api/v1/users/@me/relationships/") {
                    &bob.token // bob answers alice's friend request path
                } else {
                    &alice.token
                };
                let (st, v) = send(&s, method.clone(), &path, token, Some(&b)).await;
                cases += 1;
                assert!(
                    st.as_u16() < 500,
                    "{method} {route} with NUL in {name}: {st} {v}"
                );
                let named = v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("{name} may not contain")));
                if st != StatusCode::UNPROCESSABLE_ENTITY || v["code"] != "validation" || !named {
                    failures.push(format!("{method} {route} [{name}]: {st} {v}"));
                }
            }
        }
    }
    eprintln!("{operations} operations with a JSON body, {cases} string fields");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases were not a 422 naming the field:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The document lists ~40 operations with a JSON body and ~90 string fields in them; a
    // broken walk would find few.
    assert!(
        operations >= 30,
        "only {operations} operations with a JSON body"
    );
    assert!(cases >= 80, "only {cases} string fields");

    // A path parameter with a control character names nothing (404, like an impossible id);
    // a query parameter is refused like a body field.
    let (st, v) = send(
        &s,
        Method::POST,
        "/api/v1/invites/ab%00cd",
        &bob.token,
        Some(&json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "not_found");
    let resp = s
        .http
        .post(s.url(&format!(
            "/api/v1/channels/{channel_id}/attachments?filename=a%00.txt"
        )))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("filename may not"),
        "{v}"
    );
    // Line breaks are text in a message body, not in a name.
    let (st, v) = s
        .post(
            &format!("/api/v1/channels/{channel_id}/messages"),
            Some(&alice.token),
            json!({"content": "two\nlines\tand a tab"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = s
        .post(
            "/api/v1/servers",
            Some(&alice.token),
            json!({"name": "two\nlines"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with("name may not"),
        "{v}"
    );
}
