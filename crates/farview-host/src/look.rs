//! How a stream looks besides its scene (`SetLook`, `GetLook`): the environment that lights it,
//! background, exposure, tone mapping and outline; and the host-wide cache of prefiltered
//! environments those name.
//!
//! Environments are files `<name>.hdr` in one directory (`[render] environments_dir`). A name
//! is untrusted input: it is checked to be a plain name (never a path) before it touches the
//! disk. Prefiltering one costs seconds on a software rasterizer, so it runs on the blocking
//! pool, one at a time host-wide, and the result is kept for every stream (at most
//! [`CACHE_CAPACITY`] besides the configured default, least recently used first out). The
//! render thread only ever binds an environment that is ready.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use farview_protocol::{
    ErrorCode, LookUpdate, NO_ENVIRONMENT, Reply, WireError, is_environment_name,
};
use farview_render::{
    Environment, EnvironmentLimits, EnvironmentMap, FrameRenderer, GpuContext, Lighting,
    RenderError, ToneMapping,
};
use glam::Vec3;
use tokio::sync::{OnceCell, Semaphore, oneshot};

use crate::config::{RenderConfig, ToneMappingChoice};
use crate::pipeline::{Pipeline, RenderCommand};
use crate::untrusted::Untrusted;

/// Environments kept prefiltered besides the configured default.
pub(crate) const CACHE_CAPACITY: usize = 8;
/// Names listed in an `environment_not_found` message.
const MAX_LISTED: usize = 16;
/// The environment built into the host (used when its file is absent).
const BUILT_IN: &str = "neutral_sky";

/// Why the configured default environment could not be made.
#[derive(Debug)]
pub(crate) struct DefaultEnvironmentError {
    pub(crate) path: PathBuf,
    pub(crate) message: String,
}

/// One cache entry: filled once by whoever asks first; others wait for it.
struct Slot {
    cell: Arc<OnceCell<Environment>>,
    used: u64,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<String, Slot>,
    clock: u64,
}

/// The host's environments: the configured default (prefiltered at start), a bounded cache of
/// the others devices asked for, and the look and quality new streams start with.
pub(crate) struct Environments {
    gpu: GpuContext,
    dir: PathBuf,
    limits: EnvironmentLimits,
    config: RenderConfig,
    /// The configured default's name and environment (`None` for `none`).
    default: (String, Option<Environment>),
    cache: Mutex<Cache>,
    /// One prefilter at a time: a device cycling names cannot occupy the GPU many times over.
    prefilter: Semaphore,
}

impl Environments {
    /// Prefilters the configured default environment (or takes `prefiltered`, made earlier on
    /// `gpu`), so a host that cannot light its scenes does not start.
    pub(crate) async fn open(
        gpu: GpuContext,
        config: &RenderConfig,
        assets_root: &Path,
        prefiltered: Option<Environment>,
    ) -> Result<Self, DefaultEnvironmentError> {
        let dir = config.environments_dir(assets_root);
        let limits = EnvironmentLimits::default();
        let name = config.environment.clone();
        let default = if name == NO_ENVIRONMENT {
            None
        } else if let Some(env) = prefiltered {
            if !env.belongs_to(&gpu) {
                return Err(DefaultEnvironmentError {
                    path: file(&dir, &name),
                    message: "the prefiltered environment given was made on another GPU device"
                        .into(),
                });
            }
            Some(env)
        } else {
            let (g, d, n) = (gpu.clone(), dir.clone(), name.clone());
            let made = tokio::task::spawn_blocking(move || make(&g, &d, &n, &limits))
                .await
                .map_err(|e| DefaultEnvironmentError {
                    path: file(&dir, &name),
                    message: format!("prefiltering panicked: {e}"),
                })?;
            Some(made.map_err(|e| DefaultEnvironmentError {
                path: file(&dir, &name),
                message: match e {
                    MakeError::NotFound => "no such file".into(),
                    MakeError::Render(e) => e.to_string(),
                },
            })?)
        };
        tracing::info!(environment = %name, dir = %dir.display(), "default environment ready");
        Ok(Self {
            gpu,
            dir,
            limits,
            config: config.clone(),
            default: (name, default),
            cache: Mutex::default(),
            prefilter: Semaphore::new(1),
        })
    }

