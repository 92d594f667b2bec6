//! Import against the repository's assets, hand-made files, and (when present) the shared corpus:
//! every Khronos sample loads or fails as unsupported, with counts checked against the JSON; every
//! deliberately broken file fails with a typed error, quickly, without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use farview_scene::{
    ImportError, ImportErrorKind, ImportLimits, ImportProblem, Model, import_file, import_gltf,
};

/// The corpus models that do not load, each with the reason: everything else in the manifest
/// must load.
const CORPUS_EXCEPTIONS: &[(&str, &str)] = &[(
    "IridescenceSuzanne/glTF-Binary/IridescenceSuzanne.glb",
    "requires KHR_materials_iridescence: thin-film interference is not shaded",
)];

/// Extensions the importer accepts in `extensionsRequired`.
const SUPPORTED_REQUIRED: &[&str] = &[
    "KHR_mesh_quantization",
    "KHR_texture_transform",
    "KHR_materials_emissive_strength",
    "KHR_lights_punctual",
    "KHR_materials_unlit",
    "KHR_materials_ior",
    "KHR_materials_specular",
    "KHR_materials_clearcoat",
    "KHR_materials_sheen",
    "KHR_materials_transmission",
    "KHR_materials_volume",
    "KHR_materials_variants",
    "KHR_texture_basisu",
    "EXT_meshopt_compression",
    "KHR_draco_mesh_compression",
    "EXT_mesh_gpu_instancing",
];

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
        PathBuf::from,
    );
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: corpus not found at {} (set FARVIEW_CORPUS)",
            p.display()
        );
        None
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn no_files(uri: &str) -> Result<Vec<u8>, ImportError> {
    panic!("unexpected resolve of {uri}")
}

fn import_str(json: &str) -> Result<Model, ImportError> {
    import_gltf(json.as_bytes(), &mut no_files, &ImportLimits::default())
}

fn kind_of(r: Result<Model, ImportError>) -> ImportErrorKind {
    match r {
        Ok(m) => panic!(
            "expected an error, got a model with {} triangles",
            m.triangle_count()
        ),
        Err(e) => {
            eprintln!("{:?}: {e}", e.kind());
            e.kind()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made files

/// Builds a glTF with one data-URI buffer; every accessor gets its own buffer view.
#[derive(Default)]
struct Builder {
    buf: Vec<u8>,
    views: Vec<String>,
    accessors: Vec<String>,
}

impl Builder {
    fn accessor(
        &mut self,
        bytes: &[u8],
        component: u32,
        count: usize,
        ty: &str,
        extra: &str,
    ) -> usize {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        let off = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.views.push(format!(
            r#"{{"buffer":0,"byteOffset":{off},"byteLength":{}}}"#,
            bytes.len()
        ));
        self.accessors.push(format!(
            r#"{{"bufferView":{},"componentType":{component},"count":{count},"type":"{ty}"{extra}}}"#,
            self.views.len() - 1
        ));
        self.accessors.len() - 1
    }

    fn positions(&mut self, v: &[[f32; 3]]) -> usize {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
        let (mut min, mut max) = ([f32::MAX; 3], [f32::MIN; 3]);
        for p in v {
            for c in 0..3 {
                min[c] = min[c].min(p[c]);
                max[c] = max[c].max(p[c]);
            }
        }
        let extra = format!(r#","min":{min:?},"max":{max:?}"#);
        self.accessor(&bytes, 5126, v.len(), "VEC3", &extra)
    }

    fn normals(&mut self, v: &[[f32; 3]]) -> usize {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|c| c.to_le_bytes()).collect();
        self.accessor(&bytes, 5126, v.len(), "VEC3", "")
    }

    fn indices(&mut self, v: &[u16]) -> usize {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_le_bytes()).collect();
        self.accessor(&bytes, 5123, v.len(), "SCALAR", "")
    }

    /// The whole file; `rest` holds further top-level members (meshes, nodes, ...).
    fn finish(&self, rest: &str) -> String {
        format!(
            r#"{{"asset":{{"version":"2.0"}},"accessors":[{}],"bufferViews":[{}],
            "buffers":[{{"byteLength":{},"uri":"data:application/octet-stream;base64,{}"}}]{}{rest}}}"#,
            self.accessors.join(","),
            self.views.join(","),
            self.buf.len(),
            b64(&self.buf),
            if rest.is_empty() { "" } else { "," },
        )
    }
}

const TRI: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]];

/// One triangle in the XY plane; `indices` and `normals` optional.
fn triangle(indices: bool, normals: bool) -> String {
    let mut b = Builder::default();
    let pos = b.positions(&TRI);
    let mut attrs = format!(r#""POSITION":{pos}"#);
    if normals {
        let n = b.normals(&[[0.0, 0.0, 1.0]; 3]);
        attrs.push_str(&format!(r#","NORMAL":{n}"#));
    }
    let idx = if indices {
        format!(r#","indices":{}"#, b.indices(&[0, 1, 2]))
    } else {
        String::new()
    };
    b.finish(&format!(
        r#""scene":0,"scenes":[{{"nodes":[0]}}],"nodes":[{{"mesh":0,"translation":[0,0,-1]}}],
        "meshes":[{{"primitives":[{{"attributes":{{{attrs}}}{idx}}}]}}]"#
    ))
}

fn check_triangle(m: &Model) {
    assert_eq!(m.triangle_count(), 1);
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.bounds.min.to_array(), [0.0, 0.0, 0.0]);
    assert_eq!(p.bounds.max.to_array(), [1.0, 2.0, 0.0]);
    assert_eq!(p.normals.len(), p.positions.len());
    assert_eq!(
        p.uvs,
        vec![[0.0, 0.0]; p.positions.len()],
        "missing UVs are zeros"
    );
    assert_eq!(m.roots, vec![0]);
    assert_eq!(m.nodes.len(), 1);
    assert_eq!(m.nodes[0].mesh, Some(0));
    assert_eq!(m.nodes[0].local.translation.z, -1.0);
}

#[test]
fn a_data_uri_triangle_imports_with_its_bounds() {
    let m = import_str(&triangle(true, true)).unwrap();
    check_triangle(&m);
    assert_eq!(m.meshes[0].primitives[0].indices, vec![0, 1, 2]);
    assert!(m.ignored_extensions.is_empty());
}

#[test]
fn a_triangle_without_indices_gets_generated_ones() {
    let m = import_str(&triangle(false, true)).unwrap();
    check_triangle(&m);
    assert_eq!(m.meshes[0].primitives[0].indices, vec![0, 1, 2]);
}

#[test]
fn a_triangle_without_normals_gets_flat_unit_normals() {
    for indices in [true, false] {
        let m = import_str(&triangle(indices, false)).unwrap();
        check_triangle(&m);
        let p = &m.meshes[0].primitives[0];
        assert_eq!(p.positions.len(), 3, "one vertex per triangle corner");
        for n in &p.normals {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            assert!((len - 1.0).abs() < 1e-5, "{n:?}");
            assert!((n[2] - 1.0).abs() < 1e-5, "XY triangle faces +Z: {n:?}");
        }
    }
}

#[test]
fn flat_normals_unindex_shared_vertices() {
    // A quad folded along its diagonal: two triangles sharing two vertices, different normals.
    let mut b = Builder::default();
    let pos = b.positions(&[
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 1.0],
    ]);
    let idx = b.indices(&[0, 1, 2, 2, 1, 3]);
    let json = b.finish(&format!(
        r#""nodes":[{{"mesh":0}}],"meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}},"indices":{idx}}}]}}]"#
    ));
    let m = import_str(&json).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.triangle_count(), 2);
    assert_eq!(p.positions.len(), 6);
    assert_eq!(p.normals[0], p.normals[2]);
    assert_ne!(
        p.normals[0], p.normals[3],
        "each triangle has its own face normal"
    );
    assert_eq!(
        m.roots,
        vec![0],
        "without scenes, parentless nodes are roots"
    );
}

#[test]
fn strips_and_fans_become_lists_and_lines_are_skipped() {
    let quad = [
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 0.0],
    ];
    for (mode, triangles) in [(4, 1), (5, 2), (6, 2), (0, 0), (1, 0), (2, 0), (3, 0)] {
        let mut b = Builder::default();
        let pos = b.positions(&quad);
        let json = b.finish(&format!(
            r#""nodes":[{{"mesh":0}}],"meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}},"mode":{mode}}}]}}]"#
        ));
        let m = import_str(&json).unwrap();
        assert_eq!(m.triangle_count(), triangles, "mode {mode}");
        for p in m.meshes.iter().flat_map(|m| &m.primitives) {
            assert!(p.indices.iter().all(|&i| (i as usize) < p.positions.len()));
            for n in &p.normals {
                assert!((n[2].abs() - 1.0).abs() < 1e-5, "mode {mode}: {n:?}");
            }
        }
    }
}

