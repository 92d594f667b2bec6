//! Materials: every texture slot of the core metallic-roughness material and of the
//! `KHR_materials_*` extensions the renderer draws, each with its sampler, UV set and
//! `KHR_texture_transform`; each image is decoded once, whatever slots use it.
//!
//! The extensions the `gltf` crate models (emissive strength, ior, specular, transmission,
//! volume, unlit) are read from its typed JSON. Clearcoat and sheen, which it does not model, and
//! the texture transforms of normal and occlusion textures (which it keeps as raw JSON) are read
//! from the extension JSON, defensively: a value of the wrong type is an
//! [`ImportError::Material`]; a number outside its range is clamped into it, as are the typed
//! extensions' numbers.

use std::collections::HashMap;

use gltf::json;
use gltf::json::Value;
use gltf::json::validation::Checked;

use crate::model::{
    AlphaMode, Clearcoat, Filter, Material, Sampler, Sheen, Specular, Texture, TextureRef,
    Transmission, UV_IDENTITY, Volume, Wrap,
};

use super::error::{ImportError, ImportProblem, invalid};
use super::image::{ImageLimits, load_image};
use super::texture_source::image_of;
use super::{Buffer, ImportLimits};

const CLEARCOAT: &str = "KHR_materials_clearcoat";
const SHEEN: &str = "KHR_materials_sheen";

/// The texture slots of a material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    BaseColor,
    MetallicRoughness,
    Normal,
    Occlusion,
    Emissive,
    Clearcoat,
    ClearcoatRoughness,
    ClearcoatNormal,
    SheenColor,
    SheenRoughness,
    Specular,
    SpecularColor,
    Transmission,
    Thickness,
}

const SLOT_COUNT: usize = Slot::Thickness as usize + 1;

impl Slot {
    /// How error messages name it.
    fn name(self) -> &'static str {
        match self {
            Self::BaseColor => "base colour",
            Self::MetallicRoughness => "metallic-roughness",
            Self::Normal => "normal",
            Self::Occlusion => "occlusion",
            Self::Emissive => "emissive",
            Self::Clearcoat => "clearcoat",
            Self::ClearcoatRoughness => "clearcoat roughness",
            Self::ClearcoatNormal => "clearcoat normal",
            Self::SheenColor => "sheen colour",
            Self::SheenRoughness => "sheen roughness",
            Self::Specular => "specular",
            Self::SpecularColor => "specular colour",
            Self::Transmission => "transmission",
            Self::Thickness => "thickness",
        }
    }
}

/// A texture reference as the file writes it, before its image is decoded.
#[derive(Debug, Clone, Copy)]
struct TexInfo {
    /// Index into the file's `textures`.
    texture: usize,
    /// `texCoord`.
    tex_coord: u32,
    /// `KHR_texture_transform`, if any.
    transform: Option<TexTransform>,
    /// `scale` of a normal texture, `strength` of an occlusion texture; 1 otherwise.
    scale: f32,
}

/// `KHR_texture_transform` as written.
#[derive(Debug, Clone, Copy)]
struct TexTransform {
    offset: [f32; 2],
    rotation: f32,
    scale: [f32; 2],
    tex_coord: Option<u32>,
}

impl TexInfo {
    fn from_typed(info: &json::texture::Info) -> Self {
        let transform = info
            .extensions
            .as_ref()
            .and_then(|e| e.texture_transform.as_ref())
            .map(|t| TexTransform {
                offset: t.offset.0,
                rotation: t.rotation.0,
                scale: t.scale.0,
                tex_coord: t.tex_coord,
            });
        Self {
            texture: info.index.value(),
            tex_coord: info.tex_coord,
            transform,
            scale: 1.0,
        }
    }
}

