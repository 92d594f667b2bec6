//! Upload streams: model bytes a device sends on its own unidirectional streams, held per
//! connection by the id the device chose until a load takes them, and counted against one
//! host-wide budget so that uploads nobody loads cannot exhaust the host's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farview_protocol::{ErrorCode, UPLOAD_MAGIC, WireError};
use tokio::sync::Notify;

/// Uploads a connection may hold at once (received and not yet loaded, or in flight).
const MAX_UPLOADS: usize = 4;
/// How long an upload stream may take to deliver its bytes.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a load waits for an upload stream that has not arrived yet.
const UPLOAD_WAIT: Duration = Duration::from_secs(30);
/// How long a finished upload waits for the load that names it before its bytes are freed.
const UNLOADED_TTL: Duration = Duration::from_secs(60);

/// Memory for uploads not loaded yet, shared by every connection of the host: each upload
/// reserves its announced length before a byte is read and gives it back when it is loaded,
/// refused, expired, or its connection ends.
/// The bytes held are the host's `farview_upload_bytes_held` gauge.
pub(crate) struct UploadBudget {
    metrics: Arc<crate::metrics::Metrics>,
    max: u64,
}

impl UploadBudget {
    pub(crate) fn new(max: u64, metrics: Arc<crate::metrics::Metrics>) -> Arc<Self> {
        Arc::new(Self { metrics, max })
    }

    fn held(&self) -> &AtomicU64 {
        &self.metrics.upload_bytes_held
    }

    /// Reserves `bytes`, or says how much is held.
    fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, WireError> {
        let mut held = self.held().load(Ordering::Relaxed);
        loop {
            let next = held.saturating_add(bytes);
            if next > self.max {
                return Err(WireError::new(
                    ErrorCode::UPLOAD_BUDGET_SPENT,
                    format!(
                        "the host holds {held} bytes of uploads not yet loaded; {bytes} more would exceed its budget of {} bytes: load or abandon pending uploads, then retry",
                        self.max
                    ),
                ));
            }
            match self
                .held()
                .compare_exchange(held, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => held = now,
            }
        }
    }
}

/// Bytes of the budget held by one upload; given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<UploadBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.held().fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

enum UploadState {
    Receiving(Reservation),
    /// Received; `generation` tells this upload from a later one that reuses the id.
    Done {
        bytes: Vec<u8>,
        reserved: Reservation,
        generation: u64,
    },
    Failed(WireError),
}

/// The uploads of one connection, by the id the device chose.
pub(crate) struct Uploads {
    state: Mutex<HashMap<u64, UploadState>>,
    changed: Notify,
    max_bytes: u64,
    budget: Arc<UploadBudget>,
    generation: AtomicU64,
}

