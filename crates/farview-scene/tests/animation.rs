//! Animation on real and hand-made files: keyframes drive nodes, morph weights and skins; the
//! posed vertices and the bounds follow; play, pause, seek, speed and stop behave as a client
//! expects. Fox (in the repository) for a real skinned model; hand-made files for exact values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use farview_scene::{AnimationCommand, ImportError, ImportLimits, Scene, import_file, import_gltf};
use glam::Vec3;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A triangle (mesh node 0) with one morph target (+1 in z), skinned to two joints (nodes 1 and
/// 2, identity inverse binds): vertex 0 follows joint 2, the others joint 1. One animation of
/// 1 s: the weight goes 0 → 1 (LINEAR), joint 2 turns 90° about z (LINEAR), node 0's
/// translation steps to x = 2 at 0.5 s (STEP, ignored for drawing: a skinned mesh follows its
/// joints).
fn rigged_triangle() -> Vec<u8> {
    let mut bin = Vec::new();
    bin.extend(f32s(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0])); // 0: positions
    bin.extend(f32s(&[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0])); // 36: target
    bin.extend(f32s(&[0.0, 1.0])); // 72: times
    bin.extend(f32s(&[0.0, 1.0])); // 80: weights
    let q = glam::Quat::from_rotation_z(std::f32::consts::FRAC_PI_2);
    bin.extend(f32s(&[0.0, 0.0, 0.0, 1.0, q.x, q.y, q.z, q.w])); // 88: rotations
    for j in [[1u16, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]] {
        bin.extend(j.iter().flat_map(|v| v.to_le_bytes())); // 120: joints
    }
    bin.extend(f32s(&[1.0, 0.0, 0.0, 0.0].repeat(3))); // 144: weights
    bin.extend(f32s(&[0.0, 0.5])); // 192: step times
    bin.extend(f32s(&[0.0, 0.0, 0.0, 2.0, 0.0, 0.0])); // 200: translations
    let len = bin.len();
    assert_eq!(len, 224);
    let json = serde_json::json!({
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len, "uri": format!("data:application/octet-stream;base64,{}", b64(&bin))}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 36},
            {"buffer": 0, "byteOffset": 72, "byteLength": 8},
            {"buffer": 0, "byteOffset": 80, "byteLength": 8},
            {"buffer": 0, "byteOffset": 88, "byteLength": 32},
            {"buffer": 0, "byteOffset": 120, "byteLength": 24},
            {"buffer": 0, "byteOffset": 144, "byteLength": 48},
            {"buffer": 0, "byteOffset": 192, "byteLength": 8},
            {"buffer": 0, "byteOffset": 200, "byteLength": 24}
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [-1, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": 2, "type": "SCALAR", "min": [0], "max": [1]},
            {"bufferView": 3, "componentType": 5126, "count": 2, "type": "SCALAR"},
            {"bufferView": 4, "componentType": 5126, "count": 2, "type": "VEC4"},
            {"bufferView": 5, "componentType": 5123, "count": 3, "type": "VEC4"},
            {"bufferView": 6, "componentType": 5126, "count": 3, "type": "VEC4"},
            {"bufferView": 7, "componentType": 5126, "count": 2, "type": "SCALAR", "min": [0], "max": [0.5]},
            {"bufferView": 8, "componentType": 5126, "count": 2, "type": "VEC3"}
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "JOINTS_0": 5, "WEIGHTS_0": 6}, "targets": [{"POSITION": 1}]}], "weights": [0]}],
        "skins": [{"joints": [1, 2]}],
        "nodes": [
            {"mesh": 0, "skin": 0},
            {"children": [2]},
            {}
        ],
        "scenes": [{"nodes": [0, 1]}],
        "animations": [{
            "name": "morph and turn",
            "samplers": [
                {"input": 2, "output": 3},
                {"input": 2, "output": 4},
                {"input": 7, "output": 8, "interpolation": "STEP"}
            ],
            "channels": [
                {"sampler": 0, "target": {"node": 0, "path": "weights"}},
                {"sampler": 1, "target": {"node": 2, "path": "rotation"}},
                {"sampler": 2, "target": {"node": 0, "path": "translation"}}
            ]
        }]
    });
    serde_json::to_vec(&json).unwrap()
}

fn no_files(uri: &str) -> Result<Vec<u8>, ImportError> {
    panic!("unexpected resolve of {uri}")
}

fn close(a: [f32; 3], b: [f32; 3]) -> bool {
    Vec3::from_array(a).abs_diff_eq(Vec3::from_array(b), 1e-4)
}

