//! Issue #9, bug 4: valid deep hierarchies load. A node chain is walked iteratively with work
//! bounded by the node count, not refused at some depth, and the scene graph built from it
//! (world transforms, bounds, raycasts, reparent checks, destroy) never recurses. The 100,000-deep
//! cases run on a thread with an explicit 2 MiB stack, so recursion anywhere would overflow it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;

use base64::Engine;
use farview_scene::{
    EntityId, ImportError, ImportErrorKind, ImportLimits, Model, Ray, Scene, SceneError,
    import_gltf,
};
use glam::Vec3;

/// A chain of `depth` nodes: node 0 at the origin, each child translated +1 on x from its
/// parent, and the deepest node drawing a unit triangle in the z = 0 plane. Built as JSON text
/// (serde_json's recursion is not what is under test) with a data-URI buffer.
fn chain_gltf(depth: usize) -> Vec<u8> {
    let positions: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let buf: Vec<u8> = positions
        .iter()
        .flatten()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let uri = base64::engine::general_purpose::STANDARD.encode(&buf);
    let mut nodes = String::with_capacity(depth * 48);
    for i in 0..depth {
        if i > 0 {
            nodes.push(',');
            nodes.push_str(r#"{"translation":[1,0,0]"#);
        } else {
            nodes.push('{');
        }
        if i + 1 < depth {
            if i > 0 {
                nodes.push(',');
            }
            write!(nodes, r#""children":[{}]"#, i + 1).unwrap();
        } else {
            if i > 0 {
                nodes.push(',');
            }
            nodes.push_str(r#""mesh":0"#);
        }
        nodes.push('}');
    }
    format!(
        r#"{{"asset":{{"version":"2.0"}},"scene":0,"scenes":[{{"nodes":[0]}}],
        "buffers":[{{"byteLength":{len},"uri":"data:application/octet-stream;base64,{uri}"}}],
        "bufferViews":[{{"buffer":0,"byteLength":{len}}}],
        "accessors":[{{"bufferView":0,"componentType":5126,"count":3,"type":"VEC3",
            "min":[0,0,0],"max":[1,1,0]}}],
        "meshes":[{{"primitives":[{{"attributes":{{"POSITION":0}}}}]}}],
        "nodes":[{nodes}]}}"#,
        len = buf.len()
    )
    .into_bytes()
}

fn import(bytes: &[u8], limits: &ImportLimits) -> Result<Model, ImportError> {
    import_gltf(
        bytes,
        &mut |uri| Err(ImportError::NotFound(uri.into())),
        limits,
    )
}

/// Runs `f` on a thread with the default 2 MiB test stack, stated explicitly so a
/// `RUST_MIN_STACK` in the environment cannot hide recursion.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("2 MiB stack".into())
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn assert_chain(m: &Model, depth: usize) {
    assert_eq!(m.nodes.len(), depth);
    assert_eq!(m.roots, vec![0]);
    for (i, n) in m.nodes.iter().enumerate() {
        let expect: Vec<usize> = if i + 1 < depth { vec![i + 1] } else { vec![] };
        assert_eq!(n.children, expect, "node {i}");
    }
    assert_eq!(m.nodes[depth - 1].mesh, Some(0));
}

/// Failed before the fix with "node depth is 257, over the limit of 256".
#[test]
fn a_500_deep_node_chain_loads() {
    let m = import(&chain_gltf(500), &ImportLimits::default()).unwrap();
    assert_chain(&m, 500);
}

/// At the default node limit (100,000) the chain loads; one node over, it fails on the node
/// count and nothing else.
#[test]
fn a_100000_deep_node_chain_loads_or_fails_only_on_the_node_count() {
    on_small_stack(|| {
        let file = chain_gltf(100_000);
        let m = import(&file, &ImportLimits::default()).unwrap();
        assert_chain(&m, 100_000);
        let fewer = ImportLimits {
            max_nodes: 99_999,
            ..ImportLimits::default()
        };
        let err = import(&file, &fewer).unwrap_err();
        assert_eq!(err.kind(), ImportErrorKind::LimitExceeded, "{err}");
        match err {
            ImportError::LimitExceeded {
                what,
                actual,
                limit,
            } => {
                assert_eq!(
                    (what.as_str(), actual, limit),
                    ("node count", 100_000, 99_999)
                );
            }
            other => panic!("expected the node-count limit, got {other:?}"),
        }
    });
}

/// The scene built from a 100,000-deep chain: the deepest node's world transform (x = depth - 1),
/// bounds, drawing, raycasts, a moved root, the reparent cycle check, and destroying the root.
#[test]
fn a_100000_deep_chain_in_the_scene_transforms_queries_and_destroys_without_recursion() {
    const DEPTH: usize = 100_000;
    on_small_stack(|| {
        let model = import(&chain_gltf(DEPTH), &ImportLimits::default()).unwrap();
        let mut scene = Scene::default();
        let info = scene.add_model("chain", model).unwrap();
        assert_eq!(info.entities as usize, DEPTH + 1);
        // Parents before children: the last entry is the deepest node.
        let deepest = info.hierarchy.last().unwrap().entity;
        let x = (DEPTH - 1) as f32;
        let at = |scene: &Scene, id: EntityId| {
            scene.entity(id).unwrap().world.transform_point3(Vec3::ZERO)
        };
        assert_eq!(at(&scene, deepest), Vec3::new(x, 0.0, 0.0));
        assert_eq!(info.bounds.min, Vec3::new(x, 0.0, 0.0));
        assert_eq!(info.bounds.max, Vec3::new(x + 1.0, 1.0, 0.0));
        let drawn = scene.drawables();
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].entity, deepest);

        let ray = Ray::new(Vec3::new(x + 0.25, 0.25, 5.0), -Vec3::Z, 100.0).unwrap();
        let hits = scene.raycast(&ray, true, 1);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].entity, deepest);
        assert!((hits[0].distance - 5.0).abs() < 1e-4);

        // Moving the root moves the deepest node (a full world-matrix pass down the chain).
        scene
            .set_local_transform(
                info.root,
                farview_scene::Transform {
                    translation: Vec3::new(0.0, 10.0, 0.0),
                    ..farview_scene::Transform::IDENTITY
                },
            )
            .unwrap();
        scene.update_world_transforms();
        assert_eq!(at(&scene, deepest), Vec3::new(x, 10.0, 0.0));
        assert_eq!(
            scene.world_bounds(info.root).unwrap().min,
            Vec3::new(x, 10.0, 0.0)
        );

        // The cycle check walks up 100,000 parents.
        assert_eq!(
            scene.reparent(info.root, Some(deepest), true),
            Err(SceneError::WouldCycle {
                entity: info.root.0,
                parent: deepest.0
            })
        );

        assert_eq!(scene.destroy(info.root).unwrap(), DEPTH + 1);
        assert_eq!(scene.stats().entities, 0);
        assert!(scene.model(info.model).is_none(), "model freed");
        assert!(scene.drawables().is_empty());
    });
}
