//! Compressed glTF from the repository's `assets/compressed` (every checkout runs these): Draco
//! meshes, meshopt buffer views with a fallback buffer that is never read, WebP and KTX2 (ETC1S
//! and UASTC) images, GPU instancing; and the same files damaged, which must fail with typed
//! errors and never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use farview_scene::{ImportError, ImportErrorKind, ImportLimits, Model, import_file, import_gltf};
use glam::Vec3;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

fn import(relative: &str) -> Model {
    import_file(&assets(), relative, &ImportLimits::default())
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Imports `main` from memory, resolving URIs from `files` (name, bytes).
fn import_with(main: &[u8], files: &[(&str, Vec<u8>)]) -> Result<Model, ImportError> {
    let mut resolve = |uri: &str| {
        files
            .iter()
            .find(|(name, _)| *name == uri)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| ImportError::NotFound(uri.to_owned()))
    };
    import_gltf(main, &mut resolve, &ImportLimits::default())
}

fn read(relative: &str) -> Vec<u8> {
    std::fs::read(assets().join(relative)).unwrap()
}

/// Writes a decoded texture where a person can look at it.
fn save(name: &str, t: &farview_scene::Texture) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compressed");
    std::fs::create_dir_all(&dir).unwrap();
    image::save_buffer(
        dir.join(name),
        &t.rgba8,
        t.width,
        t.height,
        image::ColorType::Rgba8,
    )
    .unwrap();
    eprintln!("wrote {}", dir.join(name).display());
}

fn unit(v: [f32; 3]) -> bool {
    (Vec3::from_array(v).length() - 1.0).abs() < 0.02
}

#[test]
fn draco_box_decodes_to_the_unit_box() {
    let m = import("compressed/Box-Draco/Box.gltf");
    assert_eq!(m.triangle_count(), 12);
    let p = &m.meshes[0].primitives[0];
    assert!(
        p.bounds.min.abs_diff_eq(Vec3::splat(-0.5), 1e-3),
        "{:?}",
        p.bounds
    );
    assert!(
        p.bounds.max.abs_diff_eq(Vec3::splat(0.5), 1e-3),
        "{:?}",
        p.bounds
    );
    assert!(p.normals.iter().all(|n| unit(*n)));
    // Every face normal agrees with its vertices' normals (the stream's corners line up).
    for tri in p.indices.chunks_exact(3) {
        let [a, b, c] = [0, 1, 2].map(|i| Vec3::from_array(p.positions[tri[i] as usize]));
        let face = (b - a).cross(c - a).normalize();
        let n = Vec3::from_array(p.normals[tri[0] as usize]);
        assert!(face.dot(n) > 0.99, "face {face} vertex normal {n}");
    }
}

#[test]
fn meshopt_views_decode_without_reading_the_fallback_buffer() {
    let dir = "compressed/MeshoptFallbackBox";
    let gltf = read(&format!("{dir}/meshopt-fallback.gltf"));
    // Only the compressed buffer is offered: reading the fallback file would fail the import.
    let m = import_with(
        &gltf,
        &[(
            "meshopt-fallback.bin",
            read(&format!("{dir}/meshopt-fallback.bin")),
        )],
    )
    .unwrap();
    assert_eq!(m.triangle_count(), 60);
    let prims: Vec<_> = m.meshes.iter().flat_map(|m| &m.primitives).collect();
    assert!(!prims.is_empty());
    for p in prims {
        assert!(
            p.normals.iter().all(|n| unit(*n)),
            "octahedral normals decode to unit length"
        );
        assert!(!p.bounds.is_empty());
        assert!(p.bounds.size().min_element() > 0.0, "{:?}", p.bounds);
    }
}

