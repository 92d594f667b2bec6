//! One stream's renderer: offscreen colour + depth target, the mesh pass, and a ring of readback
//! buffers so the next frame can be recorded and submitted while an earlier one is still being
//! mapped and copied out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use farview_scene::{
    DrawState, Drawable, Light, LightKind, MAX_CUT_PLANES, MAX_LIGHTS, ModelId, Scene,
};
use glam::{Mat4, Vec3};
use wgpu::util::DeviceExt;

use crate::gpu_model::{GpuModel, UploadContext, Vertex};
use crate::{Camera, GpuContext, MESH_SHADER, RenderError};

const COLOR_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;
const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;
/// Readback buffers per renderer: enough for one frame being copied out, one in flight, one spare.
const RING: usize = 3;
/// Upper bound on draws per frame; a scene over it is an error, not an allocation storm.
const MAX_DRAWS: usize = 1 << 20;
/// How long a readback may take before we call the device lost.
const READBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the scene's lights do not cover: ambient light and the background (linear RGB). The
/// lights themselves are part of the scene (`Scene::lights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lighting {
    /// Ambient term.
    pub ambient: Vec3,
    /// Background colour (linear RGB).
    pub clear: Vec3,
}

impl Default for Lighting {
    fn default() -> Self {
        Self {
            ambient: Vec3::splat(0.35),
            clear: Vec3::new(0.02, 0.025, 0.035),
        }
    }
}

/// Counters for the last frame submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Draw calls.
    pub draws: u32,
    /// Triangles submitted.
    pub triangles: u64,
    /// Bytes of GPU memory this renderer holds (targets, readback ring, models, uniforms).
    pub gpu_bytes: u64,
}

/// A model's GPU assets, uploaded but not yet attached to a scene id.
pub struct UploadedModel(GpuModel);

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
    material_layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    white: wgpu::TextureView,
}

impl std::fmt::Debug for ModelUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelUploader").finish_non_exhaustive()
    }
}

impl ModelUploader {
    /// Uploads a model's buffers and textures; the result goes to [`FrameRenderer::insert_model`].
    pub fn upload(&self, model: &farview_scene::Model) -> Result<UploadedModel, RenderError> {
        let cx = UploadContext {
            device: self.ctx.device(),
            queue: self.ctx.queue(),
            material_layout: &self.material_layout,
            sampler: &self.sampler,
            white: &self.white,
            max_texture: self.ctx.limits().max_texture_dimension_2d,
        };
        GpuModel::upload(&cx, model).map(UploadedModel)
    }
}

/// A frame copied back to host memory: rows of `width * 4` RGBA8 (sRGB) bytes, `stride` apart,
/// or, with [`FrameRenderer::enable_gpu_i420`], a tightly packed I420 frame (Y, U, V planes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadbackFrame {
    /// The tag passed to [`FrameRenderer::submit`] (the host's frame number).
    pub tag: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes between RGBA rows (padded to wgpu's 256-byte copy alignment); `width` for I420.
    pub stride: usize,
    /// The bytes are I420 (converted on the GPU), not RGBA.
    pub i420: bool,
}

