//! A mutation fuzzer over glTF/GLB import that runs in every `cargo test` for a fixed time
//! (`FARVIEW_FUZZ_SECS`, default 8 s; 0 turns it off). Seeds are the repository's sample models
//! and a generated grid; each round mutates one (bit flips, interesting bytes, cut and splice,
//! JSON number swaps) and imports it under tight limits. It must never panic, and every input must
//! finish within a bound. Deterministic for a given `FARVIEW_FUZZ_SEED`, which a failure prints.
//!
//! (cargo-fuzz needs a nightly toolchain; this runs on stable, in CI, on every change.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use farview_scene::{ImportError, ImportLimits, import_gltf};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&str] = &[
    "0",
    "-1",
    "4294967295",
    "18446744073709551615",
    "1e38",
    "-1e38",
    "NaN",
    "65535",
    "2147483648",
    "999999999",
    "3.4e39",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(0);
        }
        match rng.below(7) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = [0u8, 0xff, 0x7f, 0x80, b'[', b'{', b'"'][rng.below(7)];
            }
            2 => {
                // Delete a range.
                let i = rng.below(b.len());
                let n = rng.below(64.min(b.len() - i) + 1);
                b.drain(i..i + n);
            }
            3 => {
                // Duplicate a range.
                let i = rng.below(b.len());
                let n = rng.below(256.min(b.len() - i) + 1);
                let chunk = b[i..i + n].to_vec();
                let at = rng.below(b.len());
                b.splice(at..at, chunk);
            }
            4 => {
                // Splice in bytes from another seed.
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = rng.below(512.min(other.len() - i) + 1);
                    let at = rng.below(b.len());
                    b.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            5 => {
                // Swap a number in the JSON for an interesting one.
                let digits: Vec<usize> = b
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .take(20_000)
                    .collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let mut end = start;
                    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
                        end += 1;
                    }
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    b.splice(start..end, v.bytes());
                }
            }
            _ => {
                // Truncate.
                let n = rng.below(b.len());
                b.truncate(n);
            }
        }
    }
    b
}