    /// The configured default environment's name.
    pub(crate) fn default_name(&self) -> &str {
        &self.default.0
    }

    /// The lighting new streams start with.
    pub(crate) fn default_lighting(&self) -> Lighting {
        let c = &self.config;
        Lighting {
            environment: self.default.1.clone(),
            show_environment: c.show_environment,
            background: Vec3::from_array(c.background),
            exposure: c.exposure,
            tone_mapping: match c.tone_mapping {
                ToneMappingChoice::KhrPbrNeutral => ToneMapping::KhrPbrNeutral,
                ToneMappingChoice::Aces => ToneMapping::AcesFilmic,
                ToneMappingChoice::None => ToneMapping::None,
            },
            ..Lighting::default()
        }
    }

    /// A renderer for a `width` x `height` stream with the configured look and quality. Blocks
    /// (pipelines are created on the blocking pool or a session's start-up thread).
    pub(crate) fn renderer(&self, width: u32, height: u32) -> Result<FrameRenderer, RenderError> {
        FrameRenderer::with_quality(
            &self.gpu,
            width,
            height,
            self.default_lighting(),
            self.config
                .quality_for(width, height, self.gpu.is_software()),
        )
    }

    /// The environment called `name`, prefiltered (`None` for [`NO_ENVIRONMENT`]): from the
    /// cache, or loaded and prefiltered on the blocking pool now.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Environment>, WireError> {
        if name == NO_ENVIRONMENT {
            return Ok(None);
        }
        if name == self.default.0 {
            return Ok(self.default.1.clone());
        }
        if !is_environment_name(name) {
            return Err(WireError::new(
                ErrorCode::INVALID_ARGUMENT,
                "not an environment name",
            ));
        }
        if let Some(env) = self.cached(name) {
            return Ok(Some(env));
        }
        // Checked before a slot is made, so unknown names never evict known ones.
        if name != BUILT_IN && !file(&self.dir, name).is_file() {
            return Err(self.not_found(name));
        }
        let cell = self.slot(name);
        let result = cell
            .get_or_try_init(|| async {
                let _turn = self.prefilter.acquire().await.map_err(|_| {
                    WireError::new(ErrorCode::SHUTTING_DOWN, "the host is shutting down")
                })?;
                let (gpu, dir, n, limits) = (
                    self.gpu.clone(),
                    self.dir.clone(),
                    name.to_owned(),
                    self.limits,
                );
                tokio::task::spawn_blocking(move || make(&gpu, &dir, &n, &limits))
                    .await
                    .map_err(|e| {
                        WireError::new(ErrorCode::INTERNAL, format!("prefiltering panicked: {e}"))
                    })?
                    .map_err(|e| self.make_error(name, e))
            })
            .await
            .cloned();
        if result.is_err() {
            self.forget_unfilled(name);
        }
        result.map(Some)
    }

    /// `name`'s environment if the cache holds it ready (marking it used).
    fn cached(&self, name: &str) -> Option<Environment> {
        let mut cache = self.cache.lock().ok()?;
        cache.clock += 1;
        let now = cache.clock;
        let slot = cache.slots.get_mut(name)?;
        let env = slot.cell.get()?.clone();
        slot.used = now;
        Some(env)
    }

    /// The cache slot for `name`, made (evicting the least recently used) if missing.
    fn slot(&self, name: &str) -> Arc<OnceCell<Environment>> {
        let Ok(mut cache) = self.cache.lock() else {
            // A poisoned lock only loses the cache: make the environment uncached.
            return Arc::default();
        };
        cache.clock += 1;
        let now = cache.clock;
        if let Some(slot) = cache.slots.get_mut(name) {
            slot.used = now;
            return slot.cell.clone();
        }
        while cache.slots.len() >= CACHE_CAPACITY {
            let Some(oldest) = cache
                .slots
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            // Streams that use it keep their clone; only the cache lets go.
            cache.slots.remove(&oldest);
            tracing::debug!(environment = %oldest, "environment evicted from the cache");
        }
        let cell = Arc::new(OnceCell::new());
        cache.slots.insert(
            name.to_owned(),
            Slot {
                cell: cell.clone(),
                used: now,
            },
        );
        cell
    }

    /// Drops `name`'s slot if it holds nothing (a failed load is retried next time, and bad
    /// names do not crowd out good ones).
    fn forget_unfilled(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock()
            && cache.slots.get(name).is_some_and(|s| !s.cell.initialized())
        {
            cache.slots.remove(name);
        }
    }

    fn make_error(&self, name: &str, e: MakeError) -> WireError {
        match e {
            MakeError::NotFound => self.not_found(name),
            MakeError::Render(e @ RenderError::EnvironmentTooLarge { .. }) => WireError::new(
                ErrorCode::ENVIRONMENT_INVALID,
                format!("environment {name:?}: {e}"),
            ),
            MakeError::Render(RenderError::Environment(why)) => {
                // The reason may quote the file's path; the device knows it by name only.
                let path = file(&self.dir, name).display().to_string();
                let why = why.replace(&path, &format!("{name}.hdr"));
                WireError::new(
                    ErrorCode::ENVIRONMENT_INVALID,
                    format!("environment {name:?} cannot be used: {why}"),
                )
            }
            MakeError::Render(e) => WireError::new(
                ErrorCode::INTERNAL,
                format!("prefiltering environment {name:?} failed: {e}"),
            ),
        }
    }

    fn not_found(&self, name: &str) -> WireError {
        let mut names = self.available();
        let more = names.len() > MAX_LISTED;
        names.truncate(MAX_LISTED);
        tracing::debug!(environment = %Untrusted(name), dir = %self.dir.display(), "environment not found");
        WireError::new(
            ErrorCode::ENVIRONMENT_NOT_FOUND,
            format!(
                "no environment {name:?} on this host; available: {}{}",
                names.join(", "),
                if more { ", ..." } else { "" }
            ),
        )
    }

    /// Names a device may ask for, sorted: the directory's `.hdr` files with valid names, the
    /// built-in sky and `none`.
    fn available(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                (path.extension()? == "hdr").then_some(())?;
                let stem = path.file_stem()?.to_str()?;
                is_environment_name(stem).then(|| stem.to_owned())
            })
            .collect();
        names.extend([BUILT_IN.to_owned(), NO_ENVIRONMENT.to_owned()]);
        names.sort();
        names.dedup();
        names
    }
}

