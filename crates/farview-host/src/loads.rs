//! Model loads for one connection, and the upload streams that carry model bytes from a device.
//!
//! A load imports on the blocking pool (reporting progress and checking for cancellation between
//! phases), uploads the GPU assets from there too, and only then hands the render thread one
//! `AddModel` command, so frames keep flowing while a large model loads. A second load of a file
//! still in the scene instantiates it again and shares its assets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farview_protocol::{
    EntityNode, ErrorCode, Event, LoadedModel, Reply, ServerMessage, UPLOAD_MAGIC, WireError,
};
use farview_scene::{ImportError, ImportErrorKind, ImportLimits, ModelInfo};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::connection::Outgoing;
use crate::pipeline::{Pipeline, RenderCommand};

/// Uploads a connection may hold at once (received and not yet loaded, or in flight).
const MAX_UPLOADS: usize = 4;
/// How long an upload stream may take to deliver its bytes.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a load waits for an upload stream that has not arrived yet.
const UPLOAD_WAIT: Duration = Duration::from_secs(30);

enum UploadState {
    Receiving,
    Done(Vec<u8>),
    Failed(String),
}

/// The uploads of one connection, by the id the device chose.
pub(crate) struct Uploads {
    state: Mutex<HashMap<u64, UploadState>>,
    changed: Notify,
    max_bytes: u64,
}