/// A `.gltf` with its external buffers (and images) inlined as data URIs. With `ktx2`, its one
/// texture samples that KTX2 file through `KHR_texture_basisu` instead of its own image.
fn embedded(path: &Path, ktx2: Option<&Path>) -> Vec<u8> {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let dir = path.parent().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for key in ["buffers", "images"] {
        let items = v.get_mut(key).and_then(serde_json::Value::as_array_mut);
        for item in items.into_iter().flatten() {
            let Some(uri) = item["uri"].as_str() else {
                continue;
            };
            // A meshopt fallback buffer is never read: drop its file, as a GLB would.
            if item["extensions"]["EXT_meshopt_compression"]["fallback"] == true {
                item.as_object_mut().unwrap().remove("uri");
                continue;
            }
            let bytes = std::fs::read(dir.join(uri)).unwrap();
            item["uri"] = format!("data:application/octet-stream;base64,{}", b64(&bytes)).into();
        }
    }
    if let Some(ktx2) = ktx2 {
        let bytes = std::fs::read(ktx2).unwrap();
        v["images"][0] = serde_json::json!({
            "uri": format!("data:image/ktx2;base64,{}", b64(&bytes))
        });
        v["textures"][0]["extensions"] = serde_json::json!({"KHR_texture_basisu": {"source": 0}});
        v["extensionsUsed"] = serde_json::json!(["KHR_texture_basisu"]);
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn mutated_models_never_panic_or_hang() {
    let secs: u64 = std::env::var("FARVIEW_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    if secs == 0 {
        eprintln!("fuzzing off (FARVIEW_FUZZ_SECS=0)");
        return;
    }
    let seed: u64 = std::env::var("FARVIEW_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for f in ["BoxTextured0.bin", "CesiumLogoFlat.png"] {
        files.insert(
            f.into(),
            std::fs::read(assets.join("BoxTextured").join(f)).unwrap(),
        );
    }
    let compressed = assets.join("compressed");
    let seeds: Vec<Vec<u8>> = vec![
        std::fs::read(assets.join("BoxTextured/BoxTextured.gltf")).unwrap(),
        std::fs::read(assets.join("Fox/Fox.glb")).unwrap(),
        farview_scene::synthetic::grid_glb(3),
        // Compressed data inside the seed (data URIs), so mutations reach the decoders.
        embedded(&compressed.join("Box-Draco/Box.gltf"), None),
        embedded(
            &compressed.join("MeshoptFallbackBox/meshopt-fallback.gltf"),
            None,
        ),
        embedded(
            &compressed.join("BoxTexturedWebp/BoxTexturedWebp.gltf"),
            None,
        ),
        embedded(
            &assets.join("BoxTextured/BoxTextured.gltf"),
            Some(&compressed.join("ktx2/StainedGlassLamp_bulbs_occlusion-rough-metal.ktx2")),
        ),
        std::fs::read(compressed.join("SimpleInstancing/SimpleInstancing.glb")).unwrap(),
    ];
    // Tight limits: a mutated count must hit a limit, not the allocator.
    let limits = ImportLimits {
        max_file_bytes: 8 << 20,
        max_accessor_count: 1 << 20,
        max_texture_dim: 1024,
        max_textures: 8,
        max_nodes: 1024,
        max_total_vertices: 1 << 20,
        levels_at_import: true,
    };
    for (i, s) in seeds.iter().enumerate() {
        let mut resolve = |uri: &str| {
            files
                .get(uri)
                .cloned()
                .ok_or_else(|| ImportError::NotFound(uri.to_owned()))
        };
        if let Err(e) = import_gltf(s, &mut resolve, &limits) {
            panic!("seed {i} does not import before mutation: {e}");
        }
    }
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut ok, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut kinds: HashMap<String, u64> = HashMap::new();
    while Instant::now() < deadline {
        let a = rng.below(seeds.len());
        let b = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[a], &seeds[b]);
        let started = Instant::now();
        let mut resolve = |uri: &str| {
            files
                .get(uri)
                .cloned()
                .ok_or_else(|| ImportError::NotFound(uri.to_owned()))
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            import_gltf(&input, &mut resolve, &limits)
        }));
        let took = started.elapsed();
        let Ok(result) = result else {
            let path = std::env::temp_dir().join(format!("farview-fuzz-crash-{seed}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "import panicked (FARVIEW_FUZZ_SEED={seed}, run {runs}); input saved to {}",
                path.display()
            );
        };
        assert!(
            took < Duration::from_secs(3),
            "one input took {took:?} (FARVIEW_FUZZ_SEED={seed}, run {runs})"
        );
        slowest = slowest.max(took);
        match result {
            Ok(_) => ok += 1,
            Err(e) => *kinds.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
        runs += 1;
    }
    eprintln!(
        "fuzzed import {runs} times in {secs} s (seed {seed}): {ok} imported, errors {kinds:?}, slowest {slowest:?}"
    );
    assert!(
        runs > 50,
        "the fuzzer made too little progress ({runs} runs)"
    );
}

/// Inputs the fuzzer found, kept as regressions.
#[test]
fn fuzzer_findings_stay_fixed() {
    let mut none = |uri: &str| Err(ImportError::NotFound(uri.to_owned()));
    // A GLB header declaring a total length below the header's own 12 bytes (gltf 1.4 subtracts
    // without a check).
    let mut short = b"glTF".to_vec();
    short.extend_from_slice(&2u32.to_le_bytes());
    short.extend_from_slice(&4u32.to_le_bytes());
    short.extend_from_slice(&[0u8; 32]);
    let e = import_gltf(&short, &mut none, &ImportLimits::default()).unwrap_err();
    assert_eq!(e.kind(), farview_scene::ImportErrorKind::Malformed, "{e}");
}
