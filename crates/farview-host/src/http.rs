//! The host's HTTP endpoint. Today: health and identity for operators and load balancers; the
//! session API (issue #3) and metrics join it here.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use crate::HostContext;

pub(crate) async fn serve(listener: tokio::net::TcpListener, ctx: Arc<HostContext>) {
    let shutdown = ctx.shutdown.clone();
    let app = Router::new().route("/healthz", get(health)).with_state(ctx);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn health(State(ctx): State<Arc<HostContext>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "adapter": ctx.gpu.summary(),
        "software_rendering": ctx.gpu.is_software(),
        "quic_fingerprint": ctx.fingerprint,
        "connections": ctx.connections.load(Ordering::Relaxed),
    }))
}
