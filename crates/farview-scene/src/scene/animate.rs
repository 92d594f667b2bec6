//! Animation of model instances: which animation plays on which instance, the pose it sets on
//! the instance's node entities each frame, and the inputs of skinned and morphed meshes (joint
//! matrices and morph weights, with a revision that goes up when they change).
//!
//! A renderer that can run compute shaders skins and morphs on the GPU from those inputs
//! ([`Scene::deform_inputs`]); the posed vertices are then never computed here, and bounds
//! come from per-joint boxes ([`DeformBounds`]): never smaller than the pose, a little larger.
//! For renderers that cannot, and for exact bounds, the scene computes the posed vertices on
//! the CPU once per change ([`Scene::set_cpu_posing`], on by default; [`Scene::deformation`]).
//! Both costs are measured in `benches/` (BrainStem).

use std::sync::Arc;

use glam::{Mat4, Quat, Vec3, Vec4};

use crate::animation::{ChannelPath, Playback};
use crate::model::{Aabb, Model};

use super::{EntityId, ModelId, Scene, SceneError};

/// The fastest rate an animation may play at, either way.
pub const MAX_ANIMATION_SPEED: f32 = 1000.0;

/// What an instance needs to be animated: its nodes' entities.
#[derive(Debug, Clone)]
pub(super) struct Instance {
    pub(super) model: ModelId,
    /// Entity of each model node (`None` when the node's entity was destroyed).
    pub(super) nodes: Vec<Option<EntityId>>,
    pub(super) playback: Option<Playback>,
}

/// A deformable entity's inputs: its instance (for joint lookup), skin and morph weights.
#[derive(Debug, Clone)]
pub(crate) struct Deform {
    pub(super) root: EntityId,
    pub(super) skin: Option<usize>,
    pub(super) weights: Vec<f32>,
    pub(super) output: Option<Arc<Deformed>>,
    /// The joint matrices and weights of the current pose: equal inputs skip the work.
    pub(super) inputs: (Vec<Mat4>, Vec<f32>),
    /// Bounds of the current pose in the mesh's space (exact when posed on the CPU, from
    /// [`DeformBounds`] otherwise); `None` before the first pose.
    pub(super) bounds: Option<Aabb>,
    /// Per-primitive boxes for bounds without posed vertices, made on first use.
    pub(super) boxes: Option<Arc<[DeformBounds]>>,
    /// Counts recomputations; only ever goes up, so a renderer never mistakes a new pose for
    /// one it has uploaded.
    pub(super) revision: u64,
}

/// The vertices of a skinned or morphed mesh in its pose, in the mesh's space (the entity's
/// world matrix still applies), one entry per primitive of the mesh.
#[derive(Debug, Clone, Default)]
pub struct Deformed {
    /// Bumped whenever the vertices change.
    pub revision: u64,
    /// Per primitive.
    pub primitives: Vec<DeformedPrimitive>,
    /// Bounds of every primitive's positions.
    pub bounds: Aabb,
}

/// What a GPU needs to pose a deformable entity: the joint matrices (mesh bind space to posed
/// mesh space, indexed like the skin's joints; empty when not skinned) and the morph weights.
#[derive(Debug, Clone, Copy)]
pub struct DeformInputs<'a> {
    /// Goes up whenever the joints or weights change (never repeats for one entity).
    pub revision: u64,
    /// Joint matrices.
    pub joints: &'a [Mat4],
    /// Morph target weights.
    pub weights: &'a [f32],
}

/// Boxes that bound a primitive's pose without posing its vertices: the bind-pose box of the
/// vertices each joint moves, and the box of each morph target's displacements. A skinned
/// vertex is a weighted sum of its joints' transforms of it; with weights that sum to one that
/// lies inside the union of the joints' transformed boxes, and with any other sum inside that
/// union scaled towards the origin (`weight_sums` widens the box for it).
#[derive(Debug, Clone, Default)]
pub struct DeformBounds {
    /// Bind-pose box of the vertices each joint slot influences (empty when none does).
    joints: Vec<Aabb>,
    /// Smallest and largest sum of a vertex's joint weights.
    weight_sums: (f32, f32),
    /// Box of each morph target's position displacements.
    targets: Vec<Aabb>,
    /// The primitive's bind-pose box.
    rest: Aabb,
}

