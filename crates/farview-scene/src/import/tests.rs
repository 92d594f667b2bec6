//! Broken inputs report the indices of the item at fault as fields of the error.

#![allow(clippy::unwrap_used, clippy::panic)]

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::model::{Material, Primitive, Sampler, TextureRef, UV_IDENTITY};

/// A glTF with one data-URI buffer; every accessor gets its own buffer view.
#[derive(Default)]
struct Doc {
    buf: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
}

const TRI: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

impl Doc {
    fn view(&mut self, bytes: &[u8]) -> usize {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.views.push(json!({
            "buffer": 0, "byteOffset": self.buf.len(), "byteLength": bytes.len()
        }));
        self.buf.extend_from_slice(bytes);
        self.views.len() - 1
    }

    /// `count` VEC3 floats read from a view holding `v` (a count above `v.len()` reads past it).
    fn positions(&mut self, v: &[[f32; 3]], count: usize) -> usize {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5126, "count": count, "type": "VEC3",
            "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0]
        }));
        self.accessors.len() - 1
    }

    fn indices(&mut self, v: &[u16]) -> usize {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5123, "count": v.len(), "type": "SCALAR"
        }));
        self.accessors.len() - 1
    }

    /// The file: `rest` holds the other top-level members.
    fn finish(&self, rest: Value) -> Vec<u8> {
        let uri = format!(
            "data:application/octet-stream;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&self.buf)
        );
        let mut root = json!({
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": self.buf.len(), "uri": uri}],
            "bufferViews": self.views,
            "accessors": self.accessors,
        });
        if let (Some(root), Value::Object(rest)) = (root.as_object_mut(), rest) {
            root.extend(rest);
        }
        serde_json::to_vec(&root).unwrap()
    }
}

fn import(bytes: &[u8]) -> Result<Model, ImportError> {
    import_with(bytes, &ImportLimits::default())
}

fn import_with(bytes: &[u8], limits: &ImportLimits) -> Result<Model, ImportError> {
    import_gltf(
        bytes,
        &mut |uri| Err(ImportError::NotFound(uri.into())),
        limits,
    )
}

/// Mesh 0 is a good triangle; mesh 1 has one primitive made by `second`.
fn two_meshes(doc: &mut Doc, second: impl FnOnce(&mut Doc) -> Value) -> Vec<u8> {
    let good = doc.positions(&TRI, 3);
    let prim = second(doc);
    doc.finish(json!({
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": good}}]},
            {"primitives": [prim]},
        ],
        "nodes": [{"mesh": 0}, {"mesh": 1}],
    }))
}

#[test]
fn an_accessor_reading_past_its_view_names_mesh_primitive_and_accessor() {
    let mut doc = Doc::default();
    let mut bad = 0;
    let file = two_meshes(&mut doc, |d| {
        bad = d.positions(&TRI, 10);
        json!({"attributes": {"POSITION": bad}})
    });
    let err = import(&file).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
    assert!(
        matches!(
            err,
            ImportError::Accessor { mesh: Some(1), primitive: Some(0), accessor, problem: ImportProblem::Invalid(_) }
                if accessor == bad
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("(mesh 1 primitive 0)"), "{err}");
}

/// Interleaved attributes (one view with a byte stride) and `u32` indices read as they are
/// written, through the float and index fast paths; an interleaved accessor one element too
/// long is refused, not read past its view.
#[test]
fn interleaved_floats_and_u32_indices_read_exactly() {
    let normals = [[0.0f32, 0.0, 1.0], [0.0, 0.6, 0.8], [0.28, 0.96, 0.0]];
    let mut bytes = Vec::new();
    for (p, n) in TRI.iter().zip(&normals) {
        bytes.extend(p.iter().chain(n).flat_map(|c| c.to_le_bytes()));
    }
    let file = |count: usize| {
        let mut doc = Doc::default();
        let view = doc.view(&bytes);
        doc.views[view]["byteStride"] = json!(24);
        let index_view = doc.view(&[2u32, 0, 1].map(u32::to_le_bytes).concat());
        doc.accessors = vec![
            json!({"bufferView": view, "componentType": 5126, "count": count, "type": "VEC3",
                   "min": [0.0, 0.0, 0.0], "max": [1.0, 1.0, 0.0]}),
            json!({"bufferView": view, "byteOffset": 12, "componentType": 5126,
                   "count": count, "type": "VEC3"}),
            json!({"bufferView": index_view, "componentType": 5125, "count": 3,
                   "type": "SCALAR"}),
        ];
        doc.finish(json!({
            "meshes": [{"primitives": [{
                "attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2
            }]}],
            "nodes": [{"mesh": 0}],
        }))
    };
    let model = import(&file(3)).unwrap();
    let p = &model.meshes[0].primitives[0];
    assert_eq!(p.positions, TRI);
    assert_eq!(p.normals, normals);
    assert_eq!(p.indices, [2, 0, 1]);
    let err = import(&file(4)).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
}

#[test]
fn a_missing_accessor_names_mesh_primitive_and_accessor() {
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        json!({"attributes": {"POSITION": pos, "NORMAL": 99}})
    });
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(1),
                primitive: Some(0),
                accessor: 99,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_index_past_the_vertices_names_its_accessor() {
    let mut doc = Doc::default();
    let mut idx = 0;
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        idx = d.indices(&[0, 1, 7]);
        json!({"attributes": {"POSITION": pos}, "indices": idx})
    });
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor { mesh: Some(1), primitive: Some(0), accessor, .. } if accessor == idx
        ),
        "{err:?}"
    );
}