/// Every texture reference of a material, with its slot. Fails on extension JSON of the wrong
/// shape (the caller names the material).
fn texture_infos(m: &json::Material) -> Result<Vec<(Slot, TexInfo)>, ImportProblem> {
    let mut out = Vec::new();
    let pbr = &m.pbr_metallic_roughness;
    let typed = |i: &Option<json::texture::Info>| i.as_ref().map(TexInfo::from_typed);
    let mut push = |slot: Slot, info: Option<TexInfo>| {
        if let Some(info) = info {
            out.push((slot, info));
        }
    };
    push(Slot::BaseColor, typed(&pbr.base_color_texture));
    push(
        Slot::MetallicRoughness,
        typed(&pbr.metallic_roughness_texture),
    );
    if let Some(n) = &m.normal_texture {
        let ext = n.extensions.as_ref().map(|e| &e.others);
        let transform = ext.and_then(|o| o.get("KHR_texture_transform"));
        push(
            Slot::Normal,
            Some(TexInfo {
                texture: n.index.value(),
                tex_coord: n.tex_coord,
                transform: parse_transform(transform, "normalTexture")?,
                scale: if n.scale.is_finite() { n.scale } else { 1.0 },
            }),
        );
    }
    if let Some(o) = &m.occlusion_texture {
        let ext = o.extensions.as_ref().map(|e| &e.others);
        let transform = ext.and_then(|o| o.get("KHR_texture_transform"));
        push(
            Slot::Occlusion,
            Some(TexInfo {
                texture: o.index.value(),
                tex_coord: o.tex_coord,
                transform: parse_transform(transform, "occlusionTexture")?,
                scale: unit(o.strength.0, 1.0),
            }),
        );
    }
    push(Slot::Emissive, typed(&m.emissive_texture));
    let Some(ext) = &m.extensions else {
        return Ok(out);
    };
    if let Some(s) = &ext.specular {
        push(Slot::Specular, typed(&s.specular_texture));
        push(Slot::SpecularColor, typed(&s.specular_color_texture));
    }
    if let Some(t) = &ext.transmission {
        push(Slot::Transmission, typed(&t.transmission_texture));
    }
    if let Some(v) = &ext.volume {
        push(Slot::Thickness, typed(&v.thickness_texture));
    }
    if let Some(c) = ext.others.get(CLEARCOAT) {
        let c = object(c, CLEARCOAT)?;
        push(Slot::Clearcoat, raw_info(c, CLEARCOAT, "clearcoatTexture")?);
        push(
            Slot::ClearcoatRoughness,
            raw_info(c, CLEARCOAT, "clearcoatRoughnessTexture")?,
        );
        push(
            Slot::ClearcoatNormal,
            raw_info(c, CLEARCOAT, "clearcoatNormalTexture")?,
        );
    }
    if let Some(s) = ext.others.get(SHEEN) {
        let s = object(s, SHEEN)?;
        push(Slot::SheenColor, raw_info(s, SHEEN, "sheenColorTexture")?);
        push(
            Slot::SheenRoughness,
            raw_info(s, SHEEN, "sheenRoughnessTexture")?,
        );
    }
    Ok(out)
}

/// `v` when it is a JSON object, else why not.
fn object<'v>(v: &'v Value, what: &str) -> Result<&'v Value, ImportProblem> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(invalid(format!("has {what} {}, not an object", brief(v))))
    }
}

/// A JSON value, shortened for an error message.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s,
    }
}

/// Member `key` of object `obj` as a finite number; `None` when absent.
fn number(obj: &Value, key: &str, what: &str) -> Result<Option<f32>, ImportProblem> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    match v.as_f64().map(|x| x as f32) {
        Some(x) if x.is_finite() => Ok(Some(x)),
        _ => Err(invalid(format!(
            "has {what}.{key} {}, not a finite number",
            brief(v)
        ))),
    }
}

