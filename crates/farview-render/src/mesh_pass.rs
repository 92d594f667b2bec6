//! The mesh pass (`shaders/mesh.wgsl`): pipelines per shader variant (standard, layered or
//! fast, see [`ShaderVariant`]), back-face culled or double-sided, opaque or blended, front faces
//! counter-clockwise or (mirrored transforms) clockwise; the background (environment) and
//! selection outline pipelines; the per-frame globals, one dynamic-offset uniform block per
//! draw, and the recording of a frame: opaque draws batch by batch (instances of a mesh with one state in one draw), the environment behind them, blended draws (see-through
//! entities, alpha-blended materials) far to near, then outlines around selected entities.
//! With occlusion culling, the opaque draws seen last frame go first, in a pass of their own,
//! and the rest after a test against that pass's depth ([`crate::occlusion`]).
//!
//! Every draw writes the stencil: 1 for selected entities, 0 otherwise, so the outline (the
//! selected meshes again, pushed out along their normals) lands only outside what is visible of
//! them.

use std::collections::HashSet;

use farview_scene::lod::{FACING_GROUPS, LodLevel, Meshlet};
use farview_scene::{Aabb, DrawState, Drawable, EntityId, IdHash, Scene};

use crate::blit::Blit;
use crate::cull::Frustum;
use crate::environment_binding::EnvironmentBinding;
use crate::gpu_model::{GpuMaterial, GpuPrimitive};
use crate::instances::Instances;
use crate::lod_select::{LodView, distance_to, max_scale};
use crate::models::GpuModelStore;
use crate::occlusion::{DepthPyramid, DepthReduce, LastDepth, Seen, Slot};
use crate::posed::PosedVertices;
use crate::targets::{COLOR_FORMAT, DEPTH_FORMAT, FrameTargets};
use crate::transmission::TransmissionFrame;
use crate::uniforms::{DrawUniform, FrameLook, Globals, InstanceData, uniform_entry};
use crate::{Camera, GpuContext, MESH_SHADER, RenderError, RenderStats, Shading};

/// Upper bound on draws (batches) per frame; a scene over it is an error, not an allocation
/// storm.
const MAX_DRAWS: usize = 1 << 20;
/// Projected error a level of detail may have by default, pixels: below what a 4:2:0 H.264
/// stream at streaming bitrates keeps.
pub(crate) const DEFAULT_LOD_ERROR_PX: f32 = 1.0;
/// Distinct draw states told apart when instances are grouped into batches.
const MAX_BATCH_STATES: usize = 32;
/// Upper bound on mesh instances per frame (100 bytes each in the instance buffer: 200 MiB at
/// most, under wgpu's 256 MiB default buffer limit).
const MAX_INSTANCES: usize = 1 << 21;
/// Fewer draws in view than this are drawn in one pass: occlusion culling's mid-frame wait
/// would cost more than it saves.
const OCCLUSION_MIN_DRAWABLES: usize = 8;
/// Phase 2 draws the nearest of its draws first, in a phase of their own with more waits for
/// depth ([`Phase::Near`]), when it has more than this many draws and twice as many as phase 1:
/// the depth phase 1 left is then too thin to hide much (a camera that passed through a wall).
const NEAR_PHASE_MIN_DRAWABLES: usize = 64;
/// The near phase goes in rounds, each with its own wait for depth: round `r` draws what is
/// not hidden yet among the nearest 1 in `NEAR_ROUND_SHARES[r]` of phase 2's draws (and the
/// clusters within their distance), so each round is tested against the depth of those
/// before it. A round that draws nothing costs no wait. On the generated city's three views
/// through walls, one round of the nearest quarter drew 0.44 / 0.40 / 0.19 M triangles; these
/// five draw 0.28 / 0.25 / 0.11 M (six, from 1 in 64, drew about as many; four, to 1 in 4,
/// 0.30 / 0.27 / 0.12 M).
const NEAR_ROUND_SHARES: [usize; 5] = [32, 16, 8, 4, 2];
/// Per-draw uniform blocks allocated up front; the buffer doubles as scenes grow.
const INITIAL_DRAWS: usize = 64;

/// Pipelines and uniforms of the mesh pass of one renderer.
pub(crate) struct MeshPass {
    /// Indexed by [`PipelineKey::index`]; `None` until needed (mirrored draws) or for
    /// variants this renderer's shading does not use.
    pipelines: Vec<Option<wgpu::RenderPipeline>>,
    parts: PipelineParts,
    shading: Shading,
    sky: wgpu::RenderPipeline,
    outline: wgpu::RenderPipeline,
    /// The frame's globals; their group binds the transmission frame (or a placeholder).
    globals: FrameGlobals,
    /// The globals of the pass behind transmissive surfaces: linear output, placeholder bound.
    behind_globals: FrameGlobals,
    globals_layout: wgpu::BindGroupLayout,
    behind: BehindBinding,
    /// Made on the first frame with a transmissive draw (full shading only).
    transmission: Option<TransmissionFrame>,
    mip_chain: Option<Blit>,
    draw_layout: wgpu::BindGroupLayout,
    draw_stride: u64,
    draw_buffer: wgpu::Buffer,
    draw_bind_group: wgpu::BindGroup,
    draw_capacity: usize,
    draw_scratch: Vec<u8>,
    /// Vertex buffers of skinned and morphed meshes in their pose.
    pub(crate) posed: PosedVertices,
    /// The frame's per-instance matrices.
    instances: Instances,
    /// Leave out draws outside the view (on by default; off only to compare).
    pub(crate) frustum_culling: bool,
    /// Leave out facing groups of levels whose triangles all face away from the camera (on by
    /// default; off only to compare). See [`farview_scene::lod::FacingGroup`].
    pub(crate) facing_culling: bool,
    /// Draw repeated meshes with the same state as one instanced draw (on by default; off
    /// only to compare).
    pub(crate) batching: bool,
    /// Largest projected error of a level of detail, pixels (0: full detail everywhere).
    pub(crate) lod_error_px: f32,
    /// Leave out draws and clusters hidden behind what is drawn first (on by default; off only
    /// to compare). See [`crate::occlusion`].
    pub(crate) occlusion_culling: bool,
    /// Made on the first frame occlusion culling applies to.
    depth_reduce: Option<DepthReduce>,
    /// What the last occlusion-culled frame saw.
    seen: Seen,
    /// The view-projection and size of the last frame, when it reduced its final depth into
    /// [`Slot::End`] (read by the next frame).
    end_depth: Option<(glam::Mat4, u32, u32)>,
    /// The scene's drawables and bounds as of its key, kept while the scene is still.
    drawables_cache: Option<DrawablesCache>,
}

/// [`Scene::drawables`] and [`Scene::drawable_bounds`] of one [`farview_scene::DrawablesKey`].
struct DrawablesCache {
    key: farview_scene::DrawablesKey,
    drawables: Vec<Drawable>,
    /// Empty when no test needed them.
    bounds: Vec<Aabb>,
}

/// Which pipeline a primitive draws with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PipelineKey {
    variant: ShaderVariant,
    double_sided: bool,
    blended: bool,
    mirrored: bool,
    /// The fragment shader may discard (alpha-tested material, or cut planes this frame).
    /// Kept apart because a shader that can discard loses early depth testing on software
    /// rasterizers: every covered fragment is shaded, hidden or not (DamagedHelmet at 720p,
    /// `fast`: 24 ms a frame with `discard` in the shader, 17 ms without).
    clip: bool,
}

impl PipelineKey {
    const PER_VARIANT: usize = 16;
    const COUNT: usize = ShaderVariant::ALL.len() * Self::PER_VARIANT;

    fn index(self) -> usize {
        self.variant as usize * Self::PER_VARIANT
            + 8 * usize::from(self.clip)
            + 4 * usize::from(self.mirrored)
            + 2 * usize::from(self.blended)
            + usize::from(self.double_sided)
    }

    fn all() -> impl Iterator<Item = Self> {
        ShaderVariant::ALL.into_iter().flat_map(|variant| {
            (0..Self::PER_VARIANT as u8).map(move |bits| Self {
                variant,
                double_sided: bits & 1 != 0,
                blended: bits & 2 != 0,
                mirrored: bits & 4 != 0,
                clip: bits & 8 != 0,
            })
        })
    }
}

/// Which vertex and fragment entry points a material draws with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShaderVariant {
    /// Full shading without the clearcoat, sheen and transmission layers.
    Standard = 0,
    /// Full shading with them.
    Layered = 1,
    /// Per-vertex lighting ([`Shading::Fast`]).
    Fast = 2,
    /// Per-vertex lighting of a material whose fast shading samples no texture: the whole
    /// colour is lit at the vertices and the fragment stage only encodes it.
    FastPlain = 3,
}

impl ShaderVariant {
    const ALL: [Self; 4] = [Self::Standard, Self::Layered, Self::Fast, Self::FastPlain];

    fn entry_points(self, clip: bool) -> (&'static str, &'static str) {
        match (self, clip) {
            (Self::Standard, false) => ("vs_main", "fs_standard"),
            (Self::Standard, true) => ("vs_main", "fs_standard_clip"),
            (Self::Layered, false) => ("vs_main", "fs_layered"),
            (Self::Layered, true) => ("vs_main", "fs_layered_clip"),
            (Self::Fast, false) => ("vs_fast", "fs_fast"),
            (Self::Fast, true) => ("vs_fast", "fs_fast_clip"),
            (Self::FastPlain, false) => ("vs_fast_plain", "fs_fast_plain"),
            (Self::FastPlain, true) => ("vs_fast_plain_clip", "fs_fast_plain_clip"),
        }
    }

    /// The variant a material draws with: `layered` (clearcoat, sheen, transmission) and
    /// `fast_textured` (a base colour, metallic-roughness or emissive texture) as in
    /// [`GpuMaterial`].
    fn for_material(shading: Shading, layered: bool, fast_textured: bool) -> Self {
        match shading {
            Shading::Fast if fast_textured => Self::Fast,
            Shading::Fast => Self::FastPlain,
            Shading::Full if layered => Self::Layered,
            Shading::Full => Self::Standard,
        }
    }

    fn used_by(self, shading: Shading) -> bool {
        match shading {
            Shading::Full => matches!(self, Self::Standard | Self::Layered),
            Shading::Fast => matches!(self, Self::Fast | Self::FastPlain),
        }
    }
}

