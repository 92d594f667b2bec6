//! The GPU model store of one renderer, and the uploader that fills it from another thread.
//!
//! Upload and drawing are separate steps (bevy's `prepare_asset`): the host uploads a model with
//! a [`ModelUploader`] off the render thread, then, on the render thread, adds the model to the
//! scene and [inserts](crate::FrameRenderer::insert_model) the upload under the scene's id.
//! [`FrameRenderer::submit`](crate::FrameRenderer::submit) never uploads: it draws what the store
//! holds, skips (and counts) entities whose model is missing, and evicts models the scene has
//! freed.

use std::collections::{HashMap, HashSet};

use farview_scene::{ModelId, Scene};

use crate::gpu_model::{GpuModel, UploadContext};
use crate::materials::MaterialShared;
use crate::{GpuContext, RenderError};

/// A model's GPU assets, uploaded but not yet attached to a scene id.
pub struct UploadedModel(pub(crate) GpuModel);

impl UploadedModel {
    /// Bytes of GPU memory the model's buffers and textures take.
    pub fn gpu_bytes(&self) -> u64 {
        self.0.bytes
    }
}

impl std::fmt::Debug for UploadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadedModel")
            .field("bytes", &self.0.bytes)
            .finish_non_exhaustive()
    }
}

/// Uploads models for one renderer; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ModelUploader {
    ctx: GpuContext,
    shared: MaterialShared,
    block_format: Option<crate::BlockFormat>,
}

impl std::fmt::Debug for ModelUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelUploader").finish_non_exhaustive()
    }
}

impl ModelUploader {
    pub(crate) fn new(
        ctx: &GpuContext,
        shared: &MaterialShared,
        compression: crate::TextureCompression,
    ) -> Self {
        Self {
            ctx: ctx.clone(),
            shared: shared.clone(),
            block_format: ctx.block_format(compression),
        }
    }

    /// Uploads a model's buffers and textures; the result goes to
    /// [`FrameRenderer::insert_model`](crate::FrameRenderer::insert_model).
    pub fn upload(&self, model: &farview_scene::Model) -> Result<UploadedModel, RenderError> {
        let cx = UploadContext {
            device: self.ctx.device(),
            queue: self.ctx.queue(),
            materials: &self.shared,
            max_texture: self.ctx.limits().max_texture_dimension_2d,
            gpu_posing: self.ctx.gpu_posing_binding(),
            block_format: self.block_format,
        };
        GpuModel::upload(&cx, model).map(UploadedModel)
    }
}

/// The GPU models one renderer draws, by scene model id.
#[derive(Default)]
pub(crate) struct GpuModelStore {
    models: HashMap<ModelId, GpuModel>,
    /// Models drawn while missing, logged once each.
    reported_missing: HashSet<ModelId>,
}

impl GpuModelStore {
    /// Registers a model's GPU assets under its scene id; returns what was there before.
    pub(crate) fn insert(&mut self, id: ModelId, model: UploadedModel) -> Option<UploadedModel> {
        let UploadedModel(gpu) = model;
        tracing::debug!(
            model = id.0,
            bytes = gpu.bytes,
            triangles = gpu.triangles,
            "GPU model inserted"
        );
        self.reported_missing.remove(&id);
        self.models.insert(id, gpu).map(UploadedModel)
    }

    /// Frees one model's GPU assets; false if it was not here.
    pub(crate) fn evict(&mut self, id: ModelId) -> bool {
        self.reported_missing.remove(&id);
        self.models.remove(&id).is_some()
    }

    /// Frees the GPU assets of every model the scene no longer holds; returns how many went.
    pub(crate) fn evict_unused(&mut self, scene: &Scene) -> usize {
        let before = self.models.len();
        self.models.retain(|id, m| {
            let keep = scene.model(*id).is_some();
            if !keep {
                tracing::debug!(model = id.0, bytes = m.bytes, "GPU model evicted");
            }
            keep
        });
        self.reported_missing
            .retain(|id| scene.model(*id).is_some());
        before - self.models.len()
    }

    pub(crate) fn get(&self, id: ModelId) -> Option<&GpuModel> {
        self.models.get(&id)
    }

    pub(crate) fn contains(&self, id: ModelId) -> bool {
        self.models.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.models.len()
    }

    /// GPU memory the stored models take.
    pub(crate) fn bytes(&self) -> u64 {
        self.models.values().map(|m| m.bytes).sum()
    }

    /// Notes that an entity of model `id` was skipped for want of its GPU assets; true the first
    /// time (until the model is inserted or evicted), so the caller logs once.
    pub(crate) fn note_missing(&mut self, id: ModelId) -> bool {
        self.reported_missing.insert(id)
    }
}