#[test]
fn morph_weights_and_joints_pose_the_vertices() {
    let model = import_gltf(&rigged_triangle(), &mut no_files, &ImportLimits::default()).unwrap();
    assert_eq!(model.animations.len(), 1);
    assert_eq!(model.animations[0].duration, 1.0);
    assert_eq!(model.extras.animations, ["morph and turn"]);
    let mut scene = Scene::default();
    let info = scene.add_model("rig", model).unwrap();
    let mesh_entity = info.hierarchy.iter().find(|h| h.has_mesh).unwrap().entity;
    // Posed vertices in world space (the mesh node's own transform cancels out for a skin).
    let posed = |scene: &Scene| {
        let world = scene.entity(mesh_entity).unwrap().world;
        scene.deformation(mesh_entity).unwrap().primitives[0]
            .positions
            .iter()
            .map(|p| world.transform_point3(Vec3::from_array(*p)).to_array())
            .collect::<Vec<_>>()
    };
    // At rest: bind pose, weight 0.
    assert!(close(posed(&scene)[0], [1.0, 0.0, 0.0]));
    let anims = scene.animations(info.root).unwrap();
    assert_eq!(anims[0].name, "morph and turn");

    scene
        .animate(
            info.root,
            AnimationCommand::Play {
                index: 0,
                speed: 1.0,
                looping: false,
                start: 0.0,
            },
        )
        .unwrap();
    scene.advance_animations(0.5);
    scene.update_world_transforms();
    let p = posed(&scene);
    // Half the morph (z + 0.5); vertex 0 turned 45° with joint 2; the others stay.
    let h = std::f32::consts::FRAC_1_SQRT_2;
    assert!(close(p[0], [h, h, 0.5]), "{:?}", p[0]);
    assert!(close(p[1], [0.0, 1.0, 0.5]), "{:?}", p[1]);
    assert!(close(p[2], [-1.0, 0.0, 0.5]), "{:?}", p[2]);
    let bounds = scene.world_bounds(info.root).unwrap();
    assert!(
        (bounds.max.z - 0.5).abs() < 1e-4,
        "bounds follow the pose: {bounds:?}"
    );

    scene.advance_animations(0.5);
    scene.update_world_transforms();
    let p = posed(&scene);
    assert!(close(p[0], [0.0, 1.0, 1.0]), "{:?}", p[0]);
    assert!(
        !scene.animation_state(info.root).unwrap().playing,
        "a non-looping animation stops at its end"
    );

    scene
        .animate(info.root, AnimationCommand::Seek(0.25))
        .unwrap();
    scene.update_world_transforms();
    assert!((posed(&scene)[1][2] - 0.25).abs() < 1e-4);

    scene.animate(info.root, AnimationCommand::Stop).unwrap();
    scene.update_world_transforms();
    assert!(
        close(posed(&scene)[0], [1.0, 0.0, 0.0]),
        "stop returns to the rest pose"
    );
    assert_eq!(scene.animation_state(info.root).unwrap().index, None);
}

#[test]
fn commands_are_checked() {
    let model = import_gltf(&rigged_triangle(), &mut no_files, &ImportLimits::default()).unwrap();
    let mut scene = Scene::default();
    let info = scene.add_model("rig", model).unwrap();
    let play = |index| AnimationCommand::Play {
        index,
        speed: 1.0,
        looping: true,
        start: 0.0,
    };
    assert!(scene.animate(info.root, play(3)).is_err(), "no animation 3");
    assert!(
        scene.animate(info.root, AnimationCommand::Pause).is_err(),
        "nothing to pause"
    );
    let child = info.hierarchy[1].entity;
    assert!(scene.animate(child, play(0)).is_err(), "not a model root");
    scene.animate(info.root, play(0)).unwrap();
    assert!(
        scene
            .animate(info.root, AnimationCommand::Speed(f32::NAN))
            .is_err()
    );
    scene
        .animate(info.root, AnimationCommand::Speed(-2.0))
        .unwrap();
    scene.animate(info.root, AnimationCommand::Pause).unwrap();
    assert!(
        !scene.advance_animations(0.1),
        "a paused animation does not move"
    );
    scene.animate(info.root, AnimationCommand::Resume).unwrap();
    assert!(scene.advance_animations(0.1));
    // Looping backwards from 0 wraps to the end.
    let t = scene.animation_state(info.root).unwrap().time;
    assert!((t - 0.8).abs() < 1e-4, "{t}");
}

