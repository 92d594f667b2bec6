//! Scene requests executed on the render thread: protocol types in, scene calls, protocol
//! replies out. The render thread owns the scene, so commands and queries see exactly the
//! state that the next frame draws, in request order.

use farview_protocol::{
    AnimationCommand, AnimationInfo, AnimationState, CameraPose, EntityBounds, EntityNode,
    ErrorCode, FIT_VIEW_DIRECTION, MAX_CHILDREN_LISTED, MAX_RAY_HITS, MAX_TRANSFORM_BATCH, Reply,
    Request, WireError,
};
use farview_render::{Camera, FrameRenderer};
use farview_scene::{
    Aabb, CutPlane, EntityId, Light, LightKind, MaterialOverride, Ray, Scene, SceneError,
    StateOverride, Transform,
};
use glam::{Mat4, Quat, Vec3};

/// Longest entity name accepted.
const MAX_NAME: usize = 256;

pub(crate) fn scene_error(e: SceneError) -> WireError {
    let code = match &e {
        SceneError::NoSuchEntity(_) => ErrorCode::ENTITY_NOT_FOUND,
        SceneError::WouldCycle { .. } => ErrorCode::WOULD_CYCLE,
        SceneError::TooManyEntities(_) | SceneError::TooMany(..) => ErrorCode::SCENE_LIMIT,
        SceneError::NoSuchLight(_) => ErrorCode::LIGHT_NOT_FOUND,
        SceneError::NoSuchCutPlane(_) => ErrorCode::CUT_PLANE_NOT_FOUND,
        _ => ErrorCode::INVALID_ARGUMENT,
    };
    WireError::new(code, e.to_string())
}

fn invalid(m: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::INVALID_ARGUMENT, m)
}

fn transform(t: &farview_protocol::EntityTransform) -> Result<Transform, WireError> {
    let rotation = Quat::from_array(t.rotation);
    let len2 = rotation.length_squared();
    if !(0.5..=1.5).contains(&len2) {
        return Err(invalid(format!(
            "rotation must be a unit quaternion (squared length {len2})"
        )));
    }
    let t = Transform {
        translation: Vec3::from_array(t.position),
        rotation: rotation.normalize(),
        scale: Vec3::from_array(t.scale),
    };
    if !t.is_finite() {
        return Err(scene_error(SceneError::NonFiniteTransform));
    }
    Ok(t)
}

fn light(l: &farview_protocol::Light) -> Light {
    Light {
        kind: match l.kind {
            farview_protocol::LightKind::Directional => LightKind::Directional,
            farview_protocol::LightKind::Point => LightKind::Point,
            farview_protocol::LightKind::Spot {
                inner_cone,
                outer_cone,
            } => LightKind::Spot {
                inner_cone,
                outer_cone,
            },
        },
        color: l.color,
        intensity: l.intensity,
        position: Vec3::from_array(l.position),
        direction: Vec3::from_array(l.direction),
        range: l.range,
    }
}

fn plane(p: &farview_protocol::CutPlane) -> CutPlane {
    CutPlane {
        normal: Vec3::from_array(p.normal),
        distance: p.distance,
    }
}

fn bounds(b: Aabb) -> Option<([f32; 3], [f32; 3])> {
    (!b.is_empty()).then(|| (b.min.to_array(), b.max.to_array()))
}

fn node(scene: &Scene, id: EntityId) -> Option<EntityNode> {
    let e = scene.entity(id)?;
    Some(EntityNode {
        entity: id.0,
        parent: e.parent.map(|p| p.0),
        name: e.name.clone(),
        has_mesh: e.mesh.is_some(),
    })
}

/// What the render thread holds besides the scene and renderer that requests read or change.
pub(crate) struct View<'a> {
    /// The camera frames are drawn with (`FitView` moves it).
    pub(crate) camera: &'a mut Camera,
    /// The name of the environment the renderer's lighting holds (`GetLook` reports it).
    pub(crate) environment: &'a str,
}

/// Frames entity `entity`'s subtree (or every root) from `direction`, keeping the camera's
/// field of view at the renderer's aspect, and moves the camera there.
fn fit_view(
    entity: Option<u64>,
    direction: Option<[f32; 3]>,
    scene: &mut Scene,
    renderer: &FrameRenderer,
    camera: &mut Camera,
) -> Result<CameraPose, WireError> {
    let dir = Vec3::from_array(direction.unwrap_or(FIT_VIEW_DIRECTION));
    let Some(dir) = dir.is_finite().then(|| dir.try_normalize()).flatten() else {
        return Err(invalid("the direction must be finite and non-zero"));
    };
    scene.update_world_transforms();
    let aspect = renderer.width() as f32 / renderer.height() as f32;
    let fit = scene
        .fit_view(entity.map(EntityId), dir, camera.fov_y, aspect)
        .map_err(|e| match e {
            SceneError::NoSuchEntity(_) => scene_error(e),
            _ => WireError::new(
                ErrorCode::NOTHING_TO_FRAME,
                match entity {
                    Some(id) => format!("entity {id}'s subtree has no geometry to frame"),
                    None => "the scene has no geometry to frame".to_owned(),
                },
            ),
        })?;
    // Looking straight down or up, +Y cannot be the camera's up: the scene's -Z (its back)
    // goes up on screen instead.
    let up = if dir.y.abs() > 0.999 {
        Vec3::NEG_Z * dir.y.signum()
    } else {
        Vec3::Y
    };
    let view = Mat4::look_at_rh(fit.eye, fit.target, up);
    let (_, rotation, _) = view.inverse().to_scale_rotation_translation();
    *camera = Camera {
        position: fit.eye,
        rotation: rotation.normalize(),
        fov_y: camera.fov_y,
        near: fit.near,
        far: fit.far,
    };
    Ok(pose_of(camera))
}