#[test]
fn quantized_positions_are_converted() {
    let mut b = Builder::default();
    // u16 positions (not normalized) and i8 normalized normals, as KHR_mesh_quantization allows.
    let pos: Vec<u8> = [[0u16, 0, 0], [100, 0, 0], [0, 200, 0]]
        .iter()
        .flatten()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let pos = b.accessor(
        &[pos.as_slice(), &[0, 0]].concat(),
        5123,
        3,
        "VEC3",
        r#","min":[0,0,0],"max":[100,200,0]"#,
    );
    let nrm = b.accessor(
        &[0, 0, 127, 0, 0, 0, 127, 0, 0, 0, 127, 0],
        5120,
        3,
        "VEC3",
        r#","normalized":true"#,
    );
    let json = b.finish(&format!(
        r#""extensionsUsed":["KHR_mesh_quantization"],"extensionsRequired":["KHR_mesh_quantization"],
        "nodes":[{{"mesh":0}}],"meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos},"NORMAL":{nrm}}}}}]}}]"#
    ));
    let m = import_str(&json).unwrap();
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.positions[2], [0.0, 200.0, 0.0]);
    assert_eq!(p.bounds.max.to_array(), [100.0, 200.0, 0.0]);
    assert_eq!(p.normals[0], [0.0, 0.0, 1.0]);
    assert!(m.ignored_extensions.is_empty());
}

#[test]
fn extensions_required_unsupported_fail_and_used_ones_are_listed() {
    let base = triangle(true, true);
    let with = |members: &str| base.replacen('{', &format!("{{{members},"), 1);
    let err = import_str(&with(
        r#""extensionsUsed":["KHR_materials_iridescence"],"extensionsRequired":["KHR_materials_iridescence"]"#,
    ))
    .unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Unsupported);
    assert!(
        err.to_string().contains("KHR_materials_iridescence"),
        "{err}"
    );

    let m = import_str(&with(
        r#""extensionsUsed":["KHR_materials_anisotropy","EXT_foo","KHR_materials_anisotropy","KHR_texture_transform","KHR_materials_unlit"]"#,
    ))
    .unwrap();
    assert_eq!(
        m.ignored_extensions,
        ["EXT_foo", "KHR_materials_anisotropy"]
    );
    assert_eq!(m.triangle_count(), 1);

    // The material extensions the importer handles may be required; others still fail.
    let m = import_str(&with(
        r#""extensionsUsed":["KHR_materials_clearcoat","KHR_materials_variants","KHR_materials_unlit"],
        "extensionsRequired":["KHR_materials_clearcoat","KHR_materials_variants","KHR_materials_unlit"]"#,
    ))
    .unwrap();
    assert!(m.ignored_extensions.is_empty());
    let err = import_str(&with(
        r#""extensionsUsed":["KHR_materials_anisotropy"],"extensionsRequired":["KHR_materials_anisotropy"]"#,
    ))
    .unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Unsupported);
    assert!(
        err.to_string().contains("KHR_materials_anisotropy"),
        "{err}"
    );
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 7, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The triangle with a material whose base colour texture is `image` (a JSON image object).
fn textured(image: &str) -> String {
    triangle(true, true)
        .replace(
            r#""attributes""#,
            r#""material":0,"attributes""#,
        )
        .replacen(
            '{',
            &format!(
                r#"{{"materials":[{{"name":"m","pbrMetallicRoughness":{{"baseColorFactor":[1,0.5,0.25,1],
                "baseColorTexture":{{"index":0}},"metallicFactor":0.25,"roughnessFactor":0.75}},
                "emissiveFactor":[1,1,0],"doubleSided":true,
                "extensions":{{"KHR_materials_emissive_strength":{{"emissiveStrength":3}}}}}}],
                "extensionsUsed":["KHR_materials_emissive_strength"],
                "textures":[{{"source":0}}],"images":[{image}],"#
            ),
            1,
        )
}