#[test]
fn primitive_problems_and_limits_name_the_primitive() {
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |_| json!({"attributes": {}}));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 1,
                primitive: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // Mesh 0 takes 3 of the 5 vertices, mesh 1's 3 go over.
    let mut doc = Doc::default();
    let file = two_meshes(&mut doc, |d| {
        let pos = d.positions(&TRI, 3);
        json!({"attributes": {"POSITION": pos, "NORMAL": pos}})
    });
    let limits = ImportLimits {
        max_total_vertices: 5,
        ..ImportLimits::default()
    };
    let err = import_with(&file, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 1,
                primitive: 0,
                problem: ImportProblem::Limit {
                    what: "total vertices",
                    actual: 6,
                    limit: 5
                },
            }
        ),
        "{err:?}"
    );
    // An accessor over the count limit is a limit error naming it.
    let limits = ImportLimits {
        max_accessor_count: 2,
        ..ImportLimits::default()
    };
    let err = import_with(&file, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(0),
                primitive: Some(0),
                accessor: 0,
                problem: ImportProblem::Limit { what: "count", .. },
            }
        ),
        "{err:?}"
    );
}

#[test]
fn views_and_buffers_are_named() {
    let mut doc = Doc::default();
    let pos = doc.positions(&TRI, 3);
    doc.views
        .push(json!({"buffer": 0, "byteOffset": 4, "byteLength": 4096}));
    let file = doc.finish(json!({"meshes": [{"primitives": [{"attributes": {"POSITION": pos}}]}]}));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::BufferView {
                view: 1,
                buffer: 0,
                ..
            }
        ),
        "{err:?}"
    );
    let mut doc = Doc::default();
    doc.positions(&TRI, 3);
    let mut file: Value = serde_json::from_slice(&doc.finish(json!({}))).unwrap();
    file["buffers"][0]["byteLength"] = json!(1000);
    let err = import(&serde_json::to_vec(&file).unwrap()).unwrap_err();
    assert!(
        matches!(err, ImportError::Buffer { buffer: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn materials_textures_and_images_are_named() {
    let base =
        |texture: usize| json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": texture}}});
    // Material 1 refers to texture 5 of 1.
    let file = Doc::default().finish(json!({
        "materials": [{}, base(5)],
        "textures": [{"source": 0}],
        "images": [{"uri": "a.png"}],
    }));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Material {
                material: 1,
                texture: Some(5),
                ..
            }
        ),
        "{err:?}"
    );
    // Texture 1 (used by material 0) has no image 3.
    let file = Doc::default().finish(json!({
        "materials": [base(1)],
        "textures": [{"source": 0}, {"source": 3}],
        "images": [{"uri": "a.png"}],
    }));
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Image {
                image: 3,
                texture: Some(1),
                material: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    // Image 1, declared PNG, holds junk: named with the texture and material that use it.
    let junk = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"not an image")
    );
    let file = Doc::default().finish(json!({
        "materials": [{}, base(0)],
        "textures": [{"source": 1}],
        "images": [{"uri": "unused.png"}, {"uri": junk}],
    }));
    let err = import(&file).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed);
    assert!(
        matches!(
            err,
            ImportError::Image {
                image: 1,
                texture: Some(0),
                material: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn node_problems_name_the_node() {
    let nodes = |nodes: Value| Doc::default().finish(json!({ "nodes": nodes }));
    let cases = [
        (json!([{}, {"children": [2]}, {}, {"children": [2]}]), 2),
        (json!([{}, {"children": [9]}]), 1),
        (json!([{}, {"children": [1]}]), 1),
        (json!([{}, {"children": [2]}, {"children": [1]}]), 1),
        (json!([{}, {}, {"mesh": 4}]), 2),
        (
            json!([{}, {"matrix": [1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1], "scale": [1,1,1]}]),
            1,
        ),
        (json!([{"rotation": [0, 0, 0, 0]}]), 0),
    ];
    for (nodes_json, expect) in cases {
        let err = import(&nodes(nodes_json.clone())).unwrap_err();
        assert!(
            matches!(err, ImportError::Node { node, .. } if node == expect),
            "{nodes_json}: {err:?}"
        );
        assert_eq!(err.kind(), ImportErrorKind::Malformed);
    }
}

#[test]
fn json_nesting_ignores_brackets_in_strings() {
    assert_eq!(json_depth(br#"{"a":[1,{"b":"]]]]{{"}]}"#), 3);
}

// ---------------------------------------------------------------------------------------------
// Material inputs: samplers, every texture slot, extensions, variants and tangents

impl Doc {
    /// `count` elements of `N` floats as an accessor of type `ty` (VEC2, VEC3, VEC4).
    fn floats<const N: usize>(&mut self, v: &[[f32; N]], ty: &str) -> usize {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5126, "count": v.len(), "type": ty
        }));
        self.accessors.len() - 1
    }
}

/// A 2x2 PNG as a JSON image with a data URI.
fn png_image() -> Value {
    let img = ::image::RgbaImage::from_fn(2, 2, |x, y| ::image::Rgba([x as u8, y as u8, 200, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ::image::ImageFormat::Png).unwrap();
    json!({"uri": format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    )})
}

/// One triangle drawn with material 0 of `materials`, with one PNG image shared by `textures`.
fn material_file(materials: Value, textures: Value, samplers: Value) -> Vec<u8> {
    let mut doc = Doc::default();
    let pos = doc.positions(&TRI, 3);
    doc.finish(json!({
        "meshes": [{"primitives": [{"attributes": {"POSITION": pos}, "material": 0}]}],
        "nodes": [{"mesh": 0}],
        "materials": materials,
        "textures": textures,
        "samplers": samplers,
        "images": [png_image()],
    }))
}

#[test]
fn every_slot_gets_its_sampler_uv_set_and_transform_and_images_decode_once() {
    let samplers = json!([
        {},
        {"wrapS": 33071, "wrapT": 33648, "magFilter": 9728, "minFilter": 9728},
        {"minFilter": 9729},
        {"minFilter": 9984},
        {"minFilter": 9985},
        {"minFilter": 9986},
        {"minFilter": 9987, "wrapS": 10497, "wrapT": 33071, "magFilter": 9729},
    ]);
    // Texture i uses sampler i; texture 7 has none.
    let mut textures: Vec<Value> = (0..7).map(|i| json!({"source": 0, "sampler": i})).collect();
    textures.push(json!({"source": 0}));
    let transform = json!({"KHR_texture_transform": {"offset": [0.25, 0.0], "scale": [2.0, 2.0]}});
    let material = json!({
        "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0},
            "metallicRoughnessTexture": {"index": 1, "texCoord": 1},
        },
        "normalTexture": {"index": 2, "texCoord": 1, "scale": 0.5, "extensions": transform},
        "occlusionTexture": {"index": 3, "strength": 0.25},
        "emissiveTexture": {"index": 4},
        "emissiveFactor": [1.0, 0.5, 0.0],
        "extensions": {
            "KHR_materials_emissive_strength": {"emissiveStrength": 2.0},
            "KHR_materials_clearcoat": {
                "clearcoatFactor": 0.5,
                "clearcoatTexture": {"index": 5},
                "clearcoatRoughnessTexture": {"index": 6, "extensions": transform},
                "clearcoatNormalTexture": {"index": 7, "scale": 0.75},
            },
            "KHR_materials_sheen": {
                "sheenColorFactor": [0.5, 0.25, 1.0],
                "sheenColorTexture": {"index": 1},
                "sheenRoughnessFactor": 0.5,
            },
            "KHR_materials_specular": {"specularFactor": 0.5, "specularColorTexture": {"index": 2}},
            "KHR_materials_transmission": {"transmissionFactor": 0.75, "transmissionTexture": {"index": 3}},
            "KHR_materials_volume": {"thicknessFactor": 2.0, "thicknessTexture": {"index": 4},
                "attenuationColor": [0.5, 0.5, 0.5], "attenuationDistance": 3.0},
            "KHR_materials_ior": {"ior": 1.25},
        },
    });
    let m = import(&material_file(json!([material]), json!(textures), samplers)).unwrap();
    assert_eq!(
        m.textures.len(),
        1,
        "one image, decoded once for every slot"
    );
    let mat = &m.materials[0];
    let s = |t: Option<TextureRef>| t.unwrap().sampler;
    use crate::model::{Filter::*, Wrap::*};
    assert_eq!(s(mat.base_color_texture), Sampler::default());
    assert_eq!(
        s(mat.metallic_roughness_texture),
        Sampler {
            wrap_u: ClampToEdge,
            wrap_v: MirroredRepeat,
            mag: Nearest,
            min: Nearest,
            mipmap: None
        }
    );
    let filters = |t: Option<TextureRef>| {
        let s = s(t);
        (s.mag, s.min, s.mipmap)
    };
    assert_eq!(filters(mat.normal_texture), (Linear, Linear, None));
    assert_eq!(
        filters(mat.occlusion_texture),
        (Linear, Nearest, Some(Nearest))
    );
    assert_eq!(
        filters(mat.emissive_texture),
        (Linear, Linear, Some(Nearest))
    );
    let cc = mat.clearcoat.unwrap();
    assert_eq!(filters(cc.texture), (Linear, Nearest, Some(Linear)));
    let rough = s(cc.roughness_texture);
    assert_eq!((rough.wrap_u, rough.wrap_v), (Repeat, ClampToEdge));
    assert_eq!(
        (rough.mag, rough.min, rough.mipmap),
        (Linear, Linear, Some(Linear))
    );
    assert_eq!(s(cc.normal_texture), Sampler::default());
    assert_eq!(
        (cc.factor, cc.roughness_factor, cc.normal_scale),
        (0.5, 0.0, 0.75)
    );
    // UV sets, transforms and the normal and occlusion scalars.
    let t = |t: Option<TextureRef>| t.unwrap();
    assert_eq!(t(mat.metallic_roughness_texture).tex_coord, 1);
    assert_eq!(t(mat.normal_texture).tex_coord, 1);
    let scaled = [[2.0, 0.0, 0.25], [0.0, 2.0, 0.0]];
    assert_eq!(t(mat.normal_texture).transform, scaled);
    assert_eq!(t(cc.roughness_texture).transform, scaled);
    assert_eq!(t(mat.base_color_texture).transform, UV_IDENTITY);
    assert_eq!((mat.normal_scale, mat.occlusion_strength), (0.5, 0.25));
    assert_eq!(mat.emissive_factor, [2.0, 1.0, 0.0]);
    let sheen = mat.sheen.unwrap();
    assert_eq!(sheen.color_factor, [0.5, 0.25, 1.0]);
    assert_eq!(sheen.roughness_factor, 0.5);
    let same = |t: Option<TextureRef>| t.map(|t| (t.texture, t.sampler));
    assert_eq!(
        same(sheen.color_texture),
        same(mat.metallic_roughness_texture)
    );
    assert_eq!(t(sheen.color_texture).tex_coord, 0);
    assert_eq!(sheen.roughness_texture, None);
    let spec = mat.specular.unwrap();
    assert_eq!((spec.factor, spec.color_factor), (0.5, [1.0; 3]));
    assert!(spec.texture.is_none() && spec.color_texture.is_some());
    let tr = mat.transmission.unwrap();
    assert_eq!(tr.factor, 0.75);
    assert!(tr.texture.is_some());
    let vol = mat.volume.unwrap();
    assert_eq!(
        (
            vol.thickness_factor,
            vol.attenuation_distance,
            vol.attenuation_color
        ),
        (2.0, 3.0, [0.5; 3])
    );
    assert!(vol.thickness_texture.is_some());
    assert_eq!(mat.ior, 1.25);
    assert!(!mat.unlit);
}

#[test]
fn clearcoat_and_sheen_values_are_checked_or_clamped() {
    let with = |ext: Value| {
        material_file(
            json!([{}, {"extensions": ext}]),
            json!([{"source": 0}]),
            json!([]),
        )
    };
    // Wrong types are errors naming the material.
    for (ext, needle) in [
        (
            json!({"KHR_materials_clearcoat": {"clearcoatFactor": "high"}}),
            "clearcoatFactor",
        ),
        (json!({"KHR_materials_clearcoat": 5}), "not an object"),
        (
            json!({"KHR_materials_clearcoat": {"clearcoatTexture": {"texCoord": 0}}}),
            "without an index",
        ),
        (
            json!({"KHR_materials_clearcoat": {"clearcoatNormalTexture": {"index": -1}}}),
            "not an index",
        ),
        (
            json!({"KHR_materials_sheen": {"sheenColorFactor": [1.0, 0.5]}}),
            "sheenColorFactor",
        ),
        (
            json!({"KHR_materials_sheen": {"sheenRoughnessTexture": {"index": 0,
                "extensions": {"KHR_texture_transform": {"rotation": "left"}}}}}),
            "rotation",
        ),
    ] {
        let err = import(&with(ext.clone())).unwrap_err();
        assert_eq!(err.kind(), ImportErrorKind::Malformed, "{ext}: {err}");
        assert!(
            matches!(
                err,
                ImportError::Material {
                    material: 1,
                    texture: None,
                    ..
                }
            ),
            "{ext}: {err:?}"
        );
        assert!(err.to_string().contains(needle), "{ext}: {err}");
    }
    // A texture that does not exist names it.
    let err = import(&with(json!({"KHR_materials_clearcoat": {
        "clearcoatNormalTexture": {"index": 9}
    }})))
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Material {
                material: 1,
                texture: Some(9),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("clearcoat normal"), "{err}");
    // Numbers out of range are clamped.
    let m = import(&with(json!({
        "KHR_materials_clearcoat": {"clearcoatFactor": 2.5, "clearcoatRoughnessFactor": -1},
        "KHR_materials_sheen": {"sheenColorFactor": [2.0, -1.0, 0.5], "sheenRoughnessFactor": 7},
        "KHR_materials_transmission": {"transmissionFactor": 3},
        "KHR_materials_ior": {"ior": 0.5},
        "KHR_materials_volume": {"attenuationDistance": -2, "attenuationColor": [2, 0.5, -1]},
    })))
    .unwrap();
    let mat = &m.materials[1];
    let cc = mat.clearcoat.unwrap();
    assert_eq!((cc.factor, cc.roughness_factor), (1.0, 0.0));
    let sheen = mat.sheen.unwrap();
    assert_eq!(
        (sheen.color_factor, sheen.roughness_factor),
        ([1.0, 0.0, 0.5], 1.0)
    );
    assert_eq!(mat.transmission.unwrap().factor, 1.0);
    assert_eq!(mat.ior, 1.0);
    let vol = mat.volume.unwrap();
    assert_eq!(vol.attenuation_distance, f32::INFINITY);
    assert_eq!(vol.attenuation_color, [1.0, 0.5, 0.0]);
    assert_eq!(m.materials[0], Material::default());
}

#[test]
fn a_sampler_that_does_not_exist_names_material_and_texture() {
    let file = material_file(
        json!([{"emissiveTexture": {"index": 0}}]),
        json!([{"source": 0, "sampler": 3}]),
        json!([{}]),
    );
    let err = import(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Material {
                material: 0,
                texture: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("sampler 3"), "{err}");
}

/// Mesh 0 is a triangle with `KHR_materials_variants` mappings `mappings` over three materials
/// and variants named `red` and `blue`.
fn variants_file(mappings: Value) -> Vec<u8> {
    let mut doc = Doc::default();
    let pos = doc.positions(&TRI, 3);
    doc.finish(json!({
        "extensionsUsed": ["KHR_materials_variants"],
        "extensions": {"KHR_materials_variants": {"variants": [{"name": "red"}, {"name": "blue"}]}},
        "meshes": [{"primitives": [
            {"attributes": {"POSITION": pos}},
            {"attributes": {"POSITION": pos}, "material": 0,
             "extensions": {"KHR_materials_variants": {"mappings": mappings}}},
        ]}],
        "nodes": [{"mesh": 0}],
        "materials": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    }))
}

#[test]
fn variants_map_materials_and_bad_indices_are_named() {
    let m = import(&variants_file(json!([
        {"material": 1, "variants": [0]},
        {"material": 2, "variants": [1, 0]},
    ])))
    .unwrap();
    assert_eq!(m.variants, ["red", "blue"]);
    let p = &m.meshes[0].primitives[1];
    assert_eq!(
        p.variant_materials,
        [(0, 1), (1, 2)],
        "a variant keeps its first mapping"
    );
    assert_eq!(p.material_for_variant(None), Some(0));
    assert_eq!(p.material_for_variant(Some(0)), Some(1));
    assert_eq!(p.material_for_variant(Some(1)), Some(2));
    assert_eq!(p.material_for_variant(Some(7)), Some(0));
    assert!(m.meshes[0].primitives[0].variant_materials.is_empty());
    assert_eq!(
        m.meshes[0].primitives[0].material_for_variant(Some(0)),
        None
    );

    for (mappings, needle) in [
        (json!([{"material": 1, "variants": [2]}]), "variant 2"),
        (json!([{"material": 5, "variants": [0]}]), "material 5"),
    ] {
        let err = import(&variants_file(mappings.clone())).unwrap_err();
        assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
        assert!(
            matches!(
                err,
                ImportError::Primitive {
                    mesh: 0,
                    primitive: 1,
                    ..
                }
            ),
            "{mappings}: {err:?}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    }
}

/// A unit quad in the XY plane facing +Z whose U runs along +Y and V along -X, drawn with
/// material 0 of `materials` (which may use texture 0); `uvs` and `normals` optional,
/// `tangents` written as given.
fn quad_file(materials: Value, uvs: bool, normals: bool, tangents: Option<&[[f32; 4]]>) -> Vec<u8> {
    let mut doc = Doc::default();
    let pos = doc.positions(
        &[
            [0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [-1.0, 1.0, 0.0],
            [-1.0, 0.0, 0.0],
        ],
        4,
    );
    let mut attributes = json!({"POSITION": pos});
    if uvs {
        let uv = doc.floats(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], "VEC2");
        attributes["TEXCOORD_0"] = json!(uv);
    }
    if normals {
        let n = doc.floats(&[[0.0, 0.0, 1.0]; 4], "VEC3");
        attributes["NORMAL"] = json!(n);
    }
    if let Some(t) = tangents {
        let t = doc.floats(t, "VEC4");
        attributes["TANGENT"] = json!(t);
    }
    let idx = doc.indices(&[0, 1, 2, 0, 2, 3]);
    doc.finish(json!({
        "meshes": [{"primitives": [{"attributes": attributes, "indices": idx, "material": 0}]}],
        "nodes": [{"mesh": 0}],
        "materials": materials,
        "textures": [{"source": 0}],
        "images": [png_image()],
    }))
}

fn normal_mapped() -> Value {
    json!([{"normalTexture": {"index": 0}}])
}

fn assert_unit_tangents(p: &Primitive) {
    assert_eq!(p.tangents.len(), p.positions.len());
    for (t, n) in p.tangents.iter().zip(&p.normals) {
        let tv = glam::Vec3::new(t[0], t[1], t[2]);
        assert!((tv.length() - 1.0).abs() < 1e-4, "{t:?}");
        assert!(t[3] == 1.0 || t[3] == -1.0, "{t:?}");
        assert!(
            tv.dot(glam::Vec3::from_array(*n)).abs() < 1e-4,
            "{t:?} vs {n:?}"
        );
    }
}

#[test]
fn tangents_are_generated_along_u_for_a_normal_mapped_quad() {
    let m = import(&quad_file(normal_mapped(), true, true, None)).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.positions.len(), 4, "a flat quad needs no split vertices");
    assert_eq!(p.indices, [0, 1, 2, 0, 2, 3]);
    assert_unit_tangents(p);
    for t in &p.tangents {
        assert!(
            (t[1] - 1.0).abs() < 1e-4,
            "tangent points along +U (+Y): {t:?}"
        );
        // The bitangent points up the image, against +V (-X here), so towards +X; with
        // N = +Z and T = +Y, cross(N, T) = -X, so w = -1.
        assert_eq!(t[3], -1.0, "{t:?}");
    }
    // A clearcoat normal map needs tangents too.
    let coat = json!([{"extensions": {"KHR_materials_clearcoat": {
        "clearcoatFactor": 1, "clearcoatNormalTexture": {"index": 0}
    }}}]);
    let m = import(&quad_file(coat, true, true, None)).unwrap();
    assert_unit_tangents(&m.meshes[0].primitives[0]);
    // No normal map: no tangents kept, even when the file has them.
    let m = import(&quad_file(
        json!([{}]),
        true,
        true,
        Some(&[[1.0, 0.0, 0.0, 1.0]; 4]),
    ))
    .unwrap();
    assert!(m.meshes[0].primitives[0].tangents.is_empty());
    // Flat normals: the quad is unwelded, and each corner gets its tangent.
    let m = import(&quad_file(normal_mapped(), true, false, None)).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.positions.len(), 6);
    assert_unit_tangents(p);
    assert!(p.tangents.iter().all(|t| (t[1] - 1.0).abs() < 1e-4));
    // No UVs: tangents cannot follow U, but are still perpendicular to the normal.
    let m = import(&quad_file(normal_mapped(), false, true, None)).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.positions.len(), 4);
    assert_unit_tangents(p);
}

#[test]
fn file_tangents_are_checked_and_normalised() {
    let t = [
        [2.0, 0.0, 0.0, 0.5],
        [0.0, 3.0, 0.0, -7.0],
        [0.0, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0],
    ];
    let m = import(&quad_file(normal_mapped(), true, true, Some(&t))).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.tangents[0], [1.0, 0.0, 0.0, 1.0]);
    assert_eq!(p.tangents[1], [0.0, 1.0, 0.0, -1.0]);
    assert_eq!(p.tangents[3], [1.0, 0.0, 0.0, 1.0], "w = 0 becomes +1");
    assert_unit_tangents(p);
    // Non-finite values and the wrong type name the accessor and the primitive.
    let mut bad = t;
    bad[2][1] = f32::NAN;
    let err = import(&quad_file(normal_mapped(), true, true, Some(&bad))).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(0),
                primitive: Some(0),
                accessor: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("non-finite"), "{err}");
    let mut doc: Value =
        serde_json::from_slice(&quad_file(normal_mapped(), true, true, Some(&t))).unwrap();
    doc["accessors"][3]["type"] = json!("VEC3");
    let err = import(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(0),
                primitive: Some(0),
                accessor: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("TANGENT"), "{err}");
    // A count that disagrees with the positions.
    let err = import(&quad_file(normal_mapped(), true, true, Some(&t[..3]))).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 0,
                primitive: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn tangent_generation_counts_split_vertices_against_the_limit() {
    // Each triangle of the quad mirrors U, so the two shared vertices need two tangents each.
    let mut doc = Doc::default();
    let pos = doc.positions(
        &[
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
        ],
        4,
    );
    let uv = doc.floats(&[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "VEC2");
    let n = doc.floats(&[[0.0, 0.0, 1.0]; 4], "VEC3");
    let idx = doc.indices(&[0, 1, 2, 0, 2, 3]);
    let file = doc.finish(json!({
        "meshes": [{"primitives": [{"attributes": {"POSITION": pos, "TEXCOORD_0": uv,
            "NORMAL": n}, "indices": idx, "material": 0}]}],
        "nodes": [{"mesh": 0}],
        "materials": normal_mapped(),
        "textures": [{"source": 0}],
        "images": [png_image()],
    }));
    let m = import(&file).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert!(p.positions.len() > 4, "split: {}", p.positions.len());
    assert_eq!(p.normals.len(), p.positions.len());
    assert_eq!(p.uvs.len(), p.positions.len());
    assert!(p.indices.iter().all(|&i| (i as usize) < p.positions.len()));
    assert_unit_tangents(p);
    assert_eq!(p.bounds.max.to_array(), [1.0, 1.0, 0.0]);
    let limits = ImportLimits {
        max_total_vertices: 4,
        ..ImportLimits::default()
    };
    let err = import_with(&file, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    assert!(
        matches!(
            err,
            ImportError::Primitive {
                mesh: 0,
                primitive: 0,
                problem: ImportProblem::Limit {
                    what: "total vertices",
                    ..
                },
            }
        ),
        "{err:?}"
    );
}
