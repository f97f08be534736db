//! The built web app at `/`, served like a production static server: precompressed variants
//! (`FILE.br`, `FILE.gz`, written by `frontend/scripts/compress.mjs` at build) chosen from
//! `Accept-Encoding`, long-lived caching for hashed assets and revalidation for the rest
//! (`ETag` / `If-None-Match` → 304), a 404 for a missing asset, the SPA fallback to
//! `index.html` for every other unknown path, and the security headers every page gets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;

/// Content-Security-Policy of the web app: same-origin everything, wasm allowed, no inline script.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; \
object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'";

/// `Cache-Control` of content-hashed files (`/_app/immutable/…`): a new build has new names.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of every other file (`index.html`, `/_app/version.json`, `favicon.png`…):
/// kept, but revalidated (a 304 when unchanged) before each use.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// Where the built files are.
struct Site {
    root: PathBuf,
}

/// Serves `dir` (falling back to its `index.html`), or a plain page saying the web app is not built.
pub fn router(dir: &Path) -> Router {
    let index = dir.join("index.html");
    if index.exists() {
        // Page headers go on documents and worker scripts only (see `page_headers`).
        return Router::new()
            .fallback(serve)
            .with_state(Arc::new(Site {
                root: dir.to_path_buf(),
            }))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ));
    }
    let r = {
        tracing::warn!(dir = %dir.display(), "web app not built: serving a placeholder at /");
        Router::new().fallback(|| async {
            Html(
                "<!doctype html><title>Copains</title><h1>Copains</h1>\
                 <p>The API is running, but the web app has not been built here. \
                 Run <code>scripts/run.sh</code>, which builds it, or set COPAINS_WEB_DIR.</p>",
            )
        })
    };
    r.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
        ),
    ))
}

/// One request for a file of the site.
async fn serve(
    State(site): State<Arc<Site>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = copains_api::ApiError::bad_request(
            "method_not_allowed",
            "the web app's files are read with GET or HEAD",
        )
        .into_response();
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = uri.path();
    let Some(rel) = relative_path(path) else {
        return not_found();
    };
    let (file, cache) = match existing_file(&site.root.join(&rel)).await {
        Some(f) if path.starts_with("/_app/immutable/") => (f, CACHE_IMMUTABLE),
        Some(f) => (f, CACHE_REVALIDATE),
        // A missing script, style or wasm must fail as such, not parse index.html as code.
        None if is_asset_path(path) => return not_found(),
        None => (site.root.join("index.html"), CACHE_REVALIDATE),
    };
    let mut resp = send_file(&file, cache, &method, &headers).await;
    let is_html = file.extension().is_some_and(|e| e == "html");
    if is_html || path.starts_with("/_app/immutable/workers/") {
        page_headers(resp.headers_mut());
    }
    resp
}

/// The headers that govern a document (or a worker, whose policy is its script's response):
/// CSP, framing, referrer and permissions. Scripts, styles and images get none of them
/// (they have no effect there) and so stay small on the wire: about 500 bytes less for each
/// of the fifty-odd files of a first load.
fn page_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
        ),
    );
}

/// Paths that name build files, never a page of the app: a miss there is a 404.
fn is_asset_path(path: &str) -> bool {
    path == "/_app" || path.starts_with("/_app/")
}

/// The file itself, or a folder's `index.html`; `None` when neither exists.
async fn existing_file(p: &Path) -> Option<PathBuf> {
    let meta = tokio::fs::metadata(p).await.ok()?;
    if meta.is_file() {
        return Some(p.to_path_buf());
    }
    let index = p.join("index.html");
    if meta.is_dir() && tokio::fs::metadata(&index).await.ok()?.is_file() {
        return Some(index);
    }
    None
}

/// The request path as a path below the root: percent-decoded, with no `..`, no backslash,
/// no NUL and no drive prefix. `None` for anything else (answered 404).
fn relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let mut out = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return None,
            s if s.contains(['\\', '\0', ':']) => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

/// A 404 in the API's error shape.
fn not_found() -> Response {
    let mut r = copains_api::ApiError::not_found("no such file").into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_REVALIDATE),
    );
    r
}

/// The content codings a request accepts, by preference: `br`, then `gzip`, each only with
/// a weight above zero (named, or through `*`). Higher weights come first; ties keep that order.
fn accepted_codings(headers: &HeaderMap) -> Vec<&'static str> {
    let mut weights: Vec<(&'static str, f32)> = Vec::new();
    let mut star: Option<f32> = None;
    let mut named = [None::<f32>; 2];
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
            match coding.as_str() {
                "br" => named[0] = Some(q),
                "gzip" | "x-gzip" => named[1] = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
    }
    for (i, coding) in ["br", "gzip"].into_iter().enumerate() {
        let q = named[i].or(star).unwrap_or(0.0);
        if q > 0.0 {
            weights.push((coding, q));
        }
    }
    // A stable sort keeps br before gzip when both weigh the same.
    weights.sort_by(|a, b| b.1.total_cmp(&a.1));
    weights.into_iter().map(|(c, _)| c).collect()
}

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110 asks for GET).
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == ours
            })
        })
    })
}