/// Member `key` of object `obj` as an array of `N` finite numbers; `None` when absent.
fn numbers<const N: usize>(
    obj: &Value,
    key: &str,
    what: &str,
) -> Result<Option<[f32; N]>, ImportProblem> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let bad = || {
        invalid(format!(
            "has {what}.{key} {}, not an array of {N} finite numbers",
            brief(v)
        ))
    };
    let items = v.as_array().filter(|a| a.len() == N).ok_or_else(bad)?;
    let mut out = [0.0; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = item
            .as_f64()
            .map(|x| x as f32)
            .filter(|x| x.is_finite())
            .ok_or_else(bad)?;
    }
    Ok(Some(out))
}

/// Member `key` of object `obj` as a non-negative 32-bit integer; `None` when absent.
fn index(obj: &Value, key: &str, what: &str) -> Result<Option<u32>, ImportProblem> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .map(Some)
        .ok_or_else(|| invalid(format!("has {what}.{key} {}, not an index", brief(v))))
}

/// `x` clamped to 0..=1 (`default` when not finite).
fn unit(x: f32, default: f32) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        default
    }
}

/// Texture info `key` of extension object `obj` (`textureInfo` or `normalTextureInfo`).
fn raw_info(obj: &Value, ext: &str, key: &str) -> Result<Option<TexInfo>, ImportProblem> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let what = format!("{ext}.{key}");
    let v = object(v, &what)?;
    let texture =
        index(v, "index", &what)?.ok_or_else(|| invalid(format!("has {what} without an index")))?;
    let transform = match v.get("extensions") {
        Some(e) => {
            let e = object(e, &format!("{what}.extensions"))?;
            parse_transform(e.get("KHR_texture_transform"), &what)?
        }
        None => None,
    };
    Ok(Some(TexInfo {
        texture: texture as usize,
        tex_coord: index(v, "texCoord", &what)?.unwrap_or(0),
        transform,
        scale: number(v, "scale", &what)?.unwrap_or(1.0),
    }))
}

/// A `KHR_texture_transform` object of the texture info `what`, from raw JSON.
fn parse_transform(v: Option<&Value>, what: &str) -> Result<Option<TexTransform>, ImportProblem> {
    let Some(v) = v else {
        return Ok(None);
    };
    let what = format!("{what}.KHR_texture_transform");
    let v = object(v, &what)?;
    Ok(Some(TexTransform {
        offset: numbers(v, "offset", &what)?.unwrap_or([0.0, 0.0]),
        rotation: number(v, "rotation", &what)?.unwrap_or(0.0),
        scale: numbers(v, "scale", &what)?.unwrap_or([1.0, 1.0]),
        tex_coord: index(v, "texCoord", &what)?,
    }))
}

/// The UV set and `KHR_texture_transform` of a texture reference, as a 2x3 affine matrix
/// (translation x rotation x scale, as the extension's reference shader composes them). Only
/// sets 0 and 1 are imported; others fall back to 0.
fn uv_transform(tex_coord: u32, transform: Option<&TexTransform>) -> (u32, [[f32; 3]; 2]) {
    let mut set = tex_coord;
    let mut m = UV_IDENTITY;
    if let Some(t) = transform {
        if let Some(c) = t.tex_coord {
            set = c;
        }
        let [ox, oy] = t.offset;
        let [sx, sy] = t.scale;
        let (sin, cos) = t.rotation.sin_cos();
        // The rotation as the extension's sample code and the Sample Viewer build it, the
        // column-major mat3(cos, -sin, 0, sin, cos, 0, ...) (UV space has v pointing down), as
        // rows of T * R * S. TextureTransformMultiTest shows its check marks only this way.
        let candidate = [[cos * sx, sin * sy, ox], [-sin * sx, cos * sy, oy]];
        if candidate.iter().flatten().all(|v| v.is_finite()) {
            m = candidate;
        }
    }
    (if set <= 1 { set } else { 0 }, m)
}

