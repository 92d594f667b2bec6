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
use axum::{Json, Router};
use farview_session::StopReason;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::HostContext;
use crate::api_doc::{
    ApiDoc, ConnectionView, CountersView, ErrorBody, SessionList, SessionView, WebTransportView,
};
use crate::sessions::{CreateSession, SessionError, Snapshot};

/// The routes that need an API key, with their documentation.
fn session_routes() -> OpenApiRouter<Arc<HostContext>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create, list))
        .routes(routes!(show, put_session, patch_session))
        .routes(routes!(stop))
}

/// The routes anyone who reaches the HTTP address may call.
fn public_routes() -> OpenApiRouter<Arc<HostContext>> {
    OpenApiRouter::new()
        .routes(routes!(openapi))
        .routes(routes!(health))
        .routes(routes!(metrics))
}

/// The OpenAPI document, generated from the routes the router serves (checked in at
/// `docs/openapi.json`, served at `/v1/openapi.json`).
pub fn openapi_document() -> String {
    let (_, mut doc) = session_routes().split_for_parts();
    doc.merge(public_routes().split_for_parts().1);
    crate::api_doc::Authentication.modify(&mut doc);
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

/// An HTTP-level failure: status, stable code (documented in `docs/openapi.json`), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Each session failure's status and stable code; the message is the error's own.
impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let (status, code) = match &e {
            SessionError::MalformedLease(_)
            | SessionError::InvalidLease { .. }
            | SessionError::LeaseBelowElapsed { .. } => (422, "invalid_lease"),
            SessionError::InvalidSize { .. } => (422, "invalid_size"),
            SessionError::InvalidModels { .. } => (422, "invalid_models"),
            SessionError::NotFound(_) => (404, "session_not_found"),
            SessionError::Conflict { .. } => (409, "session_conflict"),
            SessionError::Ended { .. } => (409, "session_ended"),
            SessionError::AtCapacity { .. } => (503, "at_capacity"),
            SessionError::Store(_) | SessionError::Internal(_) => (500, "internal"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
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
    let (api, _) = session_routes().split_for_parts();
    let api = api.route_layer(middleware::from_fn_with_state(ctx.clone(), auth));
    let (public, _) = public_routes().split_for_parts();
    Router::new()
        .merge(public)
        .merge(crate::viewer::router())
        .merge(api)
        .fallback(|| async { ApiError::new(404, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Where the API listens: plain TCP, or TLS over it (`[tls] https`).
pub(crate) enum Listener {
    /// HTTP.
    Plain(tokio::net::TcpListener),
    /// HTTPS with the configured certificate.
    Tls(crate::https::TlsListener),
}

pub(crate) async fn serve(listener: Listener, ctx: Arc<HostContext>) {
    let shutdown = ctx.shutdown.clone();
    let app = router(ctx);
    let stopped = async move { shutdown.cancelled().await };
    let result = match listener {
        Listener::Plain(l) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
        Listener::Tls(l) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Bearer-token check against every configured key, comparing SHA-256 digests without early
/// exit so response time does not reveal how much of a guess was right.
async fn auth(State(ctx): State<Arc<HostContext>>, req: Request, next: Next) -> Response {
    if ctx.config.sessions.api_keys.is_empty() {
        return ApiError::new(
            403,
            "api_disabled",
            "the session API is disabled on this host: it has no API keys \
             (set sessions.api_keys, --api-keys or FARVIEW_API_KEYS)",
        )
        .into_response();
    }
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

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                413,
                "body_too_large",
                format!("request bodies are limited to {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(400, "invalid_body", e.body_text())
        }
    })
}

/// A lease as `maxLeaseTime` (`h:m:s`) or, as Azure Remote Rendering's current API has it,
/// `maxLeaseTimeMinutes`: exactly one of them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseField {
    max_lease_time: Option<String>,
    max_lease_time_minutes: Option<u64>,
}

impl LeaseField {
    /// The lease as `h:m:s` text for the session manager (which checks its range).
    fn text(self) -> Result<String, ApiError> {
        match (self.max_lease_time, self.max_lease_time_minutes) {
            (Some(t), None) => Ok(t),
            // Bounded before the arithmetic; the range check follows with the parse.
            (None, Some(m)) if m <= 1_000_000 => Ok(format!("{}:{}:0", m / 60, m % 60)),
            (None, Some(m)) => Err(ApiError::new(
                422,
                "invalid_lease",
                format!("maxLeaseTimeMinutes {m} is out of range"),
            )),
            (Some(_), Some(_)) => Err(ApiError::new(
                422,
                "invalid_lease",
                "give maxLeaseTime or maxLeaseTimeMinutes, not both",
            )),
            (None, None) => Err(ApiError::new(
                422,
                "invalid_lease",
                "maxLeaseTime (h:m:s) or maxLeaseTimeMinutes is required",
            )),
        }
    }
}

/// A new session. The lease as `maxLeaseTime` (h:m:s) or `maxLeaseTimeMinutes` (as Azure
/// Remote Rendering has it): exactly one of them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CreateSession)]
struct CreateBody {
    /// h:m:s, from 0:0:1 to the host's max_lease.
    #[schema(example = "4:0:0")]
    max_lease_time: Option<String>,
    /// The lease in whole minutes, instead of maxLeaseTime.
    #[schema(minimum = 1, example = 240)]
    max_lease_time_minutes: Option<u64>,
    /// A configured size; matched without regard to case.
    #[schema(example = "standard")]
    size: String,
    /// Paths under the host's assets root, loaded before the session reports ready.
    #[serde(default)]
    #[schema(max_items = 32)]
    models: Vec<String>,
}

impl CreateBody {
    fn into_request(self) -> Result<CreateSession, ApiError> {
        let lease = LeaseField {
            max_lease_time: self.max_lease_time,
            max_lease_time_minutes: self.max_lease_time_minutes,
        };
        Ok(CreateSession {
            max_lease_time: lease.text()?,
            size: self.size,
            models: self.models,
        })
    }
}

/// Runs a session operation on the blocking pool (it writes the store before answering).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, "internal", e.to_string()))??)
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    operation_id = "createSession",
    summary = "Create a session",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created; includes the connection token", body = SessionView),
        (status = 400, description = "Body is not valid JSON for CreateSession (invalid_body)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB (body_too_large)", body = ErrorBody),
        (status = 422, description = "Lease out of range, unknown size or bad model list (invalid_lease, invalid_size, invalid_models)", body = ErrorBody),
        (status = 503, description = "Host at max_sessions (at_capacity)", body = ErrorBody),
    )
)]
async fn create(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let result = match body(b).and_then(CreateBody::into_request) {
        Ok(req) => {
            let s = ctx.sessions.clone();
            blocking(move || s.create(None, req)).await
        }
        Err(e) => Err(e),
    };
    created(&ctx, result, &addr)
}

#[utoipa::path(
    put,
    path = "/v1/sessions/{id}",
    operation_id = "putSession",
    summary = "Create a session with this id (idempotent)",
    params(("id" = String, Path, format = Uuid, description = "Session id")),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = SessionView),
        (status = 200, description = "A session with this id and the same request already exists", body = SessionView),
        (status = 400, description = "Body is not valid JSON for CreateSession (invalid_body)", body = ErrorBody),
        (status = 404, description = "Not a session id (session_not_found)", body = ErrorBody),
        (status = 409, description = "The id exists with a different request (session_conflict)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB (body_too_large)", body = ErrorBody),
        (status = 422, description = "Lease out of range, unknown size or bad model list", body = ErrorBody),
        (status = 503, description = "Host at max_sessions (at_capacity)", body = ErrorBody),
    )
)]
async fn put_session(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    Path(id): Path<String>,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let result = match (parse_id(&id), body(b).and_then(CreateBody::into_request)) {
        (Ok(id), Ok(req)) => {
            let s = ctx.sessions.clone();
            blocking(move || s.create(Some(id), req)).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    created(&ctx, result, &addr)
}

/// 201 with the new session, or 200 with the one a `PUT` found already there.
fn created(
    ctx: &HostContext,
    result: Result<crate::sessions::Created, ApiError>,
    addr: &str,
) -> Response {
    match result {
        Ok(c) => {
            let status = if c.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view(ctx, &c.session, addr))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    operation_id = "getSession",
    summary = "Get a session (live, or ended within retention)",
    params(("id" = String, Path, format = Uuid, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "No such session (session_not_found)", body = ErrorBody),
    )
)]
async fn show(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let id = parse_id(&id)?;
    let s = ctx.sessions.clone();
    let session = blocking(move || s.get(id)).await?;
    Ok(Json(view(&ctx, &session, &addr)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Include ended sessions still within retention.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    operation_id = "listSessions",
    summary = "List sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "Sessions", body = SessionList),
        (status = 400, description = "Query string not understood (invalid_query)", body = ErrorBody),
    )
)]
async fn list(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    let all = q.all;
    let s = ctx.sessions.clone();
    let sessions = blocking(move || s.list(all)).await?;
    let sessions = sessions.iter().map(|s| view(&ctx, s, &addr)).collect();
    Ok(Json(SessionList { sessions }))
}

/// A new lease: `maxLeaseTime` (h:m:s) or `maxLeaseTimeMinutes`, exactly one of them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = UpdateSession)]
struct PatchSession {
    #[schema(example = "6:0:0")]
    max_lease_time: Option<String>,
    #[schema(minimum = 1, example = 360)]
    max_lease_time_minutes: Option<u64>,
}

#[utoipa::path(
    patch,
    path = "/v1/sessions/{id}",
    operation_id = "updateSession",
    summary = "Set a live session's lease (from its creation)",
    params(("id" = String, Path, format = Uuid, description = "Session id")),
    request_body = PatchSession,
    responses(
        (status = 200, description = "The session with its new lease", body = SessionView),
        (status = 400, description = "Body is not valid JSON for UpdateSession (invalid_body)", body = ErrorBody),
        (status = 404, description = "No such session (session_not_found)", body = ErrorBody),
        (status = 409, description = "The session has ended (session_ended)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB (body_too_large)", body = ErrorBody),
        (status = 422, description = "Lease out of range or below the time elapsed (invalid_lease)", body = ErrorBody),
    )
)]
async fn patch_session(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    Path(id): Path<String>,
    b: Result<Json<PatchSession>, JsonRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let id = parse_id(&id)?;
    let req = body(b)?;
    let lease = LeaseField {
        max_lease_time: req.max_lease_time,
        max_lease_time_minutes: req.max_lease_time_minutes,
    }
    .text()?;
    // Checked against `sessions.max_lease`, as a create's lease is.
    let ms = ctx.sessions.parse_lease(&lease)?;
    let s = ctx.sessions.clone();
    let (session, _) = blocking(move || s.set_lease(id, ms)).await?;
    Ok(Json(view(&ctx, &session, &addr)))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/stop",
    operation_id = "stopSession",
    summary = "Stop a session (stopping an ended one is fine)",
    params(("id" = String, Path, format = Uuid, description = "Session id")),
    responses(
        (status = 200, description = "The session, stopped", body = SessionView),
        (status = 404, description = "No such session (session_not_found)", body = ErrorBody),
    )
)]
async fn stop(
    State(ctx): State<Arc<HostContext>>,
    Advertised(addr): Advertised,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let id = parse_id(&id)?;
    let s = ctx.sessions.clone();
    let session = blocking(move || s.stop(id, StopReason::Stopped)).await?;
    Ok(Json(view(&ctx, &session, &addr)))
}