/// The GPU colour conversion pass: compute shaders writing I420 into a storage buffer that is
/// then copied to the readback ring, so readback moves 1.5 bytes per pixel instead of 4.
struct GpuI420 {
    luma: wgpu::ComputePipeline,
    chroma: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    buffer: wgpu::Buffer,
    bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuLight {
    position_kind: [f32; 4],
    direction_range: [f32; 4],
    color: [f32; 4],
    cone: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Globals {
    view_proj: [[f32; 4]; 4],
    camera_pos: [f32; 4],
    ambient: [f32; 4],
    counts: [u32; 4],
    lights: [GpuLight; MAX_LIGHTS],
    cut_planes: [[f32; 4]; MAX_CUT_PLANES],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DrawUniform {
    model: [[f32; 4]; 4],
    normal: [[f32; 4]; 4],
    base_color: [f32; 4],
    emissive: [f32; 4],
    params: [f32; 4],
    tint: [f32; 4],
}

impl DrawUniform {
    fn new(world: &Mat4, state: &DrawState) -> Self {
        let m = &state.material;
        let e = m
            .emissive
            .map_or([0.0, 0.0, 0.0, -1.0], |e| [e[0], e[1], e[2], 0.0]);
        Self {
            model: world.to_cols_array_2d(),
            normal: normal_matrix(world).to_cols_array_2d(),
            base_color: m.base_color.unwrap_or([0.0, 0.0, 0.0, -1.0]),
            emissive: e,
            params: [
                m.metallic.unwrap_or(-1.0),
                m.roughness.unwrap_or(-1.0),
                f32::from(u8::from(state.see_through)),
                f32::from(u8::from(state.selected)),
            ],
            tint: state.tint.unwrap_or([1.0, 1.0, 1.0, 0.0]),
        }
    }
}

fn gpu_light(l: &Light) -> GpuLight {
    let (kind, cone) = match l.kind {
        LightKind::Directional => (0.0, [0.0; 4]),
        LightKind::Point => (1.0, [0.0; 4]),
        LightKind::Spot {
            inner_cone,
            outer_cone,
        } => {
            let (ci, co) = (inner_cone.cos(), outer_cone.cos());
            (2.0, [co, 1.0 / (ci - co).max(1e-4), 0.0, 0.0])
        }
    };
    let c = Vec3::from_array(l.color) * l.intensity;
    GpuLight {
        position_kind: l.position.extend(kind).to_array(),
        direction_range: l
            .direction
            .normalize_or(Vec3::NEG_Y)
            .extend(l.range.unwrap_or(0.0))
            .to_array(),
        color: c.extend(0.0).to_array(),
        cone,
    }
}

const MAP_PENDING: u8 = 0;
const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

struct Slot {
    buffer: wgpu::Buffer,
    in_flight: Option<InFlight>,
}

struct InFlight {
    tag: u64,
    submission: wgpu::SubmissionIndex,
    state: Arc<AtomicU8>,
}

/// Renders one stream's frames. Not shared between threads: the render loop owns it.
pub struct FrameRenderer {
    ctx: GpuContext,
    width: u32,
    height: u32,
    stride: usize,
    pipeline_culled: wgpu::RenderPipeline,
    pipeline_double_sided: wgpu::RenderPipeline,
    pipeline_see_through_culled: wgpu::RenderPipeline,
    pipeline_see_through_double_sided: wgpu::RenderPipeline,
    globals: wgpu::Buffer,
    globals_bind_group: wgpu::BindGroup,
    draw_layout: wgpu::BindGroupLayout,
    draw_stride: u64,
    draw_buffer: wgpu::Buffer,
    draw_bind_group: wgpu::BindGroup,
    draw_capacity: usize,
    draw_scratch: Vec<u8>,
    material_layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    white: wgpu::TextureView,
    color_view: wgpu::TextureView,
    color: wgpu::Texture,
    i420: Option<GpuI420>,
    depth_view: wgpu::TextureView,
    ring: Vec<Slot>,
    pending: VecDeque<usize>,
    next_slot: usize,
    models: HashMap<ModelId, GpuModel>,
    lighting: Lighting,
    stats: RenderStats,
}

impl std::fmt::Debug for FrameRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRenderer")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn uniform_entry(
    binding: u32,
    visibility: wgpu::ShaderStages,
    dynamic: bool,
    size: u64,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: dynamic,
            min_binding_size: wgpu::BufferSize::new(size),
        },
        count: None,
    }
}