impl DeformBounds {
    /// The boxes of `p` (one pass over its vertices and targets).
    pub fn new(p: &crate::model::Primitive) -> Self {
        let mut joints: Vec<Aabb> = Vec::new();
        let mut sums = (f32::INFINITY, f32::NEG_INFINITY);
        for (v, (j, w)) in p.positions.iter().zip(p.joints.iter().zip(&p.weights)) {
            let v = Vec3::from_array(*v);
            let mut sum = 0.0;
            for k in 0..4 {
                if w[k] > 0.0 {
                    sum += w[k];
                    let slot = usize::from(j[k]);
                    if joints.len() <= slot {
                        joints.resize(slot + 1, Aabb::EMPTY);
                    }
                    let b = &mut joints[slot];
                    *b = Aabb {
                        min: b.min.min(v),
                        max: b.max.max(v),
                    };
                }
            }
            sums = (sums.0.min(sum), sums.1.max(sum));
        }
        let targets = p
            .targets
            .iter()
            .map(|t| Aabb::from_points(t.positions.iter().map(|d| Vec3::from_array(*d))))
            .collect();
        Self {
            joints,
            weight_sums: if sums.0 <= sums.1 { sums } else { (1.0, 1.0) },
            targets,
            rest: p.bounds,
        }
    }

    /// A box that holds every vertex of the primitive posed with `joints` and `weights`.
    pub fn pose(&self, weights: &[f32], joints: &[Mat4]) -> Aabb {
        // Morphing moves each vertex by the weighted sum of its displacements, which lies in
        // the weighted sum of the targets' boxes.
        let (mut lo, mut hi) = (Vec3::ZERO, Vec3::ZERO);
        for (t, &w) in self.targets.iter().zip(weights) {
            if w == 0.0 || t.is_empty() {
                continue;
            }
            let (a, b) = (t.min * w, t.max * w);
            lo += a.min(b);
            hi += a.max(b);
        }
        let grow = |b: &Aabb| Aabb {
            min: b.min + lo,
            max: b.max + hi,
        };
        if joints.is_empty() || self.joints.is_empty() {
            return grow(&self.rest);
        }
        let mut out = Aabb::EMPTY;
        for (slot, b) in self.joints.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            let m = joints.get(slot).copied().unwrap_or(Mat4::IDENTITY);
            out = out.union(&grow(b).transformed(&m));
        }
        let (min_sum, max_sum) = self.weight_sums;
        if (min_sum - 1.0).abs() > 1e-4 || (max_sum - 1.0).abs() > 1e-4 {
            // s * q for s in [0, max_sum] lies between the origin and max_sum times the box.
            let scaled = Aabb {
                min: out.min * max_sum.max(0.0),
                max: out.max * max_sum.max(0.0),
            };
            out = Aabb::from_points([out.min, out.max, scaled.min, scaled.max, Vec3::ZERO]);
        }
        out
    }
}

/// One primitive's posed vertices.
#[derive(Debug, Clone, Default)]
pub struct DeformedPrimitive {
    /// Positions.
    pub positions: Vec<[f32; 3]>,
    /// Normals (unit).
    pub normals: Vec<[f32; 3]>,
    /// Tangents (xyz unit, w handedness), or empty when the primitive has none.
    pub tangents: Vec<[f32; 4]>,
}

/// An animation as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimationInfo {
    /// Name (from the file, or `animation N`).
    pub name: String,
    /// Length in seconds.
    pub duration: f32,
}

/// What to do with an instance's animation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnimationCommand {
    /// Starts animation `index` from `start` seconds.
    Play {
        /// Index into the instance's animations.
        index: usize,
        /// Rate (1 = real time; negative plays backwards).
        speed: f32,
        /// Wrap at the ends (else stop there).
        looping: bool,
        /// Start time, seconds.
        start: f32,
    },
    /// Stops time (the pose stays).
    Pause,
    /// Lets time run again.
    Resume,
    /// Jumps to a time, seconds (clamped to the animation).
    Seek(f32),
    /// Changes the rate.
    Speed(f32),
    /// Stops the animation and returns the nodes to their rest pose.
    Stop,
}

