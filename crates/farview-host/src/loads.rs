//! Model loads: from a path under the assets root or from an upload (see `uploads.rs`).
//!
//! A load imports on the blocking pool (reporting progress and checking for cancellation between
//! phases), uploads the GPU assets from there too, and only then hands the render thread one
//! `AddModel` command, so frames keep flowing while a large model loads. A second load of a file
//! still in the scene instantiates it again and shares its assets.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use farview_protocol::{EntityNode, ErrorCode, Event, LoadedModel, Reply, WireError};
use farview_scene::{ImportError, ImportErrorKind, ImportLimits};
use tokio::sync::oneshot;

use crate::control::LoadSource;
use crate::outbox::Outbox;
use crate::pipeline::{AddedModel, Pipeline, RenderCommand};
use crate::uploads::Uploads;

/// Everything a load needs, detached from the connection so it can run as its own task.
pub(crate) struct LoadJob {
    pub(crate) seq: u64,
    pub(crate) source: LoadSource,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) max_triangles: u64,
    pub(crate) assets_root: PathBuf,
    pub(crate) limits: ImportLimits,
    /// Where upload sources come from; `None` where there is no device (session start-up).
    pub(crate) uploads: Option<Arc<Uploads>>,
    pub(crate) cancel: Arc<AtomicBool>,
    /// Where progress events go; `None` where nobody listens.
    pub(crate) progress: Option<Outbox>,
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
        let (out, cancel, seq) = (self.progress.clone(), self.cancel.clone(), self.seq);
        let mut last: Option<u8> = None;
        move |percent: u8| {
            if let Some(out) = &out
                && last.is_none_or(|l| percent >= l.saturating_add(5) || percent == 100 && l != 100)
                && out.try_event(Event::LoadProgress { seq, percent })
            {
                last = Some(percent);
            }
            !cancel.load(Ordering::Relaxed)
        }
    }

    /// Runs the load to its reply.
    pub(crate) async fn run(self) -> Result<Reply, WireError> {
        let started = Instant::now();
        let mut progress = self.progress();
        let (name, key) = match &self.source {
            LoadSource::Path(p) => (p.clone(), Some(p.clone())),
            LoadSource::Upload { name, .. } => (name.clone(), None),
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
        let bytes = match (&self.source, &self.uploads) {
            (LoadSource::Upload { id, .. }, Some(uploads)) => Some(uploads.take(*id).await?),
            (LoadSource::Upload { id, .. }, None) => {
                return Err(WireError::new(
                    ErrorCode::UPLOAD_NOT_FOUND,
                    format!("upload {id}: no device connection to upload from"),
                ));
            }
            (LoadSource::Path(_), _) => None,
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
                (None, Some((b, _reserved))) => {
                    // `_reserved` keeps the bytes counted against the host's upload budget
                    // until the import is done with them (end of this arm).
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
                uploaded,
                max_triangles: self.max_triangles,
                reply: tx,
            },
        )?;
        let info = rx.await.map_err(|_| render_stopped())??;
        tracing::info!(model = %crate::untrusted::Untrusted(&name), triangles = info.info.triangles, ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok(Reply::ModelLoaded(loaded(&info, false, started)))
    }
}

fn send(pipeline: &Pipeline, cmd: RenderCommand) -> Result<(), WireError> {
    pipeline.command(cmd)
}

pub(crate) fn loaded(added: &AddedModel, shared: bool, started: Instant) -> LoadedModel {
    let info = &added.info;
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
        variants: added.variants.clone(),
        camera_list: added.cameras.clone(),
    }
}
