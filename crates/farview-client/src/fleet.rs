//! Allocating a host of an Agones fleet for a session: what a client app's backend calls when
//! Farview runs as a fleet (docs/fleet.md). The allocator service picks a Ready host and marks
//! it Allocated with this session's request in its annotations; that host creates the session
//! (with the id chosen here, so it is known at once) and loads its models; its API then shows
//! the session, with the token a device connects with.
//!
//! ```no_run
//! # async fn demo() -> Result<(), farview_client::ClientError> {
//! use std::time::Duration;
//! use farview_client::fleet::{Allocator, SessionRequest};
//!
//! let pem = |p: &str| std::fs::read(p).map_err(|e| farview_client::ClientError::Http(e.to_string()));
//! // The allocator service asks for a client certificate (mutual TLS).
//! let allocator = Allocator::with_tls(
//!     "https://allocator.example:443",
//!     "default",
//!     "farview",
//!     &pem("allocator-ca.pem")?,
//!     &pem("client.pem")?, // certificate and key, PEM
//! )?;
//! let request = SessionRequest::new(60, "standard").with_models(["Fox/Fox.glb"]);
//! let allocation = allocator.allocate(&request).await?;
//! let session = allocation.wait_session("api-key", Duration::from_secs(60)).await?;
//! let mut conn = allocation.sessions("api-key")?.connect(&session).await?;
//! let frame = conn.next_frame().await?;
//! # let _ = frame;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sessions::http_error;
use crate::{ClientError, SessionClient, SessionInfo};

/// Allocation annotations the host reads (`farview-host`'s `fleet` module).
const SESSION_ID: &str = "farview.dev/session-id";
const LEASE_MINUTES: &str = "farview.dev/lease-minutes";
const SIZE: &str = "farview.dev/size";
const MODELS: &str = "farview.dev/models";
/// The host's limits on a request (`farview-host`'s `fleet::state`).
const MAX_LEASE_MINUTES: u32 = 7 * 24 * 60;
const MAX_MODELS: usize = 32;
/// The host's own annotation of its certificate fingerprint (set through the SDK).
const FINGERPRINT: &str = "agones.dev/sdk-farview-fingerprint";

/// The session a backend wants on a fleet host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// The session's id (a UUID): chosen by the caller, so it is known before the host
    /// creates the session. [`SessionRequest::new`] makes a random one.
    pub session_id: String,
    /// Lease, minutes.
    pub lease_minutes: u32,
    /// Size name (`standard`, `premium`).
    pub size: String,
    /// Models to load before the session reports ready (asset paths on the host).
    pub models: Vec<String>,
}

impl SessionRequest {
    /// A request with a fresh random session id and no models.
    pub fn new(lease_minutes: u32, size: &str) -> Self {
        Self {
            session_id: uuid::Uuid::new_v4().to_string(),
            lease_minutes,
            size: size.into(),
            models: Vec::new(),
        }
    }

    /// Whether the host will take it: a UUID, a lease of 1 to 10,080 minutes, a size, at most
    /// 32 models whose paths hold no comma.
    pub fn check(&self) -> Result<(), ClientError> {
        let bad = |why: String| Err(ClientError::Http(format!("invalid session request: {why}")));
        if uuid::Uuid::parse_str(&self.session_id).is_err() {
            return bad(format!("session id {:?} is not a UUID", self.session_id));
        }
        if !(1..=MAX_LEASE_MINUTES).contains(&self.lease_minutes) {
            return bad(format!(
                "a lease of {} minutes (1 to {MAX_LEASE_MINUTES})",
                self.lease_minutes
            ));
        }
        if self.size.trim().is_empty() {
            return bad("no size".into());
        }
        if self.models.len() > MAX_MODELS {
            return bad(format!(
                "{} models (at most {MAX_MODELS})",
                self.models.len()
            ));
        }
        if let Some(m) = self
            .models
            .iter()
            .find(|m| m.contains(',') || m.trim().is_empty() || m.len() > 1024)
        {
            return bad(format!(
                "model path {m:?} (non-empty, no comma, at most 1 KiB)"
            ));
        }
        Ok(())
    }

    /// The same, preloading `models`.
    pub fn with_models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }
}

/// The host an allocation got, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The session the host creates.
    pub session_id: String,
    /// The game server (pod) name.
    pub game_server: String,
    /// Where devices connect (`address:port`, the QUIC host port).
    pub quic_address: String,
    /// The host's session API (`http://address:port`; a host whose API serves HTTPS
    /// (`[tls] https`) is reached with [`SessionClient::with_root_certificates`] at the same
    /// address with `https://`).
    pub api_base: String,
    /// The host's certificate fingerprint, as the host annotated it.
    pub fingerprint: Option<String>,
}

impl Allocation {
    /// A client of the allocated host's session API.
    pub fn sessions(&self, api_key: &str) -> Result<SessionClient, ClientError> {
        SessionClient::new(&self.api_base, api_key)
    }