/// A texture's sampler: glTF's wrap and filter enums mapped to what wgpu expresses; a texture
/// without one gets [`Sampler::default`].
fn sampler(root: &json::Root, texture: &json::Texture) -> Sampler {
    use json::texture::{MagFilter, MinFilter, WrappingMode};
    let Some(s) = texture.sampler.and_then(|s| root.samplers.get(s.value())) else {
        return Sampler::default();
    };
    let wrap = |w: &Checked<WrappingMode>| match w {
        Checked::Valid(WrappingMode::ClampToEdge) => Wrap::ClampToEdge,
        Checked::Valid(WrappingMode::MirroredRepeat) => Wrap::MirroredRepeat,
        _ => Wrap::Repeat,
    };
    let mag = match s.mag_filter {
        Some(Checked::Valid(MagFilter::Nearest)) => Filter::Nearest,
        _ => Filter::Linear,
    };
    let (min, mipmap) = match s.min_filter {
        Some(Checked::Valid(MinFilter::Nearest)) => (Filter::Nearest, None),
        Some(Checked::Valid(MinFilter::Linear)) => (Filter::Linear, None),
        Some(Checked::Valid(MinFilter::NearestMipmapNearest)) => {
            (Filter::Nearest, Some(Filter::Nearest))
        }
        Some(Checked::Valid(MinFilter::LinearMipmapNearest)) => {
            (Filter::Linear, Some(Filter::Nearest))
        }
        Some(Checked::Valid(MinFilter::NearestMipmapLinear)) => {
            (Filter::Nearest, Some(Filter::Linear))
        }
        _ => (Filter::Linear, Some(Filter::Linear)),
    };
    Sampler {
        wrap_u: wrap(&s.wrap_s),
        wrap_v: wrap(&s.wrap_t),
        mag,
        min,
        mipmap,
    }
}

/// Checks that every texture a material refers to (in any slot, extensions included) exists,
/// with its image and sampler, and that extension JSON the importer reads raw has the right
/// shape. Runs before the `gltf` crate's validation, so a broken reference is reported with
/// the indices of the items involved.
pub(super) fn check_material_references(root: &json::Root) -> Result<(), ImportError> {
    for (m, mat) in root.materials.iter().enumerate() {
        let infos = texture_infos(mat).map_err(|problem| ImportError::Material {
            material: m,
            texture: None,
            problem,
        })?;
        for (slot, info) in infos {
            let t = info.texture;
            let Some(texture) = root.textures.get(t) else {
                return Err(ImportError::Material {
                    material: m,
                    texture: Some(t),
                    problem: invalid(format!("has a {} texture that does not exist", slot.name())),
                });
            };
            let image = image_of(texture);
            if image >= root.images.len() {
                return Err(ImportError::Image {
                    image,
                    texture: Some(t),
                    material: Some(m),
                    problem: invalid("does not exist"),
                });
            }
            if let Some(s) = texture.sampler
                && s.value() >= root.samplers.len()
            {
                return Err(ImportError::Material {
                    material: m,
                    texture: Some(t),
                    problem: invalid(format!(
                        "has a {} texture whose sampler {} does not exist",
                        slot.name(),
                        s.value()
                    )),
                });
            }
        }
    }
    Ok(())
}