impl MeshPass {
    pub(crate) fn new(
        ctx: &GpuContext,
        material_layout: &wgpu::BindGroupLayout,
        environment_layout: &wgpu::BindGroupLayout,
        samples: u32,
        shading: Shading,
    ) -> Self {
        let device = ctx.device();
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mesh.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MESH_SHADER.into()),
        });
        let globals_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("globals"),
            entries: &[
                uniform_entry(
                    0,
                    wgpu::ShaderStages::VERTEX_FRAGMENT,
                    false,
                    std::mem::size_of::<Globals>() as u64,
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
        let draw_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("draw"),
            entries: &[uniform_entry(
                0,
                wgpu::ShaderStages::VERTEX_FRAGMENT,
                true,
                std::mem::size_of::<DrawUniform>() as u64,
            )],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mesh"),
            bind_group_layouts: &[
                Some(&globals_layout),
                Some(&draw_layout),
                Some(material_layout),
                Some(environment_layout),
            ],
            immediate_size: 0,
        });
        let multisample = wgpu::MultisampleState {
            count: samples,
            ..Default::default()
        };
        // The sky and the outline share the mesh pipelines' layout even though they use fewer
        // groups: wgpu's GL backend assigns texture slots per layout and does not rebind a group
        // that stays bound across a layout switch, so differing layouts read stale slots.
        let sky = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("sky"),
            layout: Some(&layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_sky"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: Default::default(),
            // At the far plane, only where nothing was drawn.
            depth_stencil: Some(wgpu::DepthStencilState {
                format: DEPTH_FORMAT,
                depth_write_enabled: Some(false),
                depth_compare: Some(wgpu::CompareFunction::LessEqual),
                stencil: Default::default(),
                bias: Default::default(),
            }),
            multisample,
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_sky"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: COLOR_FORMAT,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let outside_selection = wgpu::StencilFaceState {
            compare: wgpu::CompareFunction::NotEqual,
            fail_op: wgpu::StencilOperation::Keep,
            depth_fail_op: wgpu::StencilOperation::Keep,
            pass_op: wgpu::StencilOperation::Keep,
        };
        let outline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("outline"),
            layout: Some(&layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_outline"),
                compilation_options: Default::default(),
                buffers: &[
                    Some(crate::gpu_model::Vertex::layout()),
                    Some(InstanceData::layout()),
                ],
            },
            primitive: Default::default(),
            // Over everything (an outline shows a selection behind other geometry too), but
            // never over the selected entity itself.
            depth_stencil: Some(wgpu::DepthStencilState {
                format: DEPTH_FORMAT,
                depth_write_enabled: Some(false),
                depth_compare: Some(wgpu::CompareFunction::Always),
                stencil: wgpu::StencilState {
                    front: outside_selection,
                    back: outside_selection,
                    read_mask: 0xff,
                    write_mask: 0,
                },
                bias: Default::default(),
            }),
            multisample,
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_outline"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: COLOR_FORMAT,
                    blend: Some(wgpu::BlendState::ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });

        let parts = PipelineParts {
            shader,
            layout,
            samples,
        };
        // The pipelines a renderer's shading uses, made now; mirrored and clipping ones on
        // first use.
        let mut pipelines: Vec<Option<wgpu::RenderPipeline>> =
            (0..PipelineKey::COUNT).map(|_| None).collect();
        for key in PipelineKey::all() {
            if key.variant.used_by(shading) && !key.mirrored && !key.clip {
                pipelines[key.index()] = Some(make_pipeline(device, &parts, key));
            }
        }
        let behind = BehindBinding::new(device);
        let globals = FrameGlobals::new(device, &globals_layout, &behind, None);
        let behind_globals = FrameGlobals::new(device, &globals_layout, &behind, None);
        let align = u64::from(ctx.limits().min_uniform_buffer_offset_alignment);
        let draw_stride = (std::mem::size_of::<DrawUniform>() as u64).div_ceil(align) * align;
        let (draw_buffer, draw_bind_group) =
            draw_resources(device, &draw_layout, draw_stride, INITIAL_DRAWS);
        Self {
            pipelines,
            parts,
            shading,
            sky,
            outline,
            globals,
            behind_globals,
            globals_layout,
            behind,
            transmission: None,
            mip_chain: None,
            draw_layout,
            draw_stride,
            draw_buffer,
            draw_bind_group,
            draw_capacity: INITIAL_DRAWS,
            draw_scratch: Vec::new(),
            posed: PosedVertices::new(device, ctx.gpu_posing_binding().is_some()),
            instances: Instances::default(),
            frustum_culling: true,
            facing_culling: true,
            batching: true,
            lod_error_px: DEFAULT_LOD_ERROR_PX,
            occlusion_culling: true,
            depth_reduce: None,
            seen: Seen::default(),
            end_depth: None,
            drawables_cache: None,
        }
    }

    /// GPU memory of the per-draw uniform buffer and the transmission frame.
    pub(crate) fn bytes(&self) -> u64 {
        self.draw_capacity as u64 * self.draw_stride
            + self.posed.bytes()
            + self.instances.bytes()
            + self.depth_reduce.as_ref().map_or(0, DepthReduce::bytes)
            + self
                .transmission
                .as_ref()
                .map_or(0, TransmissionFrame::bytes)
    }

    /// Writes this frame's uniforms and records the pass into `targets`. Draws only models the
    /// store holds: entities of a missing model are skipped and counted in
    /// [`RenderStats::skipped_entities`] (logged once per model). With full shading and a
    /// transmissive draw in view, first records the frame behind the glass
    /// ([`TransmissionFrame`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        targets: &FrameTargets,
        scene: &Scene,
        camera: &Camera,
        look: &FrameLook<'_>,
        environment: &EnvironmentBinding,
        fallback_material: &wgpu::BindGroup,
        store: &mut GpuModelStore,
    ) -> Result<RenderStats, RenderError> {
        let (device, queue) = (ctx.device(), ctx.queue());
        let mut stats = RenderStats::default();
        let globals = Globals::new(scene, camera, look);

        let (w, h) = look.viewport;
        let view_proj = camera.view_proj(w as f32 / h.max(1) as f32);
        let frustum = self.frustum_culling.then(|| Frustum::new(view_proj));
        let need_bounds = frustum.is_some() || self.occlusion_culling;
        // The scene's drawables and their world bounds, walked again only when the scene
        // changed (a million entities take most of a frame to walk).
        let key = scene.drawables_key();
        let cache = match self.drawables_cache.take() {
            Some(c) if c.key == key && (!need_bounds || c.bounds.len() == c.drawables.len()) => c,
            _ => {
                let drawables = scene.drawables();
                let bounds = if need_bounds {
                    drawables.iter().map(|d| scene.drawable_bounds(d)).collect()
                } else {
                    Vec::new()
                };
                DrawablesCache {
                    key,
                    drawables,
                    bounds,
                }
            }
        };
        // What this frame draws: models in the store, in view (selected ones always: their
        // outline may reach into view).
        let mut drawables = Vec::new();
        let mut bounds = Vec::new();
        for (i, d) in cache.drawables.iter().enumerate() {
            let b = cache.bounds.get(i);
            match store.get(d.model) {
                Some(m) if d.mesh < m.meshes.len() => {}
                Some(_) => continue,
                None => {
                    stats.skipped_entities += 1;
                    if store.note_missing(d.model) {
                        tracing::debug!(
                            model = d.model.0,
                            entity = d.entity.0,
                            "model not in the GPU store; its entities are skipped until it is inserted"
                        );
                    }
                    continue;
                }
            }
            if let (Some(f), Some(b)) = (&frustum, b)
                && !d.state.selected
                && !f.may_see(b)
            {
                stats.culled += 1;
                continue;
            }
            drawables.push(*d);
            bounds.extend(b.copied());
        }
        self.drawables_cache = Some(cache);
        // The last culled frame's final depth, if it reduced it: what it hides is not drawn
        // first. (Kept with the seen sets through frames drawn in one pass.)
        if let Some((view_proj, w, h)) = self.end_depth.take() {
            self.seen.last = self.depth_reduce.as_mut().and_then(|reduce| {
                reduce
                    .read_end_now(ctx, w, h)
                    .map(|pyramid| LastDepth { pyramid, view_proj })
            });
        }
        let lod = LodView::new(camera, h, self.lod_error_px);
        let posed = self
            .posed
            .prepare(device, queue, encoder, scene, &drawables, store);
        stats.posed_bytes = posed.bytes;
        stats.gpu_posed_vertices = posed.gpu_vertices;
        if drawables.len() > MAX_INSTANCES {
            return Err(RenderError::Gpu(format!(
                "{} mesh instances exceed the limit of {MAX_INSTANCES}",
                drawables.len()
            )));
        }
        let batching = self.batching;
        let occluding = self.occlusion_culling;
        let seen = &self.seen;
        let mut frame = FrameDraws::new(
            (drawables, bounds),
            store,
            |d| batching && (!d.deformable || scene.deform_inputs(d.entity).is_none()),
            |d, b| occluding && seen.first(seen.entities.contains(&d.entity), b),
            camera.position,
            self.shading,
            globals.cut_planes_active(),
            Clusters {
                lod,
                frustum,
                facing: self.facing_culling,
            },
        );
        // A handful of draws is cheaper to draw than to test. Frames whose depth cannot be
        // read (multisampled on GL, see `FrameTargets`) are drawn in one pass.
        let occluding = occluding
            && targets.depth_sampleable
            && (frame.drawables.len() >= OCCLUSION_MIN_DRAWABLES || frame.multi.contains(&true));
        if frame.batches.len() > MAX_DRAWS {
            return Err(RenderError::Gpu(format!(
                "{} draws exceed the limit of {MAX_DRAWS}",
                frame.batches.len()
            )));
        }
        if frame.batches.len() > self.draw_capacity {
            let capacity = frame.batches.len().next_power_of_two();
            (self.draw_buffer, self.draw_bind_group) =
                draw_resources(device, &self.draw_layout, self.draw_stride, capacity);
            self.draw_capacity = capacity;
        }
        let stride = self.draw_stride as usize;
        self.draw_scratch.clear();
        self.draw_scratch.resize(frame.batches.len() * stride, 0);
        for (chunk, b) in self
            .draw_scratch
            .chunks_exact_mut(stride)
            .zip(&frame.batches)
        {
            let d = &frame.drawables[b.start];
            let u = DrawUniform::new(&d.world, &d.state);
            chunk[..std::mem::size_of::<DrawUniform>()].copy_from_slice(bytemuck::bytes_of(&u));
        }
        if !self.draw_scratch.is_empty() {
            queue.write_buffer(&self.draw_buffer, 0, &self.draw_scratch);
        }
        self.instances.write(device, queue, &frame.drawables);

        // Pipelines this frame needs that are not made yet (mirrored, clipping), and whether
        // anything in it is transmissive.
        let mut transmissive = false;
        for b in &frame.batches {
            let (i, d) = (b.start, &frame.drawables[b.start]);
            let Some(model) = store.get(d.model) else {
                continue;
            };
            let Some(prims) = model.meshes.get(d.mesh) else {
                continue;
            };
            for p in prims {
                if let Some(material) = model.materials.get(p.material_for(d.state.variant)) {
                    transmissive |= material.transmissive;
                    let key = frame.key(i, material);
                    if let Some(slot @ None) = self.pipelines.get_mut(key.index()) {
                        *slot = Some(make_pipeline(device, &self.parts, key));
                    }
                }
            }
        }

        let behind_glass = transmissive && self.shading == Shading::Full;
        if behind_glass {
            // (May remake the main globals: written below, after this.)
            self.prepare_transmission(device, targets.width, targets.height)?;
        }
        queue.write_buffer(&self.globals.buffer, 0, bytemuck::bytes_of(&globals));
        if behind_glass {
            queue.write_buffer(
                &self.behind_globals.buffer,
                0,
                bytemuck::bytes_of(&globals.linear_output()),
            );
            if let (Some(behind), Some(chain)) = (&self.transmission, &self.mip_chain) {
                let (view, resolve_target) = match &targets.msaa_view {
                    Some(msaa) => (msaa, Some(behind.base_view())),
                    None => (behind.base_view(), None),
                };
                let mut pass = begin_mesh_pass(
                    encoder,
                    "behind transmission",
                    (view, resolve_target),
                    &targets.depth_view,
                    look.lighting.background,
                    PassLoad::Clear,
                );
                pass.set_bind_group(0, &self.behind_globals.bind_group, &[]);
                pass.set_bind_group(3, &environment.bind_group, &[]);
                let mut ignored = RenderStats::default();
                self.record_meshes(
                    &mut pass,
                    &frame,
                    store,
                    look,
                    fallback_material,
                    Phase::All { behind_glass: true },
                    &mut ignored,
                );
                drop(pass);
                behind.encode_mips(chain, encoder);
            }
        }

        if !occluding {
            // What the last culled frame saw is kept: a frame drawn in one pass (culling
            // switched off to compare, too few draws) does not make the next culled frame
            // start from nothing.
            let mut pass =
                self.main_pass(encoder, "mesh", targets, look, environment, PassLoad::Clear);
            self.record_meshes(
                &mut pass,
                &frame,
                store,
                look,
                fallback_material,
                Phase::All {
                    behind_glass: false,
                },
                &mut stats,
            );
            self.record_outlines(
                &mut pass,
                &frame,
                store,
                look,
                fallback_material,
                &mut stats,
            );
        } else {
            // Phase 1: what was seen last frame, then its depth reduced and read back.
            let before = stats.triangles;
            let pass_of = |load| PassOf {
                targets,
                look,
                environment,
                load,
            };
            let first_phase = Phase::First { seen: &self.seen };
            self.record_pass(
                encoder,
                ("mesh (seen last frame)", pass_of(PassLoad::ClearAndKeep)),
                (&frame, store, fallback_material),
                first_phase,
                &mut stats,
            );
            let first_triangles = stats.triangles - before;
            let reduce = self
                .depth_reduce
                .get_or_insert_with(|| DepthReduce::new(device));
            let mut pyramid = depth_so_far(ctx, reduce, encoder, targets, (w, h));
            let mut hidden = frame.test_visibility(pyramid.as_ref(), &view_proj);
            let mut now_seen = Vec::new();
            let mut early_clusters = HashSet::default();
            // Little was drawn first: the nearest of the rest go next, in rounds, and what is
            // left after each is tested against the depth so far.
            for round in 0..NEAR_ROUND_SHARES.len() {
                let Some(p) = pyramid.as_ref() else {
                    break;
                };
                let Some(limit) = frame.mark_near(camera.position, round) else {
                    break;
                };
                let mut drawn = Vec::new();
                let before_round = stats.triangles;
                let near_phase = Phase::Near {
                    seen: &self.seen,
                    pyramid: p,
                    view_proj,
                    limit,
                    drawn: &mut drawn,
                    early: &early_clusters,
                };
                self.record_pass(
                    encoder,
                    ("mesh (near, newly visible)", pass_of(PassLoad::Continue)),
                    (&frame, store, fallback_material),
                    near_phase,
                    &mut stats,
                );
                early_clusters.extend(drawn.iter().copied());
                now_seen.extend(drawn);
                if stats.triangles == before_round {
                    // No new depth: the pyramid stands.
                    continue;
                }
                let Some(reduce) = self.depth_reduce.as_mut() else {
                    break;
                };
                pyramid = depth_so_far(ctx, reduce, encoder, targets, (w, h));
                hidden = frame.test_visibility(pyramid.as_ref(), &view_proj);
            }
            stats.occluded += hidden;
            // Phase 2: the rest that is not hidden, the environment, blended draws, outlines.
            let second_phase = Phase::Second {
                seen: &self.seen,
                pyramid: pyramid.as_ref(),
                view_proj,
                now_seen: &mut now_seen,
                early: &early_clusters,
            };
            self.record_pass(
                encoder,
                ("mesh (newly visible)", pass_of(PassLoad::Continue)),
                (&frame, store, fallback_material),
                second_phase,
                &mut stats,
            );
            // Phase 2 drew more than phase 1: much of what it found not hidden may be hidden
            // behind what it drew. The next frame tests what this one saw against this final
            // depth before drawing it first (see `crate::occlusion`).
            self.seen.last = None;
            if stats.triangles - before - first_triangles > first_triangles
                && let Some(reduce) = self.depth_reduce.as_mut()
            {
                reduce.encode(device, encoder, targets, Slot::End);
                self.end_depth = Some((view_proj, w, h));
            }
            self.seen.entities.clear();
            self.seen.entities.extend(
                frame
                    .drawables
                    .iter()
                    .zip(&frame.visible)
                    .filter(|(_, v)| **v)
                    .map(|(d, _)| d.entity),
            );
            self.seen.clusters.clear();
            self.seen.clusters.extend(now_seen);
        }
        self.posed.end_frame();
        Ok(stats)
    }

    /// Records `phase` of `frame` in a pass of its own (`label`, `pass`); phase 2's pass also
    /// draws the outlines.
    fn record_pass(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        (label, pass): (&'static str, PassOf<'_>),
        (frame, store, fallback_material): (&FrameDraws, &GpuModelStore, &wgpu::BindGroup),
        phase: Phase<'_>,
        stats: &mut RenderStats,
    ) {
        let outlines = matches!(phase, Phase::Second { .. });
        let look = pass.look;
        let mut pass = self.main_pass(
            encoder,
            label,
            pass.targets,
            look,
            pass.environment,
            pass.load,
        );
        self.record_meshes(
            &mut pass,
            frame,
            store,
            look,
            fallback_material,
            phase,
            stats,
        );
        if outlines {
            self.record_outlines(&mut pass, frame, store, look, fallback_material, stats);
        }
    }

    /// Begins a pass over the frame's targets with the main globals and the environment bound.
    fn main_pass<'e>(
        &self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: &'static str,
        targets: &FrameTargets,
        look: &FrameLook<'_>,
        environment: &EnvironmentBinding,
        load: PassLoad,
    ) -> wgpu::RenderPass<'e> {
        let mut pass = begin_mesh_pass(
            encoder,
            label,
            targets.color_attachment(),
            &targets.depth_view,
            look.lighting.background,
            load,
        );
        pass.set_bind_group(0, &self.globals.bind_group, &[]);
        pass.set_bind_group(3, &environment.bind_group, &[]);
        pass
    }

    /// Records the outlines of selected entities, into a pass whose stencil marks what is
    /// visible of them.
    fn record_outlines(
        &self,
        pass: &mut wgpu::RenderPass<'_>,
        frame: &FrameDraws,
        store: &GpuModelStore,
        look: &FrameLook<'_>,
        fallback_material: &wgpu::BindGroup,
        stats: &mut RenderStats,
    ) {
        // No outline width, nothing to draw (selected meshes drawn again would change no
        // pixel, the stencil hides them, but cost draws).
        if look.lighting.outline.width_px <= 0.0 {
            return;
        }
        let stride = self.draw_stride as usize;
        let mut bound_pipeline = false;
        for (i, d) in frame.drawables.iter().enumerate() {
            if !d.state.selected {
                continue;
            }
            let Some(prims) = store.get(d.model).and_then(|m| m.meshes.get(d.mesh)) else {
                continue;
            };
            if !bound_pipeline {
                pass.set_pipeline(&self.outline);
                pass.set_bind_group(2, fallback_material, &[]);
                pass.set_stencil_reference(1);
                bound_pipeline = true;
            }
            pass.set_bind_group(1, &self.draw_bind_group, &[frame.uniform_offset(i, stride)]);
            self.instances.bind(pass, i);
            for (pi, p) in prims.iter().enumerate() {
                let vertices = self.posed.get(d.entity, pi).unwrap_or(&p.vertices);
                pass.set_vertex_buffer(0, vertices.slice(..));
                pass.set_index_buffer(p.indices.slice(..), wgpu::IndexFormat::Uint32);
                pass.draw_indexed(0..p.index_count, 0, 0..1);
                stats.draws += 1;
                stats.instances += 1;
            }
        }
    }

    /// Makes (or remakes, on a size change) the transmission frame and binds it in the main
    /// globals group.
    fn prepare_transmission(
        &mut self,
        device: &wgpu::Device,
        width: u32,
        height: u32,
    ) -> Result<(), RenderError> {
        if self
            .transmission
            .as_ref()
            .is_some_and(|t| t.fits(width, height))
        {
            return Ok(());
        }
        let chain = self.mip_chain.get_or_insert_with(|| Blit::new(device));
        let frame = TransmissionFrame::new(device, chain, width, height)?;
        self.globals = FrameGlobals::new(
            device,
            &self.globals_layout,
            &self.behind,
            Some(&frame.sample_view),
        );
        self.transmission = Some(frame);
        Ok(())
    }

    /// Records the frame's draws into a pass whose globals and environment are bound: opaque
    /// geometry batch by batch (sorted by model and mesh), the environment behind it, then blended geometry (see-through
    /// entities and alpha-blended materials) far to near, so blending composes over what is
    /// behind. `behind_glass` leaves transmissive materials out (the frame they see through).
    #[allow(clippy::too_many_arguments)]
    fn record_meshes(
        &self,
        pass: &mut wgpu::RenderPass<'_>,
        frame: &FrameDraws,
        store: &GpuModelStore,
        look: &FrameLook<'_>,
        fallback_material: &wgpu::BindGroup,
        mut phase: Phase<'_>,
        stats: &mut RenderStats,
    ) {
        let stride = self.draw_stride as usize;
        let behind_glass = matches!(phase, Phase::All { behind_glass: true });
        let mut current_pipeline = None;
        for blended_pass in [false, true] {
            if blended_pass && matches!(phase, Phase::First { .. } | Phase::Near { .. }) {
                // Phase 1 and the near phase are opaque draws only: blended ones compose over
                // everything.
                break;
            }
            if blended_pass && look.lighting.show_environment {
                // Groups 1 and 2 are unused by the sky but must be bound.
                pass.set_pipeline(&self.sky);
                pass.set_bind_group(1, &self.draw_bind_group, &[0]);
                pass.set_bind_group(2, fallback_material, &[]);
                pass.draw(0..3, 0..1);
                current_pipeline = None;
            }
            // Opaque draws go batch by batch, each batch's instances in one draw; blended ones
            // one instance at a time, far to near, so blending composes over what is behind.
            let runs = frame.runs(blended_pass, &phase);
            for run in runs {
                let i = run.start;
                let d = &frame.drawables[i];
                let Some(model) = store.get(d.model) else {
                    continue;
                };
                let Some(prims) = model.meshes.get(d.mesh) else {
                    continue;
                };
                let count = run.len() as u32;
                let mut bound = false;
                for (pi, p) in prims.iter().enumerate() {
                    let Some(material) = model.materials.get(p.material_for(d.state.variant))
                    else {
                        continue;
                    };
                    if behind_glass && material.transmissive {
                        continue;
                    }
                    let key = frame.key(i, material);
                    if key.blended != blended_pass {
                        continue;
                    }
                    if !bound {
                        pass.set_bind_group(
                            1,
                            &self.draw_bind_group,
                            &[frame.uniform_offset(i, stride)],
                        );
                        pass.set_stencil_reference(u32::from(d.state.selected));
                        self.instances.bind(pass, i);
                        bound = true;
                    }
                    let key = key.index();
                    if current_pipeline != Some(key) {
                        if let Some(Some(pipeline)) = self.pipelines.get(key) {
                            pass.set_pipeline(pipeline);
                        }
                        current_pipeline = Some(key);
                    }
                    pass.set_bind_group(2, &material.bind_group, &[]);
                    // A posed entity is never batched (its batch is itself).
                    let vertices = self.posed.get(d.entity, pi).unwrap_or(&p.vertices);
                    pass.set_vertex_buffer(0, vertices.slice(..));
                    pass.set_index_buffer(p.indices.slice(..), wgpu::IndexFormat::Uint32);
                    frame.draw_primitive(
                        pass,
                        (i, pi, p, material.double_sided),
                        count,
                        blended_pass,
                        &mut phase,
                        stats,
                    );
                }
            }
        }
    }
}