/// Where an instance's animation is.
#[derive(Debug, Clone, PartialEq)]
pub struct AnimationState {
    /// The animation, when one is set.
    pub index: Option<usize>,
    /// Its time, seconds.
    pub time: f32,
    /// Its rate.
    pub speed: f32,
    /// Whether time runs.
    pub playing: bool,
    /// Whether it wraps.
    pub looping: bool,
}

impl Scene {
    fn instance(&self, root: EntityId) -> Result<&Instance, SceneError> {
        self.get(root)?;
        self.instances.get(&root).ok_or_else(|| {
            SceneError::InvalidArgument(format!(
                "entity {} is not the root of a loaded model",
                root.0
            ))
        })
    }

    /// The instance rooted at `root` and its model (an `Arc`, so a caller may keep it while it
    /// changes the scene).
    fn instance_model(&self, root: EntityId) -> Result<(&Instance, Arc<Model>), SceneError> {
        let inst = self.instance(root)?;
        let model = self
            .model(inst.model)
            .cloned()
            .ok_or(SceneError::NoSuchModel(inst.model.0))?;
        Ok((inst, model))
    }

    /// The animations of the model instance rooted at `root`.
    pub fn animations(&self, root: EntityId) -> Result<Vec<AnimationInfo>, SceneError> {
        let (_, model) = self.instance_model(root)?;
        Ok(model
            .animations
            .iter()
            .map(|a| AnimationInfo {
                name: a.name.clone(),
                duration: a.duration,
            })
            .collect())
    }

    /// The animation state of the instance rooted at `root`.
    pub fn animation_state(&self, root: EntityId) -> Result<AnimationState, SceneError> {
        let p = self.instance(root)?.playback;
        Ok(AnimationState {
            index: p.map(|p| p.animation),
            time: p.map_or(0.0, |p| p.time),
            speed: p.map_or(1.0, |p| p.speed),
            playing: p.is_some_and(|p| p.playing),
            looping: p.is_some_and(|p| p.looping),
        })
    }

    /// Applies an animation command to the instance rooted at `root`; the pose is set at once.
    pub fn animate(&mut self, root: EntityId, command: AnimationCommand) -> Result<(), SceneError> {
        let (inst, model) = self.instance_model(root)?;
        let finite = |v: f32, what: &str| {
            if v.is_finite() {
                Ok(v)
            } else {
                Err(SceneError::InvalidArgument(format!(
                    "{what} must be finite"
                )))
            }
        };
        let rate = |v: f32| {
            let v = finite(v, "speed")?;
            if v.abs() <= MAX_ANIMATION_SPEED {
                Ok(v)
            } else {
                Err(SceneError::InvalidArgument(format!(
                    "speed {v} is beyond ±{MAX_ANIMATION_SPEED}"
                )))
            }
        };
        let mut playback = inst.playback;
        let need = |p: Option<Playback>| {
            p.ok_or_else(|| {
                SceneError::InvalidArgument("no animation is set; play one first".into())
            })
        };
        match command {
            AnimationCommand::Play {
                index,
                speed,
                looping,
                start,
            } => {
                let anim = model.animations.get(index).ok_or_else(|| {
                    SceneError::InvalidArgument(format!(
                        "animation {index} does not exist (the model has {})",
                        model.animations.len()
                    ))
                })?;
                let speed = rate(speed)?;
                let start = finite(start, "start")?.clamp(0.0, anim.duration);
                if playback.is_some_and(|p| p.animation != index) {
                    self.rest_pose(root, &model);
                }
                playback = Some(Playback {
                    animation: index,
                    time: start,
                    speed,
                    looping,
                    playing: true,
                });
            }
            AnimationCommand::Pause => {
                let mut p = need(playback)?;
                p.playing = false;
                playback = Some(p);
            }
            AnimationCommand::Resume => {
                let mut p = need(playback)?;
                p.playing = true;
                playback = Some(p);
            }
            AnimationCommand::Seek(t) => {
                let mut p = need(playback)?;
                let duration = model
                    .animations
                    .get(p.animation)
                    .map_or(0.0, |a| a.duration);
                p.time = finite(t, "time")?.clamp(0.0, duration);
                playback = Some(p);
            }
            AnimationCommand::Speed(s) => {
                let mut p = need(playback)?;
                p.speed = rate(s)?;
                playback = Some(p);
            }
            AnimationCommand::Stop => {
                playback = None;
                self.rest_pose(root, &model);
            }
        }
        if let Some(inst) = self.instances.get_mut(&root) {
            inst.playback = playback;
        }
        self.apply_pose(root, &model);
        Ok(())
    }