impl Uploads {
    pub(crate) fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            max_bytes,
        })
    }

    fn set(&self, id: u64, s: UploadState) {
        if let Ok(mut m) = self.state.lock() {
            m.insert(id, s);
        }
        self.changed.notify_waiters();
    }

    /// Accepts the device's upload streams until the connection ends.
    pub(crate) async fn accept(self: Arc<Self>, conn: quinn::Connection) {
        while let Ok(stream) = conn.accept_uni().await {
            let this = self.clone();
            tokio::spawn(async move { this.receive(stream).await });
        }
    }

    async fn receive(&self, mut stream: quinn::RecvStream) {
        let mut header = [0u8; 20];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header));
        if !matches!(read.await, Ok(Ok(()))) || header[..4] != UPLOAD_MAGIC {
            let _ = stream.stop(1u32.into());
            return;
        }
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&header[4..12]);
        let id = u64::from_be_bytes(id_bytes);
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&header[12..20]);
        let len = u64::from_be_bytes(len_bytes);
        let admitted = match self.state.lock() {
            Ok(m) if m.contains_key(&id) => Err(format!("upload id {id} is already in use")),
            Ok(m) if m.len() >= MAX_UPLOADS => Err(format!(
                "at most {MAX_UPLOADS} uploads may be pending per connection"
            )),
            Ok(_) if len > self.max_bytes => Err(format!(
                "upload of {len} bytes exceeds this session's limit of {} bytes",
                self.max_bytes
            )),
            Ok(mut m) => {
                m.insert(id, UploadState::Receiving);
                Ok(())
            }
            Err(_) => Err("upload registry unavailable".into()),
        };
        if let Err(why) = admitted {
            let _ = stream.stop(2u32.into());
            // Record the refusal unless it is a duplicate id (keep the original upload).
            if !why.contains("already in use")
                && let Ok(mut m) = self.state.lock()
                && m.len() < MAX_UPLOADS * 4
            {
                m.insert(id, UploadState::Failed(why));
            }
            self.changed.notify_waiters();
            return;
        }
        let body = tokio::time::timeout(UPLOAD_TIMEOUT, stream.read_to_end(len as usize)).await;
        let state = match body {
            Ok(Ok(bytes)) if bytes.len() as u64 == len => UploadState::Done(bytes),
            Ok(Ok(bytes)) => UploadState::Failed(format!(
                "upload {id} announced {len} bytes but sent {}",
                bytes.len()
            )),
            Ok(Err(e)) => UploadState::Failed(format!("upload {id} failed: {e}")),
            Err(_) => UploadState::Failed(format!(
                "upload {id} did not finish within {} s",
                UPLOAD_TIMEOUT.as_secs()
            )),
        };
        self.set(id, state);
    }

    /// Waits for upload `id` to finish and takes its bytes.
    async fn take(&self, id: u64) -> Result<Vec<u8>, WireError> {
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
                    Some(UploadState::Receiving) => seen = true,
                    Some(_) => {
                        return match m.remove(&id) {
                            Some(UploadState::Done(b)) => Ok(b),
                            Some(UploadState::Failed(why)) => {
                                Err(WireError::new(ErrorCode::UPLOAD_NOT_FOUND, why))
                            }
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

/// Where a load's model comes from.
pub(crate) enum Source {
    /// A path under the assets root.
    Path(String),
    /// Bytes from an upload stream.
    Upload { id: u64, name: String },
}

/// Everything a load needs, detached from the connection so it can run as its own task.
pub(crate) struct LoadJob {
    pub(crate) seq: u64,
    pub(crate) source: Source,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) max_triangles: u64,
    pub(crate) assets_root: PathBuf,
    pub(crate) limits: ImportLimits,
    pub(crate) uploads: Arc<Uploads>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) out: mpsc::Sender<Outgoing>,
    pub(crate) permits: Arc<Semaphore>,
}

pub(crate) fn import_error(e: &ImportError) -> WireError {
    let code = match e.kind() {
        ImportErrorKind::NotFound => ErrorCode::MODEL_NOT_FOUND,
        ImportErrorKind::Forbidden => ErrorCode::MODEL_PATH_FORBIDDEN,
        ImportErrorKind::Unsupported => ErrorCode::MODEL_UNSUPPORTED,
        ImportErrorKind::LimitExceeded => ErrorCode::MODEL_TOO_LARGE,
        ImportErrorKind::Io => ErrorCode::MODEL_IO,
        ImportErrorKind::Cancelled => ErrorCode::LOAD_CANCELLED,
        _ => ErrorCode::MODEL_MALFORMED,
    };
    WireError::new(code, e.to_string())
}

fn cancelled() -> WireError {
    WireError::new(ErrorCode::LOAD_CANCELLED, "the load was cancelled")
}

fn render_stopped() -> WireError {
    WireError::new(ErrorCode::INTERNAL, "render loop stopped during the load")
}

impl LoadJob {
    /// Sends a progress event if a reply slot is free (progress is advisory: under back-pressure
    /// some events are skipped, replies never are).
    fn progress(&self) -> impl FnMut(u8) -> bool + Send + 'static {
        let (out, permits, cancel, seq) = (
            self.out.clone(),
            self.permits.clone(),
            self.cancel.clone(),
            self.seq,
        );
        let mut last: Option<u8> = None;
        move |percent: u8| {
            if last.is_none_or(|l| percent >= l.saturating_add(5) || percent == 100 && l != 100)
                && let Ok(permit) = permits.clone().try_acquire_owned()
            {
                last = Some(percent);
                let _ = out.try_send(Outgoing {
                    msg: ServerMessage::Event(Event::LoadProgress { seq, percent }),
                    permit: Some(permit),
                    done: None,
                });
            }
            !cancel.load(Ordering::Relaxed)
        }
    }

    /// Runs the load to its reply.
    pub(crate) async fn run(self) -> Result<Reply, WireError> {
        let started = Instant::now();
        let mut progress = self.progress();
        let (name, key) = match &self.source {
            Source::Path(p) => (p.clone(), Some(p.clone())),
            Source::Upload { name, .. } => (name.clone(), None),
        };
        if let Some(key) = &key {
            let (tx, rx) = oneshot::channel();
            send(
                &self.pipeline,
                RenderCommand::Instantiate {
                    seq: self.seq,
                    key: key.clone(),
                    max_triangles: self.max_triangles,
                    reply: tx,
                },
            )?;
            if let Some(result) = rx.await.map_err(|_| render_stopped())? {
                let info = result?;
                progress(100);
                return Ok(Reply::ModelLoaded(loaded(&info, true, started)));
            }
        }
        let bytes = match &self.source {
            Source::Upload { id, .. } => Some(self.uploads.take(*id).await?),
            Source::Path(_) => None,
        };
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let (root, limits) = (self.assets_root.clone(), self.limits.clone());
        let path = key.clone();
        // Import and upload run on the blocking pool: a slow or hostile file never stalls the
        // runtime or the render loop, and a panic in a dependency becomes an error reply.
        let uploader = self.pipeline.uploader.clone();
        let cancel = self.cancel.clone();
        let (model, uploaded) = tokio::task::spawn_blocking(move || {
            let model = match (path, bytes) {
                (Some(p), _) => farview_scene::import_file_with(&root, &p, &limits, &mut progress),
                (None, Some(b)) => {
                    // An uploaded model is one self-contained file: external URIs have nothing
                    // to resolve against (and must not reach the host's disk).
                    let mut no_files = |uri: &str| {
                        Err(ImportError::Forbidden {
                            path: uri.to_owned(),
                            reason: "uploaded models must be self-contained (GLB or data URIs)",
                        })
                    };
                    farview_scene::import_gltf_with(&b, &mut no_files, &limits, &mut progress)
                }
                (None, None) => Err(ImportError::NotFound("(no source)".into())),
            }
            .map_err(|e| import_error(&e))?;
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let uploaded = uploader.upload(&model).map_err(|e| {
                WireError::new(ErrorCode::MODEL_TOO_LARGE, format!("GPU upload: {e}"))
            })?;
            Ok::<_, WireError>((model, uploaded))
        })
        .await
        .map_err(|e| WireError::new(ErrorCode::INTERNAL, format!("model import crashed: {e}")))??;
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let (tx, rx) = oneshot::channel();
        send(
            &self.pipeline,
            RenderCommand::AddModel {
                seq: self.seq,
                name: name.clone(),
                key,
                model: Box::new(model),
                uploaded: Some(uploaded),
                max_triangles: self.max_triangles,
                reply: tx,
            },
        )?;
        let info = rx.await.map_err(|_| render_stopped())??;
        tracing::info!(model = %name, triangles = info.triangles, ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok(Reply::ModelLoaded(loaded(&info, false, started)))
    }
}

fn send(pipeline: &Pipeline, cmd: RenderCommand) -> Result<(), WireError> {
    pipeline.commands.try_send(cmd).map_err(|e| match e {
        std::sync::mpsc::TrySendError::Full(_) => {
            WireError::new(ErrorCode::BUSY, "render command queue is full; slow down")
        }
        std::sync::mpsc::TrySendError::Disconnected(_) => render_stopped(),
    })
}

pub(crate) fn loaded(info: &ModelInfo, shared: bool, started: Instant) -> LoadedModel {
    let x = &info.extras;
    LoadedModel {
        root_entity: info.root.0,
        bounds_min: info.bounds.min.to_array(),
        bounds_max: info.bounds.max.to_array(),
        triangles: info.triangles,
        vertices: info.vertices,
        textures: info.textures,
        entities: info.entities,
        ignored_extensions: info.ignored_extensions.clone(),
        load_time_us: started.elapsed().as_micros() as u64,
        hierarchy: info
            .hierarchy
            .iter()
            .map(|h| EntityNode {
                entity: h.entity.0,
                parent: h.parent.map(|p| p.0),
                name: h.name.clone(),
                has_mesh: h.has_mesh,
            })
            .collect(),
        shared_assets: shared,
        animations: x.animations.clone(),
        skins: x.skins,
        morph_targets: x.morph_targets,
        cameras: x.cameras,
        lights: info.lights_added,
        warnings: x.warnings.clone(),
    }
}