/// Looks through a model's glTF camera as it is placed now: the node's world position and
/// orientation (scale removed), the camera's field of view and planes. An infinite far plane
/// becomes one past everything in the scene.
fn view_camera(
    root: EntityId,
    index: u32,
    scene: &mut Scene,
    camera: &mut Camera,
) -> Result<CameraPose, WireError> {
    scene.update_world_transforms();
    let cameras = scene.model_cameras(root).map_err(scene_error)?;
    let count = cameras.len();
    let (cam, entity) = cameras.into_iter().nth(index as usize).ok_or_else(|| {
        invalid(format!(
            "camera {index} does not exist (the model has {count})"
        ))
    })?;
    let entity = entity.ok_or_else(|| invalid(format!("camera {index}'s node was destroyed")))?;
    let world = scene
        .entity(entity)
        .map(|e| e.world)
        .ok_or(scene_error(SceneError::NoSuchEntity(entity.0)))?;
    let (_, rotation, position) = world.to_scale_rotation_translation();
    if !(position.is_finite() && rotation.is_finite()) {
        return Err(invalid(format!(
            "camera {index}'s node has a degenerate transform"
        )));
    }
    let far = cam.zfar.unwrap_or_else(|| {
        let everything = scene
            .roots()
            .iter()
            .filter_map(|r| scene.world_bounds(*r).ok())
            .fold(Aabb::EMPTY, |a, b| a.union(&b));
        let reach = if everything.is_empty() {
            0.0
        } else {
            (everything.center() - position).length() + everything.size().length()
        };
        (reach * 1.5).max(cam.znear * 1000.0)
    });
    *camera = Camera {
        position,
        rotation: rotation.normalize(),
        fov_y: cam.yfov,
        near: cam.znear,
        far,
    };
    Ok(pose_of(camera))
}

/// The wire form of the camera in use.
fn pose_of(camera: &Camera) -> CameraPose {
    CameraPose {
        position: camera.position.to_array(),
        rotation: camera.rotation.to_array(),
        fov_y: camera.fov_y,
        near: camera.near,
        far: camera.far,
    }
}