    /// Waits until the host has created the session and it is ready (its models loaded), at
    /// most `timeout`; the session as the API shows it then. A session that ended while
    /// starting (a model failed to load) is an error with its reason.
    pub async fn wait_session(
        &self,
        api_key: &str,
        timeout: Duration,
    ) -> Result<SessionInfo, ClientError> {
        let api = self.sessions(api_key)?;
        let end = Instant::now() + timeout;
        loop {
            match api.session(&self.session_id).properties().await {
                Ok(s) if s.status == "ready" || s.status == "connected" => return Ok(s),
                Ok(s) if s.stopped_at.is_some() => {
                    return Err(ClientError::Api {
                        status: 409,
                        code: "session_ended".into(),
                        message: format!(
                            "the allocated session ended while starting: {}",
                            s.stop_reason.unwrap_or_default()
                        ),
                    });
                }
                // Not created yet (the host sees the allocation a moment later), or starting.
                Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= end {
                return Err(ClientError::Http(format!(
                    "session {} on {} not ready within {timeout:?}",
                    self.session_id, self.game_server
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client of the Agones allocator service (its REST endpoint, `POST /gameserverallocation`).
#[derive(Debug, Clone)]
pub struct Allocator {
    http: reqwest::Client,
    endpoint: String,
    namespace: String,
    fleet: String,
}

impl Allocator {
    /// An allocator at `endpoint` (`http://` only for tests and port-forwards; the service
    /// itself speaks mutual TLS, see [`Allocator::with_tls`]) allocating from `fleet` in
    /// `namespace`.
    pub fn new(endpoint: &str, namespace: &str, fleet: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .use_rustls_tls()
            .build()
            .map_err(|e| http_error(&e))?;
        Ok(Self::from_client(http, endpoint, namespace, fleet))
    }

    /// An allocator that trusts the CA in `ca_pem` and presents the client certificate and key
    /// in `identity_pem` (both PEM, in one file), as Agones' allocator service requires.
    pub fn with_tls(
        endpoint: &str,
        namespace: &str,
        fleet: &str,
        ca_pem: &[u8],
        identity_pem: &[u8],
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .use_rustls_tls()
            .identity(
                reqwest::Identity::from_pem(identity_pem)
                    .map_err(|e| ClientError::Http(format!("invalid client certificate: {e}")))?,
            );
        for cert in reqwest::Certificate::from_pem_bundle(ca_pem)
            .map_err(|e| ClientError::Http(format!("invalid CA certificate PEM: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| http_error(&e))?;
        Ok(Self::from_client(http, endpoint, namespace, fleet))
    }

    fn from_client(http: reqwest::Client, endpoint: &str, namespace: &str, fleet: &str) -> Self {
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            namespace: namespace.to_owned(),
            fleet: fleet.to_owned(),
        }
    }

    /// Allocates a Ready host of the fleet for `request` (checked first with
    /// [`SessionRequest::check`]). No Ready host: an [`ClientError::Api`] with the allocator's
    /// status (429 or 503, `no_host`).
    pub async fn allocate(&self, request: &SessionRequest) -> Result<Allocation, ClientError> {
        // Checked here as the host checks them: a request the host refuses would cost a Ready
        // host (it gives itself back to the fleet).
        request.check()?;
        let mut annotations = BTreeMap::new();
        annotations.insert(SESSION_ID, request.session_id.clone());
        annotations.insert(LEASE_MINUTES, request.lease_minutes.to_string());
        annotations.insert(SIZE, request.size.clone());
        annotations.insert(MODELS, request.models.join(","));
        let body = AllocationRequest {
            namespace: &self.namespace,
            game_server_selectors: vec![Selector {
                match_labels: BTreeMap::from([("agones.dev/fleet", self.fleet.as_str())]),
            }],
            metadata: Metadata { annotations },
        };
        let resp = self
            .http
            .post(format!("{}/gameserverallocation", self.endpoint))
            .json(&body)
            .send()
            .await
            .map_err(|e| http_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| http_error(&e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let code = if matches!(status.as_u16(), 429 | 503) || text.contains("no available") {
                "no_host"
            } else {
                "allocation_failed"
            };
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: code.into(),
                message: text.chars().take(500).collect(),
            });
        }
        let r: AllocationResponse = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("unexpected allocator response: {e}")))?;
        // An IPv6 node address goes in brackets.
        let host = if r.address.contains(':') {
            format!("[{}]", r.address)
        } else {
            r.address.clone()
        };
        let port = |name: &str| {
            r.ports
                .iter()
                .find(|p| p.name == name)
                .map(|p| format!("{host}:{}", p.port))
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "the allocated game server {} has no port named {name}",
                        r.game_server_name
                    ))
                })
        };
        Ok(Allocation {
            session_id: request.session_id.clone(),
            game_server: r.game_server_name.clone(),
            quic_address: port("quic")?,
            api_base: format!("http://{}", port("http")?),
            fingerprint: r
                .metadata
                .and_then(|m| m.annotations.get(FINGERPRINT).cloned()),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AllocationRequest<'a> {
    namespace: &'a str,
    game_server_selectors: Vec<Selector<'a>>,
    metadata: Metadata,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector<'a> {
    match_labels: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct Metadata {
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllocationResponse {
    game_server_name: String,
    address: String,
    #[serde(default)]
    ports: Vec<PortEntry>,
    #[serde(default)]
    metadata: Option<ResponseMetadata>,
}

#[derive(Deserialize)]
struct PortEntry {
    name: String,
    port: u16,
}

#[derive(Deserialize)]
struct ResponseMetadata {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn requests_the_host_would_refuse_are_refused_here() {
        assert!(SessionRequest::new(60, "standard").check().is_ok());
        let bad = [
            SessionRequest {
                session_id: "nope".into(),
                ..SessionRequest::new(60, "standard")
            },
            SessionRequest::new(0, "standard"),
            SessionRequest::new(MAX_LEASE_MINUTES + 1, "standard"),
            SessionRequest::new(60, " "),
            SessionRequest::new(60, "standard").with_models(["a.glb,b.glb"]),
            SessionRequest::new(60, "standard").with_models(vec!["m.glb"; MAX_MODELS + 1]),
        ];
        for r in bad {
            assert!(r.check().is_err(), "{r:?}");
        }
    }
}
