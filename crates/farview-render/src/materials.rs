//! Materials on the GPU: the uniform block and bind group of one glTF material (group 2 of the
//! mesh pipelines, laid out as `shaders/mesh.wgsl` declares it), and what every material bind
//! group shares (the layout, the samplers, a white texture for empty slots).

use bytemuck::{Pod, Zeroable};
use farview_scene::{AlphaMode, Material, TextureRef};
use wgpu::util::DeviceExt;

use crate::textures::{GpuTexture, SamplerCache};
use crate::uniforms::uniform_entry;
use crate::{GpuContext, RenderError};

/// Texture slots in binding order (`TEX_*` in the shader); slot `i` binds texture `1 + 2i` and
/// its sampler `2 + 2i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    BaseColor,
    MetallicRoughness,
    Normal,
    Occlusion,
    Emissive,
    Clearcoat,
    ClearcoatRoughness,
    ClearcoatNormal,
    Transmission,
}

/// Which slots of a material have a texture bound (in [`Slot::ALL`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotsPresent([bool; 9]);

impl SlotsPresent {
    fn has(self, slot: Slot) -> bool {
        Slot::ALL
            .iter()
            .position(|&s| s == slot)
            .is_some_and(|i| self.0[i])
    }

    /// Whether the fast shading samples a texture (`shade_fast` in the shader).
    pub(crate) fn fast_textured(self) -> bool {
        [Slot::BaseColor, Slot::MetallicRoughness, Slot::Emissive]
            .into_iter()
            .any(|s| self.has(s))
    }
}

impl Slot {
    pub(crate) const ALL: [Slot; 9] = [
        Slot::BaseColor,
        Slot::MetallicRoughness,
        Slot::Normal,
        Slot::Occlusion,
        Slot::Emissive,
        Slot::Clearcoat,
        Slot::ClearcoatRoughness,
        Slot::ClearcoatNormal,
        Slot::Transmission,
    ];

    /// Colour slots sample their image as sRGB; the others as linear data.
    pub(crate) fn is_color(self) -> bool {
        matches!(self, Slot::BaseColor | Slot::Emissive)
    }

    /// The material's texture in this slot.
    pub(crate) fn of(self, m: &Material) -> Option<TextureRef> {
        let cc = m.clearcoat.as_ref();
        match self {
            Slot::BaseColor => m.base_color_texture,
            Slot::MetallicRoughness => m.metallic_roughness_texture,
            Slot::Normal => m.normal_texture,
            Slot::Occlusion => m.occlusion_texture,
            Slot::Emissive => m.emissive_texture,
            Slot::Clearcoat => cc.and_then(|c| c.texture),
            Slot::ClearcoatRoughness => cc.and_then(|c| c.roughness_texture),
            Slot::ClearcoatNormal => cc.and_then(|c| c.normal_texture),
            Slot::Transmission => m.transmission.and_then(|t| t.texture),
        }
    }
}

const FEATURE_UNLIT: u32 = 1;
const FEATURE_CLEARCOAT: u32 = 2;
const FEATURE_SHEEN: u32 = 4;
const FEATURE_TRANSMISSION: u32 = 8;
const FEATURE_VOLUME: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TexTransform {
    row0: [f32; 4],
    row1: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MaterialUniform {
    base_color: [f32; 4],
    emissive: [f32; 4],
    params: [f32; 4],
    params2: [f32; 4],
    flags: [u32; 4],
    specular_color: [f32; 4],
    clearcoat: [f32; 4],
    sheen: [f32; 4],
    attenuation: [f32; 4],
    volume: [f32; 4],
    uv: [TexTransform; 9],
}

/// Bytes of the material uniform block, for the bind group layout.
const MATERIAL_UNIFORM_SIZE: u64 = std::mem::size_of::<MaterialUniform>() as u64;

impl MaterialUniform {
    /// `present[i]`: slot `i` has a texture bound.
    fn new(m: &Material, present: [bool; 9]) -> Self {
        let finite = |v: f32, d: f32| if v.is_finite() { v } else { d };
        let mut flags = [0u32; 4];
        for (i, p) in present.iter().enumerate() {
            if *p {
                flags[0] |= 1 << i;
            }
        }
        let mut features = 0;
        if m.unlit {
            features |= FEATURE_UNLIT;
        }
        let cc = m.clearcoat.unwrap_or_default();
        if m.clearcoat.is_some() {
            features |= FEATURE_CLEARCOAT;
        }
        let sheen = m.sheen.unwrap_or_default();
        if m.sheen.is_some() {
            features |= FEATURE_SHEEN;
        }
        let transmission = m.transmission.unwrap_or_default();
        if m.transmission.is_some() {
            features |= FEATURE_TRANSMISSION;
        }
        let volume = m.volume.unwrap_or_default();
        if m.volume.is_some() {
            features |= FEATURE_VOLUME;
        }
        flags[1] = features;
        let specular = m.specular.unwrap_or_default();
        let e = m.emissive_factor;
        let uv = Slot::ALL.map(|slot| {
            let (t, set) = slot.of(m).map_or((farview_scene::UV_IDENTITY, 0), |r| {
                (r.transform, r.tex_coord)
            });
            TexTransform {
                row0: [t[0][0], t[0][1], t[0][2], set as f32],
                row1: [t[1][0], t[1][1], t[1][2], 0.0],
            }
        });
        let attenuation_distance = if volume.attenuation_distance.is_finite() {
            volume.attenuation_distance.max(0.0)
        } else {
            0.0
        };
        Self {
            base_color: m.base_color_factor,
            emissive: [e[0], e[1], e[2], 0.0],
            params: [
                m.metallic_factor,
                m.roughness_factor,
                m.alpha_cutoff,
                match m.alpha_mode {
                    AlphaMode::Opaque => 0.0,
                    AlphaMode::Mask => 1.0,
                    AlphaMode::Blend => 2.0,
                },
            ],
            params2: [
                finite(m.normal_scale, 1.0),
                finite(m.occlusion_strength, 1.0).clamp(0.0, 1.0),
                finite(m.ior, 1.5).clamp(1.0, 5.0),
                finite(specular.factor, 1.0).clamp(0.0, 1.0),
            ],
            flags,
            specular_color: [
                specular.color_factor[0],
                specular.color_factor[1],
                specular.color_factor[2],
                0.0,
            ],
            clearcoat: [
                cc.factor,
                cc.roughness_factor,
                finite(cc.normal_scale, 1.0),
                transmission.factor,
            ],
            sheen: [
                sheen.color_factor[0],
                sheen.color_factor[1],
                sheen.color_factor[2],
                sheen.roughness_factor,
            ],
            attenuation: [
                volume.attenuation_color[0],
                volume.attenuation_color[1],
                volume.attenuation_color[2],
                attenuation_distance,
            ],
            volume: [finite(volume.thickness_factor, 0.0).max(0.0), 0.0, 0.0, 0.0],
            uv,
        }
    }
}

/// What every material bind group is made of besides the model's own data.
#[derive(Clone)]
pub(crate) struct MaterialShared {
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) samplers: SamplerCache,
    white: wgpu::TextureView,
}

