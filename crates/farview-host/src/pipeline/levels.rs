//! Levels of detail built after a model is shown. The host imports without them (on a
//! 20-million-triangle mesh they are most of the import: 7 of 10 seconds on two cores), so a
//! model appears at full detail as soon as it is read and uploaded; this worker then builds its
//! levels, uploads them, and hands them to the render stage, which swaps them in between frames.
//!
//! One worker thread per stream, started on the first model that needs it, models taken in
//! order from a bounded queue. A model that does not fit in the queue is drawn at full detail
//! (logged). Dropping the worker cancels the build in progress.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::time::Instant;

use farview_render::{ModelUploader, UploadedLevels};
use farview_scene::{Model, ModelId};

/// Models waiting for their levels, at most.
const QUEUE: usize = 16;

/// Builds running in this process (over all streams): they share the cores left to rendering.
static BUILDING: AtomicUsize = AtomicUsize::new(0);

/// The render stage's handle on its levels worker.
pub(crate) struct LevelBuilds {
    uploader: ModelUploader,
    /// Queued models are held weakly: one freed while it waits is skipped, not kept alive.
    jobs: Option<mpsc::SyncSender<(ModelId, Weak<Model>)>>,
    done_tx: mpsc::SyncSender<(ModelId, UploadedLevels)>,
    done: mpsc::Receiver<(ModelId, UploadedLevels)>,
    cancel: Arc<AtomicBool>,
}

impl LevelBuilds {
    pub(crate) fn new(uploader: ModelUploader) -> Self {
        let (done_tx, done) = mpsc::sync_channel(QUEUE);
        Self {
            uploader,
            jobs: None,
            done_tx,
            done,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues `model` (just added as `id`) for levels if it has primitives that want them.
    pub(crate) fn request(&mut self, id: ModelId, model: &Arc<Model>) {
        if !farview_scene::lod::model_wants_levels(model) {
            return;
        }
        if self.jobs.is_none() {
            self.jobs = self.start();
        }
        let queued = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.try_send((id, Arc::downgrade(model))).is_ok());
        if !queued {
            tracing::warn!(
                model = id.0,
                "levels-of-detail queue full or worker gone; the model stays at full detail"
            );
        }
    }

    /// Levels that are ready, oldest first.
    pub(crate) fn ready(&self) -> impl Iterator<Item = (ModelId, UploadedLevels)> + '_ {
        self.done.try_iter()
    }

    fn start(&self) -> Option<mpsc::SyncSender<(ModelId, Weak<Model>)>> {
        let (jobs, queue) = mpsc::sync_channel::<(ModelId, Weak<Model>)>(QUEUE);
        let uploader = self.uploader.clone();
        let done = self.done_tx.clone();
        let cancel = self.cancel.clone();
        let span = tracing::Span::current();
        // Leave a core to the render and encode stages where there is more than one, and
        // share the rest between the builds running at the time.
        let spare = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .saturating_sub(1)
            .max(1);
        let spawned = std::thread::Builder::new()
            .name("farview-levels".into())
            .spawn(move || {
                let _span = span.entered();
                for (id, model) in queue {
                    // Freed (destroyed, or its stream gone) while it waited.
                    let Some(model) = model.upgrade() else {
                        continue;
                    };
                    let started = Instant::now();
                    let running = BUILDING.fetch_add(1, Ordering::Relaxed) + 1;
                    let threads = (spare / running).max(1);
                    let levels = farview_scene::lod::build_levels(&model, threads, &cancel);
                    BUILDING.fetch_sub(1, Ordering::Relaxed);
                    drop(model);
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let uploaded = uploader.upload_levels(&levels);
                    tracing::info!(
                        model = id.0,
                        primitives = uploaded.len(),
                        took = ?started.elapsed(),
                        "levels of detail built"
                    );
                    if done.send((id, uploaded)).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(jobs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the levels-of-detail worker");
                None
            }
        }
    }
}

impl Drop for LevelBuilds {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}