#[test]
fn webp_texture_decodes_like_the_png_it_was_made_from() {
    let m = import("compressed/BoxTexturedWebp/BoxTexturedWebp.gltf");
    assert_eq!(m.textures.len(), 1);
    let webp = &m.textures[0];
    let png = image::open(assets().join("BoxTextured/CesiumLogoFlat.png"))
        .unwrap()
        .into_rgba8();
    assert_eq!((webp.width, webp.height), png.dimensions());
    save("webp.png", webp);
    let diff: f64 = webp
        .rgba8
        .iter()
        .zip(png.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / webp.rgba8.len() as f64;
    // Lossy WebP: close on average (the picture is the same), not equal.
    assert!(diff < 12.0, "mean difference {diff} levels");
}

#[test]
fn instances_become_child_nodes_drawing_the_shared_mesh() {
    let m = import("compressed/SimpleInstancing/SimpleInstancing.glb");
    let parent = m
        .nodes
        .iter()
        .find(|n| n.children.len() == 125)
        .expect("the instancing node");
    assert_eq!(parent.mesh, None, "the node itself draws nothing");
    let mut places: Vec<[i64; 3]> = parent
        .children
        .iter()
        .map(|&c| {
            let n = &m.nodes[c];
            assert_eq!(n.mesh, Some(0));
            (n.local.translation * 1000.0)
                .round()
                .as_i64vec3()
                .to_array()
        })
        .collect();
    places.sort_unstable();
    places.dedup();
    assert_eq!(places.len(), 125, "each instance has its own place");
    assert_eq!(m.meshes.len(), 1, "one mesh, shared");
}

/// BoxTextured with its image replaced by a `KHR_texture_basisu` KTX2 image (no core source).
fn box_with_ktx2(file: &str) -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
    let gltf = String::from_utf8(read("BoxTextured/BoxTextured.gltf")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&gltf).unwrap();
    v["textures"][0] = serde_json::json!({
        "sampler": 0,
        "extensions": {"KHR_texture_basisu": {"source": 0}}
    });
    v["images"][0] = serde_json::json!({"uri": "tex.ktx2"});
    v["extensionsUsed"] = serde_json::json!(["KHR_texture_basisu"]);
    v["extensionsRequired"] = serde_json::json!(["KHR_texture_basisu"]);
    let files = vec![
        ("BoxTextured0.bin", read("BoxTextured/BoxTextured0.bin")),
        ("tex.ktx2", read(&format!("compressed/ktx2/{file}"))),
    ];
    (serde_json::to_vec(&v).unwrap(), files)
}

#[test]
fn ktx2_textures_transcode_from_etc1s_and_uastc() {
    for (file, side) in [
        ("StainedGlassLamp_hardware_basecolor.ktx2", 512),
        ("StainedGlassLamp_bulbs_occlusion-rough-metal.ktx2", 256),
    ] {
        let (gltf, files) = box_with_ktx2(file);
        let m = import_with(&gltf, &files).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.textures.len(), 1, "{file}");
        let t = &m.textures[0];
        save(&format!("{file}.png"), t);
        assert_eq!((t.width, t.height), (side, side), "{file}");
        assert_eq!(t.rgba8.len(), (side * side * 4) as usize);
        // The container is kept for renderers that upload a block format.
        assert!(
            t.basis
                .as_deref()
                .is_some_and(|b| b.starts_with(b"\xabKTX 20"))
        );
        assert!(m.materials[0].base_color_texture.is_some());
        // A real picture, not a fill or noise of one colour: many distinct colours.
        let mut colours: Vec<[u8; 4]> = t
            .rgba8
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2], p[3]])
            .collect();
        colours.sort_unstable();
        colours.dedup();
        assert!(colours.len() > 8, "{file}: only {} colours", colours.len());
    }
}

#[test]
fn damaged_compressed_files_fail_with_typed_errors() {
    // Draco: the stream cut short, and its bytes scrambled.
    let gltf = read("compressed/Box-Draco/Box.gltf");
    let bin = read("compressed/Box-Draco/Box.bin");
    let mut cut = bin.clone();
    cut.truncate(bin.len() / 2);
    cut.resize(bin.len(), 0);
    let mut scrambled = bin.clone();
    for (i, b) in scrambled.iter_mut().enumerate().skip(12) {
        *b ^= (i * 37) as u8;
    }
    for damaged in [cut, scrambled] {
        match import_with(&gltf, &[("Box.bin", damaged)]) {
            Err(e) => assert_eq!(e.kind(), ImportErrorKind::Malformed, "{e}"),
            // A scramble that still decodes must at least be geometry we can draw.
            Ok(m) => assert!(
                m.meshes
                    .iter()
                    .flat_map(|m| &m.primitives)
                    .all(|p| { p.indices.iter().all(|&i| (i as usize) < p.positions.len()) })
            ),
        }
    }
    // Meshopt: compressed bytes replaced by junk.
    let dir = "compressed/MeshoptFallbackBox";
    let gltf = read(&format!("{dir}/meshopt-fallback.gltf"));
    let junk: Vec<u8> = (0..468u32).map(|i| (i * 131 + 7) as u8).collect();
    let err = import_with(&gltf, &[("meshopt-fallback.bin", junk)]).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
    assert!(err.to_string().contains("EXT_meshopt_compression"), "{err}");
    // KTX2: the texture truncated after its header.
    let (gltf, mut files) = box_with_ktx2("StainedGlassLamp_hardware_basecolor.ktx2");
    files[1].1.truncate(200);
    let err = import_with(&gltf, &files).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::Malformed, "{err}");
    assert!(err.to_string().contains("KTX2"), "{err}");
}

