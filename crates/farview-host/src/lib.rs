//! The Farview host node as a library: [`start`] binds the QUIC and HTTP endpoints, opens the GPU
//! and serves devices until [`HostHandle::shutdown`]. The `farview-host` binary is a thin wrapper;
//! tests start hosts in-process on free ports.

mod api_doc;
mod catalog;
mod config;
mod connection;
mod control;
mod fleet;
mod http;
mod https;
mod loads;
mod look;
mod look_wire;
mod metrics;
mod outbox;
mod pipeline;
mod scene_ops;
mod sessions;
mod settings;
mod tap;
mod time;
mod tls;
mod untrusted;
mod uploads;
mod viewer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use farview_protocol::{CloseCode, ControlCodec, WEBTRANSPORT_ALPN, WEBTRANSPORT_PATH};
use farview_render::GpuContext;
use farview_scene::ImportLimits;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod abr;
mod alloc;
pub use alloc::limit_malloc_arenas;
pub use config::{
    AgonesConfig, Cli, ColorConversion, Config, ConfigError, DEFAULT_HTTP_ADDR, DEFAULT_QUIC_ADDR,
    EncoderChoice, LogFormat, QualityChoice, RenderConfig, SessionsConfig, SizeConfig,
    StreamConfig, TlsConfig, ToneMappingChoice,
};
pub use farview_session::{Clock, ManualClock, SystemClock};
pub use http::openapi_document;
pub use tap::{FrameTap, TappedFrame};
pub use tls::{FINGERPRINT_FILE, fingerprint};

/// Errors that stop the host from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No usable GPU adapter or device.
    #[error(transparent)]
    Render(#[from] farview_render::RenderError),
    /// The certificate could not be created, loaded or used.
    #[error("TLS identity ({dir}): {message}")]
    Tls {
        /// The data directory, or the configured certificate file.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The session record store could not be opened.
    #[error("session store in {dir}: {message}")]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The configured default environment (`[render] environment`) could not be loaded or
    /// prefiltered.
    #[error("default environment {path}: {message}")]
    Environment {
        /// The file it was looked up at.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `[agones] enabled`, and the SDK server or an encoder could not be reached or made.
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    /// Only a software rasterizer was found, and the configuration did not allow one.
    #[error(
        "no GPU found, only the software rasterizer {adapter}; check the GPU driver and the \
         container's GPU access, or set allow_software_adapter = true \
         (FARVIEW_ALLOW_SOFTWARE_ADAPTER=true, --allow-software-adapter true) to render on the CPU"
    )]
    SoftwareAdapter {
        /// What was found.
        adapter: String,
    },
    /// The assets root does not exist.
    #[error("assets root {path} is not a readable directory: {source}")]
    AssetsRoot {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Programmatic options that are not part of the file/env/flag configuration.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Keep copies of rendered frames for comparison (tests and debugging only).
    pub frame_tap: Option<FrameTap>,
    /// Use this GPU context instead of opening one (lets tests share a device).
    pub gpu: Option<GpuContext>,
    /// The clock leases run on (tests pass a [`ManualClock`]); the system clock by default.
    pub clock: Option<Arc<dyn Clock>>,
    /// The configured default environment (`[render] environment`), already prefiltered on
    /// `gpu`, instead of prefiltering it at start (seconds on a software rasterizer; lets tests
    /// share one). Ignored when the configured environment is `none`.
    pub default_environment: Option<farview_render::Environment>,
}

/// State shared by every connection of the host.
pub(crate) struct HostContext {
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) config: Config,
    pub(crate) gpu: GpuContext,
    pub(crate) assets_root: PathBuf,
    pub(crate) import_limits: ImportLimits,
    pub(crate) tap: Option<FrameTap>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) connections: AtomicUsize,
    pub(crate) fingerprint: String,
    /// The short-lived certificates browsers pin by hash (WebTransport); `None` with a
    /// configured CA certificate, which browsers trust without hashes.
    pub(crate) web_certs: Option<Arc<tls::WebCertificates>>,
    pub(crate) sessions: Arc<sessions::SessionManager>,
    /// Memory for model uploads not yet loaded, shared by every connection.
    pub(crate) upload_budget: Arc<uploads::UploadBudget>,
    /// Environments by name, and the look and quality new streams start with.
    pub(crate) environments: Arc<look::Environments>,
}

