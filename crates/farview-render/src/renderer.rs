//! One stream's renderer: a thin composition of the offscreen targets ([`crate::targets`]), the
//! mesh pass ([`crate::mesh_pass`]), the optional I420 conversion pass ([`crate::i420`]), the GPU
//! model store ([`crate::models`]) and the readback ring ([`crate::readback`]).

use std::time::{Duration, Instant};

use farview_scene::{ModelId, Scene};

use crate::TextureCompression;

use crate::environment_binding::{self, EnvironmentBinding};
use crate::i420::GpuI420;
use crate::materials::MaterialShared;
use crate::mesh_pass::MeshPass;
use crate::models::{GpuModelStore, ModelUploader, UploadedModel};
use crate::readback::{ReadbackFrame, ReadbackRing};
use crate::targets::FrameTargets;
use crate::uniforms::FrameLook;
use crate::{Camera, GpuContext, Lighting, RenderError, RenderStats};

/// How surfaces are shaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shading {
    /// Per pixel: every material texture, normal maps, layers (the reference's model).
    Full,
    /// Per vertex: image-based and punctual light at the vertices with the material's factors;
    /// base colour, metallic and emissive textures per pixel. For software rasterizers at sizes
    /// where full shading cannot hold the frame rate.
    Fast,
}

/// What a renderer's picture costs, fixed when it is created: shading, anti-aliasing and
/// texture filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderQuality {
    /// Per-pixel or per-vertex shading.
    pub shading: Shading,
    /// Samples per pixel: 4 (MSAA) or 1. Falls back to 1 where the adapter cannot.
    pub msaa_samples: u32,
    /// Anisotropic filtering of trilinear textures, 1 (off) to 16.
    pub anisotropy: u16,
}

impl Default for RenderQuality {
    /// [`Self::HIGH`].
    fn default() -> Self {
        Self::HIGH
    }
}

impl RenderQuality {
    /// Full shading, 4x MSAA, 8x anisotropic filtering.
    pub const HIGH: Self = Self {
        shading: Shading::Full,
        msaa_samples: 4,
        anisotropy: 8,
    };
    /// Full shading without MSAA or anisotropic filtering.
    pub const MEDIUM: Self = Self {
        shading: Shading::Full,
        msaa_samples: 1,
        anisotropy: 1,
    };
    /// Per-vertex shading, no MSAA, no anisotropic filtering: the cheapest picture.
    pub const FAST: Self = Self {
        shading: Shading::Fast,
        msaa_samples: 1,
        anisotropy: 1,
    };
}

/// Renders one stream's frames. Not shared between threads: the render loop owns it.
///
/// Models reach the GPU only through [`Self::insert_model`] (after an upload with
/// [`Self::uploader`] off the render thread); [`Self::submit`] never uploads.
pub struct FrameRenderer {
    ctx: GpuContext,
    targets: FrameTargets,
    materials: MaterialShared,
    mesh: MeshPass,
    environment_layout: wgpu::BindGroupLayout,
    environment: EnvironmentBinding,
    /// The glTF default material, bound where a pass needs group 2 but draws no material.
    fallback_material: wgpu::BindGroup,
    quality: RenderQuality,
    started: Instant,
    i420: Option<GpuI420>,
    models: GpuModelStore,
    readback: ReadbackRing,
    lighting: Lighting,
    stats: RenderStats,
    texture_compression: TextureCompression,
}

