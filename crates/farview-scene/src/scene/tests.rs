//! Scene graph unit tests: transforms, hierarchy, overrides, raycasts, lights, and hierarchies
//! as deep as the entity limit allows, walked without recursion.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::model::{Mesh, ModelNode, Primitive};
use crate::{CutPlane, Light, MaterialOverride, Ray, StateOverride};
use glam::Vec3;

fn triangle_model() -> Model {
    let prim = Primitive {
        positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        normals: vec![[0.0, 0.0, 1.0]; 3],
        uvs: vec![[0.0; 2]; 3],
        uvs1: Vec::new(),
        colors: Vec::new(),
        indices: vec![0, 1, 2],
        material: None,
        bounds: Aabb {
            min: Vec3::ZERO,
            max: Vec3::new(1.0, 1.0, 0.0),
        },
        ..Primitive::default()
    };
    Model {
        meshes: vec![Mesh {
            name: None,
            primitives: vec![prim],
            ..Mesh::default()
        }],
        nodes: vec![
            ModelNode {
                name: Some("parent".into()),
                local: Transform {
                    translation: Vec3::X * 10.0,
                    ..Transform::IDENTITY
                },
                mesh: None,
                children: vec![1],
                ..ModelNode::default()
            },
            ModelNode {
                name: Some("child".into()),
                local: Transform {
                    translation: Vec3::Y * 5.0,
                    ..Transform::IDENTITY
                },
                mesh: Some(0),
                children: vec![],
                ..ModelNode::default()
            },
        ],
        roots: vec![0],
        ..Model::default()
    }
}

#[test]
fn world_transforms_propagate_through_the_hierarchy() {
    let mut scene = Scene::default();
    let info = scene.add_model("tri", triangle_model()).unwrap();
    assert_eq!(info.entities, 3);
    assert_eq!(info.triangles, 1);
    assert_eq!(info.bounds.min, Vec3::new(10.0, 5.0, 0.0));
    assert_eq!(info.bounds.max, Vec3::new(11.0, 6.0, 0.0));
    let d = scene.drawables();
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].world.transform_point3(Vec3::ZERO),
        Vec3::new(10.0, 5.0, 0.0)
    );

    scene
        .set_local_transform(
            info.root,
            Transform {
                translation: Vec3::Z,
                ..Transform::IDENTITY
            },
        )
        .unwrap();
    scene.update_world_transforms();
    assert_eq!(
        scene.drawables()[0].world.transform_point3(Vec3::ZERO),
        Vec3::new(10.0, 5.0, 1.0)
    );
}

#[test]
fn hidden_subtree_is_not_drawn_and_missing_entities_are_typed_errors() {
    let mut scene = Scene::default();
    let info = scene.add_model("tri", triangle_model()).unwrap();
    scene.set_visible(info.root, false).unwrap();
    assert!(scene.drawables().is_empty());
    assert_eq!(scene.stats().triangles, 0);
    assert_eq!(
        scene.set_visible(EntityId(999), true),
        Err(SceneError::NoSuchEntity(999))
    );
    let bad = Transform {
        translation: Vec3::splat(f32::NAN),
        ..Transform::IDENTITY
    };
    assert_eq!(
        scene.set_local_transform(info.root, bad),
        Err(SceneError::NonFiniteTransform)
    );
}

fn tri_scene() -> (Scene, ModelInfo) {
    let mut scene = Scene::default();
    let info = scene.add_model("tri", triangle_model()).unwrap();
    (scene, info)
}