impl HostContext {
    /// Settings for an ad-hoc stream (a session's come from its size).
    pub(crate) fn stream_settings(&self) -> settings::StreamSettings {
        settings::StreamSettings::resolve(
            &self.config.stream,
            None,
            self.gpu.info().device_type == farview_render::DeviceType::Cpu,
        )
    }
}

/// Render and encode threads still running in this process, over every host in it. For tests,
/// which wait for zero before the process exits (see `pipeline::live_stage_threads`).
#[doc(hidden)]
pub fn running_stage_threads() -> usize {
    pipeline::live_stage_threads()
}

/// A running host.
pub struct HostHandle {
    /// Bound QUIC address (the real port when the config asked for port 0).
    pub quic_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Hex SHA-256 fingerprint of the host certificate (its leaf, with a configured chain).
    pub fingerprint: String,
    /// The GPU adapter in use.
    pub adapter: String,
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sessions: Arc<sessions::SessionManager>,
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("quic_addr", &self.quic_addr)
            .field("http_addr", &self.http_addr)
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

impl HostHandle {
    /// Tells devices the host is going away, closes the endpoints and waits briefly for them.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // Give connections a moment to send their Closing event.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.endpoint
            .close(CloseCode::SHUTTING_DOWN.0.into(), b"host is shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        for t in self.tasks {
            t.abort();
        }
    }

    /// Holds every live session's render loop still for `d`, as a hung driver call would, so
    /// tests can see health reporting stop. Not for production use.
    #[doc(hidden)]
    pub fn stall_render_loops_for_test(&self, d: Duration) -> usize {
        self.sessions.stall_render_loops(d)
    }

    /// Resolves when the host has been asked to shut down (Ctrl-C handling lives in the binary).
    pub async fn cancelled(&self) {
        self.shutdown.cancelled().await;
    }
}