/// The QUIC address devices are told to use (see [`crate::Config::public_address`]).
struct Advertised(String);

impl axum::extract::FromRequestParts<Arc<HostContext>> for Advertised {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ctx: &Arc<HostContext>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(advertised_address(
            ctx.config.public_address.as_deref(),
            ctx.sessions.quic_addr,
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
        )))
    }
}

/// `public_address`; else the bound QUIC address; else, when that is unspecified, the name the
/// API was reached by (the `Host` header, checked to be a plain name or IP) with the QUIC port;
/// else loopback. Never `0.0.0.0` or `::`.
fn advertised_address(
    public: Option<&str>,
    bound: std::net::SocketAddr,
    host: Option<&str>,
) -> String {
    if let Some(p) = public {
        return p.to_owned();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let port = bound.port();
    let name = host.map(|h| match h.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare `[v6]` or name has no port to strip.
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
        _ => h,
    });
    let plain = |n: &str| {
        !n.is_empty()
            && n.len() <= 253
            && (n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                || (n.starts_with('[')
                    && n.ends_with(']')
                    && n[1..n.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()))
    };
    match name {
        Some(n) if plain(n) => format!("{n}:{port}"),
        _ if bound.is_ipv6() => format!("[::1]:{port}"),
        _ => format!("127.0.0.1:{port}"),
    }
}

/// The JSON view of a session (`Session` in the OpenAPI document). Live sessions carry their
/// connection details, token included: the API key holder is the app's backend, which hands
/// them to its device.
fn view(ctx: &HostContext, s: &Snapshot, quic_address: &str) -> SessionView {
    let r = &s.record;
    let end = r.stopped_at_ms.unwrap_or(s.as_of_ms);
    SessionView {
        id: r.id.to_string(),
        status: r.status.as_str(),
        size: r.size.clone(),
        models: r.models.clone(),
        created_at: rfc3339(r.created_at_ms),
        ready_at: r.ready_at_ms.map(rfc3339),
        max_lease_time: farview_session::format_lease(r.max_lease_ms),
        elapsed_time: farview_session::format_lease(end.saturating_sub(r.created_at_ms)),
        stopped_at: r.stopped_at_ms.map(rfc3339),
        stop_reason: r.stop_reason.clone(),
        device: r.device.clone(),
        counters: CountersView {
            frames_sent: r.frames_sent,
            models_loaded: r.models_loaded,
        },
        connection: (!r.status.is_final()).then(|| ConnectionView {
            quic_address: quic_address.to_owned(),
            fingerprint: ctx.sessions.fingerprint.clone(),
            token: s.token.clone(),
            web_transport: WebTransportView {
                path: farview_protocol::WEBTRANSPORT_PATH,
                certificate_hashes: ctx
                    .web_certs
                    .as_ref()
                    .map(|w| w.hashes())
                    .unwrap_or_default(),
            },
        }),
    }
}

/// RFC 3339 UTC timestamp with milliseconds, from ms since the Unix epoch (through `time`).
pub(crate) fn rfc3339(ms: u64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        // Past year 9999: not a time a record can hold; say so rather than invent one.
        .unwrap_or_else(|| "9999-12-31T23:59:59.999Z".to_owned())
}

/// The API's description is public (it holds no data), so tools read it without a key.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    summary = "This document (no API key needed)",
    security(()),
    responses((status = 200, description = "OpenAPI document", content_type = "application/json"))
)]
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOCUMENT.get_or_init(openapi_document).clone();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    summary = "Health (no API key needed)",
    security(()),
    responses((status = 200, description = "Status, version, adapter, fingerprint, connections and live sessions", body = Object))
)]
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

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics (no API key needed)",
    security(()),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"))
)]
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_never_advertised() {
        let any4: std::net::SocketAddr = "0.0.0.0:4433".parse().unwrap();
        let any6: std::net::SocketAddr = "[::]:4433".parse().unwrap();
        let bound: std::net::SocketAddr = "10.0.0.5:4433".parse().unwrap();
        let f = advertised_address;
        assert_eq!(
            f(Some("render.example.com:443"), any4, None),
            "render.example.com:443"
        );
        assert_eq!(f(None, bound, Some("api.example.com")), "10.0.0.5:4433");
        assert_eq!(
            f(None, any4, Some("api.example.com:8080")),
            "api.example.com:4433"
        );
        assert_eq!(f(None, any4, Some("192.168.1.9")), "192.168.1.9:4433");
        assert_eq!(
            f(None, any6, Some("[2001:db8::1]:8080")),
            "[2001:db8::1]:4433"
        );
        assert_eq!(f(None, any6, Some("[2001:db8::1]")), "[2001:db8::1]:4433");
        // No usable Host header: loopback, not the unspecified address.
        assert_eq!(f(None, any4, None), "127.0.0.1:4433");
        assert_eq!(f(None, any4, Some("evil host/..")), "127.0.0.1:4433");
        assert_eq!(f(None, any6, Some("::1")), "[::1]:4433");
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_586_400_123), "2026-11-25T06:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn session_errors_keep_their_statuses_and_codes() {
        use farview_session::Status;
        use uuid::Uuid;
        let id = Uuid::nil();
        let cases = [
            (
                SessionError::InvalidLease {
                    requested_ms: 0,
                    min_ms: 1000,
                    max_ms: 24 * 3600 * 1000,
                },
                422,
                "invalid_lease",
            ),
            (
                SessionError::LeaseBelowElapsed { elapsed_ms: 5000 },
                422,
                "invalid_lease",
            ),
            (
                SessionError::InvalidSize {
                    requested: "huge".into(),
                    offered: vec!["standard".into()],
                },
                422,
                "invalid_size",
            ),
            (
                SessionError::InvalidModels {
                    max_models: 32,
                    max_path_bytes: 1024,
                },
                422,
                "invalid_models",
            ),
            (SessionError::NotFound(id), 404, "session_not_found"),
            (
                SessionError::Conflict {
                    id,
                    reason: crate::sessions::Conflict::Ended,
                },
                409,
                "session_conflict",
            ),
            (
                SessionError::Ended {
                    status: Status::Stopped,
                },
                409,
                "session_ended",
            ),
            (SessionError::AtCapacity { max: 1 }, 503, "at_capacity"),
            (SessionError::Internal("x".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let message = e.to_string();
            assert_eq!(
                ApiError::from(e),
                ApiError::new(status, code, message),
                "{code}"
            );
        }
        assert_eq!(
            SessionError::InvalidLease {
                requested_ms: 0,
                min_ms: 1000,
                max_ms: 24 * 3600 * 1000
            }
            .to_string(),
            "lease 0:0:0 is outside the allowed range 0:0:1 to 24:0:0"
        );
    }
}