/// Materials, and the textures their slots use (each image decoded once).
pub(super) fn import_materials(
    doc: &gltf::Document,
    buffers: &[Buffer<'_>],
    resolve: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImportError>,
    limits: &ImportLimits,
    step: &mut dyn FnMut(u8) -> Result<(), ImportError>,
) -> Result<(Vec<Material>, Vec<Texture>), ImportError> {
    let image_limits = ImageLimits {
        max_bytes: limits.max_file_bytes,
        max_textures: limits.max_textures,
        max_dim: limits.max_texture_dim,
    };
    let root = doc.as_json();
    let material_count = root.materials.len().max(1);
    let mut textures = Vec::new();
    let mut image_slots: HashMap<usize, Option<usize>> = HashMap::new();
    let mut materials = Vec::with_capacity(root.materials.len());
    for (i, (m, jm)) in doc.materials().zip(&root.materials).enumerate() {
        step(25 + (35 * i / material_count) as u8)?;
        let fail = |texture: Option<usize>, problem| ImportError::Material {
            material: i,
            texture,
            problem,
        };
        let infos = texture_infos(jm).map_err(|p| fail(None, p))?;
        let mut refs: [Option<TextureRef>; SLOT_COUNT] = [None; SLOT_COUNT];
        for (slot, info) in &infos {
            let texture = root.textures.get(info.texture).ok_or_else(|| {
                fail(
                    Some(info.texture),
                    invalid(format!("has a {} texture that does not exist", slot.name())),
                )
            })?;
            // The extension's image, then the core one when that cannot be drawn (a KTX2
            // video, array or cube).
            let mut decoded = None;
            for image in [image_of(texture), texture.source.value()] {
                decoded = match image_slots.get(&image) {
                    Some(decoded) => *decoded,
                    None => {
                        let decoded =
                            load_image(image, doc, buffers, resolve, &image_limits, &mut textures)
                                .map_err(|e| e.for_texture(info.texture, i))?;
                        image_slots.insert(image, decoded);
                        decoded
                    }
                };
                if decoded.is_some() {
                    break;
                }
            }
            if let (Some(decoded), Some(r)) = (decoded, refs.get_mut(*slot as usize)) {
                let (tex_coord, transform) = uv_transform(info.tex_coord, info.transform.as_ref());
                *r = Some(TextureRef {
                    texture: decoded,
                    sampler: sampler(root, texture),
                    tex_coord,
                    transform,
                });
            }
        }
        let tex = |slot: Slot| refs.get(slot as usize).copied().flatten();
        let scale = |slot: Slot| {
            infos
                .iter()
                .find(|(s, _)| *s == slot)
                .map_or(1.0, |(_, info)| info.scale)
        };
        let ext = jm.extensions.as_ref();
        let pbr = m.pbr_metallic_roughness();
        let strength = m
            .emissive_strength()
            .filter(|s| s.is_finite())
            .unwrap_or(1.0)
            .max(0.0);
        let e = m.emissive_factor();
        let clearcoat = match ext.and_then(|e| e.others.get(CLEARCOAT)) {
            Some(c) => Some(Clearcoat {
                factor: unit(
                    number(c, "clearcoatFactor", CLEARCOAT)
                        .map_err(|p| fail(None, p))?
                        .unwrap_or(0.0),
                    0.0,
                ),
                texture: tex(Slot::Clearcoat),
                roughness_factor: unit(
                    number(c, "clearcoatRoughnessFactor", CLEARCOAT)
                        .map_err(|p| fail(None, p))?
                        .unwrap_or(0.0),
                    0.0,
                ),
                roughness_texture: tex(Slot::ClearcoatRoughness),
                normal_texture: tex(Slot::ClearcoatNormal),
                normal_scale: scale(Slot::ClearcoatNormal),
            }),
            None => None,
        };
        let sheen = match ext.and_then(|e| e.others.get(SHEEN)) {
            Some(s) => Some(Sheen {
                color_factor: numbers::<3>(s, "sheenColorFactor", SHEEN)
                    .map_err(|p| fail(None, p))?
                    .unwrap_or([0.0; 3])
                    .map(|c| unit(c, 0.0)),
                color_texture: tex(Slot::SheenColor),
                roughness_factor: unit(
                    number(s, "sheenRoughnessFactor", SHEEN)
                        .map_err(|p| fail(None, p))?
                        .unwrap_or(0.0),
                    0.0,
                ),
                roughness_texture: tex(Slot::SheenRoughness),
            }),
            None => None,
        };
        let specular = ext.and_then(|e| e.specular.as_ref()).map(|s| Specular {
            factor: unit(s.specular_factor.0, 1.0),
            texture: tex(Slot::Specular),
            color_factor: s.specular_color_factor.0.map(|c| {
                if c.is_finite() {
                    c.clamp(0.0, 1e4)
                } else {
                    1.0
                }
            }),
            color_texture: tex(Slot::SpecularColor),
        });
        let transmission = ext
            .and_then(|e| e.transmission.as_ref())
            .map(|t| Transmission {
                factor: unit(t.transmission_factor.0, 0.0),
                texture: tex(Slot::Transmission),
            });
        let volume = ext.and_then(|e| e.volume.as_ref()).map(|v| Volume {
            thickness_factor: if v.thickness_factor.0.is_finite() {
                v.thickness_factor.0.max(0.0)
            } else {
                0.0
            },
            thickness_texture: tex(Slot::Thickness),
            // Zero or negative distances are invalid; NaN and +inf mean no attenuation.
            attenuation_distance: if v.attenuation_distance.0 > 0.0 {
                v.attenuation_distance.0
            } else {
                f32::INFINITY
            },
            attenuation_color: v.attenuation_color.0.map(|c| unit(c, 1.0)),
        });
        // The schema allows 0 as well as 1 and above; anything between is clamped to 1.
        let ior = match m.ior() {
            Some(0.0) => 0.0,
            Some(x) if x.is_finite() => x.max(1.0),
            _ => 1.5,
        };
        materials.push(Material {
            name: m.name().map(str::to_owned),
            base_color_factor: pbr.base_color_factor(),
            base_color_texture: tex(Slot::BaseColor),
            metallic_factor: pbr.metallic_factor(),
            roughness_factor: pbr.roughness_factor(),
            metallic_roughness_texture: tex(Slot::MetallicRoughness),
            normal_texture: tex(Slot::Normal),
            normal_scale: scale(Slot::Normal),
            occlusion_texture: tex(Slot::Occlusion),
            occlusion_strength: scale(Slot::Occlusion),
            emissive_factor: [e[0] * strength, e[1] * strength, e[2] * strength],
            emissive_texture: tex(Slot::Emissive),
            double_sided: m.double_sided(),
            alpha_mode: match jm.alpha_mode {
                Checked::Valid(json::material::AlphaMode::Mask) => AlphaMode::Mask,
                Checked::Valid(json::material::AlphaMode::Blend) => AlphaMode::Blend,
                _ => AlphaMode::Opaque,
            },
            alpha_cutoff: m
                .alpha_cutoff()
                .filter(|c| c.is_finite())
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
            unlit: m.unlit(),
            ior,
            specular,
            clearcoat,
            sheen,
            transmission,
            volume,
        });
    }
    Ok((materials, textures))
}

#[cfg(test)]
mod uv_tests {
    use super::*;

    #[test]
    fn rotation_turns_uvs_the_way_the_reference_viewer_does() {
        // A quarter turn with scale 2 and an offset: u = (1, 0) goes to (0, -2) + offset.
        let t = TexTransform {
            offset: [0.5, 0.25],
            rotation: std::f32::consts::FRAC_PI_2,
            scale: [2.0, 2.0],
            tex_coord: None,
        };
        let (set, m) = uv_transform(0, Some(&t));
        assert_eq!(set, 0);
        let apply = |u: f32, v: f32| {
            (
                m[0][0] * u + m[0][1] * v + m[0][2],
                m[1][0] * u + m[1][1] * v + m[1][2],
            )
        };
        let (u, v) = apply(1.0, 0.0);
        assert!((u - 0.5).abs() < 1e-5 && (v + 1.75).abs() < 1e-5, "{u} {v}");
        let (u, v) = apply(0.0, 1.0);
        assert!((u - 2.5).abs() < 1e-5 && (v - 0.25).abs() < 1e-5, "{u} {v}");
    }
}
