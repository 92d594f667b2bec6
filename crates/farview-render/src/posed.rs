//! Vertex buffers of skinned and morphed meshes in their current pose, one per (entity,
//! primitive), prepared before the frame's draws and reused while their size holds. Buffers of
//! entities no longer drawn are dropped at the end of the frame.
//!
//! Two ways to fill them:
//! - on the GPU (where the device runs compute shaders): the entity's joint matrices and morph
//!   weights ([`farview_scene::Scene::deform_inputs`], a few kilobytes) are written once per
//!   pose, and `shaders/deform.wgsl` poses every vertex from the primitive's bind pose and its
//!   `DeformSource`;
//! - from the CPU: the scene's posed positions, normals and tangents
//!   ([`farview_scene::Scene::deformation`]) are interleaved and uploaded, the whole vertex
//!   buffer per pose.

use std::collections::HashMap;

use farview_scene::{DeformInputs, Drawable, EntityId, Scene};

use crate::gpu_model::{GpuPrimitive, Vertex};
use crate::models::GpuModelStore;
use crate::shaders::DEFORM_SHADER;

/// Invocations per workgroup of `cs_deform`.
const WORKGROUP: u32 = 64;

struct PosedBuffer {
    buffer: wgpu::Buffer,
    /// The scene's deformation revision posed into it.
    revision: u64,
    /// Drawn in the current frame.
    used: bool,
    /// Written by the deform pass (a storage buffer), else by uploads from the CPU.
    storage: bool,
    /// The deform pass's bindings for it (`None` until made, or when its pose buffer changed).
    bind_group: Option<wgpu::BindGroup>,
}

/// An entity's joint matrices and weights on the GPU.
struct PoseBuffer {
    buffer: wgpu::Buffer,
    revision: u64,
    used: bool,
    /// Where the weights start, in vec4 units.
    weights_offset: u32,
}

/// Dispatch parameters of one primitive (`Params` in `shaders/deform.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DeformParams {
    vertex_count: u32,
    target_count: u32,
    joint_count: u32,
    skinned: u32,
    targets_offset: u32,
    weights_offset: u32,
    row: u32,
    _pad: u32,
}

/// The compute pipeline that poses vertices.
struct DeformPass {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    max_groups: u32,
}

/// Posed vertex buffers of one renderer.
pub(crate) struct PosedVertices {
    buffers: HashMap<(EntityId, usize), PosedBuffer>,
    poses: HashMap<EntityId, PoseBuffer>,
    scratch: Vec<Vertex>,
    pose_scratch: Vec<[f32; 4]>,
    /// `None` where the device has no compute shaders (everything is posed on the CPU).
    gpu: Option<DeformPass>,
    /// Pose on the GPU where possible (on by default; off only to compare).
    use_gpu: bool,
}

/// What one frame's preparation did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Prepared {
    /// Bytes written to the GPU (posed vertices from the CPU, joint matrices and weights).
    pub(crate) bytes: u64,
    /// Vertices posed by the deform pass.
    pub(crate) gpu_vertices: u64,
}

impl PosedVertices {
    pub(crate) fn new(device: &wgpu::Device, compute: bool) -> Self {
        Self {
            buffers: HashMap::new(),
            poses: HashMap::new(),
            scratch: Vec::new(),
            pose_scratch: Vec::new(),
            gpu: compute.then(|| DeformPass::new(device)),
            use_gpu: true,
        }
    }

    /// Poses on the GPU where possible, or not; every pose is made again the other way.
    pub(crate) fn set_use_gpu(&mut self, on: bool) {
        if self.use_gpu != on {
            self.use_gpu = on;
            self.buffers.clear();
            self.poses.clear();
        }
    }

    /// Whether primitives with a deform source are posed on the GPU.
    pub(crate) fn poses_on_gpu(&self) -> bool {
        self.gpu.is_some() && self.use_gpu
    }