    /// Advances every playing animation by `dt` seconds and sets the poses; true when any pose
    /// changed (the frame must be drawn again).
    pub fn advance_animations(&mut self, dt: f32) -> bool {
        let playing: Vec<EntityId> = self
            .instances
            .iter()
            .filter(|(_, i)| i.playback.is_some_and(|p| p.playing))
            .map(|(r, _)| *r)
            .collect();
        for root in &playing {
            let Some(inst) = self.instances.get(root) else {
                continue;
            };
            let Some(model) = self.model(inst.model).cloned() else {
                continue;
            };
            if let Some(p) = self
                .instances
                .get_mut(root)
                .and_then(|i| i.playback.as_mut())
            {
                let duration = model
                    .animations
                    .get(p.animation)
                    .map_or(0.0, |a| a.duration);
                p.advance(dt, duration);
            }
            self.apply_pose(*root, &model);
        }
        !playing.is_empty()
    }

    /// The animation a frame shows: the lowest-numbered model root with an animation set, and
    /// that animation's time in seconds.
    pub fn shown_animation(&self) -> Option<(EntityId, f32)> {
        self.instances
            .iter()
            .filter_map(|(root, i)| Some((*root, i.playback?.time)))
            .min_by_key(|(root, _)| *root)
    }

    /// True when some animation's time is running and moves something (a rate of 0 or an
    /// animation of no length changes nothing, so frames need not be redrawn for it).
    pub fn is_animating(&self) -> bool {
        self.instances.values().any(|i| {
            i.playback.is_some_and(|p| {
                p.playing
                    && p.speed != 0.0
                    && self
                        .model(i.model)
                        .and_then(|m| m.animations.get(p.animation))
                        .is_some_and(|a| a.duration > 0.0)
            })
        })
    }

    /// Sets the instance's node entities to its animation's values at its time.
    fn apply_pose(&mut self, root: EntityId, model: &Model) {
        let Some(p) = self.instances.get(&root).and_then(|i| i.playback) else {
            return;
        };
        self.set_pose(root, model, p.animation, p.time);
    }

    /// Poses the instance rooted at `root` as animation `index` is at `time` seconds, without
    /// changing what plays. Several animations that drive different nodes (as in Khronos'
    /// InterpolationTest) can be posed one after the other; a playing animation sets its own
    /// nodes again on the next frame.
    pub fn pose_at(&mut self, root: EntityId, index: usize, time: f32) -> Result<(), SceneError> {
        let (_, model) = self.instance_model(root)?;
        if index >= model.animations.len() || !time.is_finite() {
            return Err(SceneError::InvalidArgument(format!(
                "animation {index} at {time} s: no such animation or a non-finite time"
            )));
        }
        self.set_pose(root, &model, index, time);
        Ok(())
    }

