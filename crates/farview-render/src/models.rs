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

/// Levels of detail built after a model was shown ([`farview_scene::lod::build_levels`]), in
/// index buffers, ready for [`FrameRenderer::attach_levels`](crate::FrameRenderer::attach_levels).
pub struct UploadedLevels {
    primitives: Vec<LevelsBuffer>,
}

struct LevelsBuffer {
    mesh: usize,
    primitive: usize,
    /// The reordered full-detail indices, then the coarser levels'.
    buffer: wgpu::Buffer,
    index_count: u32,
    lod: std::sync::Arc<farview_scene::lod::PrimitiveLod>,
}

impl UploadedLevels {
    /// Primitives that got levels.
    pub fn len(&self) -> usize {
        self.primitives.len()
    }

    /// Whether no primitive got levels.
    pub fn is_empty(&self) -> bool {
        self.primitives.is_empty()
    }
}

impl std::fmt::Debug for UploadedLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadedLevels")
            .field("primitives", &self.primitives.len())
            .finish_non_exhaustive()
    }
}

impl ModelUploader {
    /// Uploads levels built after the model was shown: one index buffer per primitive, to
    /// replace its full-detail one. A primitive whose buffer could not be written keeps its
    /// full detail (logged): levels only make frames cheaper.
    pub fn upload_levels(&self, levels: &farview_scene::lod::ModelLevels) -> UploadedLevels {
        let device = self.ctx.device();
        let primitives = levels
            .primitives
            .iter()
            .filter_map(|p| {
                let buffer = crate::gpu_model::index_buffer(
                    device,
                    self.ctx.queue(),
                    &p.indices,
                    &p.lod.coarse,
                )
                .inspect_err(|e| {
                    tracing::warn!(
                        mesh = p.mesh,
                        primitive = p.primitive,
                        error = %e,
                        "levels of detail not uploaded; the primitive stays at full detail"
                    );
                })
                .ok()?;
                Some(LevelsBuffer {
                    mesh: p.mesh,
                    primitive: p.primitive,
                    buffer,
                    index_count: p.indices.len() as u32,
                    lod: p.lod.clone(),
                })
            })
            .collect();
        UploadedLevels { primitives }
    }

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
    /// Looked up several times per drawable per frame: the scene's own ids hash with
    /// [`farview_scene::IdHash`], not SipHash.
    models: HashMap<ModelId, GpuModel, farview_scene::IdHash>,
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

    /// Swaps in levels built for the model stored under `id`: each primitive's index buffer
    /// for one holding its reordered indices and levels. A primitive whose index count does not
    /// match (another model, a stale build) keeps what it has. Returns how many primitives got
    /// levels.
    pub(crate) fn attach_levels(&mut self, id: ModelId, levels: UploadedLevels) -> usize {
        let Some(model) = self.models.get_mut(&id) else {
            return 0;
        };
        let mut attached = 0;
        for l in levels.primitives {
            let Some(p) = model
                .meshes
                .get_mut(l.mesh)
                .and_then(|prims| prims.iter_mut().find(|p| p.source == l.primitive))
            else {
                continue;
            };
            if p.index_count != l.index_count || p.deform.is_some() {
                continue;
            }
            let coarse = l.lod.coarse.len() as u64 * 4;
            let old = p.lod.as_ref().map_or(0, |x| x.coarse.len() as u64 * 4);
            model.bytes = model.bytes.saturating_sub(old) + coarse;
            p.indices = l.buffer;
            p.lod = Some(l.lod);
            attached += 1;
        }
        attached
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