/// The draws of one frame, in the orders the passes walk them. `drawables` is sorted so that
/// instances of one mesh sit together: a run of them with the same state is a batch, drawn
/// opaque as one instanced draw.
struct FrameDraws {
    drawables: Vec<Drawable>,
    /// World bounds of each drawable (empty when no test needed them).
    bounds: Vec<Aabb>,
    /// Whether each drawable was seen last frame (drawn in occlusion culling's phase 1).
    first: Vec<bool>,
    /// Whether each drawable has a primitive of several clusters (drawn cluster by cluster, in
    /// both phases, each cluster in the phase its own visibility says).
    multi: Vec<bool>,
    /// Whether each drawable may be visible: all are until [`Self::test_visibility`].
    visible: Vec<bool>,
    /// Whether each drawable is drawn in a near round, this one or an earlier one (empty
    /// without one; see [`Self::mark_near`]).
    early: Vec<bool>,
    /// Whether each drawable is drawn in the near round being recorded.
    near: Vec<bool>,
    /// How far each near round reaches.
    near_limits: Vec<f32>,
    /// Per drawable, its distance from the eye when pending at the first near round
    /// (infinite otherwise).
    near_distance: Vec<f32>,
    mirrored: Vec<bool>,
    /// Runs of `drawables` drawn together; their uniform block is the batch's index.
    batches: Vec<std::ops::Range<usize>>,
    /// The batch of each drawable.
    batch_of: Vec<u32>,
    far_to_near: Vec<usize>,
    shading: Shading,
    cutting: bool,
    /// Per drawable, the level each of its first 16 primitives draws (4 bits each), for
    /// primitives of one cluster; drawables differing in it never share a batch.
    levels: Vec<u64>,
    /// Per drawable, the facing groups of that level each of its first [`KEYED_FACINGS`]
    /// primitives draws (6 bits each); drawables differing in it never share a batch.
    facings: Vec<u64>,
    /// The camera's position (world).
    eye: glam::Vec3,
    clusters: Clusters,
}