    /// Poses what changed for this frame's drawables: deform passes recorded into `encoder`,
    /// CPU poses uploaded.
    pub(crate) fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        scene: &Scene,
        drawables: &[Drawable],
        store: &GpuModelStore,
    ) -> Prepared {
        let mut done = Prepared::default();
        let mut dispatches: Vec<(EntityId, usize, u32)> = Vec::new();
        for d in drawables.iter().filter(|d| d.deformable) {
            let Some(inputs) = scene.deform_inputs(d.entity) else {
                continue;
            };
            let Some(gpu_prims) = store.get(d.model).and_then(|g| g.meshes.get(d.mesh)) else {
                continue;
            };
            for (gi, gp) in gpu_prims.iter().enumerate() {
                let key = (d.entity, gi);
                if let Some(b) = self.buffers.get_mut(&key)
                    && b.revision == inputs.revision
                {
                    b.used = true;
                    continue;
                }
                let on_gpu = self.poses_on_gpu() && gp.deform.is_some();
                if on_gpu {
                    done.bytes += self.write_pose(device, queue, d.entity, &inputs);
                    if let Some(groups) = self.bind_gpu(device, key, gp, &inputs) {
                        dispatches.push((d.entity, gi, groups));
                        done.gpu_vertices +=
                            u64::from(gp.deform.as_ref().map_or(0, |s| s.vertex_count));
                    }
                } else {
                    done.bytes += self.upload_cpu(device, queue, scene, d, key, gp);
                }
                if let Some(b) = self.buffers.get_mut(&key) {
                    b.revision = inputs.revision;
                    b.used = true;
                }
            }
        }
        if let (Some(gpu), false) = (&self.gpu, dispatches.is_empty()) {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("deform"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&gpu.pipeline);
            for (entity, gi, groups) in dispatches {
                let Some(bind_group) = self
                    .buffers
                    .get(&(entity, gi))
                    .and_then(|b| b.bind_group.as_ref())
                else {
                    continue;
                };
                pass.set_bind_group(0, bind_group, &[]);
                let (x, y) = gpu.grid(groups);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        done
    }

    /// Writes an entity's joint matrices and weights once per pose; returns the bytes written.
    fn write_pose(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        entity: EntityId,
        inputs: &DeformInputs<'_>,
    ) -> u64 {
        if let Some(p) = self.poses.get_mut(&entity)
            && p.revision == inputs.revision
        {
            p.used = true;
            return 0;
        }
        self.pose_scratch.clear();
        for m in inputs.joints {
            self.pose_scratch.extend(m.to_cols_array_2d());
        }
        let weights_offset = self.pose_scratch.len() as u32;
        for w in inputs.weights.chunks(4) {
            let mut v = [0.0; 4];
            v[..w.len()].copy_from_slice(w);
            self.pose_scratch.push(v);
        }
        if self.pose_scratch.is_empty() {
            self.pose_scratch.push([0.0; 4]);
        }
        let bytes: &[u8] = bytemuck::cast_slice(&self.pose_scratch);
        let fits = self
            .poses
            .get(&entity)
            .is_some_and(|p| p.buffer.size() == bytes.len() as u64);
        if !fits {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pose"),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.poses.insert(
                entity,
                PoseBuffer {
                    buffer,
                    revision: 0,
                    used: true,
                    weights_offset,
                },
            );
            // Bindings made against the old buffer are stale.
            for ((e, _), b) in self.buffers.iter_mut() {
                if *e == entity {
                    b.bind_group = None;
                }
            }
        }
        match self.poses.get_mut(&entity) {
            Some(p) => {
                queue.write_buffer(&p.buffer, 0, bytes);
                p.revision = inputs.revision;
                p.used = true;
                bytes.len() as u64
            }
            None => 0,
        }
    }

    /// Makes sure the posed buffer of `key` and its deform bindings exist; returns the
    /// workgroups to dispatch.
    fn bind_gpu(
        &mut self,
        device: &wgpu::Device,
        key: (EntityId, usize),
        gp: &GpuPrimitive,
        inputs: &DeformInputs<'_>,
    ) -> Option<u32> {
        let (gpu, source, pose) = (
            self.gpu.as_ref()?,
            gp.deform.as_ref()?,
            self.poses.get(&key.0)?,
        );
        let size = gp.vertices.size();
        let stale = self
            .buffers
            .get(&key)
            .is_none_or(|b| !b.storage || b.buffer.size() != size || b.bind_group.is_none());
        if stale {
            let buffer = match self.buffers.remove(&key) {
                Some(b) if b.storage && b.buffer.size() == size => b.buffer,
                _ => device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("posed vertices"),
                    size,
                    usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                }),
            };
            let groups = source.vertex_count.div_ceil(WORKGROUP).max(1);
            let params = DeformParams {
                vertex_count: source.vertex_count,
                target_count: source.targets.min(inputs.weights.len() as u32),
                joint_count: inputs.joints.len() as u32,
                skinned: u32::from(source.skinned && !inputs.joints.is_empty()),
                targets_offset: source.targets_offset,
                weights_offset: pose.weights_offset,
                row: gpu.grid(groups).0 * WORKGROUP,
                _pad: 0,
            };
            let params = wgpu::util::DeviceExt::create_buffer_init(
                device,
                &wgpu::util::BufferInitDescriptor {
                    label: Some("deform params"),
                    contents: bytemuck::bytes_of(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                },
            );
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("deform"),
                layout: &gpu.layout,
                entries: &[
                    entry(0, &params),
                    entry(1, &gp.vertices),
                    entry(2, &source.buffer),
                    entry(3, &pose.buffer),
                    entry(4, &buffer),
                ],
            });
            self.buffers.insert(
                key,
                PosedBuffer {
                    buffer,
                    revision: 0,
                    used: true,
                    storage: true,
                    bind_group: Some(bind_group),
                },
            );
        }
        Some(source.vertex_count.div_ceil(WORKGROUP).max(1))
    }

    /// Uploads the scene's CPU pose of one primitive; returns the bytes written.
    fn upload_cpu(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        scene: &Scene,
        d: &Drawable,
        key: (EntityId, usize),
        gp: &GpuPrimitive,
    ) -> u64 {
        let Some(posed) = scene.deformation(d.entity) else {
            // Posed on neither side (the scene was told a GPU poses, and this one cannot): the
            // bind pose is drawn.
            self.buffers.remove(&key);
            return 0;
        };
        let Some(model) = scene.model(d.model) else {
            return 0;
        };
        let (Some(src), Some(pose)) = (
            model
                .meshes
                .get(d.mesh)
                .and_then(|m| m.primitives.get(gp.source)),
            posed.primitives.get(gp.source),
        ) else {
            return 0;
        };
        self.scratch.clear();
        self.scratch.extend(Vertex::build(
            src,
            &pose.positions,
            &pose.normals,
            &pose.tangents,
        ));
        let bytes: &[u8] = bytemuck::cast_slice(&self.scratch);
        // A buffer the deform pass wrote has no COPY_DST: replaced.
        let fits = self
            .buffers
            .get(&key)
            .is_some_and(|b| !b.storage && b.buffer.size() == bytes.len() as u64);
        if !fits {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("posed vertices"),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.buffers.insert(
                key,
                PosedBuffer {
                    buffer,
                    revision: 0,
                    used: true,
                    storage: false,
                    bind_group: None,
                },
            );
        }
        match self.buffers.get_mut(&key) {
            Some(b) => {
                queue.write_buffer(&b.buffer, 0, bytes);
                bytes.len() as u64
            }
            None => 0,
        }
    }

    /// The posed buffer of an entity's primitive, when it was prepared this frame (a buffer of
    /// an earlier frame's pose is never drawn).
    pub(crate) fn get(&self, entity: EntityId, primitive: usize) -> Option<&wgpu::Buffer> {
        self.buffers
            .get(&(entity, primitive))
            .filter(|b| b.used)
            .map(|b| &b.buffer)
    }

    /// Drops the buffers not drawn this frame and clears the marks for the next.
    pub(crate) fn end_frame(&mut self) {
        self.buffers.retain(|_, b| std::mem::take(&mut b.used));
        self.poses.retain(|_, p| std::mem::take(&mut p.used));
    }

    /// GPU bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.buffers.values().map(|b| b.buffer.size()).sum::<u64>()
            + self.poses.values().map(|p| p.buffer.size()).sum::<u64>()
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

impl DeformPass {
    fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("deform.wgsl"),
            source: wgpu::ShaderSource::Wgsl(DEFORM_SHADER.into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("deform"),
            entries: &[
                crate::uniforms::uniform_entry(
                    0,
                    wgpu::ShaderStages::COMPUTE,
                    false,
                    std::mem::size_of::<DeformParams>() as u64,
                ),
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("deform"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("deform"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("cs_deform"),
            compilation_options: Default::default(),
            cache: None,
        });
        Self {
            pipeline,
            layout,
            max_groups: device.limits().max_compute_workgroups_per_dimension.max(1),
        }
    }

    /// `groups` workgroups as a grid within the per-dimension limit.
    fn grid(&self, groups: u32) -> (u32, u32) {
        let x = groups.min(self.max_groups);
        (x, groups.div_ceil(x))
    }
}