#[test]
fn load_reports_hierarchy_and_destroy_frees_the_model() {
    let (mut scene, info) = tri_scene();
    assert_eq!(info.hierarchy.len(), 3);
    assert_eq!(info.hierarchy[0].entity, info.root);
    assert_eq!(info.hierarchy[1].parent, Some(info.root));
    assert_eq!(info.hierarchy[2].name.as_deref(), Some("child"));
    assert!(info.hierarchy[2].has_mesh);
    let again = scene.instantiate("tri2", info.model).unwrap();
    assert_eq!(again.model, info.model, "assets shared");
    assert_eq!(scene.stats().triangles, 2);
    assert_eq!(scene.destroy(info.root).unwrap(), 3);
    assert_eq!(scene.stats().triangles, 1);
    assert!(scene.model(info.model).is_some(), "still used by tri2");
    assert_eq!(
        scene.destroy(info.root),
        Err(SceneError::NoSuchEntity(info.root.0))
    );
    scene.destroy(again.root).unwrap();
    assert!(
        scene.model(info.model).is_none(),
        "freed with its last entity"
    );
    assert_eq!(scene.stats().models, 0);
    assert_eq!(
        scene.instantiate("x", info.model),
        Err(SceneError::NoSuchModel(0))
    );
}

#[test]
fn reparent_keeps_world_or_local_and_refuses_cycles() {
    let (mut scene, info) = tri_scene();
    let child = info.hierarchy[2].entity;
    let parent = info.hierarchy[1].entity;
    let anchor = scene
        .spawn(
            None,
            None,
            Transform {
                translation: Vec3::new(0.0, 0.0, 100.0),
                scale: Vec3::splat(2.0),
                ..Transform::IDENTITY
            },
            None,
        )
        .unwrap();
    scene.update_world_transforms();
    let before = scene.entity(child).unwrap().world;
    scene.reparent(child, Some(anchor), true).unwrap();
    scene.update_world_transforms();
    assert!(scene.entity(child).unwrap().world.abs_diff_eq(before, 1e-4));
    assert_eq!(scene.children(anchor).unwrap(), &[child]);
    assert!(scene.children(parent).unwrap().is_empty());
    scene.reparent(child, Some(parent), false).unwrap();
    scene.update_world_transforms();
    let w = scene.entity(child).unwrap().world;
    assert!(w.transform_point3(Vec3::ZERO).abs_diff_eq(
        Vec3::new(10.0, 0.0, 0.0) + Vec3::Y * 0.0 + scene.entity(child).unwrap().local.translation,
        1e-4
    ));
    assert_eq!(
        scene.reparent(info.root, Some(child), false),
        Err(SceneError::WouldCycle {
            entity: info.root.0,
            parent: child.0
        })
    );
    assert!(matches!(
        scene.reparent(child, Some(child), true),
        Err(SceneError::WouldCycle { .. })
    ));
}

#[test]
fn a_moved_parent_and_child_both_dirty_end_up_consistent() {
    for parent_first in [true, false] {
        let (mut scene, info) = tri_scene();
        let group = scene.spawn(None, None, Transform::IDENTITY, None).unwrap();
        scene.update_world_transforms();
        let moved = Transform {
            translation: Vec3::X * 100.0,
            ..Transform::IDENTITY
        };
        if parent_first {
            scene.set_local_transform(group, moved).unwrap();
            scene.reparent(info.root, Some(group), true).unwrap();
        } else {
            scene.reparent(info.root, Some(group), true).unwrap();
            scene.set_local_transform(group, moved).unwrap();
        }
        scene.update_world_transforms();
        let b = scene.world_bounds(info.root).unwrap();
        let expect_x = if parent_first { 10.0 } else { 110.0 };
        assert!((b.min.x - expect_x).abs() < 1e-4, "{parent_first}: {b:?}");
    }
}

#[test]
fn batched_transforms_are_all_or_nothing() {
    let (mut scene, info) = tri_scene();
    let t = Transform {
        translation: Vec3::X,
        ..Transform::IDENTITY
    };
    assert_eq!(
        scene.set_local_transforms(&[(info.root, t), (EntityId(999), t)]),
        Err(SceneError::NoSuchEntity(999))
    );
    assert_eq!(scene.entity(info.root).unwrap().local, Transform::IDENTITY);
    scene.set_local_transforms(&[(info.root, t)]).unwrap();
    scene.update_world_transforms();
    assert_eq!(
        scene.world_bounds(info.root).unwrap().min,
        Vec3::new(11.0, 5.0, 0.0)
    );
}