/// Sends `file` (or its best precompressed variant) with caching headers.
async fn send_file(
    file: &Path,
    cache: &'static str,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let mut chosen = (file.to_path_buf(), None::<&'static str>);
    for coding in accepted_codings(headers) {
        let ext = if coding == "br" { "br" } else { "gz" };
        let mut name = file.as_os_str().to_owned();
        name.push(".");
        name.push(ext);
        let variant = PathBuf::from(name);
        if tokio::fs::metadata(&variant)
            .await
            .is_ok_and(|m| m.is_file())
        {
            chosen = (variant, Some(coding));
            break;
        }
    }
    let (path, coding) = chosen;
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return not_found();
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let etag = format!(
        "\"{:x}-{:x}{}\"",
        meta.len(),
        mtime,
        coding.map(|c| format!("-{c}")).unwrap_or_default()
    );
    let content_type = mime_guess::from_path(file)
        .first()
        .map(|m| {
            if m.type_() == mime_guess::mime::TEXT {
                format!("{m}; charset=utf-8")
            } else {
                m.to_string()
            }
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned());

    let mut h = HeaderMap::new();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if *method == Method::HEAD {
        return (StatusCode::OK, h, Body::empty()).into_response();
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            // The file may have changed since its metadata was read: trust what was read.
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            (StatusCode::OK, h, Body::from(bytes)).into_response()
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "reading a web app file");
            not_found()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::to_bytes;
    use axum::http::Request;
    use tower::ServiceExt;

    const JS: &str = "/_app/immutable/entry/start.abc123.js";

    /// A build folder like `vite build` + compress.mjs make, and a secret beside it.
    fn site() -> (tempfile::TempDir, Router) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("build");
        std::fs::create_dir_all(root.join("_app/immutable/entry")).unwrap();
        std::fs::write(root.join("index.html"), "<!doctype html><p>app</p>").unwrap();
        std::fs::write(root.join("index.html.br"), "INDEX-BR").unwrap();
        std::fs::write(root.join("index.html.gz"), "INDEX-GZ").unwrap();
        std::fs::write(root.join(&JS[1..]), "console.log('start')").unwrap();
        std::fs::write(root.join(format!("{}.br", &JS[1..])), "JS-BR").unwrap();
        std::fs::write(root.join(format!("{}.gz", &JS[1..])), "JS-GZ").unwrap();
        std::fs::write(root.join("_app/version.json"), "{\"version\":\"1\"}").unwrap();
        std::fs::create_dir_all(root.join("_app/immutable/workers")).unwrap();
        std::fs::write(
            root.join("_app/immutable/workers/worker-x.js"),
            "onmessage=0",
        )
        .unwrap();
        std::fs::write(root.join("favicon.png"), [0x89, b'P', b'N', b'G']).unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "SECRET").unwrap();
        let r = router(&root);
        (tmp, r)
    }

    async fn get(
        r: &Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        get_with(r, Method::GET, path, headers).await
    }

    async fn get_with(
        r: &Router,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = r
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let h = resp.headers().clone();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, h, String::from_utf8_lossy(&body).into_owned())
    }

    fn hv<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    #[tokio::test]
    async fn picks_the_encoding_the_browser_accepts() {
        let (_tmp, r) = site();
        for (accept, body, coding) in [
            ("gzip, deflate, br, zstd", "JS-BR", "br"),
            ("gzip", "JS-GZ", "gzip"),
            ("br;q=0, gzip", "JS-GZ", "gzip"),
            ("br;q=0.5, gzip;q=0.9", "JS-GZ", "gzip"),
            ("*", "JS-BR", "br"),
            ("identity", "console.log('start')", ""),
            ("", "console.log('start')", ""),
        ] {
            let (s, h, b) = get(&r, JS, &[("accept-encoding", accept)]).await;
            assert_eq!(s, StatusCode::OK, "{accept}");
            assert_eq!(b, body, "{accept}");
            assert_eq!(hv(&h, "content-encoding"), coding, "{accept}");
            assert_eq!(hv(&h, "vary"), "Accept-Encoding", "{accept}");
            assert!(
                hv(&h, "content-type").starts_with("text/javascript"),
                "{accept}: {h:?}"
            );
            assert_eq!(hv(&h, "content-length"), body.len().to_string(), "{accept}");
        }
        // index.html too, and the SPA fallback is compressed like it.
        let (_, h, b) = get(&r, "/channels/1/2", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!((b.as_str(), hv(&h, "content-encoding")), ("INDEX-BR", "br"));
        assert!(hv(&h, "content-type").starts_with("text/html"));
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_the_rest_revalidates() {
        let (_tmp, r) = site();
        let (_, h, _) = get(&r, JS, &[]).await;
        assert_eq!(hv(&h, "cache-control"), CACHE_IMMUTABLE);
        for path in [
            "/",
            "/index.html",
            "/_app/version.json",
            "/favicon.png",
            "/login",
        ] {
            let (s, h, _) = get(&r, path, &[]).await;
            assert_eq!(s, StatusCode::OK, "{path}");
            assert_eq!(hv(&h, "cache-control"), "no-cache", "{path}");
            assert!(!hv(&h, "etag").is_empty(), "{path}");
            assert_eq!(hv(&h, "x-content-type-options"), "nosniff", "{path}");
        }
        // Documents and workers carry the page policy; other files do not need it.
        for (path, csp) in [
            ("/", true),
            ("/login", true),
            ("/_app/immutable/workers/worker-x.js", true),
            (JS, false),
            ("/favicon.png", false),
        ] {
            let (_, h, _) = get(&r, path, &[]).await;
            assert_eq!(hv(&h, "content-security-policy") == CSP, csp, "{path}");
            assert_eq!(hv(&h, "x-frame-options") == "DENY", csp, "{path}");
        }
        let (_, h, _) = get(&r, "/favicon.png", &[]).await;
        assert_eq!(hv(&h, "content-type"), "image/png");
    }

    #[tokio::test]
    async fn if_none_match_gives_304_per_encoding() {
        let (_tmp, r) = site();
        let (_, h, _) = get(&r, JS, &[("accept-encoding", "br")]).await;
        let etag_br = hv(&h, "etag").to_owned();
        let (_, h, _) = get(&r, JS, &[("accept-encoding", "gzip")]).await;
        let etag_gz = hv(&h, "etag").to_owned();
        assert_ne!(etag_br, etag_gz, "each representation has its own ETag");

        let (s, h, b) = get(
            &r,
            JS,
            &[("accept-encoding", "br"), ("if-none-match", &etag_br)],
        )
        .await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        assert!(b.is_empty());
        assert_eq!(hv(&h, "etag"), etag_br);
        assert_eq!(hv(&h, "cache-control"), CACHE_IMMUTABLE);
        assert_eq!(hv(&h, "vary"), "Accept-Encoding");

        let list = format!("\"nope\", W/{etag_gz}");
        let (s, _, _) = get(
            &r,
            JS,
            &[("accept-encoding", "gzip"), ("if-none-match", &list)],
        )
        .await;
        assert_eq!(s, StatusCode::NOT_MODIFIED, "weak comparison, in a list");
        // The br ETag does not validate the gzip representation.
        let (s, _, b) = get(
            &r,
            JS,
            &[("accept-encoding", "gzip"), ("if-none-match", &etag_br)],
        )
        .await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "JS-GZ"));

        let (_, h, _) = get(&r, "/", &[]).await;
        let etag = hv(&h, "etag").to_owned();
        let (s, h, _) = get(&r, "/", &[("if-none-match", &etag)]).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        assert_eq!(hv(&h, "cache-control"), "no-cache");
    }

    #[tokio::test]
    async fn a_missing_asset_is_a_404_not_the_app() {
        let (_tmp, r) = site();
        for path in [
            "/_app/immutable/entry/start.gone.js",
            "/_app/immutable/chunks/x.css",
            "/_app/nope.wasm",
            "/_app",
        ] {
            let (s, h, b) = get(&r, path, &[("accept-encoding", "br, gzip")]).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert!(
                hv(&h, "content-type").starts_with("application/json"),
                "{path}"
            );
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["code"], "not_found", "{path}");
        }
    }

    #[tokio::test]
    async fn paths_cannot_leave_the_build_folder() {
        let (_tmp, r) = site();
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/_app/..%2f..%2fsecret.txt",
            "/..%5csecret.txt",
            "/%00",
        ] {
            let (s, _, b) = get(&r, path, &[]).await;
            assert!(!b.contains("SECRET"), "{path}");
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn head_and_other_methods() {
        let (_tmp, r) = site();
        let (s, h, b) = get_with(&r, Method::HEAD, JS, &[("accept-encoding", "gzip")]).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.is_empty());
        assert_eq!(hv(&h, "content-length"), "5");
        assert_eq!(hv(&h, "content-encoding"), "gzip");
        let (s, h, b) = get_with(&r, Method::POST, "/", &[]).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(hv(&h, "allow"), "GET, HEAD");
        assert!(b.contains("method_not_allowed"));
    }

    #[test]
    fn accept_encoding_parsing() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepted_codings(&m)
        };
        assert_eq!(h("gzip, br"), ["br", "gzip"]);
        assert_eq!(h("gzip;q=1.0, br;q=0.8"), ["gzip", "br"]);
        assert_eq!(h("*;q=0.1, br;q=0"), ["gzip"]);
        assert_eq!(h("BR;Q=0.5"), ["br"]);
        assert_eq!(h("deflate, zstd"), Vec::<&str>::new());
        assert_eq!(h("gzip;q=nonsense"), Vec::<&str>::new());
    }
}
