//! The session management API client (REST over HTTP, bearer-token auth).
//!
//! ```no_run
//! # async fn demo() -> Result<(), farview_client::ClientError> {
//! use farview_client::{CreateSession, SessionClient};
//!
//! let api = SessionClient::new("http://127.0.0.1:8080", "my-api-key")?;
//! let session = api.create_session(&CreateSession::new("1:0:0", "standard")).await?;
//! let session = api.session(&session.id).wait_ready(std::time::Duration::from_secs(30)).await?;
//! let mut conn = api.connect(&session).await?;
//! let frame = conn.next_frame().await?;
//! # let _ = frame;
//! api.session(&session.id).stop().await?;
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{ClientError, ConnectOptions, Connection};

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSession {
    /// Lease as `h:m:s`.
    pub max_lease_time: String,
    /// Size name (`standard`, `premium`).
    pub size: String,
    /// Models to load before the session reports ready.
    pub models: Vec<String>,
}

impl CreateSession {
    /// A session with no preloaded models.
    pub fn new(lease: &str, size: &str) -> Self {
        Self {
            max_lease_time: lease.into(),
            size: size.into(),
            models: Vec::new(),
        }
    }
}

/// How a device reaches a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetails {
    /// Host QUIC address.
    pub quic_address: String,
    /// Host certificate fingerprint.
    pub fingerprint: String,
    /// Connection token.
    pub token: Option<String>,
}

/// Session counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Frames sent to devices.
    pub frames_sent: u64,
    /// Models loaded.
    pub models_loaded: u64,
}

/// A session's properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Id.
    pub id: String,
    /// `starting`, `ready`, `connected`, `stopped`, `expired` or `error`.
    pub status: String,
    /// Size name.
    pub size: String,
    /// Preloaded models.
    #[serde(default)]
    pub models: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub ready_at: Option<String>,
    /// `h:m:s`.
    pub max_lease_time: String,
    /// `h:m:s`.
    pub elapsed_time: String,
    /// RFC 3339.
    pub stopped_at: Option<String>,
    /// Why it ended.
    pub stop_reason: Option<String>,
    /// The bound device.
    pub device: Option<String>,
    /// Counters.
    #[serde(default)]
    pub counters: Counters,
    /// Present while live.
    pub connection: Option<ConnectionDetails>,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    code: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct SessionList {
    sessions: Vec<SessionInfo>,
}

/// Talks to a host's session API.
#[derive(Debug, Clone)]
pub struct SessionClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// Operations on one session.
#[derive(Debug, Clone)]
pub struct SessionHandle<'a> {
    client: &'a SessionClient,
    id: String,
}

/// A transport error with its causes: reqwest's own message ("error sending request for url")
/// hides whether the connection was refused, timed out or failed its certificate check.
pub(crate) fn http_error(e: &reqwest::Error) -> ClientError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    ClientError::Http(message)
}