#[test]
fn declared_sizes_are_bounded_over_the_whole_file() {
    let tight = ImportLimits {
        max_file_bytes: 1024,
        ..ImportLimits::default()
    };
    // Three fallback buffers of 1000 bytes: each within the file limit, together over it.
    let buffers: Vec<serde_json::Value> = (0..3)
        .map(|_| {
            serde_json::json!({"byteLength": 1000,
                "extensions": {"EXT_meshopt_compression": {"fallback": true}}})
        })
        .collect();
    let json = serde_json::json!({
        "asset": {"version": "2.0"},
        "extensionsUsed": ["EXT_meshopt_compression"],
        "buffers": buffers,
    });
    let err = import_gltf(
        &serde_json::to_vec(&json).unwrap(),
        &mut |u: &str| Err(ImportError::NotFound(u.into())),
        &tight,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    // More animations than a device is ever listed.
    let animations: Vec<serde_json::Value> = (0..1025)
        .map(|_| serde_json::json!({"channels": [], "samplers": []}))
        .collect();
    let json = serde_json::json!({"asset": {"version": "2.0"}, "animations": animations});
    let err = import_gltf(
        &serde_json::to_vec(&json).unwrap(),
        &mut |u: &str| Err(ImportError::NotFound(u.into())),
        &ImportLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
}

#[test]
fn an_extension_image_that_cannot_be_drawn_falls_back_to_the_core_source() {
    use base64::Engine;
    // BoxTextured whose texture prefers an extension image in a format not decoded (GIF bytes,
    // undeclared): the core PNG is drawn instead.
    let gltf = String::from_utf8(read("BoxTextured/BoxTextured.gltf")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&gltf).unwrap();
    let gif =
        base64::engine::general_purpose::STANDARD.encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    v["images"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"uri": format!("data:application/octet-stream;base64,{gif}")}));
    v["textures"][0]["extensions"] = serde_json::json!({"EXT_texture_webp": {"source": 1}});
    v["extensionsUsed"] = serde_json::json!(["EXT_texture_webp"]);
    let files = vec![
        ("BoxTextured0.bin", read("BoxTextured/BoxTextured0.bin")),
        ("CesiumLogoFlat.png", read("BoxTextured/CesiumLogoFlat.png")),
    ];
    let m = import_with(&serde_json::to_vec(&v).unwrap(), &files).unwrap();
    assert!(m.materials[0].base_color_texture.is_some());
    assert_eq!(m.textures.len(), 1);
    assert_eq!((m.textures[0].width, m.textures[0].height), (256, 256));
}

/// A KTX2 file whose level declares a huge uncompressed length (the transcoder would allocate
/// it before reading a byte: 128 TiB, found by the import fuzzer) fails with a typed error.
#[test]
fn a_ktx2_level_declaring_a_huge_inflated_size_is_refused() {
    let file = "StainedGlassLamp_bulbs_occlusion-rough-metal.ktx2";
    let (gltf, mut files) = box_with_ktx2(file);
    let ktx = &mut files[1].1;
    // Level 0's uncompressedByteLength (KTX 2.0 level index at byte 80: offset, length,
    // uncompressed length, u64 each).
    ktx[96..104].copy_from_slice(&0x8006_0000_0000u64.to_le_bytes());
    match import_with(&gltf, &files) {
        Err(e) => {
            assert_eq!(e.kind(), ImportErrorKind::Malformed, "{e}");
            assert!(e.to_string().contains("uncompressed"), "{e}");
        }
        Ok(_) => panic!("a hostile level length was accepted"),
    }
}
