//! The offscreen frame one renderer draws into: an sRGB colour target (copied out, or converted
//! to I420 first) and a depth buffer, both `width` x `height`.

use crate::{GpuContext, RenderError};

/// The colour target's format; readback returns its bytes as they are (sRGB-encoded RGBA8).
pub(crate) const COLOR_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;
/// The depth buffer's format.
pub(crate) const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;

/// Colour and depth targets of one stream.
pub(crate) struct FrameTargets {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) color: wgpu::Texture,
    pub(crate) color_view: wgpu::TextureView,
    pub(crate) depth_view: wgpu::TextureView,
}

impl FrameTargets {
    /// Creates the targets; sizes must be even, at least 16 and within the adapter's limit.
    pub(crate) fn new(ctx: &GpuContext, width: u32, height: u32) -> Result<Self, RenderError> {
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
        Ok(Self {
            width,
            height,
            color_view: color.create_view(&Default::default()),
            color,
            depth_view: depth.create_view(&Default::default()),
        })
    }

    /// Bytes between RGBA rows in a readback buffer: `width * 4` padded to wgpu's 256-byte
    /// copy alignment.
    pub(crate) fn rgba_stride(&self) -> usize {
        let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize;
        (self.width as usize * 4).div_ceil(align) * align
    }

    /// GPU memory the colour and depth targets take.
    pub(crate) fn bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 8
    }

    /// Records a copy of the colour target into `buffer`, rows [`Self::rgba_stride`] apart.
    pub(crate) fn copy_rgba(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer) {
        encoder.copy_texture_to_buffer(
            self.color.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.rgba_stride() as u32),
                    rows_per_image: Some(self.height),
                },
            },
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
        );
    }
}
