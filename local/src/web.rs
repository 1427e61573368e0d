//! The web client: a single-page chat app whose files are built into the binary and served at
//! the HTTP API's root, beside `/api`.
//!
//! The client uses the API only as any other client would: the public HTTP routes and the
//! WebSocket API, at the URLs `/config.json` names. The same files, with a `config.json` of
//! their own, can be served by any static host against a deployed stage.

use std::net::SocketAddr;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

/// A file of the client: its path under `/`, its media type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: concat!("/", $path),
            content_type: $content_type,
            bytes: include_bytes!(concat!("../web/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/session.js", JS),
    asset!("js/socket.js", JS),
    asset!("js/catchup.js", JS),
    asset!("js/store.js", JS),
    asset!("js/view.js", JS),
    asset!("js/dom.js", JS),
];

/// The page may load its own files and talk to the API and WebSocket URLs its configuration
/// names, nothing else; no inline script or style.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; connect-src 'self' http: https: ws: wss:; \
     img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Whether a path belongs to the API (and so to the functions) rather than to the client.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The client's files and the configuration that points it at this gateway.
#[derive(Clone, Debug)]
pub struct WebClient {
    ws_addr: SocketAddr,
}

impl WebClient {
    /// A client that talks to the API on its own origin and to the WebSocket API at `ws_addr`.
    pub fn new(ws_addr: SocketAddr) -> Self {
        Self { ws_addr }
    }

    /// Answers a request for one of the client's files (or its configuration).
    pub fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = if path == "/" { "/index.html" } else { path };
        let (content_type, body) = if path == "/config.json" {
            ("application/json", Bytes::from(self.config(headers)))
        } else if let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) {
            (asset.content_type, Bytes::from_static(asset.bytes))
        } else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };

        // The names carry no version, so browsers keep a copy but ask before each use; an
        // unchanged file costs a 304.
        let etag = format!("\"{:016x}\"", fnv1a(&body));
        let fresh = headers
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
        let (status, body) = if fresh {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else if method == Method::HEAD {
            (StatusCode::OK, Bytes::new())
        } else {
            (StatusCode::OK, body)
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let out = response.headers_mut();
        out.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            out.insert(ETAG, etag);
        }
        if content_type.starts_with("text/html") {
            out.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
            );
        }
        response
    }

    /// `{"apiBase", "wsUrl"}`: the API on the page's own origin; the WebSocket API on its
    /// listener, reached by the host name the page was loaded from when that listener takes
    /// every address.
    fn config(&self, headers: &HeaderMap) -> String {
        let ws_host = if self.ws_addr.ip().is_unspecified() {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(host_name)
                .unwrap_or("127.0.0.1");
            format!("{host}:{}", self.ws_addr.port())
        } else {
            self.ws_addr.to_string()
        };
        json!({
            "apiBase": "/api",
            "wsUrl": format!("ws://{ws_host}"),
        })
        .to_string()
    }
}

/// `example.com:3000` → `example.com`; `[::1]:3000` → `[::1]`.
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A stable fingerprint of a file for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_the_functions() {
        assert!(is_api_path("/api"));
        assert!(is_api_path("/api/chats"));
        assert!(!is_api_path("/apix"));
        assert!(!is_api_path("/"));
        assert!(!is_api_path("/js/main.js"));
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("example.com:3000"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        let index = String::from_utf8_lossy(ASSETS[0].bytes);
        for asset in ASSETS.iter().skip(1) {
            let name = asset.path.trim_start_matches('/');
            let linked = index.contains(name)
                || ASSETS.iter().filter(|a| a.path.ends_with(".js")).any(|a| {
                    String::from_utf8_lossy(a.bytes).contains(name.trim_start_matches("js/"))
                });
            assert!(linked, "{} is served but nothing loads it", asset.path);
        }
    }
}