impl Uploads {
    pub(crate) fn new(max_bytes: u64, budget: Arc<UploadBudget>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            max_bytes,
            budget,
            generation: AtomicU64::new(0),
        })
    }

    /// Accepts the device's upload streams until the connection ends.
    pub(crate) async fn accept(self: Arc<Self>, conn: web_transport_quinn::Session) {
        while let Ok(stream) = conn.accept_uni().await {
            let this = self.clone();
            tokio::spawn(async move { this.receive(stream).await });
        }
    }

    async fn receive(self: Arc<Self>, mut stream: web_transport_quinn::RecvStream) {
        let mut header = [0u8; 20];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header));
        if !matches!(read.await, Ok(Ok(()))) || header[..4] != UPLOAD_MAGIC {
            let _ = stream.stop(1);
            return;
        }
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&header[4..12]);
        let id = u64::from_be_bytes(id_bytes);
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&header[12..20]);
        let len = u64::from_be_bytes(len_bytes);
        let not_found = |m: String| WireError::new(ErrorCode::UPLOAD_NOT_FOUND, m);
        let admitted = match self.state.lock() {
            Ok(m) if m.contains_key(&id) => {
                // Keep the original upload; this stream is refused without a record.
                let _ = stream.stop(2);
                return;
            }
            Ok(m) if pending(&m) >= MAX_UPLOADS => Err(not_found(format!(
                "at most {MAX_UPLOADS} uploads may be pending per connection"
            ))),
            Ok(_) if len > self.max_bytes => Err(not_found(format!(
                "upload of {len} bytes exceeds this session's limit of {} bytes",
                self.max_bytes
            ))),
            Ok(mut m) => match self.budget.reserve(len) {
                Ok(r) => {
                    m.insert(id, UploadState::Receiving(r));
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Err(_) => Err(WireError::new(
                ErrorCode::INTERNAL,
                "upload registry unavailable",
            )),
        };
        if let Err(why) = admitted {
            let _ = stream.stop(2);
            tracing::info!(upload = id, bytes = len, code = %why.code, "upload refused");
            self.record_failure(id, why);
            return;
        }
        let body = tokio::time::timeout(UPLOAD_TIMEOUT, stream.read_to_end(len as usize)).await;
        let why = match body {
            Ok(Ok(bytes)) if bytes.len() as u64 == len => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed);
                // Receiving becomes Done in place, under one lock: no other stream can take
                // the id in between, and the reservation moves with the bytes.
                let stored = match self.state.lock() {
                    Ok(mut m) => match m.remove(&id) {
                        Some(UploadState::Receiving(reserved)) => {
                            m.insert(
                                id,
                                UploadState::Done {
                                    bytes,
                                    reserved,
                                    generation,
                                },
                            );
                            true
                        }
                        // Cleared (the connection ended) or replaced: nothing to keep.
                        Some(other) => {
                            m.insert(id, other);
                            false
                        }
                        None => false,
                    },
                    Err(_) => false,
                };
                self.changed.notify_waiters();
                if stored {
                    // Bytes nobody loads are freed after a while instead of waiting for the
                    // connection to end; the timer does not keep the registry alive.
                    let weak = Arc::downgrade(&self);
                    tokio::spawn(async move {
                        tokio::time::sleep(UNLOADED_TTL).await;
                        if let Some(this) = weak.upgrade() {
                            this.expire(id, generation);
                        }
                    });
                }
                return;
            }
            Ok(Ok(bytes)) => format!("upload {id} announced {len} bytes but sent {}", bytes.len()),
            Ok(Err(e)) => format!("upload {id} failed: {e}"),
            Err(_) => format!(
                "upload {id} did not finish within {} s",
                UPLOAD_TIMEOUT.as_secs()
            ),
        };
        self.record_failure(id, not_found(why));
    }

    /// Replaces an upload that was never loaded by a record saying so, freeing its bytes.
    fn expire(&self, id: u64, generation: u64) {
        let expired = match self.state.lock() {
            Ok(m) => {
                matches!(m.get(&id), Some(UploadState::Done { generation: g, .. }) if *g == generation)
            }
            Err(_) => false,
        };
        if expired {
            tracing::info!(upload = id, "unloaded upload discarded");
            self.record_failure(
                id,
                WireError::new(
                    ErrorCode::UPLOAD_NOT_FOUND,
                    format!(
                        "upload {id} was not loaded within {} s and was discarded",
                        UNLOADED_TTL.as_secs()
                    ),
                ),
            );
        }
    }

    /// Remembers why upload `id` failed, for the load that names it. Failure records are
    /// bounded: past the bound the oldest reason is simply not kept (the load then says no
    /// upload arrived).
    fn record_failure(&self, id: u64, why: WireError) {
        if let Ok(mut m) = self.state.lock() {
            let failures = m.len() - pending(&m);
            if failures < MAX_UPLOADS * 4 || matches!(m.get(&id), Some(UploadState::Failed(_))) {
                m.insert(id, UploadState::Failed(why));
            } else {
                m.remove(&id);
            }
        }
        self.changed.notify_waiters();
    }

    /// Drops every upload and its reservation: the connection has ended.
    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.state.lock() {
            m.clear();
        }
        self.changed.notify_waiters();
    }

    /// Waits for upload `id` to finish and takes its bytes.
    pub(crate) async fn take(&self, id: u64) -> Result<(Vec<u8>, Reservation), WireError> {
        let deadline = Instant::now() + UPLOAD_WAIT + UPLOAD_TIMEOUT;
        let mut seen = false;
        let started = Instant::now();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut m = self.state.lock().map_err(|_| {
                    WireError::new(ErrorCode::INTERNAL, "upload registry unavailable")
                })?;
                match m.get(&id) {
                    Some(UploadState::Receiving(_)) => seen = true,
                    Some(_) => {
                        return match m.remove(&id) {
                            // The reservation goes with the bytes: it is given back once
                            // the load has imported them.
                            Some(UploadState::Done {
                                bytes, reserved, ..
                            }) => Ok((bytes, reserved)),
                            Some(UploadState::Failed(why)) => Err(why),
                            _ => Err(WireError::new(ErrorCode::INTERNAL, "upload state")),
                        };
                    }
                    None if !seen && started.elapsed() > UPLOAD_WAIT => {
                        return Err(WireError::new(
                            ErrorCode::UPLOAD_NOT_FOUND,
                            format!(
                                "no upload stream with id {id} arrived within {} s",
                                UPLOAD_WAIT.as_secs()
                            ),
                        ));
                    }
                    None => {}
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WireError::new(
                    ErrorCode::UPLOAD_NOT_FOUND,
                    format!("upload {id} timed out"),
                ));
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }
}

/// Uploads that hold bytes or are still arriving (failure records do not count).
fn pending(m: &HashMap<u64, UploadState>) -> usize {
    m.values()
        .filter(|s| !matches!(s, UploadState::Failed(_)))
        .count()
}