/// Starts a host: opens the GPU, creates or loads the TLS identity, binds QUIC and HTTP.
pub async fn start(mut config: Config, options: HostOptions) -> Result<HostHandle, HostError> {
    config.validate()?;
    let assets_root =
        std::fs::canonicalize(&config.assets_root).map_err(|source| HostError::AssetsRoot {
            path: config.assets_root.clone(),
            source,
        })?;
    let gpu = match options.gpu {
        // The embedder chose the adapter itself.
        Some(gpu) => gpu,
        None => {
            let choice = config.adapter_choice()?;
            let selector = config.gpu_selector()?;
            let gpu = tokio::task::spawn_blocking(move || match selector {
                Some(s) => GpuContext::with_gpu(choice, &s),
                None => GpuContext::new(choice),
            })
            .await
            .map_err(|e| {
                farview_render::RenderError::Gpu(format!("adapter setup panicked: {e}"))
            })??;
            if gpu.is_software() && !config.software_adapter_allowed() {
                return Err(HostError::SoftwareAdapter {
                    adapter: gpu.summary(),
                });
            }
            gpu
        }
    };
    let environments = look::Environments::open(
        gpu.clone(),
        &config.render,
        &assets_root,
        options.default_environment,
    )
    .await
    .map_err(|e| HostError::Environment {
        path: e.path,
        message: e.message,
    })?;
    let environments = Arc::new(environments);
    let tls_err = |e: &dyn std::fmt::Display| HostError::Tls {
        dir: config.data_dir.clone(),
        message: e.to_string(),
    };
    let (identity, web_certs) = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            let identity = tls::load_pem(cert, key).map_err(|e| HostError::Tls {
                dir: cert.clone(),
                message: e.to_string(),
            })?;
            tracing::info!(
                cert = %cert.display(),
                "TLS: the configured certificate, for native devices and browsers"
            );
            (identity, None)
        }
        _ => {
            let identity = tls::load_or_create(&config.data_dir).map_err(|e| tls_err(&e))?;
            let web =
                tls::WebCertificates::new(std::time::SystemTime::now()).map_err(|e| tls_err(&e))?;
            (identity, Some(Arc::new(web)))
        }
    };
    let server_config = tls::server_config(
        &identity,
        web_certs.clone(),
        Duration::from_millis(config.quic_idle_timeout_ms),
    )
    .map_err(|e| tls_err(&e))?;
    let endpoint = quinn::Endpoint::server(server_config, config.quic_addr).map_err(|source| {
        HostError::Bind {
            addr: config.quic_addr,
            source,
        }
    })?;
    let quic_addr = endpoint.local_addr().map_err(|source| HostError::Bind {
        addr: config.quic_addr,
        source,
    })?;
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| HostError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| HostError::Bind {
            addr: config.http_addr,
            source,
        })?;
    // `validate` refuses `https` without a configured certificate.
    let http_listener = if config.tls.https {
        let tls = https::server_config(&identity).map_err(|e| tls_err(&e))?;
        let listener =
            https::TlsListener::new(http_listener, tls).map_err(|source| HostError::Bind {
                addr: config.http_addr,
                source,
            })?;
        tracing::info!(%http_addr, "the HTTP API and the viewer are served over HTTPS");
        http::Listener::Tls(listener)
    } else {
        http::Listener::Plain(http_listener)
    };

    // In a fleet, Ready means able to stream: an encoder of the configured kind must come up,
    // and devices are sent to the node's address and the port Agones mapped.
    let fleet = if config.agones.enabled {
        let probe = farview_encode::EncoderSettings {
            width: 64,
            height: 64,
            ..Default::default()
        };
        farview_encode::create_encoder(config.stream.encoder.kind(), probe)
            .map_err(|e| fleet::FleetError::new(format!("no encoder: {e}")))?;
        let fleet = fleet::Fleet::connect(&config.agones).await?;
        if config.public_address.is_none() {
            config.public_address = fleet.quic_address();
        }
        Some(fleet)
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let adapter = gpu.summary();
    let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let store_path = config.data_dir.join("sessions.db");
    let sessions = sessions::SessionManager::open(
        &store_path,
        clock,
        config.sessions.clone(),
        config.stream.clone(),
        gpu.clone(),
        environments.clone(),
        options.frame_tap.clone(),
        assets_root.clone(),
        host_import_limits(),
        quic_addr,
        identity.fingerprint.clone(),
    )
    .map_err(|e| e.into_host_error(&config.data_dir))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let mut sessions = sessions;
    sessions.metrics = metrics.clone();
    let sessions = Arc::new(sessions);
    let config_upload_budget = config.upload_budget_bytes;
    let metrics_for_uploads = metrics.clone();
    let ctx = Arc::new(HostContext {
        metrics,
        config,
        gpu,
        assets_root,
        import_limits: host_import_limits(),
        tap: options.frame_tap,
        shutdown: shutdown.clone(),
        connections: AtomicUsize::new(0),
        fingerprint: identity.fingerprint.clone(),
        web_certs: web_certs.clone(),
        sessions: sessions.clone(),
        upload_budget: uploads::UploadBudget::new(config_upload_budget, metrics_for_uploads),
        environments,
    });
    tracing::info!(%quic_addr, %http_addr, fingerprint = %identity.fingerprint, %adapter, "host listening");
    if ctx.config.sessions.api_keys.is_empty() {
        tracing::warn!(
            "the session API is disabled: no API keys are configured \
             (sessions.api_keys, --api-keys or FARVIEW_API_KEYS)"
        );
    }
    if ctx.config.sessions.allow_sessionless {
        tracing::warn!(
            "sessionless streams are allowed: any device that reaches the QUIC port streams \
             without a session or token (sessions.allow_sessionless)"
        );
    }

    let mut tasks = Vec::new();
    if let Some(fleet) = fleet {
        tasks.push(fleet.spawn(ctx.clone(), quic_addr, http_addr, shutdown.clone()));
    }
    let accept = tokio::spawn(accept_loop(endpoint.clone(), ctx.clone()));
    let http = tokio::spawn(http::serve(http_listener, ctx.clone()));
    let lease_clock = tokio::spawn(lease_loop(sessions, shutdown.clone()));
    let rotation = tokio::spawn(rotate_web_certificates(web_certs, shutdown.clone()));

    Ok(HostHandle {
        quic_addr,
        http_addr,
        fingerprint: identity.fingerprint,
        adapter,
        endpoint,
        shutdown,
        tasks: {
            tasks.extend([accept, http, lease_clock, rotation]);
            tasks
        },
        sessions: ctx.sessions.clone(),
    })
}