    fn set_pose(&mut self, root: EntityId, model: &Model, index: usize, time: f32) {
        let Some(anim) = model.animations.get(index) else {
            return;
        };
        // Taken out of the instance for the loop (no copy per frame), put back after.
        let Some(nodes) = self
            .instances
            .get_mut(&root)
            .map(|i| std::mem::take(&mut i.nodes))
        else {
            return;
        };
        let mut touched = Vec::with_capacity(anim.channels.len());
        let mut buf = [0.0f32; 4];
        let mut weights = Vec::new();
        for ch in &anim.channels {
            let Some(Some(id)) = nodes.get(ch.node).copied() else {
                continue;
            };
            if ch.path == ChannelPath::Weights {
                weights.resize(ch.components, 0.0);
                ch.sample(time, &mut weights);
                if let Some(d) = self.entities.get_mut(&id).and_then(|e| e.deform.as_mut()) {
                    d.weights.clone_from(&weights);
                    self.deform_dirty.push(id);
                }
                touched.push(id);
                continue;
            }
            ch.sample(time, &mut buf[..ch.components]);
            let Some(e) = self.entities.get_mut(&id) else {
                continue;
            };
            match ch.path {
                ChannelPath::Translation => e.local.translation = Vec3::from_slice(&buf[..3]),
                ChannelPath::Rotation => e.local.rotation = Quat::from_slice(&buf),
                ChannelPath::Scale => e.local.scale = Vec3::from_slice(&buf[..3]),
                ChannelPath::Weights => {}
            }
            touched.push(id);
        }
        if let Some(inst) = self.instances.get_mut(&root) {
            inst.nodes = nodes;
        }
        // A node usually has translation, rotation and scale channels: marked once, its
        // subtree is walked once.
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            self.mark_dirty(id);
        }
    }

    /// Puts the instance's nodes back at the file's transforms and weights.
    fn rest_pose(&mut self, root: EntityId, model: &Model) {
        let Some(inst) = self.instances.get(&root) else {
            return;
        };
        let nodes = inst.nodes.clone();
        for (n, id) in nodes.iter().enumerate() {
            let (Some(id), Some(node)) = (id, model.nodes.get(n)) else {
                continue;
            };
            if let Some(e) = self.entities.get_mut(id) {
                e.local = node.local;
                if let Some(d) = e.deform.as_mut() {
                    d.weights = rest_weights(model, n);
                    self.deform_dirty.push(*id);
                }
            }
            self.mark_dirty(*id);
        }
    }

    /// Recomputes the posed vertices of deformable entities whose inputs may have changed (a
    /// joint or the entity moved, or its weights changed); called by
    /// [`Scene::update_world_transforms`].
    pub(super) fn update_deformations(&mut self) {
        if self.deform_dirty.is_empty() {
            return;
        }
        self.world_revision += 1;
        let mut ids = std::mem::take(&mut self.deform_dirty);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let Some(e) = self.entities.get(&id) else {
                continue;
            };
            let (Some((model_id, mesh)), Some(d)) = (e.mesh, e.deform.as_ref()) else {
                continue;
            };
            let Some(model) = self.model(model_id).cloned() else {
                continue;
            };
            let joints = d
                .skin
                .and_then(|s| model.skins.get(s))
                .map(|skin| self.joint_matrices(d.root, e.world, skin))
                .unwrap_or_default();
            if d.bounds.is_some() && d.inputs.0 == joints && d.inputs.1 == d.weights {
                continue;
            }
            let revision = d.revision + 1;
            let weights = d.weights.clone();
            let Some(mesh) = model.meshes.get(mesh) else {
                continue;
            };
            let (output, bounds, boxes) = if self.cpu_posing {
                // A pose whose numbers overflowed (huge but finite animation values) keeps the
                // last good one rather than drawing and bounding infinities.
                let Some(out) = deform(mesh, &weights, &joints, revision) else {
                    continue;
                };
                let bounds = out.bounds;
                (Some(Arc::new(out)), bounds, d.boxes.clone())
            } else {
                let boxes = d.boxes.clone().unwrap_or_else(|| {
                    mesh.primitives
                        .iter()
                        .map(DeformBounds::new)
                        .collect::<Vec<_>>()
                        .into()
                });
                let bounds = boxes
                    .iter()
                    .fold(Aabb::EMPTY, |b, p| b.union(&p.pose(&weights, &joints)));
                if !(bounds.min.is_finite() && bounds.max.is_finite()) {
                    continue;
                }
                (None, bounds, Some(boxes))
            };
            if let Some(d) = self.entities.get_mut(&id).and_then(|e| e.deform.as_mut()) {
                d.output = output;
                d.bounds = Some(bounds);
                d.boxes = boxes;
                d.inputs = (joints, weights);
                d.revision = revision;
            }
        }
    }

    /// Joint matrices of `skin` for a mesh drawn with world matrix `mesh_world`: from the
    /// mesh's bind space to its posed space.
    fn joint_matrices(
        &self,
        root: EntityId,
        mesh_world: Mat4,
        skin: &crate::model::Skin,
    ) -> Vec<Mat4> {
        let inv = mesh_world.inverse();
        let inv = if inv.is_finite() { inv } else { Mat4::IDENTITY };
        let nodes = self
            .instances
            .get(&root)
            .map(|i| i.nodes.as_slice())
            .unwrap_or(&[]);
        skin.joints
            .iter()
            .zip(&skin.inverse_bind)
            .map(|(&j, ibm)| {
                let world = nodes
                    .get(j)
                    .copied()
                    .flatten()
                    .and_then(|id| self.entities.get(&id))
                    .map_or(Mat4::IDENTITY, |e| e.world);
                inv * world * *ibm
            })
            .collect()
    }

    /// The file's cameras of the instance rooted at `root`, each with the entity of its node
    /// (`None` when that entity was destroyed).
    pub fn model_cameras(
        &self,
        root: EntityId,
    ) -> Result<Vec<(crate::model::ModelCamera, Option<EntityId>)>, SceneError> {
        let (inst, model) = self.instance_model(root)?;
        Ok(model
            .cameras
            .iter()
            .map(|c| (c.clone(), inst.nodes.get(c.node).copied().flatten()))
            .collect())
    }

    /// The posed vertices of a deformable entity, when it is one and the scene poses on the
    /// CPU ([`Self::set_cpu_posing`]).
    pub fn deformation(&self, id: EntityId) -> Option<&Arc<Deformed>> {
        self.entities.get(&id)?.deform.as_ref()?.output.as_ref()
    }

    /// The joint matrices and morph weights of a deformable entity's current pose (after
    /// [`Self::update_world_transforms`]), for a renderer that poses on the GPU.
    pub fn deform_inputs(&self, id: EntityId) -> Option<DeformInputs<'_>> {
        let d = self.entities.get(&id)?.deform.as_ref()?;
        d.bounds?;
        Some(DeformInputs {
            revision: d.revision,
            joints: &d.inputs.0,
            weights: &d.inputs.1,
        })
    }

    /// Whether the scene computes posed vertices on the CPU (on by default). A host whose
    /// renderer skins on the GPU turns it off: the per-vertex work is then not done twice, and
    /// bounds of posed meshes come from per-joint boxes (a little larger than the pose).
    pub fn set_cpu_posing(&mut self, on: bool) {
        if self.cpu_posing == on {
            return;
        }
        self.cpu_posing = on;
        // Posed bounds are dropped below: drawable bounds change now.
        self.revision += 1;
        for id in self.deformable.clone() {
            if let Some(d) = self.entities.get_mut(&id).and_then(|e| e.deform.as_mut()) {
                // Posed again (or dropped) at the next update, whatever the inputs.
                d.output = None;
                d.bounds = None;
                self.deform_dirty.push(id);
            }
        }
    }

    /// See [`Self::set_cpu_posing`].
    pub fn cpu_posing(&self) -> bool {
        self.cpu_posing
    }
}