/// Which part of a frame a mesh pass draws (see [`crate::occlusion`]).
enum Phase<'a> {
    /// Everything in view, in one pass; `behind_glass` leaves transmissive materials out (the
    /// frame they see through).
    All { behind_glass: bool },
    /// Opaque draws and clusters seen last frame.
    First { seen: &'a Seen },
    /// Between the two when phase 1 drew little, in rounds ([`NEAR_ROUND_SHARES`]): opaque
    /// draws ([`FrameDraws::near`]) and clusters not drawn in phase 1 or an earlier round, not
    /// hidden behind what was, within `limit` of the eye. Clusters drawn are pushed to `drawn`.
    Near {
        seen: &'a Seen,
        pyramid: &'a DepthPyramid,
        view_proj: glam::Mat4,
        limit: f32,
        drawn: &'a mut Vec<(EntityId, u32, u32)>,
        /// Clusters drawn in the near rounds before this one.
        early: &'a HashSet<(EntityId, u32, u32), IdHash>,
    },
    /// Opaque draws and clusters not drawn in phase 1 (nor in the near phase: `early`) and
    /// not hidden behind what was, the environment, blended draws. Clusters found visible are
    /// pushed to `now_seen`.
    Second {
        seen: &'a Seen,
        pyramid: Option<&'a DepthPyramid>,
        view_proj: glam::Mat4,
        now_seen: &'a mut Vec<(EntityId, u32, u32)>,
        early: &'a HashSet<(EntityId, u32, u32), IdHash>,
    },
}

/// How clustered primitives are drawn this frame: the levels' view (`None`: full detail) and
/// the frustum clusters are culled against (`None`: culling off).
struct Clusters {
    lod: Option<LodView>,
    frustum: Option<Frustum>,
    /// Leave out facing groups that face away from the camera (single-sided materials only).
    facing: bool,
}

/// What the walk of a clustered primitive visits next (see [`FrameDraws::draw_primitive`]).
enum Part {
    Group(u32),
    Clusters(std::ops::Range<u32>),
}

/// Every facing group of a level drawn.
const ALL_FACINGS: u8 = (1 << FACING_GROUPS) - 1;

/// The facing groups of `level` that may face a camera at `eye` (in the mesh's space; `None`:
/// all of them), one bit per group.
fn facing_mask(level: &LodLevel, eye: Option<glam::Vec3>) -> u8 {
    let Some(eye) = eye else {
        return ALL_FACINGS;
    };
    level.facing.iter().enumerate().fold(0, |mask, (g, group)| {
        if group.faces_away(eye) {
            mask
        } else {
            mask | 1 << g
        }
    })
}

/// The index ranges of the groups of `level` in `mask`, neighbours merged; `left_out` counts
/// the triangles of the others.
fn facing_ranges(
    level: &LodLevel,
    mask: u8,
    left_out: &mut u64,
    mut emit: impl FnMut(std::ops::Range<u32>),
) {
    if !groups_tile(level) || mask == ALL_FACINGS {
        if level.count > 0 {
            emit(level.first..level.first + level.count);
        }
        return;
    }
    let mut run: Option<std::ops::Range<u32>> = None;
    for (g, group) in level.facing.iter().enumerate() {
        if group.count == 0 {
            continue;
        }
        if mask & 1 << g == 0 {
            *left_out += u64::from(group.count / 3);
            continue;
        }
        let range = group.first..group.first + group.count;
        match &mut run {
            Some(r) if r.end == range.start => r.end = range.end,
            _ => {
                if let Some(r) = run.replace(range) {
                    emit(r);
                }
            }
        }
    }
    if let Some(r) = run {
        emit(r);
    }
}

/// Whether the facing groups of `level` tile it: groups that do not (a level built by hand
/// without them) draw it whole.
fn groups_tile(level: &LodLevel) -> bool {
    level.facing.first().is_some_and(|g| g.first == level.first)
        && level.facing.iter().map(|g| u64::from(g.count)).sum::<u64>() == u64::from(level.count)
        && level
            .facing
            .windows(2)
            .all(|w| w[0].first + w[0].count == w[1].first)
}

/// Why a meshlet is not drawn, or that it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeshletFate {
    Drawn,
    FacesAway,
    OutOfView,
    /// Behind the depth the phase drawing it tests against (see [`RenderStats::meshlets_occluded`]).
    Hidden,
}

