//! The frame's instance buffer: one [`InstanceData`] per drawn mesh instance, in the order of
//! the frame's sorted drawables, so a batch's instances are one contiguous range. Grown to the
//! next power of two when a frame needs more, never shrunk while the renderer lives.

use farview_scene::Drawable;

use crate::uniforms::InstanceData;

const STRIDE: u64 = std::mem::size_of::<InstanceData>() as u64;

/// Per-instance vertex data of one renderer.
#[derive(Default)]
pub(crate) struct Instances {
    buffer: Option<wgpu::Buffer>,
    scratch: Vec<InstanceData>,
}

impl Instances {
    /// Writes the matrices of `drawables`, in order.
    pub(crate) fn write(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        drawables: &[Drawable],
    ) {
        self.scratch.clear();
        self.scratch
            .extend(drawables.iter().map(|d| InstanceData::new(&d.world)));
        let needed = (self.scratch.len().max(1) as u64) * STRIDE;
        if self.buffer.as_ref().is_none_or(|b| b.size() < needed) {
            let capacity = (self.scratch.len().max(64)).next_power_of_two() as u64;
            self.buffer = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("instances"),
                size: capacity * STRIDE,
                usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        if let Some(b) = &self.buffer
            && !self.scratch.is_empty()
        {
            queue.write_buffer(b, 0, bytemuck::cast_slice(&self.scratch));
        }
    }

    /// Binds vertex buffer 1 from instance `first` on: the draw's instances `0..n` are the
    /// frame's `first..first + n`.
    pub(crate) fn bind(&self, pass: &mut wgpu::RenderPass<'_>, first: usize) {
        if let Some(b) = &self.buffer {
            pass.set_vertex_buffer(1, b.slice(first as u64 * STRIDE..));
        }
    }

    /// GPU bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.buffer.as_ref().map_or(0, wgpu::Buffer::size)
    }
}