impl SessionClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8080`) using `api_key`.
    ///
    /// `https://` URLs are verified against the system's and Mozilla's root certificates;
    /// [`SessionClient::with_root_certificates`] adds a private CA.
    pub fn new(base: &str, api_key: &str) -> Result<Self, ClientError> {
        Self::with_root_certificates(base, api_key, &[])
    }

    /// [`SessionClient::new`], also trusting the CA certificates in `pem` (for a host whose
    /// HTTPS certificate comes from a private CA).
    pub fn with_root_certificates(
        base: &str,
        api_key: &str,
        pem: &[u8],
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .use_rustls_tls();
        if !pem.is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Http(format!("invalid CA certificate PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Http(
                    "the CA file holds no PEM certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| http_error(&e))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
        })
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| http_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| http_error(&e))?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ApiErrorBody>(&bytes) {
                Ok(b) => (b.code, b.message),
                Err(_) => (
                    "http_error".into(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ),
            };
            return Err(ClientError::Api {
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("unexpected API response: {e}")))
    }

    fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, ClientError> {
        serde_json::to_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The host's `/healthz` document (status, version, adapter, fingerprint, connections,
    /// sessions); needs no API key.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        self.call(reqwest::Method::GET, "/healthz", None).await
    }

    /// Creates a session with a host-chosen id.
    pub async fn create_session(&self, req: &CreateSession) -> Result<SessionInfo, ClientError> {
        self.call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(Self::to_json(req)?),
        )
        .await
    }

    /// Creates a session with the caller's id; a retry with the same settings returns it again.
    pub async fn put_session(
        &self,
        id: &str,
        req: &CreateSession,
    ) -> Result<SessionInfo, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/sessions/{id}"),
            Some(Self::to_json(req)?),
        )
        .await
    }

    /// Live sessions (or every retained record with `include_ended`).
    pub async fn list(&self, include_ended: bool) -> Result<Vec<SessionInfo>, ClientError> {
        let path = if include_ended {
            "/v1/sessions?all=true"
        } else {
            "/v1/sessions"
        };
        Ok(self
            .call::<SessionList>(reqwest::Method::GET, path, None)
            .await?
            .sessions)
    }

    /// A handle on one session.
    pub fn session(&self, id: &str) -> SessionHandle<'_> {
        SessionHandle {
            client: self,
            id: id.to_owned(),
        }
    }

    /// Connects a device to a live session using its connection details.
    pub async fn connect(&self, session: &SessionInfo) -> Result<Connection, ClientError> {
        Connection::connect(self.connect_options(session).await?).await
    }

    /// The options [`SessionClient::connect`] uses (address resolved, fingerprint, session and
    /// token), for a caller that adds to them: a resume secret to take a session back after a
    /// drop, a timeout, a frame buffer.
    pub async fn connect_options(
        &self,
        session: &SessionInfo,
    ) -> Result<ConnectOptions, ClientError> {
        let c = session.connection.as_ref().ok_or_else(|| {
            ClientError::Protocol(format!(
                "session {} is not live ({})",
                session.id, session.status
            ))
        })?;
        let token = c
            .token
            .as_deref()
            .ok_or_else(|| ClientError::Protocol("the API gave no connection token".into()))?;
        // A name (a host's `public_address`) or an IP, with its port.
        Ok(ConnectOptions::resolve(&c.quic_address, &c.fingerprint)
            .await?
            .with_session(&session.id, token))
    }
}

impl SessionHandle<'_> {
    /// Current properties.
    pub async fn properties(&self) -> Result<SessionInfo, ClientError> {
        self.client
            .call(
                reqwest::Method::GET,
                &format!("/v1/sessions/{}", self.id),
                None,
            )
            .await
    }

    /// Sets the lease (`h:m:s`, from creation).
    pub async fn extend_lease(&self, lease: &str) -> Result<SessionInfo, ClientError> {
        let body = serde_json::json!({ "maxLeaseTime": lease });
        self.client
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/sessions/{}", self.id),
                Some(body),
            )
            .await
    }

    /// Stops the session (fine to call twice).
    pub async fn stop(&self) -> Result<SessionInfo, ClientError> {
        self.client
            .call(
                reqwest::Method::POST,
                &format!("/v1/sessions/{}/stop", self.id),
                None,
            )
            .await
    }

    /// Polls until the session leaves `starting`; fails if it ends or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<SessionInfo, ClientError> {
        let start = Instant::now();
        loop {
            let s = self.properties().await?;
            match s.status.as_str() {
                "ready" | "connected" => return Ok(s),
                "starting" if start.elapsed() < timeout => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                "starting" => {
                    return Err(ClientError::Protocol(format!(
                        "session {} still starting after {timeout:?}",
                        self.id
                    )));
                }
                other => {
                    return Err(ClientError::Api {
                        status: 409,
                        code: "session_ended".into(),
                        message: format!(
                            "session is {other}: {}",
                            s.stop_reason.unwrap_or_default()
                        ),
                    });
                }
            }
        }
    }
}
