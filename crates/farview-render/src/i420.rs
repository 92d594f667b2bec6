//! The GPU colour conversion pass (`shaders/i420.wgsl`): compute shaders writing I420 (BT.709
//! limited range, bit-identical to `farview_encode::rgba_to_i420`) into a storage buffer that is
//! then copied to the readback ring, so readback moves 1.5 bytes per pixel instead of 4.

use wgpu::util::DeviceExt;

use crate::targets::FrameTargets;
use crate::uniforms::uniform_entry;
use crate::{GpuContext, I420_SHADER};

/// Conversion pipelines and the I420 buffer of one renderer.
pub(crate) struct GpuI420 {
    luma: wgpu::ComputePipeline,
    chroma: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    buffer: wgpu::Buffer,
    bytes: u64,
    width: u32,
    height: u32,
}

impl GpuI420 {
    /// The shader packs four samples per word in both planes: the width must be a multiple of 8
    /// (heights are always even).
    pub(crate) fn supports(width: u32) -> bool {
        width.is_multiple_of(8)
    }

    /// Creates the pass reading `targets`' colour texture.
    pub(crate) fn new(ctx: &GpuContext, targets: &FrameTargets) -> Self {
        let device = ctx.device();
        let (width, height) = (targets.width, targets.height);
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("i420.wgsl"),
            source: wgpu::ShaderSource::Wgsl(I420_SHADER.into()),
        });
        let bytes = u64::from(width) * u64::from(height) * 3 / 2;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("i420"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("i420 dims"),
            contents: bytemuck::cast_slice(&[width, height, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        // Sampled through its sRGB format (a non-sRGB view needs VIEW_FORMATS, which GL lacks);
        // the shader encodes back to the stored bytes.
        let view = targets.color.create_view(&Default::default());
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
        Self {
            luma: make("luma_main"),
            chroma: make("chroma_main"),
            bind_group,
            buffer,
            bytes,
            width,
            height,
        }
    }

    /// Bytes of one I420 frame (also what the conversion buffer takes).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records the conversion of the colour target and the copy of the result into `dst`.
    pub(crate) fn encode(&self, encoder: &mut wgpu::CommandEncoder, dst: &wgpu::Buffer) {
        let luma_words = self.width * self.height / 4;
        let chroma_words = self.width * self.height / 16;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("rgba to i420"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.set_pipeline(&self.luma);
            pass.dispatch_workgroups(luma_words.div_ceil(64), 1, 1);
            pass.set_pipeline(&self.chroma);
            pass.dispatch_workgroups(chroma_words.div_ceil(64), 1, 1);
        }
        encoder.copy_buffer_to_buffer(&self.buffer, 0, dst, 0, self.bytes);
    }
}