/// The meshlets of a clustered primitive one drawable draws: left out when every triangle
/// faces away from the camera (`eye`, in the mesh's space) or when they lie outside the view
/// (`frustum`, in the mesh's space); `None` turns either test off. (The near rounds and
/// phase 2 also leave out the ones hidden behind the depth they test against: see
/// `FrameDraws::draw_primitive`.)
fn meshlet_fate(m: &Meshlet, eye: Option<glam::Vec3>, frustum: Option<&Frustum>) -> MeshletFate {
    if eye.is_some_and(|e| m.faces_away(e)) {
        MeshletFate::FacesAway
    } else if frustum.is_some_and(|f| !f.may_see(&m.bounds)) {
        MeshletFate::OutOfView
    } else {
        MeshletFate::Drawn
    }
}

/// As [`facing_ranges`], and within each group drawn only its meshlets `fate` draws (a group
/// whose meshlets do not tile it draws whole). `left_out` counts the triangles facing away,
/// `culled` the meshlets left out, `hidden` those of them left out as hidden.
fn meshlet_ranges(
    level: &LodLevel,
    mask: u8,
    meshlets: &[Meshlet],
    fate: impl Fn(&Meshlet) -> MeshletFate,
    (left_out, culled, hidden): (&mut u64, &mut u32, &mut u32),
    mut emit: impl FnMut(std::ops::Range<u32>),
) {
    if !groups_tile(level) {
        facing_ranges(level, ALL_FACINGS, left_out, emit);
        return;
    }
    for (g, group) in level.facing.iter().enumerate() {
        if group.count == 0 {
            continue;
        }
        if mask & 1 << g == 0 {
            *left_out += u64::from(group.count / 3);
            continue;
        }
        let first = group.meshlet_first as usize;
        let own = meshlets
            .get(first..first.saturating_add(group.meshlet_count as usize))
            .filter(|own| meshlets_tile(own, group.first, group.count));
        let Some(own) = own else {
            emit(group.first..group.first + group.count);
            continue;
        };
        for m in own {
            match fate(m) {
                MeshletFate::Drawn => emit(m.first..m.first + m.count),
                MeshletFate::FacesAway => {
                    *left_out += u64::from(m.count / 3);
                    *culled += 1;
                }
                MeshletFate::OutOfView => *culled += 1,
                MeshletFate::Hidden => {
                    *culled += 1;
                    *hidden += 1;
                }
            }
        }
    }
}

/// Whether `meshlets` tile the index range of `count` indices from `first`, in order.
fn meshlets_tile(meshlets: &[Meshlet], first: u32, count: u32) -> bool {
    let mut at = u64::from(first);
    for m in meshlets {
        if u64::from(m.first) != at {
            return false;
        }
        at += u64::from(m.count);
    }
    !meshlets.is_empty() && at == u64::from(first) + u64::from(count)
}

/// Primitives whose facing groups a drawable's batch key holds (6 bits each). The masks are
/// part of the key, so instances of a mesh seen from different sides draw in separate
/// batches, each leaving out its own groups: on a software rasterizer a draw costs far less
/// than the vertices of a building's far side (the generated city: 7.6 fps against 6.4 with
/// no groups left out).
const KEYED_FACINGS: usize = 10;
const _: () = assert!(KEYED_FACINGS * FACING_GROUPS <= 64);

/// Whether primitive `p` of drawable `d` draws both faces (then no group may be left out).
fn double_sided(m: &crate::gpu_model::GpuModel, p: &GpuPrimitive, d: &Drawable) -> bool {
    m.materials
        .get(p.material_for(d.state.variant))
        .is_none_or(|mat| mat.double_sided)
}

/// The camera at `eye` (world) in drawable `d`'s mesh space: facing is decided there (an
/// affine map keeps which side of a plane a point is on; a mirroring one flips the winding and
/// the pipeline's front face together). A singular matrix gives a non-finite eye, which
/// leaves nothing out.
fn local_eye_of(d: &Drawable, eye: glam::Vec3) -> glam::Vec3 {
    d.world.inverse().transform_point3(eye)
}

/// Primitives whose levels a drawable's batch key holds.
const KEYED_PRIMITIVES: usize = 16;
/// A key's level of a primitive of several clusters that draws merged level `l` is
/// `MERGED + l` (single-cluster levels stay under it: at most 1 + MAX_COARSE_LEVELS).
const MERGED: usize = 8;
// Levels of one cluster stay under MERGED, and merged levels under 16 (4 bits).
const _: () = assert!(
    farview_scene::lod::MAX_COARSE_LEVELS < MERGED
        && MERGED + farview_scene::lod::MAX_COARSE_LEVELS < 16
);

impl FrameDraws {
    #[allow(clippy::too_many_arguments)]
    fn new(
        (mut drawables, mut bounds): (Vec<Drawable>, Vec<Aabb>),
        store: &GpuModelStore,
        batchable: impl Fn(&Drawable) -> bool,
        seen_before: impl Fn(&Drawable, Option<&Aabb>) -> bool,
        eye: glam::Vec3,
        shading: Shading,
        cutting: bool,
        clusters: Clusters,
    ) -> Self {
        // A negative determinant mirrors the mesh: its triangles wind clockwise on screen, so
        // it draws with other pipelines and never shares a batch with unmirrored instances.
        let is_mirrored = |d: &Drawable| d.world.determinant() < 0.0;
        // Instances of a mesh with the same state next to each other. States are told apart
        // by a linear search over the first few distinct ones (a scene has a handful: the
        // default and the overrides a client set); past those, a state sorts by itself.
        let mut states: Vec<DrawState> = Vec::new();
        let mut state_index = |s: &DrawState| match states.iter().position(|k| k == s) {
            Some(i) => i,
            None if states.len() < MAX_BATCH_STATES => {
                states.push(*s);
                states.len() - 1
            }
            None => MAX_BATCH_STATES,
        };
        // The level each single-cluster primitive draws at this drawable's distance, and the
        // facing groups of it that may face the camera. A primitive of several clusters far
        // enough for one of its merged levels draws that, as a single-cluster one draws a
        // level (keyed as MERGED + its index); otherwise its drawable draws cluster by
        // cluster, alone.
        let levels_of = |d: &Drawable, multi: &mut bool| {
            let Some(m) = store.get(d.model) else {
                return (0u64, 0u64);
            };
            let Some(prims) = m.meshes.get(d.mesh) else {
                return (0, 0);
            };
            let (mut key, mut facings) = (0u64, 0u64);
            // Only drawables with levels need the scale and the eye in their space (most of
            // a big scene has none).
            let mut scale = None;
            let mut local_eye = None;
            for (pi, p) in prims.iter().enumerate() {
                let Some(lod) = &p.lod else { continue };
                let (levels, level, keyed) = if let [c] = lod.clusters.as_slice() {
                    let level = match &clusters.lod {
                        Some(view) if pi < KEYED_PRIMITIVES => view.level(
                            &c.levels,
                            &c.bounds.transformed(&d.world),
                            *scale.get_or_insert_with(|| max_scale(&d.world)),
                        ),
                        _ => 0,
                    };
                    (&c.levels, level, level.min(15))
                } else {
                    let merged = match &clusters.lod {
                        Some(view) if pi < KEYED_PRIMITIVES => view.coarsest_within(
                            &lod.merged,
                            &lod.bounds.transformed(&d.world),
                            *scale.get_or_insert_with(|| max_scale(&d.world)),
                        ),
                        _ => None,
                    };
                    let Some(level) = merged.filter(|&l| MERGED + l < 16) else {
                        *multi = true;
                        continue;
                    };
                    (&lod.merged, level, MERGED + level)
                };
                // Past the keyed primitives every level is 0 (see above): nothing to key, and
                // nothing may spill into the last keyed primitive's bits.
                if pi < KEYED_PRIMITIVES {
                    key |= (keyed as u64) << (4 * pi);
                }
                if pi < KEYED_FACINGS {
                    let eye = (clusters.facing && !double_sided(m, p, d))
                        .then(|| *local_eye.get_or_insert_with(|| local_eye_of(d, eye)));
                    let mask = levels
                        .get(level)
                        .map_or(ALL_FACINGS, |l| facing_mask(l, eye));
                    facings |= u64::from(mask) << (FACING_GROUPS * pi);
                }
            }
            (key, facings)
        };
        // The keys are sorted with each drawable's index, and the drawables gathered after:
        // sorting the drawables themselves (a few hundred bytes each) moved them again and
        // again, a tenth of a million-node hierarchy's frame.
        let mut bounds_in = bounds.drain(..);
        let mut keys = Vec::with_capacity(drawables.len());
        let items: Vec<(Drawable, Option<Aabb>, bool)> = drawables
            .drain(..)
            .enumerate()
            .map(|(i, d)| {
                let mut multi = false;
                let (levels, facings) = levels_of(&d, &mut multi);
                let b = bounds_in.next();
                let first = seen_before(&d, b.as_ref());
                let key = (
                    d.model,
                    d.mesh,
                    is_mirrored(&d),
                    state_index(&d.state),
                    levels,
                    facings,
                    first,
                );
                keys.push((key, i));
                (d, b, multi)
            })
            .collect();
        drop(bounds_in);
        // The index breaks ties: a scene's order is kept within each batch.
        keys.sort_unstable();
        let levels: Vec<u64> = keys.iter().map(|(k, _)| k.4).collect();
        let facings: Vec<u64> = keys.iter().map(|(k, _)| k.5).collect();
        let first: Vec<bool> = keys.iter().map(|(k, _)| k.6).collect();
        let mut multi = Vec::with_capacity(keys.len());
        for &(_, i) in &keys {
            if let Some(&(d, b, m)) = items.get(i) {
                drawables.push(d);
                bounds.extend(b);
                multi.push(m);
            }
        }
        let mirrored: Vec<bool> = drawables.iter().map(is_mirrored).collect();
        // Transmissive materials read their entity's scale from the batch's uniform, and a
        // skinned or morphed entity draws its own posed vertex buffer (posed on the GPU or the
        // CPU): neither shares a draw.
        let shareable = |i: usize, d: &Drawable| {
            batchable(d)
                && !multi[i]
                && store.get(d.model).is_some_and(|m| {
                    m.meshes.get(d.mesh).is_some_and(|prims| {
                        prims.iter().all(|p| {
                            m.materials
                                .get(p.material_for(d.state.variant))
                                .is_none_or(|mat| !mat.transmissive)
                        })
                    })
                })
        };
        let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
        let mut batch_of = Vec::with_capacity(drawables.len());
        let mut open = false;
        for (i, d) in drawables.iter().enumerate() {
            let joins = open
                && batches.last().is_some_and(|b| {
                    let head = &drawables[b.start];
                    head.model == d.model
                        && head.mesh == d.mesh
                        && mirrored[b.start] == mirrored[i]
                        && head.state == d.state
                        && levels[b.start] == levels[i]
                        && facings[b.start] == facings[i]
                        && first[b.start] == first[i]
                });
            let share = shareable(i, d);
            match batches.last_mut() {
                Some(b) if joins && share => b.end = i + 1,
                _ => batches.push(i..i + 1),
            }
            open = share;
            batch_of.push((batches.len() - 1) as u32);
        }
        let depth = |d: &Drawable| (d.world.w_axis.truncate() - eye).length_squared();
        // Only drawables with something blended are drawn far to near (sorting a million
        // opaque boxes every frame for nothing costs more than drawing them).
        let blends = |d: &Drawable| {
            d.state.see_through
                || store.get(d.model).is_some_and(|m| {
                    m.meshes.get(d.mesh).is_some_and(|prims| {
                        prims.iter().any(|p| {
                            m.materials
                                .get(p.material_for(d.state.variant))
                                .is_some_and(|mat| mat.blend)
                        })
                    })
                })
        };
        let mut far_to_near: Vec<usize> = (0..drawables.len())
            .filter(|&i| blends(&drawables[i]))
            .collect();
        far_to_near.sort_by(|&a, &b| depth(&drawables[b]).total_cmp(&depth(&drawables[a])));
        let visible = vec![true; drawables.len()];
        Self {
            drawables,
            bounds,
            first,
            multi,
            visible,
            early: Vec::new(),
            near: Vec::new(),
            near_limits: Vec::new(),
            near_distance: Vec::new(),
            mirrored,
            batches,
            batch_of,
            far_to_near,
            shading,
            cutting,
            levels,
            facings,
            eye,
            clusters,
        }
    }

