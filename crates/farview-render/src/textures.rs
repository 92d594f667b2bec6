//! Material textures on the GPU: one RGBA8 texture per image with a full mip chain made on the
//! CPU at upload (colour images filtered in linear light), viewed as sRGB by colour slots and as
//! linear data by the others; and the samplers glTF files ask for, made once per renderer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use farview_scene::{Filter, Sampler, Texture, Wrap};

use crate::{BlockFormat, RenderError};

/// One uploaded image: a view for colour slots (sRGB) and one for data slots (linear), each
/// present when some slot samples the image that way. (GL cannot view one texture in two
/// formats, so an image used both ways is uploaded twice; glTF files rarely do that.)
#[derive(Default)]
pub(crate) struct GpuTexture {
    pub(crate) srgb: Option<wgpu::TextureView>,
    pub(crate) linear: Option<wgpu::TextureView>,
    pub(crate) bytes: u64,
}

/// Uploads `tex` with its mip chain, as sRGB when `srgb_content` (the image holds colour: its
/// mips are averaged in linear light), else as linear data.
pub(crate) fn upload_texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    tex: &Texture,
    srgb_content: bool,
    max_dim: u32,
) -> Result<(wgpu::TextureView, u64), RenderError> {
    if tex.width > max_dim || tex.height > max_dim {
        return Err(RenderError::TextureTooLarge {
            width: tex.width,
            height: tex.height,
            max: max_dim,
        });
    }
    if tex.width == 0
        || tex.height == 0
        || tex.rgba8.len() != tex.width as usize * tex.height as usize * 4
    {
        return Err(RenderError::Gpu(format!(
            "texture {:?} has inconsistent size",
            tex.name
        )));
    }
    let levels = mip_count(tex.width, tex.height);
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: tex.name.as_deref(),
        size: wgpu::Extent3d {
            width: tex.width,
            height: tex.height,
            depth_or_array_layers: 1,
        },
        mip_level_count: levels,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: if srgb_content {
            wgpu::TextureFormat::Rgba8UnormSrgb
        } else {
            wgpu::TextureFormat::Rgba8Unorm
        },
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let mut bytes = 0u64;
    let mut level = std::borrow::Cow::Borrowed(tex.rgba8.as_slice());
    let (mut w, mut h) = (tex.width, tex.height);
    for mip in 0..levels {
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: mip,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &level,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(w * 4),
                rows_per_image: None,
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
        bytes += level.len() as u64;
        if mip + 1 < levels {
            let (next, nw, nh) = downsample(&level, w, h, srgb_content);
            level = std::borrow::Cow::Owned(next);
            (w, h) = (nw, nh);
        }
    }
    Ok((texture.create_view(&Default::default()), bytes))
}

/// Uploads a KTX2 texture transcoded to `format`, with the file's own mipmaps. `None` when the
/// container does not suit a direct upload (no full mip chain, a base size that is not a whole
/// number of 4x4 blocks, or the transcoder fails): the caller uploads its RGBA8 instead.
pub(crate) fn upload_basis(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    tex: &Texture,
    srgb_content: bool,
    format: BlockFormat,
    max_dim: u32,
) -> Option<(wgpu::TextureView, u64)> {
    let bytes = tex.basis.as_deref()?;
    // Checked at import; a young pure-Rust port, so a panic is caught all the same.
    let levels = std::panic::catch_unwind(|| {
        let ktx = basisu::Transcoder::new(bytes).ok()?;
        let (w, h) = ktx.base_dimensions();
        let count = ktx.level_count();
        if w == 0
            || h == 0
            || w > max_dim
            || h > max_dim
            || w % 4 != 0
            || h % 4 != 0
            || count != mip_count(w, h)
        {
            return None;
        }
        (0..count)
            .map(|level| {
                ktx.transcode(level, format.target(), basisu::DecodeFlags::NONE)
                    .ok()
            })
            .collect::<Option<Vec<Vec<u8>>>>()
            .map(|levels| (w, h, levels))
    })
    .ok()
    .flatten();
    let Some((width, height, levels)) = levels else {
        tracing::debug!(
            name = ?tex.name,
            ?format,
            "KTX2 texture uploaded as RGBA8: no full mip chain, or not whole 4x4 blocks"
        );
        return None;
    };
    let texture_format = format.texture_format(srgb_content);
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: tex.name.as_deref(),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: levels.len() as u32,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: texture_format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let mut total = 0u64;
    for (mip, data) in levels.iter().enumerate() {
        let (w, h) = ((width >> mip).max(1), (height >> mip).max(1));
        let (bw, bh) = (w.div_ceil(4), h.div_ceil(4));
        // 16 bytes a block in all three formats.
        if data.len() as u64 != u64::from(bw) * u64::from(bh) * 16 {
            return None;
        }
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: mip as u32,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            data,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(bw * 16),
                rows_per_image: Some(bh),
            },
            // Whole blocks: the physical size of a level smaller than a block.
            wgpu::Extent3d {
                width: bw * 4,
                height: bh * 4,
                depth_or_array_layers: 1,
            },
        );
        total += data.len() as u64;
    }
    Some((texture.create_view(&Default::default()), total))
}

/// Levels of a full mip chain down to 1x1.
pub(crate) fn mip_count(width: u32, height: u32) -> u32 {
    32 - width.max(height).max(1).leading_zeros()
}