#[test]
fn material_variants_inherit_down_the_hierarchy() {
    let (mut scene, info) = tri_scene();
    let mid = info.hierarchy[1].entity;
    let leaf = info.hierarchy[2].entity;
    assert_eq!(scene.drawables()[0].state.variant, None);
    scene
        .set_state_override(
            info.root,
            StateOverride {
                variant: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(scene.drawables()[0].state.variant, Some(2));
    scene
        .set_state_override(
            mid,
            StateOverride {
                variant: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        scene.drawables()[0].state.variant,
        Some(0),
        "nearest ancestor wins"
    );
    scene
        .set_state_override(
            leaf,
            StateOverride {
                variant: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(scene.drawables()[0].state.variant, Some(1));
    // A primitive without a mapping for the variant draws its own material.
    let model = scene.model(info.model).unwrap();
    let prim = &model.meshes[0].primitives[0];
    assert_eq!(prim.material_for_variant(Some(1)), prim.material);
}

#[test]
fn state_overrides_inherit_unless_overridden() {
    let (mut scene, info) = tri_scene();
    let mid = info.hierarchy[1].entity;
    let leaf = info.hierarchy[2].entity;
    scene
        .set_state_override(
            info.root,
            StateOverride {
                tint: Some([1.0, 0.0, 0.0, 1.0]),
                selected: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    scene
        .set_state_override(
            mid,
            StateOverride {
                selected: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    let d = scene.drawables();
    assert_eq!(d[0].state.tint, Some([1.0, 0.0, 0.0, 1.0]));
    assert!(!d[0].state.selected);
    scene
        .set_state_override(
            info.root,
            StateOverride {
                hidden: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(scene.drawables().is_empty());
    scene
        .set_state_override(
            leaf,
            StateOverride {
                hidden: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(scene.drawables().len(), 1, "a child can unhide itself");
    scene
        .set_material_override(
            mid,
            MaterialOverride {
                roughness: Some(0.25),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(scene.drawables()[0].state.material.roughness, Some(0.25));
    assert!(matches!(
        scene.set_material_override(
            mid,
            MaterialOverride {
                metallic: Some(f32::NAN),
                ..Default::default()
            }
        ),
        Err(SceneError::InvalidArgument(_))
    ));
}

#[test]
fn raycast_hits_at_the_expected_distance_and_respects_cuts_and_hiding() {
    let (mut scene, info) = tri_scene();
    // The triangle spans (10..11, 5..6) at z = 0.
    let ray = Ray::new(Vec3::new(10.25, 5.25, 3.0), -Vec3::Z, 100.0).unwrap();
    let hits = scene.raycast(&ray, true, 16);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entity, info.hierarchy[2].entity);
    assert!((hits[0].distance - 3.0).abs() < 1e-5);
    assert!(hits[0].normal.abs_diff_eq(Vec3::Z, 1e-5));
    assert!(
        hits[0]
            .position
            .abs_diff_eq(Vec3::new(10.25, 5.25, 0.0), 1e-5)
    );
    let miss = Ray::new(Vec3::new(12.0, 5.25, 3.0), -Vec3::Z, 100.0).unwrap();
    assert!(scene.raycast(&miss, true, 16).is_empty());
    let plane = scene
        .add_cut_plane(CutPlane {
            normal: Vec3::X,
            distance: 10.1,
        })
        .unwrap();
    assert!(scene.raycast(&ray, true, 16).is_empty(), "cut away");
    scene.remove_cut_plane(plane).unwrap();
    scene.set_visible(info.root, false).unwrap();
    assert!(scene.raycast(&ray, true, 16).is_empty(), "hidden");
    scene.set_visible(info.root, true).unwrap();
    // A second instance behind the first: `all` gives both, nearest first.
    let b = scene.instantiate("b", info.model).unwrap();
    scene
        .set_local_transform(
            b.root,
            Transform {
                translation: Vec3::new(0.0, 0.0, -2.0),
                ..Transform::IDENTITY
            },
        )
        .unwrap();
    let all = scene.raycast(&ray, false, 16);
    assert_eq!(all.len(), 2);
    assert!((all[1].distance - 5.0).abs() < 1e-5);
    assert_eq!(scene.raycast(&ray, true, 16).len(), 1);
}

#[test]
fn local_bounds_are_in_the_entity_space() {
    let (mut scene, info) = tri_scene();
    scene
        .set_local_transform(
            info.root,
            Transform {
                scale: Vec3::splat(3.0),
                ..Transform::IDENTITY
            },
        )
        .unwrap();
    scene.update_world_transforms();
    let local = scene.local_bounds(info.root).unwrap();
    assert!(local.min.abs_diff_eq(Vec3::new(10.0, 5.0, 0.0), 1e-4));
    let world = scene.world_bounds(info.root).unwrap();
    assert!(world.min.abs_diff_eq(Vec3::new(30.0, 15.0, 0.0), 1e-4));
}

#[test]
fn lights_and_cut_planes_are_bounded_and_validated() {
    let mut scene = Scene::default();
    assert!(
        scene.lights().is_empty(),
        "the environment lights a new scene"
    );
    let point = Light {
        kind: crate::LightKind::Point,
        color: [1.0, 0.0, 0.0],
        intensity: 10.0,
        position: Vec3::Y,
        direction: Vec3::ZERO,
        range: Some(5.0),
    };
    let id = scene.add_light(point).unwrap();
    for _ in 1..MAX_LIGHTS {
        scene.add_light(point).unwrap();
    }
    assert_eq!(
        scene.add_light(point),
        Err(SceneError::TooMany("lights", MAX_LIGHTS))
    );
    let bad = Light {
        intensity: -1.0,
        ..point
    };
    assert!(matches!(
        scene.update_light(id, bad),
        Err(SceneError::InvalidArgument(_))
    ));
    scene.remove_light(id).unwrap();
    assert_eq!(scene.remove_light(id), Err(SceneError::NoSuchLight(id)));
    assert!(
        scene
            .add_cut_plane(CutPlane {
                normal: Vec3::ZERO,
                distance: 0.0
            })
            .is_err()
    );
    for _ in 0..MAX_CUT_PLANES {
        scene
            .add_cut_plane(CutPlane {
                normal: Vec3::X * 2.0,
                distance: 0.0,
            })
            .unwrap();
    }
    assert_eq!(scene.cut_planes()[0].1.normal, Vec3::X, "normalised");
    assert!(
        scene
            .add_cut_plane(CutPlane {
                normal: Vec3::X,
                distance: 0.0
            })
            .is_err()
    );
}

#[test]
fn entity_budget_is_enforced() {
    let mut scene = Scene::new(2);
    assert_eq!(
        scene.add_model("tri", triangle_model()),
        Err(SceneError::TooManyEntities(2))
    );
    assert_eq!(scene.stats().entities, 0);
}

/// Runs `f` on a thread with an explicit 2 MiB stack, so recursion over a deep tree overflows.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn a_100000_deep_spawned_chain_is_walked_without_recursion() {
    const DEPTH: usize = 100_000;
    on_small_stack(|| {
        let mut scene = Scene::default();
        let model = scene.add_model("tri", triangle_model()).unwrap();
        let step = Transform {
            translation: Vec3::X,
            ..Transform::IDENTITY
        };
        let top = scene.spawn(None, None, Transform::IDENTITY, None).unwrap();
        let mut deepest = top;
        for _ in 1..DEPTH {
            deepest = scene.spawn(None, Some(deepest), step, None).unwrap();
        }
        // The triangle's mesh drawn at the bottom of the chain.
        let leaf = scene
            .spawn(
                None,
                Some(deepest),
                Transform::IDENTITY,
                Some((model.model, 0)),
            )
            .unwrap();
        scene.update_world_transforms();
        let x = (DEPTH - 1) as f32;
        let origin = |s: &Scene, id| s.entity(id).unwrap().world.transform_point3(Vec3::ZERO);
        assert_eq!(origin(&scene, deepest), Vec3::new(x, 0.0, 0.0));
        assert_eq!(scene.world_bounds(top).unwrap().min, Vec3::new(x, 0.0, 0.0));
        assert!(
            scene
                .local_bounds(top)
                .unwrap()
                .min
                .abs_diff_eq(Vec3::new(x, 0.0, 0.0), 1e-3)
        );
        assert_eq!(
            scene.drawables().len(),
            2,
            "the model's own triangle and the leaf"
        );
        let ray = Ray::new(Vec3::new(x + 0.25, 0.25, 1.0), -Vec3::Z, 10.0).unwrap();
        assert_eq!(scene.raycast(&ray, true, 1)[0].entity, leaf);
        // Only the dirty subtree is walked again, from the top.
        scene.set_local_transform(top, step).unwrap();
        scene.update_world_transforms();
        assert_eq!(origin(&scene, deepest), Vec3::new(x + 1.0, 0.0, 0.0));
        assert!(matches!(
            scene.reparent(top, Some(leaf), false),
            Err(SceneError::WouldCycle { .. })
        ));
        // Reparenting the bottom half elsewhere keeps its world position.
        let mid = scene.entity(deepest).unwrap().parent.unwrap();
        scene.reparent(mid, None, true).unwrap();
        scene.update_world_transforms();
        assert_eq!(origin(&scene, deepest), Vec3::new(x + 1.0, 0.0, 0.0));
        scene.reparent(mid, Some(top), false).unwrap();
        assert_eq!(scene.destroy(top).unwrap(), DEPTH + 1);
        assert_eq!(scene.stats().entities, 3, "the model instance is left");
    });
}

/// The drawables key stays while nothing that drawables or their bounds depend on changes,
/// and moves with every change that does; two scenes never share one.
#[test]
fn the_drawables_key_moves_with_every_change_to_what_is_drawn() {
    let (mut scene, info) = tri_scene();
    scene.update_world_transforms();
    let child = info.hierarchy[2].entity;
    let mut key = scene.drawables_key();
    let mut changed = |scene: &mut Scene, what: &str| {
        scene.update_world_transforms();
        let now = scene.drawables_key();
        assert_ne!(now, key, "{what}");
        key = now;
        // Still again.
        scene.update_world_transforms();
        assert_eq!(scene.drawables_key(), key, "after {what}");
        let _ = scene.drawables();
        assert_eq!(scene.drawables_key(), key, "reading, after {what}");
    };
    let mut t = scene.entity(child).unwrap().local;
    t.translation.x += 1.0;
    scene.set_local_transform(child, t).unwrap();
    changed(&mut scene, "a moved child");
    scene.set_visible(child, false).unwrap();
    changed(&mut scene, "hidden");
    scene.set_visible(child, true).unwrap();
    changed(&mut scene, "shown");
    scene
        .set_state_override(
            info.root,
            StateOverride {
                selected: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    changed(&mut scene, "selected");
    let again = scene.instantiate("tri2", info.model).unwrap();
    changed(&mut scene, "instantiated");
    scene.destroy(again.root).unwrap();
    changed(&mut scene, "destroyed");
    scene.set_cpu_posing(false);
    changed(&mut scene, "posing moved to the GPU");
    let (other, _) = tri_scene();
    assert_ne!(other.drawables_key(), Scene::default().drawables_key());
}