impl MaterialShared {
    pub(crate) fn new(ctx: &GpuContext, anisotropy: u16) -> Self {
        let device = ctx.device();
        // The fast shading reads the material in its vertex stage.
        let mut entries = vec![uniform_entry(
            0,
            wgpu::ShaderStages::VERTEX_FRAGMENT,
            false,
            MATERIAL_UNIFORM_SIZE,
        )];
        for i in 0..Slot::ALL.len() as u32 {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 1 + 2 * i,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: true },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            });
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 2 + 2 * i,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("material"),
            entries: &entries,
        });
        let one = wgpu::Extent3d {
            width: 1,
            height: 1,
            depth_or_array_layers: 1,
        };
        let white_tex = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("white"),
            size: one,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        ctx.queue().write_texture(
            white_tex.as_image_copy(),
            &[255; 4],
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4),
                rows_per_image: None,
            },
            one,
        );
        Self {
            layout,
            samplers: SamplerCache::new(device, anisotropy),
            white: white_tex.create_view(&Default::default()),
        }
    }

    /// The bind group of material `m`, whose texture indices refer to `textures`.
    pub(crate) fn bind_group(
        &self,
        device: &wgpu::Device,
        m: &Material,
        textures: &[GpuTexture],
    ) -> Result<(wgpu::BindGroup, SlotsPresent), RenderError> {
        let bound: Vec<Option<(&wgpu::TextureView, wgpu::Sampler)>> = Slot::ALL
            .iter()
            .map(|&slot| {
                let r = slot.of(m)?;
                let t = textures.get(r.texture)?;
                let view = if slot.is_color() { &t.srgb } else { &t.linear };
                Some((view.as_ref()?, self.samplers.get(&r.sampler)))
            })
            .collect();
        let present = std::array::from_fn(|i| bound.get(i).is_some_and(Option::is_some));
        let uniform = MaterialUniform::new(m, present);
        let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("material"),
            contents: bytemuck::bytes_of(&uniform),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let default_sampler = self.samplers.get(&farview_scene::Sampler::default());
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: buffer.as_entire_binding(),
        }];
        for (i, b) in bound.iter().enumerate() {
            let (view, sampler) = match b {
                Some((view, sampler)) => (*view, sampler),
                None => (&self.white, &default_sampler),
            };
            let i = i as u32;
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + 2 * i,
                resource: wgpu::BindingResource::TextureView(view),
            });
            entries.push(wgpu::BindGroupEntry {
                binding: 2 + 2 * i,
                resource: wgpu::BindingResource::Sampler(sampler),
            });
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: m.name.as_deref(),
            layout: &self.layout,
            entries: &entries,
        });
        Ok((group, SlotsPresent(present)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast shading samples base colour, metallic-roughness and emissive; the other slots
    /// leave a material untextured for it.
    #[test]
    fn the_fast_shading_counts_its_own_slots_only() {
        let with =
            |slots: &[Slot]| SlotsPresent(std::array::from_fn(|i| slots.contains(&Slot::ALL[i])));
        assert!(!with(&[]).fast_textured());
        assert!(!with(&[Slot::Normal, Slot::Occlusion, Slot::Clearcoat]).fast_textured());
        for s in [Slot::BaseColor, Slot::MetallicRoughness, Slot::Emissive] {
            assert!(with(&[s]).fast_textured(), "{s:?}");
        }
    }

    #[test]
    fn uniform_matches_the_shader_layout() {
        // 10 vec4 fields and 9 two-row transforms, as `Material` in shaders/mesh.wgsl.
        assert_eq!(MATERIAL_UNIFORM_SIZE, (10 + 18) * 16);
    }

    #[test]
    fn flags_say_which_slots_and_layers_are_present() {
        let m = Material {
            unlit: true,
            clearcoat: Some(Default::default()),
            ..Default::default()
        };
        let mut present = [false; 9];
        present[2] = true;
        let u = MaterialUniform::new(&m, present);
        assert_eq!(u.flags[0], 1 << 2);
        assert_eq!(u.flags[1], FEATURE_UNLIT | FEATURE_CLEARCOAT);
        // glTF defaults: ior 1.5, specular factor 1.
        assert_eq!(u.params2[2], 1.5);
        assert_eq!(u.params2[3], 1.0);
    }
}
