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
//! by a [`Blit`] (wgpu has no mipmap generation).

use crate::RenderError;
use crate::blit::Blit;
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
        chain: &Blit,
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
    pub(crate) fn encode_mips(&self, chain: &Blit, encoder: &mut wgpu::CommandEncoder) {
        for (bind_group, target) in self.downsample.iter().zip(self.level_views.iter().skip(1)) {
            chain.encode(encoder, "transmission mip", bind_group, target);
        }
    }
}