    /// Draws primitive `pi` of drawable `i` (`count` instances from it): whole, at the level
    /// its batch chose, or cluster by cluster (each culled and at its own level; runs of
    /// neighbouring full-detail clusters in one call).
    fn draw_primitive(
        &self,
        pass: &mut wgpu::RenderPass<'_>,
        (i, pi, p, double_sided): (usize, usize, &GpuPrimitive, bool),
        count: u32,
        blended_pass: bool,
        phase: &mut Phase<'_>,
        stats: &mut RenderStats,
    ) {
        // Whole primitives draw in the phase their drawable's is in; the runs handed in were
        // chosen by it, except a clustered drawable's, which both phases visit.
        let first = self.first.get(i).copied().unwrap_or(false);
        let early = self.early.get(i).copied().unwrap_or(false);
        let whole = match phase {
            Phase::All { .. } => true,
            Phase::First { .. } => first,
            Phase::Near { .. } => self.near.get(i).copied().unwrap_or(false),
            Phase::Second { .. } => blended_pass || !(first || early),
        };
        let mut draw = |range: std::ops::Range<u32>, stats: &mut RenderStats| {
            pass.draw_indexed(range.clone(), 0, 0..count);
            stats.draws += 1;
            stats.instances += count;
            stats.triangles += u64::from(range.len() as u32 / 3) * u64::from(count);
        };
        let Some(lod) = &p.lod else {
            if whole {
                draw(0..p.index_count, stats);
            }
            return;
        };
        let keyed = if pi < KEYED_PRIMITIVES {
            (self.levels.get(i).copied().unwrap_or(0) >> (4 * pi) & 15) as usize
        } else {
            0
        };
        // One range: a level of the only cluster, or a merged level of several.
        let one = match lod.clusters.as_slice() {
            [cluster] => Some(cluster.levels.get(keyed).or(cluster.levels.first())),
            _ if keyed >= MERGED => Some(lod.merged.get(keyed - MERGED)),
            _ => None,
        };
        if let Some(l) = one {
            if !whole {
                return;
            }
            let level = keyed;
            let mask = if pi < KEYED_FACINGS {
                (self.facings.get(i).copied().unwrap_or(u64::MAX) >> (FACING_GROUPS * pi)) as u8
                    & ALL_FACINGS
            } else {
                ALL_FACINGS
            };
            if let Some(l) = l {
                stats.coarse_draws += u32::from(level > 0);
                stats.merged_draws += u32::from(level >= MERGED && lod.clusters.len() > 1);
                let mut left_out = 0;
                facing_ranges(l, mask, &mut left_out, |r| draw(r, stats));
                stats.faced_away += left_out * u64::from(count);
            }
            return;
        }
        let Some(d) = self.drawables.get(i) else {
            return;
        };
        let scale = max_scale(&d.world);
        let local_eye = (self.clusters.facing && !double_sided).then(|| local_eye_of(d, self.eye));
        // Meshlets are tested in the mesh's space: one matrix product per drawable, none per
        // meshlet.
        let local_frustum = self.clusters.frustum.map(|f| f.in_space_of(&d.world));
        let mut run: Option<std::ops::Range<u32>> = None;
        let mut emit = |range: std::ops::Range<u32>, stats: &mut RenderStats| match &mut run {
            Some(r) if r.end == range.start => r.end = range.end,
            _ => {
                if let Some(r) = run.replace(range) {
                    draw(r, stats);
                }
            }
        };
        // The depth this phase tests against (the near rounds' and phase 2's), which also
        // hides meshlets of the clusters they draw.
        let hiding = match &*phase {
            Phase::Near {
                pyramid, view_proj, ..
            } => Some((*pyramid, *view_proj)),
            Phase::Second {
                pyramid: Some(pyramid),
                view_proj,
                ..
            } => Some((*pyramid, *view_proj)),
            _ => None,
        };
        // Whether a part (cluster or group) in view with `key` and world `bounds` is drawn in
        // this phase: in phase 1 if seen last frame, in phase 2 if not hidden and not drawn
        // in phase 1.
        let mut drawn_now =
            |key: (EntityId, u32, u32), bounds: &Aabb, stats: &mut RenderStats| match &mut *phase {
                Phase::All { .. } => true,
                Phase::First { seen } => seen.first(seen.clusters.contains(&key), Some(bounds)),
                Phase::Near {
                    seen,
                    pyramid,
                    view_proj,
                    limit,
                    drawn,
                    early,
                } => {
                    let near = !early.contains(&key)
                        && !seen.first(seen.clusters.contains(&key), Some(bounds))
                        && distance_to(self.eye, bounds) <= *limit
                        && pyramid.may_see(view_proj, bounds);
                    if near {
                        drawn.push(key);
                    }
                    near
                }
                Phase::Second { early, .. } if early.contains(&key) => false,
                Phase::Second {
                    seen,
                    pyramid,
                    view_proj,
                    now_seen,
                    ..
                } => {
                    let visible = pyramid.is_none_or(|p| p.may_see(view_proj, bounds));
                    if visible {
                        now_seen.push(key);
                    } else if !blended_pass {
                        stats.occluded += 1;
                    }
                    visible
                        && (blended_pass || !seen.first(seen.clusters.contains(&key), Some(bounds)))
                }
            };
        let in_view = |bounds: &Aabb| {
            self.clusters
                .frustum
                .as_ref()
                .is_none_or(|f| f.may_see(bounds))
        };
        // The groups under the root, walked down to the clusters where no level of a group
        // is within the budget (or every cluster, when there are none).
        let clusters = lod.clusters.len() as u32;
        let mut walk: Vec<Part> = if lod.top.is_empty() {
            vec![Part::Clusters(0..clusters)]
        } else {
            lod.top.clone().rev().map(Part::Group).collect()
        };
        while let Some(part) = walk.pop() {
            let g = match part {
                Part::Group(g) => g,
                Part::Clusters(range) => {
                    for ci in range {
                        let Some(c) = lod.clusters.get(ci as usize) else {
                            continue;
                        };
                        let bounds = c.bounds.transformed(&d.world);
                        if !in_view(&bounds) {
                            stats.clusters_culled += 1;
                            continue;
                        }
                        if !drawn_now((d.entity, pi as u32, ci), &bounds, stats) {
                            continue;
                        }
                        let level = self
                            .clusters
                            .lod
                            .as_ref()
                            .map_or(0, |v| v.level(&c.levels, &bounds, scale));
                        let Some(l) = c.levels.get(level) else {
                            continue;
                        };
                        stats.coarse_draws += u32::from(level > 0);
                        let (mut left_out, mut meshlets_culled, mut hidden) = (0, 0, 0);
                        meshlet_ranges(
                            l,
                            facing_mask(l, local_eye),
                            &lod.meshlets,
                            |m| match meshlet_fate(m, local_eye, local_frustum.as_ref()) {
                                MeshletFate::Drawn
                                    if hiding.is_some_and(|(p, vp)| {
                                        !p.may_see(&vp, &m.bounds.transformed(&d.world))
                                    }) =>
                                {
                                    MeshletFate::Hidden
                                }
                                fate => fate,
                            },
                            (&mut left_out, &mut meshlets_culled, &mut hidden),
                            |range| emit(range, stats),
                        );
                        stats.faced_away += left_out;
                        stats.meshlets_culled += meshlets_culled;
                        stats.meshlets_occluded += hidden;
                    }
                    continue;
                }
            };
            let Some(group) = lod.groups.get(g as usize) else {
                continue;
            };
            let bounds = group.bounds.transformed(&d.world);
            if !in_view(&bounds) {
                stats.clusters_culled += group.clusters.len() as u32;
                continue;
            }
            let level = self
                .clusters
                .lod
                .as_ref()
                .and_then(|v| v.coarsest_within(&group.levels, &bounds, scale));
            let Some(l) = level.and_then(|level| group.levels.get(level)) else {
                // Drawn as its parts.
                if group.children.is_empty() {
                    walk.push(Part::Clusters(group.clusters.clone()));
                } else {
                    walk.extend(group.children.clone().rev().map(Part::Group));
                }
                continue;
            };
            // Groups are keyed after the clusters.
            if !drawn_now((d.entity, pi as u32, clusters + g), &bounds, stats) {
                continue;
            }
            stats.coarse_draws += 1;
            stats.merged_draws += 1;
            let mut left_out = 0;
            facing_ranges(l, facing_mask(l, local_eye), &mut left_out, |range| {
                emit(range, stats)
            });
            stats.faced_away += left_out;
        }
        if let Some(r) = run {
            draw(r, stats);
        }
    }