/// Most posed vertices (over all skinned and morphed mesh instances) one scene holds: about
/// 320 MB of posed copies, and as much in GPU buffers.
pub(super) const MAX_POSED_VERTICES: u64 = 8_000_000;

/// Whether `node` draws a deformable mesh: `Some(true)` skinned (and maybe morphed),
/// `Some(false)` morphed only, `None` neither.
pub(super) fn deformable(model: &Model, node: &crate::model::ModelNode) -> Option<bool> {
    let mesh = node.mesh.and_then(|m| model.meshes.get(m))?;
    let skinned = node.skin.is_some_and(|s| s < model.skins.len())
        && mesh.primitives.iter().any(|p| !p.joints.is_empty());
    (skinned || !mesh.weights.is_empty()).then_some(skinned)
}

/// Vertices an instance of `model` holds posed copies of.
pub(super) fn posed_vertices(model: &Model) -> u64 {
    model
        .nodes
        .iter()
        .filter(|n| deformable(model, n).is_some())
        .filter_map(|n| n.mesh.and_then(|m| model.meshes.get(m)))
        .map(|m| {
            m.primitives
                .iter()
                .map(|p| p.positions.len() as u64)
                .sum::<u64>()
        })
        .sum()
}

/// A node's morph weights at rest: its own, else its mesh's.
pub(super) fn rest_weights(model: &Model, node: usize) -> Vec<f32> {
    let Some(n) = model.nodes.get(node) else {
        return Vec::new();
    };
    let mesh_weights = n
        .mesh
        .and_then(|m| model.meshes.get(m))
        .map_or(&[][..], |m| m.weights.as_slice());
    let mut w = n.weights.clone().unwrap_or_else(|| mesh_weights.to_vec());
    w.resize(mesh_weights.len(), 0.0);
    w
}