enum MakeError {
    NotFound,
    Render(RenderError),
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.hdr"))
}

/// Loads `<dir>/<name>.hdr` (the built-in sky when `neutral_sky` has no file) and prefilters
/// it. Blocks for seconds on a software rasterizer.
fn make(
    gpu: &GpuContext,
    dir: &Path,
    name: &str,
    limits: &EnvironmentLimits,
) -> Result<Environment, MakeError> {
    let path = file(dir, name);
    let map = if path.is_file() {
        EnvironmentMap::load(&path, limits).map_err(MakeError::Render)?
    } else if name == BUILT_IN {
        EnvironmentMap::neutral_sky()
    } else {
        return Err(MakeError::NotFound);
    };
    Environment::new(gpu, &map).map_err(MakeError::Render)
}

/// A `SetLook` from a device, run like a model load (requests behind it wait): checks the
/// values, makes the environment it names ready (prefiltering it off the render thread if it
/// is not cached), then has the render thread apply it from the next frame on.
pub(crate) async fn set_look(
    seq: u64,
    update: LookUpdate,
    pipeline: Arc<Pipeline>,
    environments: Arc<Environments>,
    cancel: Arc<AtomicBool>,
) -> Result<Reply, WireError> {
    update
        .validate()
        .map_err(|m| WireError::new(ErrorCode::INVALID_ARGUMENT, m))?;
    let environment = match &update.environment {
        Some(name) => Some((name.clone(), environments.get(name).await?)),
        None => None,
    };
    if cancel.load(Ordering::Relaxed) {
        return Err(WireError::new(
            ErrorCode::LOAD_CANCELLED,
            "the look change was cancelled",
        ));
    }
    let (reply, answer) = oneshot::channel();
    pipeline.command(RenderCommand::SetLook {
        seq,
        update,
        environment,
        reply,
    })?;
    answer.await.map_err(|_| {
        WireError::new(
            ErrorCode::INTERNAL,
            "render loop stopped before the look applied",
        )
    })?
}