/// Runs one scene request. Anything that fails leaves the scene as it was.
pub(crate) fn execute(
    request: Request,
    scene: &mut Scene,
    renderer: &mut FrameRenderer,
    view: &mut View<'_>,
) -> Result<Reply, WireError> {
    match request {
        Request::CreateEntity {
            parent,
            name,
            transform: t,
        } => {
            if name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
                return Err(invalid(format!(
                    "entity names are at most {MAX_NAME} bytes"
                )));
            }
            let id = scene
                .spawn(name, parent.map(EntityId), transform(&t)?, None)
                .map_err(scene_error)?;
            Ok(Reply::EntityCreated { entity: id.0 })
        }
        Request::DestroyEntity { entity } => {
            let n = scene.destroy(EntityId(entity)).map_err(scene_error)?;
            Ok(Reply::Destroyed { entities: n as u64 })
        }
        Request::Reparent {
            entity,
            parent,
            keep_world,
        } => {
            scene
                .reparent(EntityId(entity), parent.map(EntityId), keep_world)
                .map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::SetTransforms { updates } => {
            if updates.len() > MAX_TRANSFORM_BATCH {
                return Err(WireError::new(
                    ErrorCode::SCENE_LIMIT,
                    format!(
                        "{} updates in one batch; the limit is {MAX_TRANSFORM_BATCH}",
                        updates.len()
                    ),
                ));
            }
            let batch = updates
                .iter()
                .map(|u| Ok((EntityId(u.entity), transform(&u.transform)?)))
                .collect::<Result<Vec<_>, WireError>>()?;
            scene.set_local_transforms(&batch).map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::SetVisible { entity, visible } => {
            scene
                .set_visible(EntityId(entity), visible)
                .map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::SetStateOverride { entity, state } => {
            scene
                .set_state_override(
                    EntityId(entity),
                    StateOverride {
                        hidden: state.hidden,
                        see_through: state.see_through,
                        selected: state.selected,
                        tint: state.tint,
                        variant: state.variant,
                    },
                )
                .map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::SetMaterialOverride { entity, material } => {
            scene
                .set_material_override(
                    EntityId(entity),
                    MaterialOverride {
                        base_color: material.base_color,
                        metallic: material.metallic,
                        roughness: material.roughness,
                        emissive: material.emissive,
                    },
                )
                .map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::AddLight { light: l } => {
            let id = scene.add_light(light(&l)).map_err(scene_error)?;
            Ok(Reply::LightAdded { id })
        }
        Request::UpdateLight { id, light: l } => {
            scene.update_light(id, light(&l)).map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::RemoveLight { id } => {
            scene.remove_light(id).map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::AddCutPlane { plane: p } => {
            let id = scene.add_cut_plane(plane(&p)).map_err(scene_error)?;
            Ok(Reply::CutPlaneAdded { id })
        }
        Request::UpdateCutPlane { id, plane: p } => {
            scene.update_cut_plane(id, plane(&p)).map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::RemoveCutPlane { id } => {
            scene.remove_cut_plane(id).map_err(scene_error)?;
            Ok(Reply::Applied)
        }
        Request::GetChildren { entity } => {
            let children = scene.children(EntityId(entity)).map_err(scene_error)?;
            let truncated = children.len() > MAX_CHILDREN_LISTED;
            let children = children
                .iter()
                .take(MAX_CHILDREN_LISTED)
                .filter_map(|&c| node(scene, c))
                .collect();
            Ok(Reply::Children {
                children,
                truncated,
            })
        }
        Request::GetBounds { entity } => {
            scene.update_world_transforms();
            let id = EntityId(entity);
            let world = scene.world_bounds(id).map_err(scene_error)?;
            let local = scene.local_bounds(id).map_err(scene_error)?;
            Ok(Reply::Bounds(EntityBounds {
                local: bounds(local),
                world: bounds(world),
            }))
        }
        Request::Raycast { ray } => {
            let r = Ray::new(
                Vec3::from_array(ray.origin),
                Vec3::from_array(ray.direction),
                ray.max_distance,
            )
            .ok_or_else(|| {
                invalid(
                    "a ray needs a finite origin, a non-zero direction and a positive max distance",
                )
            })?;
            let hits = scene.raycast(&r, !ray.all, MAX_RAY_HITS);
            Ok(Reply::Hits(
                hits.into_iter()
                    .map(|h| farview_protocol::RayHit {
                        entity: h.entity.0,
                        position: h.position.to_array(),
                        normal: h.normal.to_array(),
                        distance: h.distance,
                    })
                    .collect(),
            ))
        }
        Request::GetStats => {
            // Drop the GPU assets of models destroyed since the last frame, so the figure is
            // current.
            renderer.evict_unused(scene);
            let s = scene.stats();
            Ok(Reply::Stats(farview_protocol::SceneStats {
                entities: s.entities,
                triangles: s.triangles,
                models: s.models,
                lights: s.lights,
                cut_planes: s.cut_planes,
                gpu_bytes: renderer.held_bytes(),
            }))
        }
        Request::GetLook => Ok(Reply::Look(crate::look_wire::state(
            renderer.lighting(),
            view.environment,
        ))),
        Request::FitView { entity, direction } => {
            fit_view(entity, direction, scene, renderer, view.camera).map(Reply::CameraFitted)
        }
        Request::ListAnimations { root } => scene
            .animations(EntityId(root))
            .map(|list| {
                Reply::Animations(
                    list.into_iter()
                        .map(|a| AnimationInfo {
                            name: a.name,
                            duration_s: a.duration,
                        })
                        .collect(),
                )
            })
            .map_err(scene_error),
        Request::Animate { root, command } => {
            let root = EntityId(root);
            let command = match command {
                AnimationCommand::Play {
                    index,
                    speed,
                    looping,
                    start_s,
                } => farview_scene::AnimationCommand::Play {
                    index: index as usize,
                    speed,
                    looping,
                    start: start_s,
                },
                AnimationCommand::Pause => farview_scene::AnimationCommand::Pause,
                AnimationCommand::Resume => farview_scene::AnimationCommand::Resume,
                AnimationCommand::Seek { time_s } => farview_scene::AnimationCommand::Seek(time_s),
                AnimationCommand::SetSpeed { speed } => {
                    farview_scene::AnimationCommand::Speed(speed)
                }
                AnimationCommand::Stop => farview_scene::AnimationCommand::Stop,
            };
            scene.animate(root, command).map_err(scene_error)?;
            let s = scene.animation_state(root).map_err(scene_error)?;
            Ok(Reply::AnimationState(AnimationState {
                index: s.index.map(|i| i as u32),
                time_s: s.time,
                speed: s.speed,
                playing: s.playing,
                looping: s.looping,
            }))
        }
        Request::ViewCamera { root, camera } => {
            view_camera(EntityId(root), camera, scene, view.camera).map(Reply::CameraFitted)
        }
        other => Err(WireError::new(
            ErrorCode::INTERNAL,
            format!("not a scene request: {other:?}"),
        )),
    }
}
