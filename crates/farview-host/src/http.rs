//! The host's HTTP endpoint: the session management API (`/v1`, bearer-token auth, JSON errors
//! with stable codes, described by `docs/openapi.json`), and, unauthenticated, `/healthz` for
//! load balancers and container health checks and `/metrics` for Prometheus (operators keep the
//! HTTP address on a private network).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use farview_session::StopReason;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::HostContext;
use crate::sessions::{ApiError, CreateSession};

/// The OpenAPI document, checked in at `docs/openapi.json` and served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Every API route as (method, path); a test keeps this, the router and the OpenAPI document equal.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("put", "/v1/sessions/{id}"),
    ("patch", "/v1/sessions/{id}"),
    ("post", "/v1/sessions/{id}/stop"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/metrics"),
];

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub(crate) fn router(ctx: Arc<HostContext>) -> Router {
    let api = Router::new()
        .route("/v1/sessions", post(create).get(list))
        .route(
            "/v1/sessions/{id}",
            get(show).put(put_session).patch(patch_session),
        )
        .route("/v1/sessions/{id}/stop", post(stop))
        .route("/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), auth));
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { ApiError::new(404, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(ctx)
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, ctx: Arc<HostContext>) {
    let shutdown = ctx.shutdown.clone();
    let app = router(ctx);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Bearer-token check against every configured key, comparing SHA-256 digests without early
/// exit so response time does not reveal how much of a guess was right.
async fn auth(State(ctx): State<Arc<HostContext>>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return ApiError::new(
            401,
            "unauthorized",
            "missing Authorization: Bearer <api key>",
        )
        .into_response();
    };
    let presented = value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
    if presented.is_empty() {
        return ApiError::new(
            401,
            "unauthorized",
            "Authorization must be 'Bearer <api key>'",
        )
        .into_response();
    }
    let p = digest(presented);
    let mut ok = 0u8;
    for key in &ctx.config.sessions.api_keys {
        let k = digest(key.as_bytes());
        ok |= u8::from(k.iter().zip(&p).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0);
    }
    if ok == 0 {
        return ApiError::new(403, "forbidden", "API key not accepted").into_response();
    }
    next.run(req).await
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::new(
            404,
            "session_not_found",
            format!("'{id}' is not a session id"),
        )
    })
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::new(400, "invalid_body", e.body_text()))
}

/// Runs a session operation on the blocking pool (it writes the store before answering).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, "internal", e.to_string()))?
}

async fn create(
    State(ctx): State<Arc<HostContext>>,
    b: Result<Json<CreateSession>, JsonRejection>,
) -> Response {
    let result = match body(b) {
        Ok(req) => {
            let s = ctx.sessions.clone();
            blocking(move || s.create(None, req)).await
        }
        Err(e) => Err(e),
    };
    reply(result)
}

async fn put_session(
    State(ctx): State<Arc<HostContext>>,
    Path(id): Path<String>,
    b: Result<Json<CreateSession>, JsonRejection>,
) -> Response {
    let result = match (parse_id(&id), body(b)) {
        (Ok(id), Ok(req)) => {
            let s = ctx.sessions.clone();
            blocking(move || s.create(Some(id), req)).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    reply(result)
}

fn reply(result: Result<(u16, Value), ApiError>) -> Response {
    match result {
        Ok((status, v)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(v),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn show(
    State(ctx): State<Arc<HostContext>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let s = ctx.sessions.clone();
    blocking(move || s.get(id)).await.map(Json)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(ctx): State<Arc<HostContext>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    let all = q.all;
    let s = ctx.sessions.clone();
    blocking(move || s.list(all)).await.map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchSession {
    max_lease_time: String,
}

async fn patch_session(
    State(ctx): State<Arc<HostContext>>,
    Path(id): Path<String>,
    b: Result<Json<PatchSession>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let req = body(b)?;
    let ms = farview_session::parse_lease(&req.max_lease_time, u64::MAX)
        .map_err(|e| ApiError::new(422, "invalid_lease", e.to_string()))?;
    let s = ctx.sessions.clone();
    blocking(move || s.set_lease(id, ms).map(|(v, _)| v))
        .await
        .map(Json)
}

async fn stop(
    State(ctx): State<Arc<HostContext>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let s = ctx.sessions.clone();
    blocking(move || s.stop(id, StopReason::Stopped))
        .await
        .map(Json)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(ctx): State<Arc<HostContext>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "adapter": ctx.gpu.summary(),
        "software_rendering": ctx.gpu.is_software(),
        "quic_fingerprint": ctx.fingerprint,
        "connections": ctx.connections.load(Ordering::Relaxed),
        "sessions": ctx.sessions.live_count(),
    }))
}

async fn metrics(State(ctx): State<Arc<HostContext>>) -> Response {
    let sessions = ctx.sessions.clone();
    let metrics = ctx.metrics.clone();
    // The session counts read the SQLite file: off the async workers.
    let body = tokio::task::spawn_blocking(move || metrics.render(&sessions.status_counts()))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
