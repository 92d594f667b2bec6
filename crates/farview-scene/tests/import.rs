//! Import against the repository's assets, hand-made files, and (when present) the shared corpus:
//! every Khronos sample loads or fails as unsupported, with counts checked against the JSON; every
//! deliberately broken file fails with a typed error, quickly, without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use farview_scene::{ImportErrorKind, ImportLimits, import_file, import_gltf};

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

/// One triangle with a data-URI buffer; `indices` and `normals` optional.
fn triangle(indices: bool, normals: bool) -> String {
    let mut buf = Vec::new();
    for v in [[0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]] {
        for c in v {
            buf.extend_from_slice(&c.to_le_bytes());
        }
    }
    let mut views = vec![r#"{"buffer":0,"byteOffset":0,"byteLength":36}"#.to_string()];
    let mut accessors = vec![
        r#"{"bufferView":0,"componentType":5126,"count":3,"type":"VEC3","min":[0,0,0],"max":[1,2,0]}"#.to_string(),
    ];
    let mut attrs = r#""POSITION":0"#.to_string();
    if normals {
        let off = buf.len();
        for _ in 0..3 {
            for c in [0f32, 0.0, 1.0] {
                buf.extend_from_slice(&c.to_le_bytes());
            }
        }
        views.push(format!(
            r#"{{"buffer":0,"byteOffset":{off},"byteLength":36}}"#
        ));
        accessors.push(format!(
            r#"{{"bufferView":{},"componentType":5126,"count":3,"type":"VEC3"}}"#,
            views.len() - 1
        ));
        attrs.push_str(&format!(r#","NORMAL":{}"#, accessors.len() - 1));
    }
    let mut idx = String::new();
    if indices {
        let off = buf.len();
        for i in [0u16, 1, 2, 0] {
            buf.extend_from_slice(&i.to_le_bytes());
        }
        views.push(format!(
            r#"{{"buffer":0,"byteOffset":{off},"byteLength":6}}"#
        ));
        accessors.push(format!(
            r#"{{"bufferView":{},"componentType":5123,"count":3,"type":"SCALAR"}}"#,
            views.len() - 1
        ));
        idx = format!(r#","indices":{}"#, accessors.len() - 1);
    }
    format!(
        r#"{{"asset":{{"version":"2.0"}},"scene":0,"scenes":[{{"nodes":[0]}}],"nodes":[{{"mesh":0,"translation":[0,0,-1]}}],
        "meshes":[{{"primitives":[{{"attributes":{{{attrs}}}{idx}}}]}}],"accessors":[{}],"bufferViews":[{}],
        "buffers":[{{"byteLength":{},"uri":"data:application/octet-stream;base64,{}"}}]}}"#,
        accessors.join(","),
        views.join(","),
        buf.len(),
        b64(&buf)
    )
}

fn no_files(uri: &str) -> Result<Vec<u8>, farview_scene::ImportError> {
    panic!("unexpected resolve of {uri}")
}

#[test]
fn a_data_uri_triangle_imports_with_or_without_indices_and_normals() {
    for (indices, normals) in [(true, true), (false, true), (true, false), (false, false)] {
        let m = import_gltf(
            triangle(indices, normals).as_bytes(),
            &mut no_files,
            &ImportLimits::default(),
        )
        .unwrap();
        assert_eq!(m.triangle_count(), 1, "indices {indices} normals {normals}");
        let p = &m.meshes[0].primitives[0];
        assert_eq!(p.bounds.max.to_array(), [1.0, 2.0, 0.0]);
        assert_eq!(p.normals.len(), p.positions.len());
        for n in &p.normals {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            assert!((len - 1.0).abs() < 1e-5);
            assert!(
                (n[2] - 1.0).abs() < 1e-5,
                "flat normal of a triangle in the XY plane faces +Z: {n:?}"
            );
        }
        assert_eq!(m.roots, vec![0]);
        assert_eq!(m.nodes[0].local.translation.z, -1.0);
    }
}

#[test]
fn paths_are_sandboxed_to_the_assets_root() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.gltf"), triangle(true, true)).unwrap();
    std::os::unix::fs::symlink(outside.path().join("x.gltf"), root.path().join("link.gltf"))
        .unwrap();
    std::fs::write(root.path().join("ok.gltf"), triangle(true, true)).unwrap();
    let traversal =
        r#"{"asset":{"version":"2.0"},"buffers":[{"byteLength":4,"uri":"../../etc/passwd"}]}"#;
    std::fs::write(root.path().join("trav.gltf"), traversal).unwrap();
    let scheme =
        r#"{"asset":{"version":"2.0"},"buffers":[{"byteLength":4,"uri":"file:///etc/passwd"}]}"#;
    std::fs::write(root.path().join("scheme.gltf"), scheme).unwrap();

    let l = ImportLimits::default();
    assert!(import_file(root.path(), "ok.gltf", &l).is_ok());
    for (path, kind) in [
        ("../x.gltf", ImportErrorKind::Forbidden),
        ("/etc/passwd", ImportErrorKind::Forbidden),
        ("link.gltf", ImportErrorKind::Forbidden),
        ("trav.gltf", ImportErrorKind::Forbidden),
        ("scheme.gltf", ImportErrorKind::Forbidden),
        ("nope.gltf", ImportErrorKind::NotFound),
        ("", ImportErrorKind::NotFound),
    ] {
        let err = import_file(root.path(), path, &l).unwrap_err();
        assert_eq!(err.kind(), kind, "{path}: {err}");
    }
}

#[test]
fn limits_are_checked_before_allocation() {
    let tight = ImportLimits {
        max_accessor_count: 2,
        ..ImportLimits::default()
    };
    let err = import_gltf(triangle(true, true).as_bytes(), &mut no_files, &tight).unwrap_err();
    assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
    let small = ImportLimits {
        max_file_bytes: 10,
        ..ImportLimits::default()
    };
    assert_eq!(
        import_gltf(triangle(true, true).as_bytes(), &mut no_files, &small)
            .unwrap_err()
            .kind(),
        ImportErrorKind::LimitExceeded
    );
}

#[test]
fn the_asset_models_import_with_their_textures() {
    let l = ImportLimits::default();
    let boxm = import_file(&assets(), "BoxTextured/BoxTextured.gltf", &l).unwrap();
    assert_eq!(boxm.triangle_count(), 12);
    assert_eq!(boxm.textures.len(), 1);
    assert_eq!(boxm.materials[0].base_color_texture, Some(0));
    let t = &boxm.textures[0];
    assert_eq!(t.rgba8.len(), (t.width * t.height * 4) as usize);
    let fox = import_file(&assets(), "Fox/Fox.glb", &l).unwrap();
    assert_eq!(fox.triangle_count(), 576);
    assert_eq!(fox.textures.len(), 1);
}

/// Triangle count from the JSON alone (independent of the importer's accessor reading).
fn json_triangles(path: &Path) -> Option<(usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let acc = v["accessors"].as_array()?;
    let mut tris = 0;
    for mesh in v["meshes"].as_array().into_iter().flatten() {
        for p in mesh["primitives"].as_array()? {
            let count = |i: &serde_json::Value| acc.get(i.as_u64()? as usize)?["count"].as_u64();
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
    Some((tris, v["nodes"].as_array().map_or(0, Vec::len)))
}

#[test]
fn khronos_corpus_loads_or_fails_as_unsupported() {
    let Some(corpus) = corpus() else { return };
    let root = corpus.join("khronos");
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    let (mut ok, mut unsupported, mut checked) = (0, 0, 0);
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, features) = (cols[2], cols[4]);
        let t = Instant::now();
        match import_file(&root, path, &ImportLimits::default()) {
            Ok(model) => {
                ok += 1;
                if path.ends_with(".gltf")
                    && let Some((tris, nodes)) = json_triangles(&root.join(path))
                {
                    assert_eq!(model.triangle_count(), tris, "{path}: triangle count");
                    assert_eq!(model.nodes.len(), nodes, "{path}: node count");
                    checked += 1;
                }
            }
            Err(e) if e.kind() == ImportErrorKind::Unsupported => {
                assert!(
                    features.contains("required:"),
                    "{path} failed as unsupported without a required extension: {e}"
                );
                unsupported += 1;
            }
            Err(e) => panic!("{path}: {e}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{path} took {:?}",
            t.elapsed()
        );
    }
    eprintln!(
        "khronos: {ok} loaded ({checked} counts checked against JSON), {unsupported} unsupported"
    );
    assert!(ok > 60);
}

#[test]
fn bad_corpus_files_are_rejected_with_typed_errors() {
    let Some(corpus) = corpus() else { return };
    let bad = corpus.join("bad");
    let table = std::fs::read_to_string(bad.join("README.tsv")).unwrap();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected) = (cols[0], cols[2]);
        let t = Instant::now();
        let result = import_file(&bad, file, &ImportLimits::default());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{file} took {:?}",
            t.elapsed()
        );
        match (&result, expected) {
            (Err(e), _) => eprintln!("{file:34} {:?}: {e}", e.kind()),
            (Ok(_), "reject-or-tolerate") => eprintln!("{file:34} tolerated"),
            (Ok(_), _) => panic!("{file} should be rejected ({expected})"),
        }
    }
}