impl std::fmt::Debug for FrameRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRenderer")
            .field("width", &self.targets.width)
            .field("height", &self.targets.height)
            .field("models", &self.models.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FrameRenderer {
    /// Creates targets, pipelines and the readback ring for `width` x `height` frames, at the
    /// default [`RenderQuality`].
    pub fn new(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        lighting: Lighting,
    ) -> Result<Self, RenderError> {
        Self::with_quality(ctx, width, height, lighting, RenderQuality::default())
    }

    /// [`Self::new`] at the given quality.
    pub fn with_quality(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        lighting: Lighting,
        quality: RenderQuality,
    ) -> Result<Self, RenderError> {
        let targets = FrameTargets::new(ctx, width, height, quality.msaa_samples)?;
        let anisotropy = if ctx.supports_anisotropy() {
            quality.anisotropy
        } else {
            1
        };
        let materials = MaterialShared::new(ctx, anisotropy);
        let (fallback_material, _) =
            materials.bind_group(ctx.device(), &farview_scene::Material::default(), &[])?;
        let environment_layout = environment_binding::layout(ctx.device());
        let environment = EnvironmentBinding::new(ctx, &environment_layout, &lighting)?;
        let mesh = MeshPass::new(
            ctx,
            &materials.layout,
            &environment_layout,
            targets.samples,
            quality.shading,
        );
        let readback = ReadbackRing::new_rgba(ctx, width, height, targets.rgba_stride());
        let samples = targets.samples;
        Ok(Self {
            ctx: ctx.clone(),
            targets,
            materials,
            mesh,
            environment_layout,
            environment,
            fallback_material,
            quality: RenderQuality {
                shading: quality.shading,
                msaa_samples: samples,
                anisotropy,
            },
            started: Instant::now(),
            i420: None,
            models: GpuModelStore::default(),
            readback,
            lighting,
            stats: RenderStats::default(),
            texture_compression: TextureCompression::Auto,
        })
    }

    /// Frame width.
    pub fn width(&self) -> u32 {
        self.targets.width
    }

    /// Frame height.
    pub fn height(&self) -> u32 {
        self.targets.height
    }

    /// The quality this renderer draws at (after the adapter's fallbacks).
    pub fn quality(&self) -> RenderQuality {
        self.quality
    }

    /// The lighting frames are drawn with.
    pub fn lighting(&self) -> &Lighting {
        &self.lighting
    }

    /// Changes the lighting from the next frame on. Binding a new environment is cheap (it was
    /// prefiltered when it was made); a fallback environment is made here.
    pub fn set_lighting(&mut self, lighting: Lighting) -> Result<(), RenderError> {
        if !self.environment.matches(&lighting) {
            self.environment =
                EnvironmentBinding::new(&self.ctx, &self.environment_layout, &lighting)?;
        }
        self.lighting = lighting;
        Ok(())
    }

    /// Turns frustum culling (on by default) off or on: with it off every draw is submitted,
    /// which only comparisons and benches want.
    pub fn set_frustum_culling(&mut self, on: bool) {
        self.mesh.frustum_culling = on;
    }

    /// Whether skinned and morphed meshes are posed on the GPU (the device runs compute
    /// shaders, and [`Self::set_gpu_posing`] did not turn it off). A host that sees `true`
    /// tells its scene not to pose on the CPU ([`Scene::set_cpu_posing`]).
    pub fn gpu_posing(&self) -> bool {
        self.mesh.posed.poses_on_gpu()
    }

    /// Turns GPU posing (on where the device can) off or on: with it off, the scene's CPU pose
    /// is uploaded, which only comparisons and benches want (the scene must pose on the CPU).
    pub fn set_gpu_posing(&mut self, on: bool) {
        self.mesh.posed.set_use_gpu(on);
    }

    /// Sets the largest error a level of detail may show, in pixels (1 by default; 0 draws
    /// full detail everywhere). A frame-time budget raises it when frames run late.
    pub fn set_lod_error_px(&mut self, px: f32) {
        self.mesh.lod_error_px = if px.is_finite() { px.max(0.0) } else { 0.0 };
    }

    /// See [`Self::set_lod_error_px`].
    pub fn lod_error_px(&self) -> f32 {
        self.mesh.lod_error_px
    }

    /// Leaves out the groups of triangles of a level of detail that all face away from the
    /// camera (on by default): back-face culling would drop each of them, but only after
    /// their vertices were shaded. Double-sided materials draw every group. Off only to
    /// compare. See [`RenderStats::faced_away`].
    pub fn set_facing_culling(&mut self, on: bool) {
        self.mesh.facing_culling = on;
    }

    /// Leaves out draws and clusters hidden behind what was visible last frame (on by
    /// default). Each frame is drawn in two passes when more than a handful of draws is in
    /// view: first what was seen last frame, then, after a wait for its depth (a few kilobytes
    /// read back), whatever that depth does not hide. When little of the view was seen last
    /// frame (the camera passed through a wall), the nearest of the rest are drawn in between,
    /// in up to five rounds, each tested against the depth before it and followed by a wait
    /// of its own. Nothing visible is left out; off only to compare. See
    /// [`RenderStats::occluded`].
    pub fn set_occlusion_culling(&mut self, on: bool) {
        self.mesh.occlusion_culling = on;
    }

    /// Turns instanced batching (on by default) off or on: with it off, every mesh instance is
    /// its own draw, which only comparisons and benches want.
    pub fn set_instancing(&mut self, on: bool) {
        self.mesh.batching = on;
    }

    /// Counters of the last submitted frame.
    pub fn stats(&self) -> RenderStats {
        self.stats
    }

    /// Frames submitted but not yet collected.
    pub fn in_flight(&self) -> usize {
        self.readback.in_flight()
    }

    /// The adapter this renderer draws with.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// A handle that uploads models for this renderer from another thread, so a large upload
    /// never stalls the frame loop.
    pub fn uploader(&self) -> ModelUploader {
        ModelUploader::new(&self.ctx, &self.materials, self.texture_compression)
    }

    /// Chooses the format KTX2 textures of models uploaded from now on go to the GPU in
    /// ([`TextureCompression::Auto`] by default).
    pub fn set_texture_compression(&mut self, choice: TextureCompression) {
        self.texture_compression = choice;
    }

    /// Uploads a model's assets on the calling thread without touching the scene or the store,
    /// so a failed upload leaves nothing behind. Pair with [`Self::insert_model`] once the scene
    /// has given the model its id. The stream loop should use [`Self::uploader`] from another
    /// thread instead.
    pub fn upload_model(&self, model: &farview_scene::Model) -> Result<UploadedModel, RenderError> {
        self.uploader().upload(model)
    }

    /// Registers an uploaded model under the scene's id for it; frames submitted from now on
    /// draw its entities. Replaces (and frees) assets already stored under `id`.
    pub fn insert_model(&mut self, id: ModelId, model: UploadedModel) {
        if self.models.insert(id, model).is_some() {
            tracing::debug!(model = id.0, "GPU model replaced");
        }
    }

    /// Draws the model stored under `id` with levels built after it was shown
    /// ([`farview_scene::lod::build_levels`], uploaded with [`ModelUploader::upload_levels`]);
    /// returns how many of its primitives got them (0 when the model is gone).
    pub fn attach_levels(&mut self, id: ModelId, levels: crate::UploadedLevels) -> usize {
        let n = self.models.attach_levels(id, levels);
        tracing::debug!(model = id.0, primitives = n, "levels of detail attached");
        n
    }

    /// Frees one model's GPU assets now; false if the store did not hold it. Entities still
    /// drawing it are skipped from the next frame on.
    pub fn evict_model(&mut self, id: ModelId) -> bool {
        self.models.evict(id)
    }

    /// Frees the GPU assets of every model the scene no longer holds (its last entity was
    /// destroyed); returns how many were freed. [`Self::submit`] does this before each frame;
    /// call it to release memory (or refresh [`Self::held_bytes`]) between frames.
    pub fn evict_unused(&mut self, scene: &Scene) -> usize {
        self.models.evict_unused(scene)
    }

    /// Whether the store holds GPU assets for `id`.
    pub fn has_model(&self, id: ModelId) -> bool {
        self.models.contains(id)
    }

    /// Models in the GPU store.
    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    /// Uploads, on the calling thread, every model the scene holds that the store lacks, and
    /// inserts it; returns how many were uploaded. For tests and tools (and
    /// [`Self::render_blocking`]); the stream loop uploads with [`Self::uploader`] off the render
    /// thread and calls [`Self::insert_model`].
    pub fn upload_missing(&mut self, scene: &Scene) -> Result<usize, RenderError> {
        let uploader = self.uploader();
        let mut uploaded = 0;
        for (id, model) in scene.models() {
            if !self.models.contains(id) {
                self.models.insert(id, uploader.upload(model)?);
                uploaded += 1;
            }
        }
        Ok(uploaded)
    }

    /// Evicts the GPU models the scene freed; the same as [`Self::evict_unused`]. Kept for
    /// callers of the old name: it no longer uploads (see [`Self::upload_missing`]) and never
    /// fails.
    pub fn sync_models(&mut self, scene: &Scene) -> Result<(), RenderError> {
        self.evict_unused(scene);
        Ok(())
    }

    /// How long a blocking [`Self::collect`] waits for one frame before it returns the
    /// transient [`RenderError::ReadbackTimeout`] (default 10 s).
    pub fn set_readback_timeout(&mut self, timeout: Duration) {
        self.readback.set_timeout(timeout);
    }

    /// Records and submits one frame and queues its readback. Never uploads: draws the models in
    /// the store, skips entities whose model is missing (counted in
    /// [`RenderStats::skipped_entities`]), and first evicts models the scene has freed (as
    /// [`Self::evict_unused`]). Fails with [`RenderError::RingFull`] when every readback buffer
    /// still holds an uncollected frame.
    pub fn submit(&mut self, scene: &Scene, camera: &Camera, tag: u64) -> Result<(), RenderError> {
        let slot = self.readback.reserve()?;
        self.models.evict_unused(scene);
        let mut encoder =
            self.ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("frame"),
                });
        let look = FrameLook {
            lighting: &self.lighting,
            specular_mips: self.environment.specular_mips,
            env_rotation: self.environment.rotation,
            viewport: (self.targets.width, self.targets.height),
            time_s: self.started.elapsed().as_secs_f32(),
        };
        let mut stats = self.mesh.encode(
            &self.ctx,
            &mut encoder,
            &self.targets,
            scene,
            camera,
            &look,
            &self.environment,
            &self.fallback_material,
            &mut self.models,
        )?;
        let buffer = self
            .readback
            .buffer(slot)
            .ok_or_else(|| RenderError::Gpu(format!("readback slot {slot} out of range")))?;
        match &self.i420 {
            Some(conv) => conv.encode(&mut encoder, buffer),
            None => self.targets.copy_rgba(&mut encoder, buffer),
        }
        let submission = self.ctx.queue().submit([encoder.finish()]);
        self.readback.push(slot, tag, submission);
        stats.gpu_bytes = self.held_bytes();
        self.stats = stats;
        Ok(())
    }

    /// Converts frames to I420 on the GPU from now on (BT.709 limited range, bit-identical to
    /// `farview_encode::rgba_to_i420`), so readback moves 1.5 bytes per pixel and the CPU does
    /// no conversion. Returns `false` (and keeps RGBA readback) when the width is not a multiple
    /// of 8. Call it before the first frame is submitted.
    pub fn enable_gpu_i420(&mut self) -> Result<bool, RenderError> {
        if !GpuI420::supports(self.targets.width) {
            return Ok(false);
        }
        let bytes = u64::from(self.targets.width) * u64::from(self.targets.height) * 3 / 2;
        self.readback.switch_to_i420(bytes)?;
        self.i420 = Some(GpuI420::new(&self.ctx, &self.targets));
        Ok(true)
    }

    /// GPU memory this renderer holds: targets, readback ring, per-draw uniforms and the models
    /// in its store.
    pub fn held_bytes(&self) -> u64 {
        self.i420.as_ref().map_or(0, GpuI420::bytes)
            + self.models.bytes()
            + self.targets.bytes()
            + self.readback.bytes()
            + self.mesh.bytes()
    }

    /// Copies the oldest submitted frame into `out` (rows `stride` apart) and frees its buffer.
    /// With `wait`, blocks until the GPU has finished it, at most the readback timeout (see
    /// [`Self::set_readback_timeout`]); past it, returns [`RenderError::ReadbackTimeout`], which
    /// is [transient](RenderError::is_transient): the frame stays in flight and the next call
    /// returns it. Without `wait`, returns `None` if it is not ready yet. Returns `None` when
    /// nothing is in flight.
    pub fn collect(
        &mut self,
        wait: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<ReadbackFrame>, RenderError> {
        self.readback.collect(wait, out)
    }

    /// Renders one frame and waits for it: tightly packed RGBA8 rows (or I420). For tests and
    /// tools, not the stream loop: it first uploads, on this thread, any model the scene holds
    /// that the store lacks ([`Self::upload_missing`]), and retries a timed-out readback a few
    /// times. The stream loop uses [`Self::submit`] and [`Self::collect`] to overlap frames.
    pub fn render_blocking(
        &mut self,
        scene: &Scene,
        camera: &Camera,
    ) -> Result<Vec<u8>, RenderError> {
        let mut pixels = Vec::new();
        self.render_blocking_into(scene, camera, &mut pixels)?;
        Ok(pixels)
    }

    /// [`Self::render_blocking`] into `out`, which is resized to the frame: for tools that
    /// time frames and reuse one buffer, as the stream loop does with [`Self::collect`]. (A new
    /// 3.7 MB vector per 720p frame costs an allocation, its page faults and one more copy of
    /// the frame, which the host never pays.)
    pub fn render_blocking_into(
        &mut self,
        scene: &Scene,
        camera: &Camera,
        out: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        let frame = self.blocking_frame(scene, camera, out)?;
        crate::readback::pack_rows(out, frame);
        Ok(())
    }

    /// [`Self::render_blocking`]'s frame, collected (padded) into `scratch`.
    fn blocking_frame(
        &mut self,
        scene: &Scene,
        camera: &Camera,
        scratch: &mut Vec<u8>,
    ) -> Result<ReadbackFrame, RenderError> {
        const ATTEMPTS: u32 = 3;
        while self.collect(true, scratch)?.is_some() {}
        self.upload_missing(scene)?;
        self.submit(scene, camera, u64::MAX)?;
        let mut attempt = 1;
        let frame = loop {
            match self.collect(true, scratch) {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => attempt += 1,
                other => break other?,
            }
        };
        frame.ok_or_else(|| RenderError::Readback("frame lost".into()))
    }
}
