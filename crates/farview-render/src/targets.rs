//! The offscreen frame one renderer draws into: an sRGB colour target (copied out, or converted
//! to I420 first) and a depth-stencil buffer (the stencil marks selected entities for their
//! outline), both `width` x `height`. With MSAA, the pass draws into multisampled colour and
//! depth and resolves into the colour target.

use crate::{GpuContext, RenderError};

/// The colour target's format; readback returns its bytes as they are (sRGB-encoded RGBA8).
pub(crate) const COLOR_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;
/// The depth-stencil buffer's format.
pub(crate) const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth24PlusStencil8;

/// Colour and depth targets of one stream.
pub(crate) struct FrameTargets {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) color: wgpu::Texture,
    pub(crate) color_view: wgpu::TextureView,
    /// The multisampled colour the pass draws into, resolved into `color`; `None` without MSAA.
    pub(crate) msaa_view: Option<wgpu::TextureView>,
    pub(crate) depth_view: wgpu::TextureView,
    /// The depth aspect alone, for occlusion culling's depth reduction to read (when
    /// `depth_sampleable`).
    pub(crate) depth_sample_view: wgpu::TextureView,
    /// Whether the depth buffer can be read by a shader: always single-sampled, multisampled
    /// except on the GL backend (made sampleable there, it turned MSAA frames white on Mesa).
    pub(crate) depth_sampleable: bool,
    /// Samples per pixel (1 or 4).
    pub(crate) samples: u32,
}

impl FrameTargets {
    /// Creates the targets; sizes must be even, at least 16 and within the adapter's limit.
    /// `samples` is 1 or 4 (anything else is taken as 1, 4 falls back to 1 where the adapter
    /// cannot multisample the formats).
    pub(crate) fn new(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        samples: u32,
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
        let samples = if samples == 4 && ctx.supports_msaa4(COLOR_FORMAT, DEPTH_FORMAT) {
            4
        } else {
            1
        };
        let msaa_view = (samples > 1).then(|| {
            device
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some("frame colour (multisampled)"),
                    size,
                    mip_level_count: 1,
                    sample_count: samples,
                    dimension: wgpu::TextureDimension::D2,
                    format: COLOR_FORMAT,
                    usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
                    view_formats: &[],
                })
                .create_view(&Default::default())
        });
        let depth_sampleable = samples == 1 || ctx.backend() != wgpu::Backend::Gl;
        let depth = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("frame depth"),
            size,
            mip_level_count: 1,
            sample_count: samples,
            dimension: wgpu::TextureDimension::D2,
            format: DEPTH_FORMAT,
            usage: if depth_sampleable {
                wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING
            } else {
                wgpu::TextureUsages::RENDER_ATTACHMENT
            },
            view_formats: &[],
        });
        Ok(Self {
            width,
            height,
            color_view: color.create_view(&Default::default()),
            color,
            msaa_view,
            depth_view: depth.create_view(&Default::default()),
            depth_sample_view: depth.create_view(&wgpu::TextureViewDescriptor {
                label: Some("frame depth (sampled)"),
                aspect: wgpu::TextureAspect::DepthOnly,
                ..Default::default()
            }),
            samples,
            depth_sampleable,
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
        let pixels = u64::from(self.width) * u64::from(self.height);
        let msaa = if self.samples > 1 { 4 } else { 0 };
        pixels * (4 + (4 + msaa) * u64::from(self.samples))
    }

    /// The view the pass draws colour into and the one it resolves to.
    pub(crate) fn color_attachment(&self) -> (&wgpu::TextureView, Option<&wgpu::TextureView>) {
        match &self.msaa_view {
            Some(msaa) => (msaa, Some(&self.color_view)),
            None => (&self.color_view, None),
        }
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