impl FrameRenderer {
    /// Creates targets, pipelines and the readback ring for `width` x `height` frames.
    pub fn new(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        lighting: Lighting,
    ) -> Result<Self, RenderError> {
        let max = ctx.limits().max_texture_dimension_2d;
        if width < 16
            || height < 16
            || !width.is_multiple_of(2)
            || !height.is_multiple_of(2)
            || width > max
            || height > max
        {
            return Err(RenderError::InvalidSize { width, height, max });
        }
        let device = ctx.device();
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mesh.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MESH_SHADER.into()),
        });

        let globals_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("globals"),
            entries: &[uniform_entry(
                0,
                wgpu::ShaderStages::VERTEX_FRAGMENT,
                false,
                std::mem::size_of::<Globals>() as u64,
            )],
        });
        let draw_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("draw"),
            entries: &[uniform_entry(
                0,
                wgpu::ShaderStages::VERTEX_FRAGMENT,
                true,
                std::mem::size_of::<DrawUniform>() as u64,
            )],
        });
        let material_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("material"),
            entries: &[
                uniform_entry(
                    0,
                    wgpu::ShaderStages::FRAGMENT,
                    false,
                    crate::gpu_model::MATERIAL_UNIFORM_SIZE,
                ),
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mesh"),
            bind_group_layouts: &[
                Some(&globals_layout),
                Some(&draw_layout),
                Some(&material_layout),
            ],
            immediate_size: 0,
        });
        let make_pipeline = |cull: Option<wgpu::Face>, see_through: bool| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some("mesh"),
                layout: Some(&layout),
                vertex: wgpu::VertexState {
                    module: &shader,
                    entry_point: Some("vs_main"),
                    compilation_options: Default::default(),
                    buffers: &[Some(Vertex::layout())],
                },
                primitive: wgpu::PrimitiveState {
                    topology: wgpu::PrimitiveTopology::TriangleList,
                    front_face: wgpu::FrontFace::Ccw,
                    cull_mode: cull,
                    ..Default::default()
                },
                depth_stencil: Some(wgpu::DepthStencilState {
                    format: DEPTH_FORMAT,
                    // See-through draws are blended after the opaque ones and do not hide
                    // what lies behind them.
                    depth_write_enabled: Some(!see_through),
                    depth_compare: Some(wgpu::CompareFunction::Less),
                    stencil: Default::default(),
                    bias: Default::default(),
                }),
                multisample: Default::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &shader,
                    entry_point: Some("fs_main"),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format: COLOR_FORMAT,
                        blend: see_through.then_some(wgpu::BlendState::ALPHA_BLENDING),
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let pipeline_culled = make_pipeline(Some(wgpu::Face::Back), false);
        let pipeline_double_sided = make_pipeline(None, false);
        let pipeline_see_through_culled = make_pipeline(Some(wgpu::Face::Back), true);
        let pipeline_see_through_double_sided = make_pipeline(None, true);

        let globals = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("globals"),
            size: std::mem::size_of::<Globals>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let globals_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("globals"),
            layout: &globals_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: globals.as_entire_binding(),
            }],
        });

        let align = u64::from(ctx.limits().min_uniform_buffer_offset_alignment);
        let draw_stride = (std::mem::size_of::<DrawUniform>() as u64).div_ceil(align) * align;
        let (draw_buffer, draw_bind_group) =
            Self::draw_resources(device, &draw_layout, draw_stride, 64);

        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("base colour"),
            address_mode_u: wgpu::AddressMode::Repeat,
            address_mode_v: wgpu::AddressMode::Repeat,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let white_tex = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("white"),
            size: wgpu::Extent3d {
                width: 1,
                height: 1,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8UnormSrgb,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        ctx.queue().write_texture(
            white_tex.as_image_copy(),
            &[255; 4],
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4),
                rows_per_image: None,
            },
            wgpu::Extent3d {
                width: 1,
                height: 1,
                depth_or_array_layers: 1,
            },
        );
        let white = white_tex.create_view(&Default::default());

        let size = wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        };
        let color = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("frame colour"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: COLOR_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        });
        let depth = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("frame depth"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: DEPTH_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            view_formats: &[],
        });
        let stride = (width as usize * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize;
        let ring = (0..RING)
            .map(|_| Slot {
                buffer: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: (stride * height as usize) as u64,
                    usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                    mapped_at_creation: false,
                }),
                in_flight: None,
            })
            .collect();

        Ok(Self {
            ctx: ctx.clone(),
            width,
            height,
            stride,
            pipeline_culled,
            pipeline_double_sided,
            pipeline_see_through_culled,
            pipeline_see_through_double_sided,
            globals,
            globals_bind_group,
            draw_layout,
            draw_stride,
            draw_buffer,
            draw_bind_group,
            draw_capacity: 64,
            draw_scratch: Vec::new(),
            material_layout,
            sampler,
            white,
            color_view: color.create_view(&Default::default()),
            color,
            i420: None,
            depth_view: depth.create_view(&Default::default()),
            ring,
            pending: VecDeque::with_capacity(RING),
            next_slot: 0,
            models: HashMap::new(),
            lighting,
            stats: RenderStats::default(),
        })
    }

    fn draw_resources(
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        stride: u64,
        capacity: usize,
    ) -> (wgpu::Buffer, wgpu::BindGroup) {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("draws"),
            size: stride * capacity as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("draws"),
            layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(std::mem::size_of::<DrawUniform>() as u64),
                }),
            }],
        });
        (buffer, bind_group)
    }

    /// Frame width.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Counters of the last submitted frame.
    pub fn stats(&self) -> RenderStats {
        self.stats
    }

    /// Frames submitted but not yet collected.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The adapter this renderer draws with.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Uploads models the scene holds that are not on the GPU yet. Called by [`Self::submit`];
    /// call it earlier to keep upload time out of a frame.
    pub fn sync_models(&mut self, scene: &Scene) -> Result<(), RenderError> {
        // Models the scene freed (their last entity destroyed) give their GPU memory back.
        self.models.retain(|id, _| scene.model(*id).is_some());
        for (id, model) in scene.models() {
            if self.models.contains_key(&id) {
                continue;
            }
            let UploadedModel(gpu) = self.upload_model(model)?;
            tracing::debug!(
                model = id.0,
                bytes = gpu.bytes,
                triangles = gpu.triangles,
                "model uploaded"
            );
            self.models.insert(id, gpu);
        }
        Ok(())
    }

    /// Uploads a model's assets without touching the scene, so a failed upload leaves nothing
    /// behind. Pair with [`Self::insert_model`] once the scene has given the model its id.
    pub fn upload_model(&self, model: &farview_scene::Model) -> Result<UploadedModel, RenderError> {
        self.uploader().upload(model)
    }

    /// A handle that uploads models for this renderer from another thread, so a large upload
    /// never stalls the frame loop.
    pub fn uploader(&self) -> ModelUploader {
        ModelUploader {
            ctx: self.ctx.clone(),
            material_layout: self.material_layout.clone(),
            sampler: self.sampler.clone(),
            white: self.white.clone(),
        }
    }

    /// Registers an uploaded model under the scene's id for it.
    pub fn insert_model(&mut self, id: ModelId, model: UploadedModel) {
        self.models.insert(id, model.0);
    }

    /// Records and submits one frame and queues its readback. Fails with
    /// [`RenderError::RingFull`] when every readback buffer still holds an uncollected frame.
    pub fn submit(&mut self, scene: &Scene, camera: &Camera, tag: u64) -> Result<(), RenderError> {
        let slot_index = self.next_slot;
        if self.ring[slot_index].in_flight.is_some() {
            return Err(RenderError::RingFull(RING));
        }
        self.sync_models(scene)?;
        let device = self.ctx.device().clone();
        let queue = self.ctx.queue().clone();

        let aspect = self.width as f32 / self.height as f32;
        let mut globals = Globals {
            view_proj: camera.view_proj(aspect).to_cols_array_2d(),
            camera_pos: camera.position.extend(1.0).to_array(),
            ambient: self.lighting.ambient.extend(0.0).to_array(),
            counts: [0; 4],
            lights: [GpuLight::zeroed(); MAX_LIGHTS],
            cut_planes: [[0.0; 4]; MAX_CUT_PLANES],
        };
        for (slot, (_, l)) in globals.lights.iter_mut().zip(scene.lights()) {
            *slot = gpu_light(l);
            globals.counts[0] += 1;
        }
        for (slot, (_, p)) in globals.cut_planes.iter_mut().zip(scene.cut_planes()) {
            *slot = p.normal.extend(p.distance).to_array();
            globals.counts[1] += 1;
        }
        queue.write_buffer(&self.globals, 0, bytemuck::bytes_of(&globals));

        let drawables = scene.drawables();
        let drawables: Vec<_> = drawables
            .into_iter()
            .filter(|d| {
                self.models
                    .get(&d.model)
                    .is_some_and(|m| d.mesh < m.meshes.len())
            })
            .collect();
        let eye = camera.position;
        let depth = |d: &Drawable| (d.world.w_axis.truncate() - eye).length_squared();
        let in_order: Vec<usize> = (0..drawables.len()).collect();
        let mut far_to_near = in_order.clone();
        far_to_near.sort_by(|&a, &b| depth(&drawables[b]).total_cmp(&depth(&drawables[a])));
        if drawables.len() > MAX_DRAWS {
            return Err(RenderError::Gpu(format!(
                "{} draws exceed the limit of {MAX_DRAWS}",
                drawables.len()
            )));
        }
        if drawables.len() > self.draw_capacity {
            let capacity = drawables.len().next_power_of_two();
            (self.draw_buffer, self.draw_bind_group) =
                Self::draw_resources(&device, &self.draw_layout, self.draw_stride, capacity);
            self.draw_capacity = capacity;
        }
        let stride = self.draw_stride as usize;
        self.draw_scratch.clear();
        self.draw_scratch.resize(drawables.len() * stride, 0);
        for (chunk, d) in self.draw_scratch.chunks_exact_mut(stride).zip(&drawables) {
            let u = DrawUniform::new(&d.world, &d.state);
            chunk[..std::mem::size_of::<DrawUniform>()].copy_from_slice(bytemuck::bytes_of(&u));
        }
        if !self.draw_scratch.is_empty() {
            queue.write_buffer(&self.draw_buffer, 0, &self.draw_scratch);
        }

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("frame"),
        });
        let mut stats = RenderStats::default();
        {
            let c = self.lighting.clear;
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("mesh"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &self.color_view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: c.x.into(),
                            g: c.y.into(),
                            b: c.z.into(),
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                    view: &self.depth_view,
                    depth_ops: Some(wgpu::Operations {
                        load: wgpu::LoadOp::Clear(1.0),
                        store: wgpu::StoreOp::Discard,
                    }),
                    stencil_ops: None,
                }),
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_bind_group(0, &self.globals_bind_group, &[]);
            // Opaque geometry first, then blended geometry (see-through entities and
            // alpha-blended materials) far to near, so blending composes over what is behind.
            let mut current_pipeline = None;
            for blended_pass in [false, true] {
                let order: &[usize] = if blended_pass {
                    &far_to_near
                } else {
                    &in_order
                };
                for &i in order {
                    let d = &drawables[i];
                    let Some(model) = self.models.get(&d.model) else {
                        continue;
                    };
                    let Some(prims) = model.meshes.get(d.mesh) else {
                        continue;
                    };
                    let mut bound = false;
                    for p in prims {
                        let Some(material) = model.materials.get(p.material) else {
                            continue;
                        };
                        let blended = d.state.see_through || material.blend;
                        if blended != blended_pass {
                            continue;
                        }
                        if !bound {
                            pass.set_bind_group(1, &self.draw_bind_group, &[(i * stride) as u32]);
                            bound = true;
                        }
                        let key = (material.double_sided, blended);
                        if current_pipeline != Some(key) {
                            pass.set_pipeline(match key {
                                (false, false) => &self.pipeline_culled,
                                (true, false) => &self.pipeline_double_sided,
                                (false, true) => &self.pipeline_see_through_culled,
                                (true, true) => &self.pipeline_see_through_double_sided,
                            });
                            current_pipeline = Some(key);
                        }
                        pass.set_bind_group(2, &material.bind_group, &[]);
                        pass.set_vertex_buffer(0, p.vertices.slice(..));
                        pass.set_index_buffer(p.indices.slice(..), wgpu::IndexFormat::Uint32);
                        pass.draw_indexed(0..p.index_count, 0, 0..1);
                        stats.draws += 1;
                        stats.triangles += u64::from(p.index_count / 3);
                    }
                }
            }
        }
        let slot = &mut self.ring[slot_index];
        if let Some(conv) = &self.i420 {
            let luma_words = self.width * self.height / 4;
            let chroma_words = self.width * self.height / 16;
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("rgba to i420"),
                    timestamp_writes: None,
                });
                pass.set_bind_group(0, &conv.bind_group, &[]);
                pass.set_pipeline(&conv.luma);
                pass.dispatch_workgroups(luma_words.div_ceil(64), 1, 1);
                pass.set_pipeline(&conv.chroma);
                pass.dispatch_workgroups(chroma_words.div_ceil(64), 1, 1);
            }
            encoder.copy_buffer_to_buffer(&conv.buffer, 0, &slot.buffer, 0, conv.bytes);
        } else {
            Self::copy_rgba(
                &mut encoder,
                &self.color,
                &slot.buffer,
                self.stride,
                self.width,
                self.height,
            );
        }
        let submission = queue.submit([encoder.finish()]);
        let state = Arc::new(AtomicU8::new(MAP_PENDING));
        let cb_state = state.clone();
        slot.buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| {
                cb_state.store(
                    if r.is_ok() { MAP_OK } else { MAP_FAILED },
                    Ordering::Release,
                );
            });
        slot.in_flight = Some(InFlight {
            tag,
            submission,
            state,
        });
        self.pending.push_back(slot_index);
        self.next_slot = (slot_index + 1) % RING;

        stats.gpu_bytes = self.held_bytes();
        self.stats = stats;
        Ok(())
    }

    fn copy_rgba(
        encoder: &mut wgpu::CommandEncoder,
        color: &wgpu::Texture,
        buffer: &wgpu::Buffer,
        stride: usize,
        width: u32,
        height: u32,
    ) {
        encoder.copy_texture_to_buffer(
            color.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(stride as u32),
                    rows_per_image: Some(height),
                },
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
    }

    /// Converts frames to I420 on the GPU from now on (BT.709 limited range, bit-identical to
    /// `farview_encode::rgba_to_i420`), so readback moves 1.5 bytes per pixel and the CPU does
    /// no conversion. Returns `false` (and keeps RGBA readback) when the width is not a multiple
    /// of 8. Call it before the first frame is submitted.
    pub fn enable_gpu_i420(&mut self) -> Result<bool, RenderError> {
        if !self.width.is_multiple_of(8) {
            return Ok(false);
        }
        if !self.pending.is_empty() {
            return Err(RenderError::Gpu(
                "enable GPU colour conversion before submitting frames".into(),
            ));
        }
        let device = self.ctx.device().clone();
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("i420.wgsl"),
            source: wgpu::ShaderSource::Wgsl(crate::I420_SHADER.into()),
        });
        let bytes = u64::from(self.width) * u64::from(self.height) * 3 / 2;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("i420"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("i420 dims"),
            contents: bytemuck::cast_slice(&[self.width, self.height, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        // Sampled through its sRGB format (a non-sRGB view needs VIEW_FORMATS, which GL lacks);
        // the shader encodes back to the stored bytes.
        let view = self.color.create_view(&Default::default());
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("i420"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                uniform_entry(2, wgpu::ShaderStages::COMPUTE, false, 16),
            ],
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("i420"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&view),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: dims.as_entire_binding(),
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("i420"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let make = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &shader,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (luma, chroma) = (make("luma_main"), make("chroma_main"));
        for slot in &mut self.ring {
            slot.buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback i420"),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            });
        }
        self.i420 = Some(GpuI420 {
            luma,
            chroma,
            bind_group,
            buffer,
            bytes,
        });
        Ok(true)
    }

    /// GPU memory this renderer holds: targets, readback ring, per-draw uniforms and the models
    /// uploaded (after the last sync).
    pub fn held_bytes(&self) -> u64 {
        let frame_bytes = match &self.i420 {
            Some(c) => c.bytes,
            None => (self.stride * self.height as usize) as u64,
        };
        let conversion = self.i420.as_ref().map_or(0, |c| c.bytes);
        conversion
            + self.models.values().map(|m| m.bytes).sum::<u64>()
            + u64::from(self.width) * u64::from(self.height) * 8
            + frame_bytes * RING as u64
            + self.draw_capacity as u64 * self.draw_stride
    }

    /// Copies the oldest submitted frame into `out` (rows `stride` apart) and frees its buffer.
    /// With `wait`, blocks until the GPU has finished it; without, returns `None` if it is not
    /// ready yet. Returns `None` when nothing is in flight.
    pub fn collect(
        &mut self,
        wait: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<ReadbackFrame>, RenderError> {
        let Some(&slot_index) = self.pending.front() else {
            return Ok(None);
        };
        let slot = &mut self.ring[slot_index];
        let Some(flight) = slot.in_flight.as_ref() else {
            self.pending.pop_front();
            return Ok(None);
        };
        let poll = if wait {
            wgpu::PollType::Wait {
                submission_index: Some(flight.submission.clone()),
                timeout: Some(READBACK_TIMEOUT),
            }
        } else {
            wgpu::PollType::Poll
        };
        self.ctx
            .device()
            .poll(poll)
            .map_err(|e| RenderError::Readback(e.to_string()))?;
        match flight.state.load(Ordering::Acquire) {
            MAP_OK => {}
            MAP_FAILED => {
                slot.in_flight = None;
                self.pending.pop_front();
                return Err(RenderError::Readback(
                    "mapping the readback buffer failed".into(),
                ));
            }
            _ if wait => {
                return Err(RenderError::Readback(
                    "readback not mapped after the GPU finished".into(),
                ));
            }
            _ => return Ok(None),
        }
        let tag = flight.tag;
        {
            let view = slot
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| RenderError::Readback(e.to_string()))?;
            out.clear();
            out.extend_from_slice(&view);
        }
        slot.buffer.unmap();
        slot.in_flight = None;
        self.pending.pop_front();
        Ok(Some(ReadbackFrame {
            tag,
            width: self.width,
            height: self.height,
            stride: if self.i420.is_some() {
                self.width as usize
            } else {
                self.stride
            },
            i420: self.i420.is_some(),
        }))
    }

    /// Renders one frame and waits for it: tightly packed RGBA8 rows. For tests and tools; the
    /// stream loop uses [`Self::submit`] and [`Self::collect`] to overlap frames.
    pub fn render_blocking(
        &mut self,
        scene: &Scene,
        camera: &Camera,
    ) -> Result<Vec<u8>, RenderError> {
        let mut scratch = Vec::new();
        while self.collect(true, &mut scratch)?.is_some() {}
        self.submit(scene, camera, u64::MAX)?;
        let frame = self
            .collect(true, &mut scratch)?
            .ok_or_else(|| RenderError::Readback("frame lost".into()))?;
        Ok(strip_padding(&scratch, frame))
    }
}

/// Removes the row padding of a read-back frame: tightly packed `width * 4` byte rows.
pub fn strip_padding(data: &[u8], frame: ReadbackFrame) -> Vec<u8> {
    if frame.i420 {
        let len = frame.width as usize * frame.height as usize * 3 / 2;
        return data[..len.min(data.len())].to_vec();
    }
    let row = frame.width as usize * 4;
    data.chunks(frame.stride)
        .take(frame.height as usize)
        .flat_map(|r| &r[..row.min(r.len())])
        .copied()
        .collect()
}

fn normal_matrix(world: &Mat4) -> Mat4 {
    let det = world.determinant();
    if det.abs() > f32::EPSILON && det.is_finite() {
        world.inverse().transpose()
    } else {
        *world
    }
}