    /// The runs of drawables one pass of `phase` draws: opaque ones batch by batch (in phase 2,
    /// the visible ones of each batch not drawn in phase 1 or the near phase), blended ones one
    /// at a time, far to near.
    fn runs(&self, blended_pass: bool, phase: &Phase<'_>) -> Vec<std::ops::Range<usize>> {
        let visible = |i: usize| self.visible.get(i).copied().unwrap_or(true);
        if blended_pass {
            return self
                .far_to_near
                .iter()
                .filter(|&&i| visible(i))
                .map(|&i| i..i + 1)
                .collect();
        }
        let flag = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
        let mut runs = match phase {
            Phase::All { .. } => self.batches.clone(),
            Phase::First { .. } => self
                .batches
                .iter()
                .filter(|b| flag(&self.first, b.start) || flag(&self.multi, b.start))
                .cloned()
                .collect(),
            // Runs of the instances of each batch drawn in this phase, each its own draw from
            // its first instance; a clustered drawable's batch whole (its clusters choose).
            Phase::Near { .. } => self.runs_where(|i| flag(&self.near, i)),
            Phase::Second { .. } => {
                self.runs_where(|i| visible(i) && !flag(&self.first, i) && !flag(&self.early, i))
            }
        };
        if self.bounds.len() == self.drawables.len() {
            order_near_to_far(&mut runs, &self.bounds, self.eye);
        }
        runs
    }

    /// The runs of consecutive instances of each batch that `drawn` picks, and the batches of
    /// clustered drawables in view whole.
    fn runs_where(&self, drawn: impl Fn(usize) -> bool) -> Vec<std::ops::Range<usize>> {
        let mut runs = Vec::new();
        for b in &self.batches {
            if self.multi.get(b.start).copied().unwrap_or(false) {
                if self.visible.get(b.start).copied().unwrap_or(true) {
                    runs.push(b.clone());
                }
                continue;
            }
            let mut open: Option<std::ops::Range<usize>> = None;
            for i in b.clone() {
                match (&mut open, drawn(i)) {
                    (Some(r), true) => r.end = i + 1,
                    (None, true) => open = Some(i..i + 1),
                    (Some(_), false) => runs.extend(open.take()),
                    (None, false) => {}
                }
            }
            runs.extend(open);
        }
        runs
    }

    /// Prepares near round `round` (see [`NEAR_ROUND_SHARES`]) when phase 1 drew little of
    /// what is in view ([`NEAR_PHASE_MIN_DRAWABLES`]): marks in [`Self::near`] (and
    /// [`Self::early`]) the drawables phase 2 would still draw (not drawn first or in an
    /// earlier round, not hidden) within the round's reach, those of several clusters aside,
    /// and returns that reach: clusters within it go in the round too. The reaches are the
    /// distances of the nearest shares of what was pending at round 0. `None`: no such round.
    fn mark_near(&mut self, eye: glam::Vec3, round: usize) -> Option<f32> {
        if self.bounds.len() != self.drawables.len() {
            return None;
        }
        let flag = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
        let pending_at =
            |i: usize| flag(&self.visible, i) && !flag(&self.first, i) && !flag(&self.early, i);
        let n = self.drawables.len();
        if round == 0 {
            // Counted first: most frames stop here, before any distance is measured.
            let (mut pending, mut firsts) = (0, 0);
            for i in 0..n {
                if flag(&self.first, i) {
                    firsts += 1;
                } else if pending_at(i) {
                    pending += 1;
                }
            }
            if pending < NEAR_PHASE_MIN_DRAWABLES || pending < 2 * firsts {
                return None;
            }
            // What is pending later was pending now (depth only grows, so `visible` only
            // shrinks): these distances serve every round.
            self.near_distance = (0..n)
                .map(|i| {
                    if pending_at(i) {
                        distance_to(eye, &self.bounds[i])
                    } else {
                        f32::INFINITY
                    }
                })
                .collect();
            let mut nearest: Vec<f32> = self
                .near_distance
                .iter()
                .copied()
                .filter(|d| d.is_finite())
                .collect();
            // The k-th nearest for each share, farthest reach first, each selected within the
            // part before the last (linear, not a sort of a million distances).
            let last = nearest.len().checked_sub(1)?;
            let mut limits = [f32::INFINITY; NEAR_ROUND_SHARES.len()];
            let mut part = nearest.as_mut_slice();
            for (limit, share) in limits.iter_mut().zip(NEAR_ROUND_SHARES).rev() {
                let k = (last + 1) / share;
                let k = k.min(part.len().saturating_sub(1));
                let (_, &mut at, _) = part.select_nth_unstable_by(k, f32::total_cmp);
                *limit = at;
                part = &mut part[..=k];
            }
            self.near_limits = limits.to_vec();
        }
        let limit = *self.near_limits.get(round)?;
        self.near = (0..n)
            .map(|i| {
                pending_at(i)
                    && !flag(&self.multi, i)
                    && self.near_distance.get(i).is_some_and(|&d| d <= limit)
            })
            .collect();
        self.early.resize(n, false);
        for (e, &m) in self.early.iter_mut().zip(&self.near) {
            *e |= m;
        }
        Some(limit)
    }

    /// Tests every drawable against `pyramid` (phase 1's depth); `None` leaves all visible.
    /// Selected ones stay visible (their outline may show around what hides them). Returns how
    /// many are hidden.
    fn test_visibility(&mut self, pyramid: Option<&DepthPyramid>, view_proj: &glam::Mat4) -> u32 {
        let Some(pyramid) = pyramid else {
            return 0;
        };
        let mut hidden = 0;
        for (i, d) in self.drawables.iter().enumerate() {
            let visible = d.state.selected
                || self
                    .bounds
                    .get(i)
                    .is_none_or(|b| pyramid.may_see(view_proj, b));
            if let Some(v) = self.visible.get_mut(i) {
                *v = visible;
            }
            // (Drawn in the near phase and hidden behind another since: not left out.)
            hidden += u32::from(!visible && !self.early.get(i).copied().unwrap_or(false));
        }
        hidden
    }

    /// Dynamic offset of the uniform block drawable `i` draws with (its batch's).
    fn uniform_offset(&self, i: usize, stride: usize) -> u32 {
        let batch = self.batch_of.get(i).copied().unwrap_or(0) as usize;
        (batch * stride) as u32
    }

    /// The pipeline drawable `i` draws `material` with.
    fn key(&self, i: usize, material: &GpuMaterial) -> PipelineKey {
        let d = &self.drawables[i];
        PipelineKey {
            variant: ShaderVariant::for_material(
                self.shading,
                material.layered,
                material.fast_textured,
            ),
            double_sided: material.double_sided,
            blended: d.state.see_through || material.blend,
            mirrored: self.mirrored.get(i).copied().unwrap_or(false),
            clip: self.cutting || material.mask,
        }
    }
}

/// What a mesh pass of the occlusion-culled frame draws into, and how it starts.
#[derive(Clone, Copy)]
struct PassOf<'a> {
    targets: &'a FrameTargets,
    look: &'a FrameLook<'a>,
    environment: &'a EnvironmentBinding,
    load: PassLoad,
}

/// Reduces the depth drawn so far into [`Slot::Mid`], submits what `encoder` holds (the frame
/// goes on in a new encoder) and waits for the pyramid of the `(width, height)` frame: the wait
/// in the middle of an occlusion-culled frame.
fn depth_so_far(
    ctx: &GpuContext,
    reduce: &mut DepthReduce,
    encoder: &mut wgpu::CommandEncoder,
    targets: &FrameTargets,
    (width, height): (u32, u32),
) -> Option<DepthPyramid> {
    let device = ctx.device();
    reduce.encode(device, encoder, targets, Slot::Mid);
    let so_far = std::mem::replace(
        encoder,
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("frame, after a wait for depth"),
        }),
    );
    let submission = ctx.queue().submit([so_far.finish()]);
    reduce.read(ctx, submission, width, height)
}

/// How a mesh pass starts and what it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassLoad {
    /// Colour cleared to the background, depth and stencil cleared and dropped at the end.
    Clear,
    /// As `Clear`, but depth and stencil are kept for a pass that continues the frame.
    ClearAndKeep,
    /// Continues what the pass before drew, and keeps depth and stencil: the frame's final
    /// depth may be reduced after it (see [`crate::occlusion`]).
    Continue,
}

/// A mesh pass over `view` (and its resolve target).
fn begin_mesh_pass<'e>(
    encoder: &'e mut wgpu::CommandEncoder,
    label: &'static str,
    (view, resolve_target): (&wgpu::TextureView, Option<&wgpu::TextureView>),
    depth_view: &wgpu::TextureView,
    background: glam::Vec3,
    load: PassLoad,
) -> wgpu::RenderPass<'e> {
    let clear = load != PassLoad::Continue;
    let keep = if load != PassLoad::Clear {
        wgpu::StoreOp::Store
    } else {
        wgpu::StoreOp::Discard
    };
    encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
        label: Some(label),
        color_attachments: &[Some(wgpu::RenderPassColorAttachment {
            view,
            depth_slice: None,
            resolve_target,
            ops: wgpu::Operations {
                load: if clear {
                    wgpu::LoadOp::Clear(wgpu::Color {
                        r: background.x.into(),
                        g: background.y.into(),
                        b: background.z.into(),
                        a: 1.0,
                    })
                } else {
                    wgpu::LoadOp::Load
                },
                store: wgpu::StoreOp::Store,
            },
        })],
        depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
            view: depth_view,
            depth_ops: Some(wgpu::Operations {
                load: if clear {
                    wgpu::LoadOp::Clear(1.0)
                } else {
                    wgpu::LoadOp::Load
                },
                store: keep,
            }),
            stencil_ops: Some(wgpu::Operations {
                load: if clear {
                    wgpu::LoadOp::Clear(0)
                } else {
                    wgpu::LoadOp::Load
                },
                store: keep,
            }),
        }),
        timestamp_writes: None,
        occlusion_query_set: None,
        multiview_mask: None,
    })
}

