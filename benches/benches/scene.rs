//! Scene figures of issue #4: import + GPU upload (DamagedHelmet, the largest corpus model that
//! loads, and a generated ~1M-triangle grid), a 10,000-entity transform batch with world
//! propagation, world propagation for a 100,000-entity tree, and raycasts against 1M triangles.
//!
//! ```text
//! cargo bench -p farview-benches --bench scene
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use farview_render::{AdapterChoice, FrameRenderer, GpuContext, Lighting};
use farview_scene::{EntityId, ImportLimits, Ray, Scene, Transform};
use glam::{Quat, Vec3};

fn corpus() -> PathBuf {
    std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        Into::into,
    )
}

/// The corpus model with the most bytes that imports, by the manifest.
fn largest_loadable(root: &std::path::Path) -> Option<String> {
    let manifest = std::fs::read_to_string(root.join("khronos/MANIFEST.tsv")).ok()?;
    let mut rows: Vec<(u64, String)> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((f.get(3)?.parse().ok()?, format!("khronos/{}", f.get(2)?)))
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| farview_scene::import_file(root, p, &ImportLimits::default()).is_ok())
}

fn import_upload(c: &mut Criterion) {
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    let renderer = FrameRenderer::new(&gpu, 256, 256, Lighting::default()).unwrap();
    let uploader = renderer.uploader();
    let mut group = c.benchmark_group("import_and_upload");
    group.sample_size(10);
    let root = corpus();
    let mut models = vec![(
        "DamagedHelmet".to_owned(),
        "khronos/DamagedHelmet/glTF-Binary/DamagedHelmet.glb".to_owned(),
    )];
    if let Some(p) = largest_loadable(&root) {
        models.push((format!("largest corpus model ({p})"), p));
    }
    for (name, path) in models {
        if !root.join(&path).exists() {
            eprintln!("skipping {name}: corpus not found (set FARVIEW_CORPUS)");
            continue;
        }
        group.bench_function(&name, |b| {
            b.iter(|| {
                let m = farview_scene::import_file(&root, &path, &ImportLimits::default()).unwrap();
                uploader.upload(&m).unwrap()
            })
        });
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grid.glb"),
        farview_scene::synthetic::grid_glb(708),
    )
    .unwrap();
    group.bench_function("generated grid, 1.0M triangles", |b| {
        b.iter(|| {
            let m = farview_scene::import_file(dir.path(), "grid.glb", &ImportLimits::default())
                .unwrap();
            uploader.upload(&m).unwrap()
        })
    });
    group.finish();
}

/// A root with `n` children (a flat scene, like many placed parts).
fn flat_scene(n: usize) -> (Scene, Vec<EntityId>) {
    let mut scene = Scene::new(n + 16);
    let root = scene.spawn(None, None, Transform::IDENTITY, None).unwrap();
    let ids = (0..n)
        .map(|i| {
            let t = Transform {
                translation: Vec3::new(i as f32, 0.0, 0.0),
                ..Transform::IDENTITY
            };
            scene.spawn(None, Some(root), t, None).unwrap()
        })
        .collect();
    scene.update_world_transforms();
    (scene, ids)
}

/// A tree of `n` entities, each with up to 8 children, four levels deep and more.
fn tree_scene(n: usize) -> (Scene, EntityId) {
    let mut scene = Scene::new(n + 16);
    let root = scene.spawn(None, None, Transform::IDENTITY, None).unwrap();
    let mut frontier = std::collections::VecDeque::from([root]);
    let mut count = 1;
    while count < n {
        let Some(parent) = frontier.pop_front() else {
            break;
        };
        for k in 0..8 {
            if count >= n {
                break;
            }
            let t = Transform {
                translation: Vec3::new(k as f32, 1.0, 0.0),
                rotation: Quat::from_rotation_y(0.1 * k as f32),
                scale: Vec3::ONE,
            };
            let id = scene.spawn(None, Some(parent), t, None).unwrap();
            frontier.push_back(id);
            count += 1;
        }
    }
    scene.update_world_transforms();
    (scene, root)
}

fn transforms(c: &mut Criterion) {
    let mut group = c.benchmark_group("transforms");
    let (mut scene, ids) = flat_scene(10_000);
    let mut phase = 0f32;
    group.bench_function("batch of 10,000 updates + propagation", |b| {
        b.iter(|| {
            phase += 0.01;
            let batch: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    (
                        id,
                        Transform {
                            translation: Vec3::new(i as f32, phase.sin(), 0.0),
                            ..Transform::IDENTITY
                        },
                    )
                })
                .collect();
            scene.set_local_transforms(&batch).unwrap();
            scene.update_world_transforms();
        })
    });
    let (mut tree, root) = tree_scene(100_000);
    group.bench_function("propagate a 100,000-entity tree (root moved)", |b| {
        b.iter(|| {
            phase += 0.01;
            tree.set_local_transform(
                root,
                Transform {
                    translation: Vec3::new(phase, 0.0, 0.0),
                    ..Transform::IDENTITY
                },
            )
            .unwrap();
            tree.update_world_transforms();
        })
    });
    group.finish();
}

fn raycasts(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grid.glb"),
        farview_scene::synthetic::grid_glb(708),
    )
    .unwrap();
    let model =
        farview_scene::import_file(dir.path(), "grid.glb", &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    scene.add_model("grid", model).unwrap();
    // Build the BVH outside the measurement (it is built once per mesh, on the first query).
    let first = Ray::new(Vec3::new(0.3, 0.3, 10.0), -Vec3::Z, 100.0).unwrap();
    assert_eq!(scene.raycast(&first, true, 1).len(), 1);
    let mut group = c.benchmark_group("raycast");
    let mut k = 0u32;
    group.bench_function("closest hit, 1.0M triangles", |b| {
        b.iter_batched(
            || {
                k = k.wrapping_add(1);
                let f = k as f32;
                Ray::new(
                    Vec3::new((f * 0.37) % 700.0 - 350.0, (f * 0.61) % 700.0 - 350.0, 50.0),
                    Vec3::new(0.1, -0.05, -1.0),
                    1000.0,
                )
                .unwrap()
            },
            |ray| scene.raycast(&ray, true, 1),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, import_upload, transforms, raycasts);
criterion_main!(benches);
