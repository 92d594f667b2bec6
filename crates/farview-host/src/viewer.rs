//! The browser viewer at `GET /viewer`: a page (HTML, CSS, plain JavaScript, no build step) that
//! is a full Farview device over WebTransport, embedded in the binary so the host serves it with
//! no CDN and no network at run time. `GET /viewer/endpoint.json` tells the page where the
//! WebTransport session is and which certificate hashes to pin; it carries nothing secret (the
//! session id and token come from the page's URL or its form), so neither route needs an API key.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::HostContext;

const INDEX_HTML: &str = include_str!("../viewer/index.html");
const VIEWER_JS: &str = include_str!("../viewer/viewer.js");
const PROTOCOL_JS: &str = include_str!("../viewer/protocol.js");
const VIEWER_CSS: &str = include_str!("../viewer/viewer.css");

/// The viewer's routes (no API key: see the module doc).
pub(crate) fn router() -> Router<Arc<HostContext>> {
    Router::new()
        .route(
            "/viewer",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/viewer/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/viewer/viewer.js",
            get(|| async { page(VIEWER_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/viewer/protocol.js",
            get(|| async { page(PROTOCOL_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/viewer/viewer.css",
            get(|| async { page(VIEWER_CSS, "text/css; charset=utf-8") }),
        )
        .route("/viewer/endpoint.json", get(endpoint))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
}

fn page(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Where the page opens its WebTransport session: the QUIC port of this host (the page takes
/// the host name it was loaded from), the path, and the hashes to pin.
async fn endpoint(State(ctx): State<Arc<HostContext>>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "port": ctx.sessions.quic_addr.port(),
            "path": farview_protocol::WEBTRANSPORT_PATH,
            "certificateHashes": ctx.web_certs.as_ref().map(|w| w.hashes()).unwrap_or_default(),
            "protocolVersion": farview_protocol::PROTOCOL_VERSION,
            "allowSessionless": ctx.config.sessions.allow_sessionless,
        })),
    )
}