/// Halves an RGBA8 image with a 2x2 box filter (edge texels repeated for odd sizes). Colour
/// images are averaged in linear light; alpha and data images as stored.
pub(crate) fn downsample(src: &[u8], w: u32, h: u32, srgb: bool) -> (Vec<u8>, u32, u32) {
    let (nw, nh) = ((w / 2).max(1), (h / 2).max(1));
    let (w, h) = (w as usize, h as usize);
    let mut out = vec![0u8; nw as usize * nh as usize * 4];
    let lut = srgb.then(srgb_decode_table);
    for y in 0..nh as usize {
        let (y0, y1) = ((2 * y).min(h - 1), (2 * y + 1).min(h - 1));
        for x in 0..nw as usize {
            let (x0, x1) = ((2 * x).min(w - 1), (2 * x + 1).min(w - 1));
            let px = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)];
            let o = (y * nw as usize + x) * 4;
            for c in 0..4 {
                let at = |&(px, py): &(usize, usize)| src[(py * w + px) * 4 + c];
                out[o + c] = match (&lut, c) {
                    (Some(lut), 0..=2) => {
                        let sum: f32 = px.iter().map(|p| lut[at(p) as usize]).sum();
                        srgb_encode(sum * 0.25)
                    }
                    _ => {
                        let sum: u32 = px.iter().map(|p| u32::from(at(p))).sum();
                        ((sum + 2) / 4) as u8
                    }
                };
            }
        }
    }
    (out, nw, nh)
}

fn srgb_decode_table() -> [f32; 256] {
    std::array::from_fn(|i| {
        let c = i as f32 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    })
}

fn srgb_encode(l: f32) -> u8 {
    let c = if l <= 0.003_130_8 {
        l * 12.92
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    };
    (c.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The samplers of one renderer, made on first use per glTF sampler. Shared by the uploader
/// threads.
#[derive(Clone)]
pub(crate) struct SamplerCache {
    device: wgpu::Device,
    anisotropy: u16,
    samplers: Arc<Mutex<HashMap<Sampler, wgpu::Sampler>>>,
}

impl SamplerCache {
    /// `anisotropy` (1..=16) applies to samplers that filter linearly everywhere.
    pub(crate) fn new(device: &wgpu::Device, anisotropy: u16) -> Self {
        Self {
            device: device.clone(),
            anisotropy: anisotropy.clamp(1, 16),
            samplers: Arc::default(),
        }
    }

    pub(crate) fn get(&self, s: &Sampler) -> wgpu::Sampler {
        let mut map = match self.samplers.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(*s)
            .or_insert_with(|| self.device.create_sampler(&descriptor(s, self.anisotropy)))
            .clone()
    }
}

fn descriptor(s: &Sampler, anisotropy: u16) -> wgpu::SamplerDescriptor<'static> {
    let wrap = |w: Wrap| match w {
        Wrap::Repeat => wgpu::AddressMode::Repeat,
        Wrap::ClampToEdge => wgpu::AddressMode::ClampToEdge,
        Wrap::MirroredRepeat => wgpu::AddressMode::MirrorRepeat,
    };
    let filter = |f: Filter| match f {
        Filter::Nearest => wgpu::FilterMode::Nearest,
        Filter::Linear => wgpu::FilterMode::Linear,
    };
    let mipmap = match s.mipmap {
        Some(Filter::Nearest) => wgpu::MipmapFilterMode::Nearest,
        _ => wgpu::MipmapFilterMode::Linear,
    };
    let all_linear =
        s.mag == Filter::Linear && s.min == Filter::Linear && s.mipmap == Some(Filter::Linear);
    wgpu::SamplerDescriptor {
        label: Some("material"),
        address_mode_u: wrap(s.wrap_u),
        address_mode_v: wrap(s.wrap_v),
        address_mode_w: wgpu::AddressMode::Repeat,
        mag_filter: filter(s.mag),
        min_filter: filter(s.min),
        mipmap_filter: mipmap,
        lod_min_clamp: 0.0,
        // Without a mipmap filter, glTF samples the top level only.
        lod_max_clamp: if s.mipmap.is_some() { 32.0 } else { 0.0 },
        anisotropy_clamp: if all_linear { anisotropy } else { 1 },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mip_counts() {
        assert_eq!(mip_count(1, 1), 1);
        assert_eq!(mip_count(2, 1), 2);
        assert_eq!(mip_count(256, 256), 9);
        assert_eq!(mip_count(300, 20), 9);
    }

    #[test]
    fn colour_is_averaged_in_linear_light_and_data_as_stored() {
        // Black and white texels: linear average 0.5 is sRGB 188, a byte average 128.
        let src = [0, 0, 0, 0, 255, 255, 255, 255];
        let (srgb, w, h) = downsample(&src, 2, 1, true);
        assert_eq!((w, h), (1, 1));
        assert_eq!(srgb, vec![188, 188, 188, 128]);
        let (data, _, _) = downsample(&src, 2, 1, false);
        assert_eq!(data, vec![128, 128, 128, 128]);
    }

    #[test]
    fn odd_sizes_repeat_the_edge() {
        let src: Vec<u8> = (0..3 * 3).flat_map(|i| [i as u8 * 10, 0, 0, 255]).collect();
        let (out, w, h) = downsample(&src, 3, 3, false);
        assert_eq!((w, h), (1, 1));
        // Texels (0,0) (1,0) (0,1) (1,1): 0, 10, 30, 40.
        assert_eq!(out[0], 20);
    }
}
