//! Vertex buffers of skinned and morphed meshes in their current pose, one per (entity,
//! primitive). The scene computes the posed positions, normals and tangents
//! ([`farview_scene::Scene::deformation`]); this store turns them into the interleaved layout of
//! [`Vertex`] and uploads them when their revision changes, reusing each buffer while its size
//! holds. Buffers of entities no longer drawn are dropped at the end of the frame.

use std::collections::HashMap;

use farview_scene::{Drawable, EntityId, Scene};

use crate::gpu_model::Vertex;
use crate::models::GpuModelStore;

struct PosedBuffer {
    buffer: wgpu::Buffer,
    /// The scene's deformation revision uploaded.
    revision: u64,
    /// Drawn in the current frame.
    used: bool,
}

/// Posed vertex buffers of one renderer.
#[derive(Default)]
pub(crate) struct PosedVertices {
    buffers: HashMap<(EntityId, usize), PosedBuffer>,
    scratch: Vec<Vertex>,
}

impl PosedVertices {
    /// Uploads what changed for this frame's drawables; returns the bytes written.
    pub(crate) fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        scene: &Scene,
        drawables: &[Drawable],
        store: &GpuModelStore,
    ) -> u64 {
        let mut written = 0;
        for d in drawables {
            let Some(posed) = scene.deformation(d.entity) else {
                continue;
            };
            let (Some(gpu), Some(model)) = (store.get(d.model), scene.model(d.model)) else {
                continue;
            };
            let (Some(gpu_prims), Some(mesh)) = (gpu.meshes.get(d.mesh), model.meshes.get(d.mesh))
            else {
                continue;
            };
            for (gi, gp) in gpu_prims.iter().enumerate() {
                let (Some(src), Some(pose)) = (
                    mesh.primitives.get(gp.source),
                    posed.primitives.get(gp.source),
                ) else {
                    continue;
                };
                let key = (d.entity, gi);
                if let Some(b) = self.buffers.get_mut(&key)
                    && b.revision == posed.revision
                {
                    b.used = true;
                    continue;
                }
                self.scratch.clear();
                self.scratch.extend(Vertex::build(
                    src,
                    &pose.positions,
                    &pose.normals,
                    &pose.tangents,
                ));
                let bytes: &[u8] = bytemuck::cast_slice(&self.scratch);
                let fits = self
                    .buffers
                    .get(&key)
                    .is_some_and(|b| b.buffer.size() == bytes.len() as u64);
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
                        },
                    );
                }
                if let Some(b) = self.buffers.get_mut(&key) {
                    queue.write_buffer(&b.buffer, 0, bytes);
                    b.revision = posed.revision;
                    b.used = true;
                    written += bytes.len() as u64;
                }
            }
        }
        written
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
    }

    /// GPU bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.buffers.values().map(|b| b.buffer.size()).sum()
    }
}