/// Morphs then skins every primitive of `mesh`.
fn deform(
    mesh: &crate::model::Mesh,
    weights: &[f32],
    joints: &[Mat4],
    revision: u64,
) -> Option<Deformed> {
    let mut bounds = Aabb::EMPTY;
    let primitives = mesh
        .primitives
        .iter()
        .map(|p| {
            let mut positions = p.positions.clone();
            let mut normals = p.normals.clone();
            let mut tangents = p.tangents.clone();
            for (t, &w) in p.targets.iter().zip(weights) {
                if w == 0.0 {
                    continue;
                }
                for (v, d) in positions.iter_mut().zip(&t.positions) {
                    for c in 0..3 {
                        v[c] += w * d[c];
                    }
                }
                for (v, d) in normals.iter_mut().zip(&t.normals) {
                    for c in 0..3 {
                        v[c] += w * d[c];
                    }
                }
                for (v, d) in tangents.iter_mut().zip(&t.tangents) {
                    for c in 0..3 {
                        v[c] += w * d[c];
                    }
                }
            }
            if !joints.is_empty() && !p.joints.is_empty() {
                for (i, (j, w)) in p.joints.iter().zip(&p.weights).enumerate() {
                    let mut m = Mat4::ZERO;
                    for k in 0..4 {
                        if w[k] > 0.0 {
                            m += *joints.get(usize::from(j[k])).unwrap_or(&Mat4::IDENTITY) * w[k];
                        }
                    }
                    if let Some(v) = positions.get_mut(i) {
                        *v = m.transform_point3(Vec3::from_array(*v)).to_array();
                    }
                    if let Some(n) = normals.get_mut(i) {
                        // Normals go through the cofactor matrix (the inverse transpose up to
                        // scale, normalized below), so they stay perpendicular under
                        // non-uniform joint scale.
                        let (a, b, c) = (
                            m.x_axis.truncate(),
                            m.y_axis.truncate(),
                            m.z_axis.truncate(),
                        );
                        let sign = a.dot(b.cross(c)).signum();
                        let cof = glam::Mat3::from_cols(b.cross(c), c.cross(a), a.cross(b));
                        *n = (cof * Vec3::from_array(*n) * sign).to_array();
                    }
                    if let Some(t) = tangents.get_mut(i) {
                        let v = m.transform_vector3(Vec3::new(t[0], t[1], t[2]));
                        *t = [v.x, v.y, v.z, t[3]];
                    }
                }
            }
            for n in &mut normals {
                *n = Vec3::from_array(*n).normalize_or(Vec3::Z).to_array();
            }
            for t in &mut tangents {
                let v = Vec4::from_array(*t).truncate().normalize_or_zero();
                *t = [v.x, v.y, v.z, t[3]];
            }
            bounds = bounds.union(&Aabb::from_points(
                positions.iter().map(|p| Vec3::from_array(*p)),
            ));
            super::animate::DeformedPrimitive {
                positions,
                normals,
                tangents,
            }
        })
        .collect();
    (bounds.min.is_finite() && bounds.max.is_finite()).then_some(Deformed {
        revision,
        primitives,
        bounds,
    })
}
