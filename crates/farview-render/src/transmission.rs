//! The frame behind glass: what transmissive materials (`KHR_materials_transmission`) see
//! through themselves. As in the Sample Viewer, the opaque and blended geometry (everything but
//! the transmissive draws) and the background are first drawn in linear light, untone-mapped,
//! into a mip-mapped texture; a transmissive surface then samples it where its refracted ray
//! leaves the volume, at a mip level that grows with its roughness. Made on the first frame that
//! needs it, so renderers of scenes without glass pay nothing.
//!
//! The texture has the frame's size and the frame's colour format: the mesh pipelines draw into
//! it unchanged (through the frame's own multisampled colour and depth, resolved into mip 0),
//! and like the reference's RGBA8 buffer it holds values up to 1.0. Mips are box-filtered here
//! by [`MipChain`] (wgpu has no mipmap generation).

use crate::RenderError;
use crate::shaders::MIP_DOWNSAMPLE_SHADER;
use crate::targets::COLOR_FORMAT;

/// The mip-mapped texture transmissive materials sample, and the passes that fill its mips.
pub(crate) struct TransmissionFrame {
    width: u32,
    height: u32,
    mips: u32,
    /// Every mip, for sampling.
    pub(crate) sample_view: wgpu::TextureView,
    /// One view per mip level: render targets (level 0 is the resolve target of the pass).
    level_views: Vec<wgpu::TextureView>,
    /// `downsample[i]` reads level `i` and writes level `i + 1`.
    downsample: Vec<wgpu::BindGroup>,
}

impl TransmissionFrame {
    pub(crate) fn new(
        device: &wgpu::Device,
        chain: &MipChain,
        width: u32,
        height: u32,
    ) -> Result<Self, RenderError> {
        if width == 0 || height == 0 {
            return Err(RenderError::Gpu(format!(
                "transmission frame of {width}x{height}"
            )));
        }
        let mips = 32 - width.max(height).leading_zeros();
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("transmission frame"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: mips,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: COLOR_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        });
        let level_views: Vec<wgpu::TextureView> = (0..mips)
            .map(|level| {
                texture.create_view(&wgpu::TextureViewDescriptor {
                    label: Some("transmission frame level"),
                    base_mip_level: level,
                    mip_level_count: Some(1),
                    ..Default::default()
                })
            })
            .collect();
        let downsample = level_views
            .iter()
            .take(level_views.len().saturating_sub(1))
            .map(|src| chain.bind_group(device, src))
            .collect();
        Ok(Self {
            width,
            height,
            mips,
            sample_view: texture.create_view(&Default::default()),
            level_views,
            downsample,
        })
    }

    /// Whether this frame fits a `width` x `height` renderer.
    pub(crate) fn fits(&self, width: u32, height: u32) -> bool {
        self.width == width && self.height == height
    }

    /// Mip level 0: where the pass behind the glass resolves (or draws) its colour.
    pub(crate) fn base_view(&self) -> &wgpu::TextureView {
        &self.level_views[0]
    }

    /// GPU memory of the texture and its mips.
    pub(crate) fn bytes(&self) -> u64 {
        (0..self.mips)
            .map(|l| u64::from((self.width >> l).max(1)) * u64::from((self.height >> l).max(1)) * 4)
            .sum()
    }

    /// Records the passes that fill mips 1.. from mip 0.
    pub(crate) fn encode_mips(&self, chain: &MipChain, encoder: &mut wgpu::CommandEncoder) {
        for (bind_group, target) in self.downsample.iter().zip(self.level_views.iter().skip(1)) {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("transmission mip"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: target,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(&chain.pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
    }
}

/// The downsampling pipeline, made once per renderer.
pub(crate) struct MipChain {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
}

impl MipChain {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mip_downsample.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MIP_DOWNSAMPLE_SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("mip downsample"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mip downsample"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("mip downsample"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
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
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("mip downsample"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        Self {
            pipeline,
            layout,
            sampler,
        }
    }

    fn bind_group(&self, device: &wgpu::Device, src: &wgpu::TextureView) -> wgpu::BindGroup {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("mip downsample"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(src),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Sampler(&self.sampler),
                },
            ],
        })
    }
}