#[test]
fn fox_plays_its_three_animations_and_its_bounds_follow() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let model = import_file(&assets, "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    assert_eq!(model.skins.len(), 1);
    let mut scene = Scene::default();
    let info = scene.add_model("fox", model).unwrap();
    let names: Vec<String> = scene
        .animations(info.root)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["Survey", "Walk", "Run"]);
    let rest = scene.world_bounds(info.root).unwrap();
    let fox = info.hierarchy.iter().find(|h| h.has_mesh).unwrap().entity;
    let rest_vertices = scene.deformation(fox).unwrap().primitives[0]
        .positions
        .clone();
    // The rest pose is the bind pose: skinning at rest reproduces the file's vertices.
    let bind = &scene.model(info.model).unwrap().meshes[0].primitives[0].positions;
    let worst = rest_vertices
        .iter()
        .zip(bind)
        .map(|(a, b)| Vec3::from_array(*a).distance(Vec3::from_array(*b)))
        .fold(0.0f32, f32::max);
    assert!(worst < 0.05, "rest pose moves vertices by up to {worst}");
    for (index, t) in [(0, 0.6), (1, 0.4), (2, 0.3)] {
        scene
            .animate(
                info.root,
                AnimationCommand::Play {
                    index,
                    speed: 1.0,
                    looping: true,
                    start: t,
                },
            )
            .unwrap();
        scene.update_world_transforms();
        let posed = scene.deformation(fox).unwrap();
        let moved = posed.primitives[0]
            .positions
            .iter()
            .zip(&rest_vertices)
            .filter(|(a, b)| Vec3::from_array(**a).distance(Vec3::from_array(**b)) > 1.0)
            .count();
        assert!(moved > 50, "{}: only {moved} vertices moved", names[index]);
        let bounds = scene.world_bounds(info.root).unwrap();
        assert!(
            bounds != rest,
            "{}: bounds did not follow the pose",
            names[index]
        );
    }
}

#[test]
fn posed_copies_are_bounded_per_scene() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let model = import_file(&assets, "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    let per_fox = model.vertex_count();
    let mut scene = Scene::default();
    let info = scene.add_model("fox", model).unwrap();
    // Instances share the model's assets, but each holds its own posed copy: the scene stops
    // taking them at its bound, with a typed error, and keeps working.
    let mut instances = 1;
    let err = loop {
        match scene.instantiate("again", info.model) {
            Ok(_) => instances += 1,
            Err(e) => break e,
        }
        assert!(instances < 10_000, "no bound on posed vertices");
    };
    assert!(err.to_string().contains("posed"), "{err}");
    assert!(instances * per_fox <= 8_000_000);
    assert!((instances + 1) * per_fox > 8_000_000);
    // Destroying instances gives their share back.
    scene.destroy(info.root).unwrap();
    scene.instantiate("after", info.model).unwrap();
}

/// Without posed vertices (a renderer posing on the GPU), bounds come from per-joint boxes:
/// they must hold every posed vertex (culling relies on it) and stay close to the exact box.
/// Fox through its three animations, and the hand-made triangle that is morphed and skinned.
#[test]
fn bounds_without_cpu_posing_hold_the_pose() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let fox = import_file(&assets, "Fox/Fox.glb", &ImportLimits::default()).unwrap();
    let triangle =
        import_gltf(&rigged_triangle(), &mut no_files, &ImportLimits::default()).unwrap();
    let cases = [
        (fox, vec![(0, 0.6), (1, 0.4), (2, 0.3), (2, 0.0)]),
        (triangle, vec![(0, 0.0), (0, 0.5), (0, 1.0)]),
    ];
    for (model, poses) in cases {
        let mut exact = Scene::default();
        let mut boxed = Scene::default();
        boxed.set_cpu_posing(false);
        let a = exact.add_model("m", model.clone()).unwrap();
        let b = boxed.add_model("m", model).unwrap();
        for (index, t) in poses {
            for (scene, root) in [(&mut exact, a.root), (&mut boxed, b.root)] {
                scene.pose_at(root, index, t).unwrap();
                scene.update_world_transforms();
            }
            let e = exact.world_bounds(a.root).unwrap();
            let g = boxed.world_bounds(b.root).unwrap();
            let slack = 1e-4 * e.size().max_element().max(1.0);
            assert!(
                g.min.cmple(e.min + slack).all() && g.max.cmpge(e.max - slack).all(),
                "animation {index} at {t}: {g:?} does not hold {e:?}"
            );
            let ratio = g.size() / e.size().max(Vec3::splat(1e-3));
            assert!(
                ratio.max_element() < 1.6,
                "animation {index} at {t}: {g:?} is far larger than {e:?}"
            );
            // The GPU's inputs are there, and the CPU's vertices only where asked for.
            let mesh = b.hierarchy.iter().find(|h| h.has_mesh).unwrap().entity;
            assert!(boxed.deformation(mesh).is_none());
            let inputs = boxed.deform_inputs(mesh).unwrap();
            assert!(inputs.revision > 0);
            // Its drawable says so (renderers look up pose inputs only for those).
            for d in boxed.drawables() {
                assert_eq!(d.deformable, boxed.deform_inputs(d.entity).is_some());
            }
            assert!(boxed.drawables().iter().any(|d| d.deformable));
        }
    }
}