#[test]
fn materials_and_data_uri_textures_import() {
    let uri = format!(r#"{{"uri":"data:image/png;base64,{}"}}"#, b64(&png(4, 2)));
    let m = import_str(&textured(&uri)).unwrap();
    assert_eq!(m.meshes[0].primitives[0].material, Some(0));
    let mat = &m.materials[0];
    assert_eq!(mat.name.as_deref(), Some("m"));
    assert_eq!(mat.base_color_factor, [1.0, 0.5, 0.25, 1.0]);
    assert_eq!(
        mat.base_color_texture,
        Some(farview_scene::TextureRef::new(0))
    );
    assert_eq!(mat.metallic_factor, 0.25);
    assert_eq!(mat.roughness_factor, 0.75);
    assert_eq!(mat.emissive_factor, [3.0, 3.0, 0.0]);
    assert!(mat.double_sided);
    let t = &m.textures[0];
    assert_eq!((t.width, t.height), (4, 2));
    assert_eq!(t.rgba8.len(), 4 * 2 * 4);
    assert_eq!(&t.rgba8[4..8], &[1, 0, 7, 255]);

    let small = ImportLimits {
        max_texture_dim: 3,
        ..ImportLimits::default()
    };
    let err = import_gltf(textured(&uri).as_bytes(), &mut no_files, &small).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    assert!(
        matches!(
            err,
            ImportError::Image {
                image: 0,
                texture: Some(0),
                material: Some(0),
                problem: ImportProblem::Limit { what: "width", .. },
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("image 0"), "{err}");
    let none = ImportLimits {
        max_textures: 0,
        ..ImportLimits::default()
    };
    let err = import_gltf(textured(&uri).as_bytes(), &mut no_files, &none).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
}

#[test]
fn corrupt_textures_fail_and_unknown_formats_are_skipped() {
    let mut bad = png(4, 4);
    bad.truncate(bad.len() - 20);
    for b in bad.iter_mut().skip(40) {
        *b ^= 0x5a;
    }
    let corrupt = format!(r#"{{"uri":"data:image/png;base64,{}"}}"#, b64(&bad));
    assert_eq!(
        kind_of(import_str(&textured(&corrupt))),
        ImportErrorKind::Malformed
    );
    // Bytes that are no known image but declared PNG: corrupt, not an unsupported format.
    let junk = format!(
        r#"{{"uri":"data:image/png;base64,{}"}}"#,
        b64(b"not an image")
    );
    assert_eq!(
        kind_of(import_str(&textured(&junk))),
        ImportErrorKind::Malformed
    );
    // A KTX2 identifier followed by junk: a corrupt KTX2, refused with the transcoder's reason.
    let ktx2 = b"\xABKTX 20\xBB\r\n\x1A\n0000000000000000";
    let broken = format!(
        r#"{{"uri":"data:application/octet-stream;base64,{}"}}"#,
        b64(ktx2)
    );
    let err = import_str(&textured(&broken)).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed);
    assert!(err.to_string().contains("KTX2"), "{err}");
    // A format we do not decode (GIF, undeclared type): drawn without the texture.
    let other = format!(
        r#"{{"uri":"data:application/octet-stream;base64,{}"}}"#,
        b64(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    );
    let m = import_str(&textured(&other)).unwrap();
    assert_eq!(m.materials[0].base_color_texture, None);
    assert!(m.textures.is_empty());
}

#[test]
fn limits_are_checked_before_allocation() {
    let tight = ImportLimits {
        max_accessor_count: 2,
        ..ImportLimits::default()
    };
    let err = import_gltf(triangle(true, true).as_bytes(), &mut no_files, &tight).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    assert!(
        matches!(
            err,
            ImportError::Accessor {
                mesh: Some(0),
                primitive: Some(0),
                accessor: 0,
                problem: ImportProblem::Limit {
                    what: "count",
                    actual: 3,
                    limit: 2
                },
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("accessor 0"), "{err}");
    let small = ImportLimits {
        max_file_bytes: 10,
        ..ImportLimits::default()
    };
    let err = import_gltf(triangle(true, true).as_bytes(), &mut no_files, &small).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    let verts = ImportLimits {
        max_total_vertices: 2,
        ..ImportLimits::default()
    };
    let err = import_gltf(triangle(true, true).as_bytes(), &mut no_files, &verts).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(err.to_string().contains("total vertices"), "{err}");
}

#[test]
fn shared_accessors_cannot_multiply_memory() {
    // One data-less (sparse, all but one zero) index accessor of 3M indices, drawn by 64
    // primitives of a 3-vertex mesh: tiny file, 768 MB of indices if nothing stopped it.
    let mut b = Builder::default();
    let pos = b.positions(&TRI);
    let nrm = b.normals(&[[0.0, 0.0, 1.0]; 3]);
    let si = b.indices(&[5]);
    let sv = b.indices(&[2]);
    b.accessors.push(format!(
        r#"{{"componentType":5123,"count":3000000,"type":"SCALAR",
        "sparse":{{"count":1,"indices":{{"bufferView":{si},"componentType":5123}},"values":{{"bufferView":{sv}}}}}}}"#
    ));
    let idx = b.accessors.len() - 1;
    let prim = format!(r#"{{"attributes":{{"POSITION":{pos},"NORMAL":{nrm}}},"indices":{idx}}}"#);
    let file = |n: usize| {
        let prims = vec![prim.as_str(); n].join(",");
        b.finish(&format!(
            r#""nodes":[{{"mesh":0}}],"meshes":[{{"primitives":[{prims}]}}]"#
        ))
    };
    let limits = ImportLimits {
        max_total_vertices: 1_000_000,
        ..ImportLimits::default()
    };
    let err = import_gltf(file(64).as_bytes(), &mut no_files, &limits).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    assert!(
        err.to_string()
            .contains("total triangle indices is 9000000"),
        "{err}"
    );
    // Two of them fit, and the sparse value lands where it should.
    let m = import_gltf(file(2).as_bytes(), &mut no_files, &limits).unwrap();
    assert_eq!(m.triangle_count(), 2_000_000);
    let p = &m.meshes[0].primitives[0];
    // Index 5 is the second triangle's third vertex (clusters may have reordered triangles).
    assert_eq!(
        p.indices
            .chunks_exact(3)
            .filter(|t| *t == [0, 0, 2])
            .count(),
        1
    );
    assert_eq!(p.indices.iter().filter(|&&i| i == 2).count(), 1);
}

#[test]
fn malformed_geometry_is_rejected() {
    // Index past the vertex count.
    let mut b = Builder::default();
    let pos = b.positions(&TRI);
    let idx = b.indices(&[0, 1, 3]);
    let json = b.finish(&format!(
        r#""meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}},"indices":{idx}}}]}}]"#
    ));
    assert_eq!(kind_of(import_str(&json)), ImportErrorKind::Malformed);
    // Non-finite position (the JSON min/max cannot say so; the data does).
    let mut b = Builder::default();
    let bytes: Vec<u8> = [0.0f32, 0.0, 0.0, f32::INFINITY, 0.0, 0.0, 0.0, 1.0, 0.0]
        .iter()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let pos = b.accessor(&bytes, 5126, 3, "VEC3", r#","min":[0,0,0],"max":[1,1,0]"#);
    let json = b.finish(&format!(
        r#""meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}}}}]}}]"#
    ));
    assert_eq!(kind_of(import_str(&json)), ImportErrorKind::Malformed);
    // Stride smaller than the element.
    let json = triangle(true, true).replacen(
        r#""byteLength":36}"#,
        r#""byteLength":36,"byteStride":8}"#,
        1,
    );
    assert_eq!(kind_of(import_str(&json)), ImportErrorKind::Malformed);
    // A primitive without POSITION.
    let json = triangle(true, true).replace(r#""POSITION":0,"#, "");
    assert_eq!(kind_of(import_str(&json)), ImportErrorKind::Malformed);
    // Sparse accessor whose indices view is too short for its count.
    let mut b = Builder::default();
    let pos = b.positions(&TRI);
    let si = b.indices(&[1]);
    let json = b.finish(&format!(
        r#""meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}}}}]}}]"#
    ));
    let json = json.replacen(
        r#""type":"VEC3","min""#,
        &format!(
            r#""type":"VEC3","sparse":{{"count":2,"indices":{{"bufferView":{si},"componentType":5123}},"values":{{"bufferView":0}}}},"min""#
        ),
        1,
    );
    assert_eq!(kind_of(import_str(&json)), ImportErrorKind::Malformed);
}

#[test]
fn sparse_accessors_are_applied() {
    let mut b = Builder::default();
    let pos = b.positions(&TRI);
    let si = b.indices(&[2]);
    let sv = b.normals(&[[0.0, 5.0, 0.0]]);
    let json = b.finish(&format!(
        r#""meshes":[{{"primitives":[{{"attributes":{{"POSITION":{pos}}}}}]}}]"#
    ));
    let json = json.replacen(
        r#""type":"VEC3","min""#,
        &format!(
            r#""type":"VEC3","sparse":{{"count":1,"indices":{{"bufferView":{si},"componentType":5123}},"values":{{"bufferView":{sv}}}}},"min""#
        ),
        1,
    );
    let m = import_str(&json).unwrap();
    assert_eq!(
        m.meshes[0].primitives[0].bounds.max.to_array(),
        [1.0, 5.0, 0.0]
    );
}

fn nodes_only(nodes: &str) -> String {
    format!(r#"{{"asset":{{"version":"2.0"}},"nodes":[{nodes}]}}"#)
}

#[test]
fn node_graphs_are_checked() {
    // Two parents.
    let two = nodes_only(r#"{"children":[2]},{"children":[2]},{}"#);
    assert_eq!(kind_of(import_str(&two)), ImportErrorKind::Malformed);
    // A cycle below a root.
    let cycle = nodes_only(r#"{"children":[1]},{"children":[2]},{"children":[1]}"#);
    assert_eq!(kind_of(import_str(&cycle)), ImportErrorKind::Malformed);
    // A deep chain is valid: no depth limit, the work is bounded by the node count (iterative
    // walk, no stack overflow; `tests/deep_hierarchy.rs` goes to 100,000).
    let chain: Vec<String> = (1..=1000)
        .map(|i| format!(r#"{{"children":[{i}]}}"#))
        .chain(std::iter::once("{}".into()))
        .collect();
    let chain = nodes_only(&chain.join(","));
    let m = import_str(&chain).unwrap();
    assert_eq!((m.nodes.len(), m.roots.clone()), (1001, vec![0]));
    let few = ImportLimits {
        max_nodes: 10,
        ..ImportLimits::default()
    };
    let err = import_gltf(chain.as_bytes(), &mut no_files, &few).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    // Matrix and TRS forms; a matrix with NaN cannot be written in JSON, but a zero scale
    // matrix is fine and a huge one overflows to infinity.
    let m = import_str(&nodes_only(
        r#"{"matrix":[1,0,0,0,0,1,0,0,0,0,1,0,5,6,7,1]},{"rotation":[0,0,0,2],"scale":[1,2,3]}"#,
    ))
    .unwrap();
    assert_eq!(m.nodes[0].local.translation.to_array(), [5.0, 6.0, 7.0]);
    assert_eq!(m.nodes[1].local.scale.to_array(), [1.0, 2.0, 3.0]);
    assert!((m.nodes[1].local.rotation.length() - 1.0).abs() < 1e-6);
    let inf = nodes_only(r#"{"translation":[1e39,0,0]}"#);
    assert_eq!(kind_of(import_str(&inf)), ImportErrorKind::Malformed);
    // The default scene picks the roots.
    let scenes = r#"{"asset":{"version":"2.0"},"scene":1,"scenes":[{"nodes":[0]},{"nodes":[1]}],
        "nodes":[{},{"children":[2]},{}]}"#;
    let m = import_str(scenes).unwrap();
    assert_eq!(m.roots, vec![1]);
    assert_eq!(m.nodes[1].children, vec![2]);
}

#[test]
fn garbage_is_a_typed_error() {
    for bytes in [
        &b""[..],
        b"{",
        b"glTF",
        b"glTF\x02\0\0\0\x0c\0\0\0",
        b"\xff\xfe\0\0",
        b"{\"asset\":{\"version\":\"2.0\"},\"buffers\":[{\"byteLength\":1}]}",
        b"{\"asset\":{\"version\":\"2.0\"},\"buffers\":[{\"byteLength\":1,\"uri\":\"data:,x\"}]}",
    ] {
        let kind = kind_of(import_gltf(bytes, &mut no_files, &ImportLimits::default()));
        assert_eq!(
            kind,
            ImportErrorKind::Malformed,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The sandbox

fn sandbox() -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.gltf"), triangle(true, true)).unwrap();
    std::fs::write(root.path().join("ok.gltf"), triangle(true, true)).unwrap();
    (root, outside)
}

fn buffer_uri(uri: &str) -> String {
    format!(r#"{{"asset":{{"version":"2.0"}},"buffers":[{{"byteLength":4,"uri":"{uri}"}}]}}"#)
}

fn file_kind(root: &Path, path: &str) -> ImportErrorKind {
    kind_of(import_file(root, path, &ImportLimits::default()))
}

#[test]
fn a_file_inside_the_root_imports() {
    let (root, _outside) = sandbox();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("sub/data.bin"), [0u8; 8]).unwrap();
    std::fs::write(root.path().join("sub/m.gltf"), buffer_uri("data.bin")).unwrap();
    let l = ImportLimits::default();
    check_triangle(&import_file(root.path(), "ok.gltf", &l).unwrap());
    check_triangle(&import_file(root.path(), "./ok.gltf", &l).unwrap());
    import_file(root.path(), "sub/m.gltf", &l).unwrap();
}

#[test]
fn parent_and_absolute_paths_are_forbidden() {
    let (root, outside) = sandbox();
    let sub = root.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(file_kind(&sub, "../ok.gltf"), ImportErrorKind::Forbidden);
    assert_eq!(
        file_kind(root.path(), "../x.gltf"),
        ImportErrorKind::Forbidden
    );
    assert_eq!(
        file_kind(root.path(), "sub/../ok.gltf"),
        ImportErrorKind::Forbidden
    );
    let abs = outside.path().join("x.gltf");
    assert_eq!(
        file_kind(root.path(), abs.to_str().unwrap()),
        ImportErrorKind::Forbidden
    );
    assert_eq!(
        file_kind(root.path(), "/etc/passwd"),
        ImportErrorKind::Forbidden
    );
}

#[test]
fn a_missing_file_is_not_found() {
    let (root, _outside) = sandbox();
    assert_eq!(
        file_kind(root.path(), "nope.gltf"),
        ImportErrorKind::NotFound
    );
    assert_eq!(
        file_kind(root.path(), "no/such/dir.gltf"),
        ImportErrorKind::NotFound
    );
    assert_eq!(file_kind(root.path(), ""), ImportErrorKind::NotFound);
    std::fs::write(root.path().join("m.gltf"), buffer_uri("gone.bin")).unwrap();
    assert_eq!(file_kind(root.path(), "m.gltf"), ImportErrorKind::NotFound);
}

#[test]
fn symlinks_out_of_the_root_are_forbidden() {
    let (root, outside) = sandbox();
    let r = root.path();
    std::os::unix::fs::symlink(outside.path().join("x.gltf"), r.join("link.gltf")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(r.join("ok.gltf"), r.join("inside.gltf")).unwrap();
    std::fs::write(outside.path().join("data.bin"), [0u8; 8]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("data.bin"), r.join("data.bin")).unwrap();
    std::fs::write(r.join("m.gltf"), buffer_uri("data.bin")).unwrap();
    assert_eq!(file_kind(r, "link.gltf"), ImportErrorKind::Forbidden);
    assert_eq!(file_kind(r, "dirlink/x.gltf"), ImportErrorKind::Forbidden);
    assert_eq!(file_kind(r, "m.gltf"), ImportErrorKind::Forbidden);
    check_triangle(&import_file(r, "inside.gltf", &ImportLimits::default()).unwrap());
}

#[test]
fn external_uris_that_escape_are_forbidden() {
    let (root, _outside) = sandbox();
    for (i, uri) in [
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "http://example.com/x.bin",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("m{i}.gltf");
        std::fs::write(root.path().join(&name), buffer_uri(uri)).unwrap();
        let err = import_file(root.path(), &name, &ImportLimits::default()).unwrap_err();
        assert_eq!(err.kind(), ImportErrorKind::Forbidden, "{uri}: {err}");
    }
}

#[test]
fn file_sizes_are_checked_against_the_limit() {
    let (root, _outside) = sandbox();
    std::fs::write(root.path().join("big.bin"), vec![0u8; 4096]).unwrap();
    std::fs::write(root.path().join("m.gltf"), buffer_uri("big.bin")).unwrap();
    let l = ImportLimits {
        max_file_bytes: 1000,
        ..ImportLimits::default()
    };
    let err = import_file(root.path(), "m.gltf", &l).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded);
    assert!(err.to_string().contains("4096"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Real models

#[test]
fn box_textured_asset_imports_with_its_texture() {
    let m = import_file(
        &assets(),
        "BoxTextured/BoxTextured.gltf",
        &ImportLimits::default(),
    )
    .unwrap();
    assert_eq!(m.triangle_count(), 12);
    assert_eq!(m.materials.len(), 1);
    assert_eq!(
        m.materials[0].base_color_texture.map(|t| t.texture),
        Some(0)
    );
    assert_eq!(m.textures.len(), 1);
    let t = &m.textures[0];
    // CesiumLogoFlat.png is a 256x256 palette PNG; decoding expands it to RGBA8.
    assert_eq!((t.width, t.height), (256, 256));
    assert_eq!(t.rgba8.len(), 256 * 256 * 4);
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.bounds.min.to_array(), [-0.5, -0.5, -0.5]);
    assert_eq!(p.bounds.max.to_array(), [0.5, 0.5, 0.5]);
    assert!(p.uvs.iter().any(|uv| uv[0] != 0.0));
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.roots, vec![0]);
}

#[test]
fn fox_asset_imports_in_bind_pose() {
    let m = import_file(&assets(), "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    assert_eq!(m.triangle_count(), 576);
    assert_eq!(m.textures.len(), 1);
}

#[test]
fn damaged_helmet_imports_with_its_real_triangle_count() {
    let Some(corpus) = corpus() else { return };
    let path = "DamagedHelmet/glTF-Binary/DamagedHelmet.glb";
    let root = corpus.join("khronos");
    if !root.join(path).is_file() {
        eprintln!("skipping: {path} not in the corpus");
        return;
    }
    let m = import_file(&root, path, &ImportLimits::default()).unwrap();
    let (tris, nodes) = json_counts(&root.join(path)).unwrap();
    assert_eq!(tris, 15452);
    assert_eq!(m.triangle_count(), tris);
    assert_eq!(m.vertex_count(), 14556);
    assert_eq!(m.nodes.len(), nodes);
    assert_eq!(
        m.materials[0].base_color_texture.map(|t| t.texture),
        Some(0)
    );
    let t = &m.textures[0];
    assert_eq!((t.width, t.height), (2048, 2048));
}

/// The JSON of a `.gltf`, or the JSON chunk of a `.glb`.
fn json_of(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    let json = if bytes.starts_with(b"glTF") {
        let len = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
        bytes.get(20..20 + len)?
    } else {
        &bytes[..]
    };
    serde_json::from_slice(json).ok()
}

/// Triangle and node counts from the JSON alone (independent of the importer's accessors).
fn json_counts(path: &Path) -> Option<(usize, usize)> {
    let v = json_of(path)?;
    let acc = v["accessors"].as_array()?;
    let count = |i: &serde_json::Value| acc.get(i.as_u64()? as usize)?["count"].as_u64();
    let mut tris = 0;
    for mesh in v["meshes"].as_array().into_iter().flatten() {
        for p in mesh["primitives"].as_array()? {
            let n = if p["indices"].is_null() {
                count(&p["attributes"]["POSITION"])?
            } else {
                count(&p["indices"])?
            } as usize;
            tris += match p["mode"].as_u64().unwrap_or(4) {
                4 => n / 3,
                5 | 6 => n.saturating_sub(2),
                _ => 0,
            };
        }
    }
    // EXT_mesh_gpu_instancing: each instance becomes a child node.
    let instances: usize = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let attributes =
                n["extensions"]["EXT_mesh_gpu_instancing"]["attributes"].as_object()?;
            count(attributes.values().next()?)
        })
        .sum::<u64>() as usize;
    Some((tris, v["nodes"].as_array().map_or(0, Vec::len) + instances))
}

#[test]
fn khronos_corpus_loads_or_fails_with_unsupported() {
    let Some(corpus) = corpus() else { return };
    let root = corpus.join("khronos");
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (path_col, features_col) = (col("path"), col("features"));
    let (mut ok, mut unsupported, mut checked) = (0, 0, 0);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, features) = (cols[path_col], cols[features_col]);
        let unsupported_required: Vec<&str> = features
            .split(',')
            .filter_map(|f| f.strip_prefix("required:"))
            .filter(|e| !SUPPORTED_REQUIRED.contains(e))
            .collect();
        let t = Instant::now();
        let result = import_file(&root, path, &ImportLimits::default());
        let took = t.elapsed();
        match result {
            Ok(model) => {
                ok += 1;
                let (tris, nodes) = json_counts(&root.join(path))
                    .unwrap_or_else(|| panic!("{path}: JSON counts unreadable"));
                assert_eq!(model.triangle_count(), tris, "{path}: triangle count");
                assert_eq!(model.nodes.len(), nodes, "{path}: node count");
                checked += 1;
                eprintln!(
                    "{path:70} ok {tris:>7} tris {nodes:>4} nodes {:>2} tex {:?} ignored {:?}",
                    model.textures.len(),
                    took,
                    model.ignored_extensions
                );
                assert!(
                    unsupported_required.is_empty(),
                    "{path} loaded but requires {unsupported_required:?}"
                );
            }
            Err(e) if e.kind() == ImportErrorKind::Unsupported => {
                eprintln!("{path:70} unsupported: {e}");
                assert!(
                    CORPUS_EXCEPTIONS.iter().any(|(p, _)| *p == path),
                    "{path} failed as unsupported ({e}) but is not a listed exception"
                );
                assert!(
                    unsupported_required
                        .iter()
                        .any(|x| e.to_string().contains(x)),
                    "{path} failed as unsupported ({e}) but requires only supported extensions"
                );
                unsupported += 1;
            }
            Err(e) => panic!("{path}: {:?}: {e}", e.kind()),
        }
        assert!(took < Duration::from_secs(30), "{path} took {took:?}");
    }
    eprintln!(
        "khronos: {ok} loaded ({checked} counts checked against JSON), {unsupported} unsupported"
    );
    assert_eq!(
        unsupported,
        CORPUS_EXCEPTIONS.len(),
        "every listed exception still fails"
    );
    assert!(ok > 60);
}

#[test]
fn bad_corpus_files_are_rejected_with_typed_errors() {
    let Some(corpus) = corpus() else { return };
    let bad = corpus.join("bad");
    let table = std::fs::read_to_string(bad.join("README.tsv")).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file_col, expected_col) = (col("file"), col("expected"));
    let mut rejected = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected) = (cols[file_col], cols[expected_col]);
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| import_file(&bad, file, &ImportLimits::default()))
            .unwrap_or_else(|_| panic!("{file}: the importer panicked"));
        let took = t.elapsed();
        assert!(took < Duration::from_secs(5), "{file} took {took:?}");
        match (&result, expected) {
            (Err(e), "reject" | "reject-or-tolerate") => {
                eprintln!("{file:36} {:<13} {e}", format!("{:?}", e.kind()));
                rejected += 1;
            }
            (Ok(_), "reject-or-tolerate") => eprintln!("{file:36} tolerated"),
            (Ok(_), "reject") => panic!("{file} should be rejected"),
            (_, other) => {
                panic!("{file}: README.tsv expects '{other}', which this test does not know")
            }
        }
        let want = match file {
            "path_traversal.gltf" | "absolute_path_uri.gltf" | "file_scheme_uri.gltf" => {
                Some(ImportErrorKind::Forbidden)
            }
            "missing_external_file.gltf" | "missing_texture.gltf" => {
                Some(ImportErrorKind::NotFound)
            }
            "huge_count_2pow31.gltf" => Some(ImportErrorKind::LimitExceeded),
            _ => None,
        };
        if let (Some(want), Err(e)) = (want, &result) {
            assert_eq!(e.kind(), want, "{file}: {e}");
        }
    }
    assert!(rejected >= 40, "only {rejected} files rejected");
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid files never panic

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate_and_import(name: &str, original: &[u8], files: &[(&str, Vec<u8>)], rounds: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = ImportLimits::default();
    let mut resolve = |uri: &str| {
        files
            .iter()
            .find(|(n, _)| *n == uri)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| ImportError::NotFound(uri.to_owned()))
    };
    let (mut ok, mut err) = (0, 0);
    for round in 0..rounds {
        let mut bytes = original.to_vec();
        match round % 4 {
            0 => bytes.truncate(rng.below(original.len())),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                // Rewrite a digit: counts, offsets and indices change but the JSON stays valid.
                let digits: Vec<usize> = (0..bytes.len())
                    .filter(|&i| bytes[i].is_ascii_digit())
                    .collect();
                for _ in 0..1 + rng.below(3) {
                    if let Some(&i) = digits.get(rng.below(digits.len())) {
                        bytes[i] = b'0' + rng.below(10) as u8;
                    }
                }
            }
            _ => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            import_gltf(&bytes, &mut resolve, &limits)
        }))
        .unwrap_or_else(|_| panic!("{name}: round {round} panicked"));
        if r.is_ok() { ok += 1 } else { err += 1 }
    }
    eprintln!("{name}: {ok} mutations imported, {err} rejected");
}

#[test]
fn mutated_files_never_panic() {
    let dir = assets().join("BoxTextured");
    let files = [
        (
            "BoxTextured0.bin",
            std::fs::read(dir.join("BoxTextured0.bin")).unwrap(),
        ),
        (
            "CesiumLogoFlat.png",
            std::fs::read(dir.join("CesiumLogoFlat.png")).unwrap(),
        ),
    ];
    let gltf = std::fs::read(dir.join("BoxTextured.gltf")).unwrap();
    mutate_and_import("BoxTextured.gltf", &gltf, &files, 600);
    mutate_and_import("triangle", triangle(true, false).as_bytes(), &[], 600);
    if let Some(corpus) = corpus() {
        let glb = corpus.join("khronos/Box/glTF-Binary/Box.glb");
        if let Ok(bytes) = std::fs::read(glb) {
            mutate_and_import("Box.glb", &bytes, &[], 2000);
        }
    }
}

/// Features beyond plain geometry, checked on the Khronos samples made to test them.
#[test]
fn corpus_feature_samples_import_their_features() {
    let Some(root) = corpus() else { return };
    let load = |p: &str| {
        farview_scene::import_file(&root, &format!("khronos/{p}"), &ImportLimits::default())
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let prims = |m: &farview_scene::Model| -> Vec<farview_scene::Primitive> {
        m.meshes.iter().flat_map(|m| m.primitives.clone()).collect()
    };
    let m = load("VertexColorTest/glTF-Binary/VertexColorTest.glb");
    assert!(
        prims(&m)
            .iter()
            .any(|p| !p.colors.is_empty() && p.colors.len() == p.positions.len()),
        "COLOR_0 imported"
    );
    let m = load("MultiUVTest/glTF-Binary/MultiUVTest.glb");
    assert!(
        prims(&m)
            .iter()
            .any(|p| p.uvs1.len() == p.positions.len() && !p.uvs1.is_empty())
    );
    let m = load("TextureTransformTest/glTF/TextureTransformTest.gltf");
    assert!(
        m.materials
            .iter()
            .filter_map(|mat| mat.base_color_texture)
            .any(|t| t.transform != farview_scene::UV_IDENTITY),
        "KHR_texture_transform imported"
    );
    let m = load("AlphaBlendModeTest/glTF-Binary/AlphaBlendModeTest.glb");
    let modes: std::collections::HashSet<_> = m.materials.iter().map(|m| m.alpha_mode).collect();
    assert!(modes.contains(&farview_scene::AlphaMode::Mask));
    assert!(modes.contains(&farview_scene::AlphaMode::Blend));
    let m = load("LightsPunctualLamp/glTF/LightsPunctualLamp.gltf");
    assert!(!m.extras.lights.is_empty(), "KHR_lights_punctual imported");
    let mut scene = farview_scene::Scene::default();
    let info = scene.add_model("lamp", m).unwrap();
    assert!(info.lights_added > 0);
    assert_eq!(scene.lights().len(), info.lights_added as usize);
    let fox =
        farview_scene::import_file(&assets(), "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    assert_eq!(fox.extras.animations, ["Survey", "Walk", "Run"]);
    assert_eq!(fox.extras.skins, 1);
}

// ---------------------------------------------------------------------------------------------
// Material inputs on the Khronos samples made to test them

/// `khronos/<path>` imported, or `None` (said plainly) when the corpus or the file is absent.
fn khronos(path: &str) -> Option<Model> {
    let root = corpus()?.join("khronos");
    if !root.join(path).is_file() {
        eprintln!("skipping: {path} not in the corpus");
        return None;
    }
    Some(
        import_file(&root, path, &ImportLimits::default())
            .unwrap_or_else(|e| panic!("{path}: {e}")),
    )
}

fn material<'m>(m: &'m Model, name: &str) -> &'m farview_scene::Material {
    m.materials
        .iter()
        .find(|mat| mat.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no material {name}"))
}

/// Primitives drawn with a material that has a normal map (base or clearcoat).
fn normal_mapped(m: &Model) -> Vec<&farview_scene::Primitive> {
    m.meshes
        .iter()
        .flat_map(|mesh| &mesh.primitives)
        .filter(|p| {
            p.material
                .and_then(|i| m.materials.get(i))
                .is_some_and(|mat| mat.normal_maps().next().is_some())
        })
        .collect()
}

/// Every tangent unit length with w = ±1; with `orthogonal`, perpendicular to its normal.
fn check_tangents(p: &farview_scene::Primitive, orthogonal: bool) {
    assert_eq!(p.tangents.len(), p.positions.len());
    for (t, n) in p.tangents.iter().zip(&p.normals) {
        let tv = glam::Vec3::new(t[0], t[1], t[2]);
        assert!((tv.length() - 1.0).abs() < 1e-3, "{t:?}");
        assert!(t[3] == 1.0 || t[3] == -1.0, "{t:?}");
        if orthogonal {
            let nv = glam::Vec3::from_array(*n).normalize();
            assert!(tv.dot(nv).abs() < 1e-3, "tangent {t:?} vs normal {n:?}");
        }
    }
    assert!(p.indices.iter().all(|&i| (i as usize) < p.positions.len()));
    assert_eq!(p.normals.len(), p.positions.len());
    assert_eq!(p.uvs.len(), p.positions.len());
}

/// Mean RGB of a texture, 0..255.
fn mean_rgb(t: &farview_scene::Texture) -> [f32; 3] {
    let mut sum = [0f64; 3];
    for px in t.rgba8.chunks_exact(4) {
        for c in 0..3 {
            sum[c] += f64::from(px[c]);
        }
    }
    let n = (t.rgba8.len() / 4).max(1) as f64;
    sum.map(|s| (s / n) as f32)
}

#[test]
fn damaged_helmet_has_every_core_texture_slot_and_generated_tangents() {
    let Some(m) = khronos("DamagedHelmet/glTF-Binary/DamagedHelmet.glb") else {
        return;
    };
    let mat = &m.materials[0];
    let slot = |t: Option<farview_scene::TextureRef>, what: &str| {
        t.unwrap_or_else(|| panic!("{what} texture missing"))
    };
    // Images are decoded in the order slots first use them: base colour (image 0),
    // metallic-roughness (1), normal (4), occlusion (3), emissive (2).
    let base = slot(mat.base_color_texture, "base colour");
    let mr = slot(mat.metallic_roughness_texture, "metallic-roughness");
    let normal = slot(mat.normal_texture, "normal");
    let occlusion = slot(mat.occlusion_texture, "occlusion");
    let emissive = slot(mat.emissive_texture, "emissive");
    assert_eq!(
        [base, mr, normal, occlusion, emissive].map(|t| t.texture),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(m.textures.len(), 5);
    for t in &m.textures {
        assert_eq!((t.width, t.height), (2048, 2048));
    }
    // The right images: a tangent-space normal map is blue on average, the emissive map of the
    // helmet mostly black.
    let n = mean_rgb(&m.textures[normal.texture]);
    assert!(
        n[2] > 200.0 && n[2] > n[0] && n[2] > n[1],
        "normal map {n:?}"
    );
    let e = mean_rgb(&m.textures[emissive.texture]);
    assert!(e.iter().all(|c| *c < 60.0), "emissive map {e:?}");
    assert_eq!((mat.normal_scale, mat.occlusion_strength), (1.0, 1.0));
    assert_eq!(mat.emissive_factor, [1.0, 1.0, 1.0]);
    // The one sampler is empty: glTF's defaults.
    assert_eq!(base.sampler, farview_scene::Sampler::default());
    assert_eq!(base.tex_coord, 0);
    // No TANGENT in the file: generated with MikkTSpace.
    let prims = normal_mapped(&m);
    assert_eq!(prims.len(), 1);
    check_tangents(prims[0], true);
}

#[test]
fn normal_tangent_test_gets_tangents_and_shares_decoded_images() {
    let Some(m) = khronos("NormalTangentTest/glTF-Binary/NormalTangentTest.glb") else {
        return;
    };
    let mat = &m.materials[0];
    // Occlusion and metallic-roughness use the same texture: decoded once.
    assert_eq!(m.textures.len(), 3);
    assert_eq!(
        mat.occlusion_texture.map(|t| t.texture),
        mat.metallic_roughness_texture.map(|t| t.texture)
    );
    assert!(mat.normal_texture.is_some());
    // Its sampler: LINEAR magnification, NEAREST_MIPMAP_LINEAR minification, repeat.
    let s = mat.normal_texture.unwrap().sampler;
    use farview_scene::{Filter, Wrap};
    assert_eq!(
        (s.wrap_u, s.wrap_v, s.mag, s.min, s.mipmap),
        (
            Wrap::Repeat,
            Wrap::Repeat,
            Filter::Linear,
            Filter::Nearest,
            Some(Filter::Linear)
        )
    );
    let prims = normal_mapped(&m);
    assert!(!prims.is_empty());
    for p in prims {
        check_tangents(p, true);
    }
}

#[test]
fn sheen_cloth_keeps_the_files_tangents_and_its_sheen() {
    let Some(m) = khronos("SheenCloth/glTF/SheenCloth.gltf") else {
        return;
    };
    let root = corpus()
        .unwrap()
        .join("khronos/SheenCloth/glTF/SheenCloth.gltf");
    let json = json_of(&root).unwrap();
    let position = json["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
        .as_u64()
        .unwrap() as usize;
    let vertices = json["accessors"][position]["count"].as_u64().unwrap() as usize;
    let p = &m.meshes[0].primitives[0];
    assert_eq!(p.positions.len(), vertices, "the file's tangents: no split");
    check_tangents(p, false);
    let mat = &m.materials[0];
    let sheen = mat.sheen.expect("KHR_materials_sheen imported");
    assert_eq!(sheen.color_factor, [1.0, 1.0, 1.0]);
    assert_eq!(sheen.roughness_factor, 1.0);
    let color = sheen.color_texture.expect("sheen colour texture");
    let rough = sheen.roughness_texture.expect("sheen roughness texture");
    assert_eq!(color.texture, rough.texture);
    let tiled = [[30.0, 0.0, 0.0], [0.0, -30.0, 0.0]];
    assert_eq!(color.transform, tiled);
    // Texture transforms on the normal and occlusion textures too (read from raw JSON).
    assert_eq!(mat.normal_texture.unwrap().transform, tiled);
    assert_eq!(mat.occlusion_texture.unwrap().transform, tiled);
    assert_eq!(mat.base_color_texture.unwrap().transform, tiled);
    use farview_scene::Filter;
    let s = color.sampler;
    assert_eq!((s.min, s.mipmap), (Filter::Linear, Some(Filter::Linear)));
}

#[test]
fn texture_settings_samplers_have_their_wrap_and_filter_modes() {
    use farview_scene::{Filter, Wrap};
    for path in [
        "TextureSettingsTest/glTF-Binary/TextureSettingsTest.glb",
        "TextureSettingsTest/glTF/TextureSettingsTest.gltf",
    ] {
        let Some(m) = khronos(path) else { return };
        let wraps = |name: &str| {
            let s = material(&m, name).base_color_texture.unwrap().sampler;
            assert_eq!(
                (s.mag, s.min, s.mipmap),
                (Filter::Linear, Filter::Nearest, Some(Filter::Linear)),
                "{name}"
            );
            (s.wrap_u, s.wrap_v)
        };
        assert_eq!(
            wraps("TextureMirrorMaterialT"),
            (Wrap::Repeat, Wrap::MirroredRepeat)
        );
        assert_eq!(
            wraps("TextureMirrorMaterialS"),
            (Wrap::MirroredRepeat, Wrap::Repeat)
        );
        assert_eq!(
            wraps("TextureClampMaterialT"),
            (Wrap::Repeat, Wrap::ClampToEdge)
        );
        assert_eq!(
            wraps("TextureClampMaterialS"),
            (Wrap::ClampToEdge, Wrap::Repeat)
        );
        assert_eq!(
            wraps("TextureRepeatMaterialT"),
            (Wrap::ClampToEdge, Wrap::Repeat)
        );
        // Three images behind nine textures: each decoded once.
        assert_eq!(m.textures.len(), 3, "{path}");
    }
    // Minification without mipmaps, and a texture without a sampler.
    let Some(m) =
        khronos("TextureLinearInterpolationTest/glTF-Binary/TextureLinearInterpolationTest.glb")
    else {
        return;
    };
    let s = m.materials[1].emissive_texture.unwrap().sampler;
    assert_eq!(
        (s.mag, s.min, s.mipmap),
        (Filter::Linear, Filter::Linear, None)
    );
    let s = m.materials[2].base_color_texture.unwrap().sampler;
    assert_eq!(s, farview_scene::Sampler::default());
    let Some(m) = khronos("TextureTransformTest/glTF/TextureTransformTest.gltf") else {
        return;
    };
    let s = material(&m, "Offset U").base_color_texture.unwrap().sampler;
    assert_eq!(
        (s.wrap_u, s.wrap_v, s.mipmap),
        (Wrap::ClampToEdge, Wrap::ClampToEdge, None)
    );
}

#[test]
fn emissive_strength_multiplies_the_emissive_factor() {
    let Some(m) = khronos("EmissiveStrengthTest/glTF-Binary/EmissiveStrengthTest.glb") else {
        return;
    };
    for (name, strength) in [
        ("Emit1", 1.0),
        ("Emit2", 2.0),
        ("Emit4", 4.0),
        ("Emit8", 8.0),
        ("Emit16", 16.0),
    ] {
        let e = material(&m, name).emissive_factor;
        let want = [0.1f32, 0.5, 0.9].map(|c| c * strength);
        for (got, want) in e.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{name}: {e:?}");
        }
    }
}

#[test]
fn clearcoat_test_has_its_layers_and_coat_normal_tangents() {
    let Some(m) = khronos("ClearCoatTest/glTF-Binary/ClearCoatTest.glb") else {
        return;
    };
    assert!(material(&m, "Simple_Base").clearcoat.is_none());
    let c = material(&m, "Simple_Coated").clearcoat.unwrap();
    assert_eq!((c.factor, c.roughness_factor), (1.0, 0.03));
    assert!(c.texture.is_none() && c.roughness_texture.is_none() && c.normal_texture.is_none());
    let c = material(&m, "Partial_Coated").clearcoat.unwrap();
    assert!(c.texture.is_some());
    let c = material(&m, "RoughVariations_Coated").clearcoat.unwrap();
    assert_eq!(c.roughness_factor, 1.0);
    assert!(c.roughness_texture.is_some());
    let c = material(&m, "CoatNorm_Coated").clearcoat.unwrap();
    assert!(c.normal_texture.is_some());
    assert_eq!(c.normal_scale, 1.0);
    assert!(material(&m, "CoatNorm_Coated").normal_texture.is_none());
    // The primitives with only a clearcoat normal map get tangents too (none in the file).
    let coat = m
        .materials
        .iter()
        .position(|mat| mat.name.as_deref() == Some("CoatNorm_Coated"))
        .unwrap();
    let prims: Vec<_> = m
        .meshes
        .iter()
        .flat_map(|mesh| &mesh.primitives)
        .filter(|p| p.material == Some(coat))
        .collect();
    assert!(!prims.is_empty());
    for p in prims {
        check_tangents(p, true);
    }
    // Primitives without a normal map carry none.
    let plain = m
        .materials
        .iter()
        .position(|mat| mat.name.as_deref() == Some("Simple_Base"))
        .unwrap();
    for p in m.meshes.iter().flat_map(|mesh| &mesh.primitives) {
        if p.material == Some(plain) {
            assert!(p.tangents.is_empty());
        }
    }
}

#[test]
fn specular_transmission_volume_and_unlit_samples_have_their_data() {
    if let Some(m) = khronos("SpecularTest/glTF-Binary/SpecularTest.glb") {
        assert!(material(&m, "LabelMat").specular.is_none());
        for (name, factor) in [
            ("M1.1_specFac", 0.0),
            ("M1.3_specFac", 0.212231),
            ("M1.5_specFac", 1.0),
        ] {
            let s = material(&m, name).specular.unwrap();
            assert_eq!(s.factor, factor, "{name}");
            assert_eq!(s.color_factor, [1.0; 3], "{name}");
        }
        assert!(
            material(&m, "M2_SpecTex")
                .specular
                .unwrap()
                .texture
                .is_some()
        );
        assert!(
            material(&m, "M4_whiteTex")
                .specular
                .unwrap()
                .color_texture
                .is_some()
        );
        let colour = |name: &str| material(&m, name).specular.unwrap().color_factor;
        assert_eq!(colour("M5.5_yellowFac"), [1.0, 1.0, 0.0]);
        assert_eq!(colour("M7.5_HDR"), [25.0; 3], "colours above 1 are allowed");
    }
    if let Some(m) = khronos("TransmissionRoughnessTest/glTF-Binary/TransmissionRoughnessTest.glb")
    {
        for (name, ior) in [
            ("Mat_IOR_1.0", 1.0),
            ("Mat_IOR_1.33", 1.33),
            ("Mat_IOR_1.50", 1.5),
            ("Mat_IOR_2.42", 2.42),
        ] {
            let mat = material(&m, name);
            assert_eq!(mat.ior, ior, "{name}");
            assert_eq!(mat.transmission.unwrap().factor, 1.0, "{name}");
            let v = mat.volume.unwrap();
            assert_eq!(v.thickness_factor, 0.005, "{name}");
            assert_eq!(v.attenuation_distance, f32::INFINITY, "{name}");
        }
        assert!(material(&m, "LabelMat").transmission.is_none());
        assert_eq!(material(&m, "LabelMat").ior, 1.5);
    }
    if let Some(m) = khronos("AttenuationTest/glTF-Binary/AttenuationTest.glb") {
        for (name, thickness) in [("R2_ThicknessFac_1.5", 1.5), ("R2_ThicknessFac_0.25", 0.25)] {
            let mat = material(&m, name);
            let v = mat.volume.unwrap();
            assert_eq!(v.thickness_factor, thickness, "{name}");
            assert_eq!(v.attenuation_distance, 1.0, "{name}");
            assert_eq!(v.attenuation_color, [0.1, 0.5, 0.9], "{name}");
            assert_eq!(mat.transmission.unwrap().factor, 1.0);
        }
        assert!(material(&m, "LabelMaterial").volume.is_none());
    }
    if let Some(m) = khronos("UnlitTest/glTF-Binary/UnlitTest.glb") {
        assert_eq!(m.materials.len(), 2);
        assert!(m.materials.iter().all(|mat| mat.unlit));
        assert!(m.ignored_extensions.is_empty());
    }
}

#[test]
fn box_textured_asset_has_its_sampler() {
    let m = import_file(
        &assets(),
        "BoxTextured/BoxTextured.gltf",
        &ImportLimits::default(),
    )
    .unwrap();
    use farview_scene::{Filter, Wrap};
    let t = m.materials[0].base_color_texture.unwrap();
    assert_eq!(
        t.sampler,
        farview_scene::Sampler {
            wrap_u: Wrap::Repeat,
            wrap_v: Wrap::Repeat,
            mag: Filter::Linear,
            min: Filter::Nearest,
            mipmap: Some(Filter::Linear),
        }
    );
    assert_eq!(m.materials[0].metallic_factor, 0.0);
    // No normal map, so no tangents.
    assert!(m.meshes[0].primitives[0].tangents.is_empty());
}

/// Generated tangents agree with the ones Blender exported with the sample (direction and
/// handedness): the same file imported with and without its TANGENT attribute.
#[test]
fn generated_tangents_match_the_files_own() {
    let Some(corpus) = corpus() else { return };
    for path in [
        "SheenCloth/glTF/SheenCloth.gltf",
        "LightsPunctualLamp/glTF/LightsPunctualLamp.gltf",
    ] {
        let file = corpus.join("khronos").join(path);
        let Ok(bytes) = std::fs::read(&file) else {
            eprintln!("skipping: {path} not in the corpus");
            continue;
        };
        let dir = file.parent().unwrap().to_path_buf();
        let mut resolve = |uri: &str| {
            std::fs::read(dir.join(uri)).map_err(|_| ImportError::NotFound(uri.to_owned()))
        };
        let limits = ImportLimits::default();
        let with = import_gltf(&bytes, &mut resolve, &limits).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for mesh in json["meshes"].as_array_mut().unwrap() {
            for p in mesh["primitives"].as_array_mut().unwrap() {
                p["attributes"].as_object_mut().unwrap().remove("TANGENT");
            }
        }
        let stripped = serde_json::to_vec(&json).unwrap();
        let without = import_gltf(&stripped, &mut resolve, &limits).unwrap();
        let pairs = with
            .meshes
            .iter()
            .flat_map(|m| &m.primitives)
            .zip(without.meshes.iter().flat_map(|m| &m.primitives))
            .filter(|(a, _)| !a.tangents.is_empty());
        let mut checked = 0;
        for (file_p, gen_p) in pairs {
            check_tangents(gen_p, true);
            // Where MikkTSpace split no vertex the two line up one to one.
            let n = file_p.positions.len();
            assert_eq!(gen_p.positions[..n], file_p.positions[..], "{path}");
            let (mut same_sign, mut dot) = (0usize, 0f64);
            for (a, b) in file_p.tangents.iter().zip(&gen_p.tangents) {
                same_sign += usize::from(a[3] == b[3]);
                dot += f64::from(a[0] * b[0] + a[1] * b[1] + a[2] * b[2]);
            }
            let (same_sign, dot) = (same_sign as f64 / n as f64, dot / n as f64);
            eprintln!(
                "{path}: {n} vertices, handedness agrees on {same_sign:.4}, mean dot {dot:.4}"
            );
            assert!(same_sign > 0.99, "{path}: handedness agrees on {same_sign}");
            assert!(dot > 0.98, "{path}: mean dot {dot}");
            checked += 1;
        }
        assert!(checked > 0, "{path}: no normal-mapped primitive");
    }
}