/// What group 0 binds besides the globals when no transmission frame exists: a 1x1 texture, and
/// the sampler of the transmission frame.
struct BehindBinding {
    placeholder: wgpu::TextureView,
    sampler: wgpu::Sampler,
}

impl BehindBinding {
    fn new(device: &wgpu::Device) -> Self {
        let placeholder = device
            .create_texture(&wgpu::TextureDescriptor {
                label: Some("no transmission frame"),
                size: wgpu::Extent3d {
                    width: 1,
                    height: 1,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: COLOR_FORMAT,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            })
            .create_view(&Default::default());
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("transmission frame"),
            address_mode_u: wgpu::AddressMode::ClampToEdge,
            address_mode_v: wgpu::AddressMode::ClampToEdge,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            mipmap_filter: wgpu::MipmapFilterMode::Linear,
            ..Default::default()
        });
        Self {
            placeholder,
            sampler,
        }
    }
}

/// One globals uniform buffer and its group-0 bind group.
struct FrameGlobals {
    buffer: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl FrameGlobals {
    fn new(
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        behind: &BehindBinding,
        frame: Option<&wgpu::TextureView>,
    ) -> Self {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("globals"),
            size: std::mem::size_of::<Globals>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("globals"),
            layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(
                        frame.unwrap_or(&behind.placeholder),
                    ),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Sampler(&behind.sampler),
                },
            ],
        });
        Self { buffer, bind_group }
    }
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

/// The shared parts of every mesh pipeline.
struct PipelineParts {
    shader: wgpu::ShaderModule,
    layout: wgpu::PipelineLayout,
    samples: u32,
}

/// One mesh pipeline. `mirrored` draws (a world transform with a negative determinant) wind
/// their triangles the other way round, so their front faces are clockwise.
fn make_pipeline(
    device: &wgpu::Device,
    parts: &PipelineParts,
    key: PipelineKey,
) -> wgpu::RenderPipeline {
    let PipelineKey {
        variant,
        double_sided,
        blended: see_through,
        mirrored,
        clip,
    } = key;
    let (shader, layout) = (&parts.shader, &parts.layout);
    let multisample = wgpu::MultisampleState {
        count: parts.samples,
        ..Default::default()
    };
    // Every mesh draw writes the stencil reference (1: selected) where it passes depth.
    let stencil_write = wgpu::StencilFaceState {
        compare: wgpu::CompareFunction::Always,
        fail_op: wgpu::StencilOperation::Keep,
        depth_fail_op: wgpu::StencilOperation::Keep,
        pass_op: wgpu::StencilOperation::Replace,
    };
    {
        let (vs, fs) = variant.entry_points(clip);
        device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("mesh"),
            layout: Some(layout),
            vertex: wgpu::VertexState {
                module: shader,
                entry_point: Some(vs),
                compilation_options: Default::default(),
                buffers: &[
                    Some(crate::gpu_model::Vertex::layout()),
                    Some(InstanceData::layout()),
                ],
            },
            primitive: wgpu::PrimitiveState {
                topology: wgpu::PrimitiveTopology::TriangleList,
                front_face: if mirrored {
                    wgpu::FrontFace::Cw
                } else {
                    wgpu::FrontFace::Ccw
                },
                cull_mode: (!double_sided).then_some(wgpu::Face::Back),
                ..Default::default()
            },
            depth_stencil: Some(wgpu::DepthStencilState {
                format: DEPTH_FORMAT,
                // See-through draws are blended after the opaque ones and do not hide
                // what lies behind them.
                depth_write_enabled: Some(!see_through),
                depth_compare: Some(wgpu::CompareFunction::Less),
                stencil: wgpu::StencilState {
                    front: stencil_write,
                    back: stencil_write,
                    read_mask: 0xff,
                    write_mask: 0xff,
                },
                bias: Default::default(),
            }),
            multisample,
            fragment: Some(wgpu::FragmentState {
                module: shader,
                entry_point: Some(fs),
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
    }
}

/// Orders runs of drawables by their nearest drawable's distance from `eye`, nearest first
/// (ties keep their order). For opaque runs: the rasterizer tests depth before it shades, so what
/// a nearer run already covers costs no shading when a farther one is drawn behind it (5 to 10 %
/// of the city's frame on llvmpipe).
fn order_near_to_far(runs: &mut [std::ops::Range<usize>], bounds: &[Aabb], eye: glam::Vec3) {
    let mut keyed: Vec<(f32, std::ops::Range<usize>)> = runs
        .iter()
        .map(|r| {
            let near = bounds
                .get(r.clone())
                .unwrap_or_default()
                .iter()
                .map(|b| distance_to(eye, b))
                .fold(f32::INFINITY, f32::min);
            (near, r.clone())
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (slot, (_, r)) in runs.iter_mut().zip(keyed) {
        *slot = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs go nearest first by their nearest member; equal distances keep their order, and a
    /// run past the bounds sorts last instead of panicking.
    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn runs_are_ordered_nearest_first_by_their_nearest_member() {
        let at = |x: f32| Aabb {
            min: glam::Vec3::new(x, -1.0, -1.0),
            max: glam::Vec3::new(x + 1.0, 1.0, 1.0),
        };
        // Drawables at x = 10, 2, 30, 5, 2, 40.
        let bounds = [at(10.0), at(2.0), at(30.0), at(5.0), at(2.0), at(40.0)];
        let mut runs = vec![0..1, 2..4, 1..2, 4..5, 5..6, 6..7];
        order_near_to_far(&mut runs, &bounds, glam::Vec3::ZERO);
        // 2..4 reaches x = 5: after both drawables at 2 (in their given order), before 10.
        assert_eq!(runs, vec![1..2, 4..5, 2..4, 0..1, 5..6, 6..7]);
    }

    /// At fast shading, a material the fast path samples no texture of draws with the plain
    /// variant (everything lit at the vertices), any other with the textured one; the full
    /// shadings never use either.
    #[test]
    fn untextured_materials_draw_plain_at_fast_shading_only() {
        use ShaderVariant::*;
        let pick = ShaderVariant::for_material;
        assert_eq!(pick(Shading::Fast, false, false), FastPlain);
        assert_eq!(pick(Shading::Fast, true, false), FastPlain);
        assert_eq!(pick(Shading::Fast, false, true), Fast);
        assert_eq!(pick(Shading::Full, false, false), Standard);
        assert_eq!(pick(Shading::Full, true, true), Layered);
        for v in ShaderVariant::ALL {
            assert_eq!(v.used_by(Shading::Fast), matches!(v, Fast | FastPlain));
        }
    }

    /// A level's facing groups in `mask` draw as runs of neighbours; all six, or groups that do
    /// not tile the level, draw it whole.
    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn facing_ranges_merge_neighbours_and_fall_back_to_the_whole_level() {
        let mut level = LodLevel {
            first: 30,
            count: 60,
            error: 0.0,
            facing: Default::default(),
        };
        let ranges = |level: &LodLevel, mask: u8| {
            let (mut out, mut left_out) = (Vec::new(), 0);
            facing_ranges(level, mask, &mut left_out, |r| out.push(r));
            (out, left_out)
        };
        // Not tiled: whole.
        assert_eq!(ranges(&level, 0b000001), (vec![30..90], 0));
        for (g, group) in level.facing.iter_mut().enumerate() {
            group.first = 30 + 9 * g as u32;
            group.count = if g == 5 { 15 } else { 9 };
        }
        assert_eq!(ranges(&level, ALL_FACINGS), (vec![30..90], 0));
        assert_eq!(ranges(&level, 0b010011), (vec![30..48, 66..75], 3 + 3 + 5));
        assert_eq!(ranges(&level, 0), (vec![], 20));
    }

    /// Within the groups drawn, a meshlet goes by its fate; a group whose meshlets do not
    /// tile it draws whole.
    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn meshlet_ranges_follow_each_meshlets_fate_within_groups_drawn() {
        let mut level = LodLevel {
            first: 0,
            count: 36,
            error: 0.0,
            facing: Default::default(),
        };
        // Groups 0 and 1 of 18 indices each, three meshlets of 6 in each.
        let meshlets: Vec<Meshlet> = (0..6)
            .map(|k| Meshlet {
                first: 6 * k,
                count: 6,
                ..Default::default()
            })
            .collect();
        for (g, group) in level.facing.iter_mut().take(2).enumerate() {
            group.first = 18 * g as u32;
            group.count = 18;
            group.meshlet_first = 3 * g as u32;
            group.meshlet_count = 3;
        }
        for empty in &mut level.facing[2..] {
            empty.first = 36;
        }
        // Meshlet 1 faces away, 4 is out of view.
        let fate = |m: &Meshlet| match m.first / 6 {
            1 => MeshletFate::FacesAway,
            4 => MeshletFate::OutOfView,
            _ => MeshletFate::Drawn,
        };
        let ranges = |level: &LodLevel, meshlets: &[Meshlet], mask: u8| {
            let (mut out, mut left_out, mut culled) = (Vec::new(), 0, 0);
            meshlet_ranges(
                level,
                mask,
                meshlets,
                fate,
                (&mut left_out, &mut culled, &mut 0),
                |r| out.push(r),
            );
            (out, left_out, culled)
        };
        assert_eq!(
            ranges(&level, &meshlets, ALL_FACINGS),
            (vec![0..6, 12..18, 18..24, 30..36], 2, 2)
        );
        // Group 1 left out whole: its meshlets are not looked at.
        assert_eq!(
            ranges(&level, &meshlets, 0b01),
            (vec![0..6, 12..18], 6 + 2, 1)
        );
        // Meshlets that do not tile their group (one missing): the group draws whole.
        let mut gap = meshlets.clone();
        gap[4].first = 25;
        assert_eq!(
            ranges(&level, &gap, ALL_FACINGS),
            (vec![0..6, 12..18, 18..36], 2, 1)
        );
        // Groups that do not tile the level: the level draws whole.
        level.facing[1].count = 12;
        assert_eq!(ranges(&level, &meshlets, ALL_FACINGS), (vec![0..36], 0, 0));
    }
}