/// Rotates the WebTransport certificate every [`tls::WEB_CERT_ROTATION`] of wall-clock time
/// (browsers accept a pinned certificate for at most 14 days).
async fn rotate_web_certificates(
    certs: Option<Arc<tls::WebCertificates>>,
    shutdown: CancellationToken,
) {
    let Some(certs) = certs else { return };
    // Checked against the wall clock every few minutes: a monotonic five-day timer would stop
    // while the machine is suspended, and a failed rotation is retried at the next check.
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
            () = shutdown.cancelled() => return,
        }
        let now = std::time::SystemTime::now();
        if !certs.rotation_due(now) {
            continue;
        }
        match certs.rotate(now) {
            Ok(()) => tracing::info!("rotated the WebTransport certificate"),
            Err(e) => tracing::error!(error = %e, "cannot rotate the WebTransport certificate"),
        }
    }
}

/// Drives the lease clock: expires sessions whose lease ran out, checkpoints the live sessions'
/// counters and the host's heartbeat every 5 s (and on shutdown), purges old records.
async fn lease_loop(sessions: Arc<sessions::SessionManager>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let s = sessions.clone();
        let checkpoint = n.is_multiple_of(50);
        let purge = n.is_multiple_of(600);
        n += 1;
        let _ = tokio::task::spawn_blocking(move || {
            s.tick();
            if checkpoint {
                s.checkpoint();
            }
            if purge {
                s.purge();
            }
        })
        .await;
    }
    let _ = tokio::task::spawn_blocking(move || sessions.checkpoint()).await;
}

/// How long a browser has after the QUIC handshake to ask for its WebTransport session.
const WEBTRANSPORT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A device connection as a session, by its ALPN: native `farview/1` devices wrapped raw (their
/// bytes unchanged), browsers after their WebTransport CONNECT to [`WEBTRANSPORT_PATH`]
/// (anything else is answered 404). `None` when the connection is closed instead.
async fn device_codec(
    conn: &quinn::Connection,
) -> Option<(web_transport_quinn::Session, ControlCodec)> {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(WEBTRANSPORT_ALPN) {
        return Some((
            web_transport_quinn::Session::raw(conn.clone()),
            ControlCodec::Postcard,
        ));
    }
    let request = match tokio::time::timeout(
        WEBTRANSPORT_CONNECT_TIMEOUT,
        web_transport_quinn::Request::accept(conn.clone()),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "not a WebTransport session");
            conn.close(
                CloseCode::PROTOCOL_ERROR.0.into(),
                b"expected a WebTransport CONNECT",
            );
            return None;
        }
        Err(_) => {
            conn.close(
                CloseCode::PROTOCOL_ERROR.0.into(),
                b"no WebTransport CONNECT in time",
            );
            return None;
        }
    };
    if request.url.path() != WEBTRANSPORT_PATH {
        let path = request.url.path().to_owned();
        tracing::debug!(path = %untrusted::Untrusted(&path), "WebTransport session for an unknown path");
        let _ = request
            .reject(web_transport_quinn::http::StatusCode::NOT_FOUND)
            .await;
        return None;
    }
    match request.ok().await {
        Ok(session) => Some((session, ControlCodec::Json)),
        Err(e) => {
            tracing::debug!(error = %e, "WebTransport session not established");
            None
        }
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<HostContext>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = ctx.shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let ctx = ctx.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "handshake failed");
                        return;
                    }
                };
                let max = ctx.config.max_connections;
                if ctx.connections.fetch_add(1, Ordering::SeqCst) >= max {
                    ctx.connections.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(max, "refusing a device: host at capacity");
                    conn.close(
                        CloseCode::AT_CAPACITY.0.into(),
                        format!("host is at capacity ({max} devices)").as_bytes(),
                    );
                    return;
                }
                let Some((conn, codec)) = device_codec(&conn).await else {
                    ctx.connections.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                tracing::info!(?codec, "device connected");
                connection::serve(conn, codec, ctx.clone()).await;
                ctx.connections.fetch_sub(1, Ordering::SeqCst);
                tracing::info!("device disconnected");
            }
            .instrument(tracing::info_span!("connection", %remote)),
        );
    }
}

/// What the host imports with: the default limits, with levels of detail built after the model
/// is shown (by the stream's levels worker) rather than during the import.
fn host_import_limits() -> ImportLimits {
    ImportLimits {
        levels_at_import: false,
        ..ImportLimits::default()
    }
}
