//! The live scene graph of one session: entities, their hierarchy and transforms, the models
//! they draw, per-entity overrides, lights and cut planes. Commands mutate it; the render loop
//! calls [`Scene::update_world_transforms`] and reads [`Scene::drawables`] once per frame.
//!
//! This file holds the types and the scene's fields; the methods are split by concern:
//! [`hierarchy`] (entities, instances, transforms), [`overrides`] (visibility, state and
//! material overrides, drawables, stats), [`lights`] (lights and cut planes), [`spatial`]
//! (bounds and raycasts).

mod animate;
mod framing;
mod hierarchy;
mod lights;
mod overrides;
mod spatial;
#[cfg(test)]
mod tests;

pub use animate::{
    AnimationCommand, AnimationInfo, AnimationState, DeformBounds, DeformInputs, Deformed,
    DeformedPrimitive, MAX_ANIMATION_SPEED,
};
pub use framing::ViewFit;

use std::collections::HashMap;
use std::sync::Arc;

use glam::{Mat4, Vec3};

use crate::model::{Aabb, Model, Transform};
use crate::raycast::Bvh;
use crate::state::{CutPlane, DrawState, Light, MaterialOverride, StateOverride};

/// Hashes entity ids for the scene's entity table: ids are handed out by the scene in
/// sequence (never chosen by a client), so a multiply-and-shift mix spreads them well, and
/// costs a fraction of SipHash on the per-frame walks over a million entities. For tables keyed
/// by the scene's own ids only (never by values a client chose).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: the high bits (which hashbrown uses too) change with every id.
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
}

/// See [`IdHasher`].
pub type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// Identifies an entity within one scene. Ids are never reused, so a stale id fails cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub u64);

/// Identifies a model added to a scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u32);

/// Identifies a light (never reused).
pub type LightId = u32;
/// Identifies a cut plane (never reused).
pub type CutPlaneId = u32;

/// Most lights a scene holds (the renderer's light array has this many slots).
pub const MAX_LIGHTS: usize = 8;
/// Most cut planes a scene holds.
pub const MAX_CUT_PLANES: usize = 4;

/// One entity of the scene graph.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Name (from the glTF node, or given by the client).
    pub name: Option<String>,
    /// Parent; `None` for a root.
    pub parent: Option<EntityId>,
    /// Children in insertion order.
    pub children: Vec<EntityId>,
    /// Transform relative to the parent.
    pub local: Transform,
    /// Model-space to world-space matrix, valid after [`Scene::update_world_transforms`].
    pub world: Mat4,
    /// The mesh this entity draws, as (model, mesh index in that model).
    pub mesh: Option<(ModelId, usize)>,
    /// Whether the entity (and so its subtree) is drawn.
    pub visible: bool,
    /// Hierarchical state flags (unset fields inherit).
    pub state: StateOverride,
    /// Material inputs replaced for this subtree (unset fields inherit).
    pub material: MaterialOverride,
    /// The model instance this entity was created for (keeps the model's assets alive).
    instance_of: Option<ModelId>,
    /// Skin and morph inputs and the posed vertices, for a skinned or morphed mesh.
    deform: Option<Box<animate::Deform>>,
}

/// Something the renderer draws this frame.
#[derive(Debug, Clone, Copy)]
pub struct Drawable {
    /// The entity drawing it.
    pub entity: EntityId,
    /// World matrix.
    pub world: Mat4,
    /// The model holding the mesh.
    pub model: ModelId,
    /// Mesh index in that model.
    pub mesh: usize,
    /// Overrides resolved down the hierarchy.
    pub state: DrawState,
    /// Draws a skinned or morphed mesh: only then may [`Scene::deform_inputs`] have something
    /// for it (a renderer walking a million drawables looks up none of the others).
    pub deformable: bool,
}

/// One entity of a loaded model's hierarchy, for the client to address parts of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyEntry {
    /// The entity.
    pub entity: EntityId,
    /// Its parent (`None` for the model's root).
    pub parent: Option<EntityId>,
    /// Node name.
    pub name: Option<String>,
    /// Whether it draws a mesh.
    pub has_mesh: bool,
}

/// What a model load reports back to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The entity at the root of the instantiated hierarchy.
    pub root: EntityId,
    /// The model id (GPU assets are shared per model).
    pub model: ModelId,
    /// World-space bounds of the instantiated model.
    pub bounds: Aabb,
    /// Triangles drawn by the model's nodes.
    pub triangles: u64,
    /// Vertices of the model's meshes.
    pub vertices: u64,
    /// Textures of the model.
    pub textures: u32,
    /// Entities created (the root included).
    pub entities: u32,
    /// Extensions in the file that the host ignored.
    pub ignored_extensions: Vec<String>,
    /// Every entity created, parents before children.
    pub hierarchy: Vec<HierarchyEntry>,
    /// Lights from the file added to the scene (those beyond [`MAX_LIGHTS`] are left out).
    pub lights_added: u32,
    /// What the file holds beyond geometry (animations, skins, ...), and import warnings.
    pub extras: crate::model::ModelExtras,
}

/// Scene-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SceneStats {
    /// Live entities.
    pub entities: u64,
    /// Triangles drawn by visible entities.
    pub triangles: u64,
    /// Models held (assets alive).
    pub models: u64,
    /// Lights.
    pub lights: u64,
    /// Cut planes.
    pub cut_planes: u64,
}

/// A raycast hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The entity whose mesh was hit.
    pub entity: EntityId,
    /// World position.
    pub position: Vec3,
    /// World normal of the hit triangle, facing the ray.
    pub normal: Vec3,
    /// Distance from the ray origin.
    pub distance: f32,
}

/// Errors from scene commands.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SceneError {
    /// The entity does not exist (never did, or was destroyed).
    #[error("entity {0} does not exist")]
    NoSuchEntity(u64),
    /// The scene holds as many entities as it may.
    #[error("the scene already holds the maximum of {0} entities")]
    TooManyEntities(usize),
    /// A transform with NaN or infinite components.
    #[error("transform has non-finite components")]
    NonFiniteTransform,
    /// A value out of its range.
    #[error("{0}")]
    InvalidArgument(String),
    /// Reparenting would make an entity its own ancestor.
    #[error(
        "entity {parent} is {entity} or one of its descendants; reparenting would make a cycle"
    )]
    WouldCycle {
        /// The entity moved.
        entity: u64,
        /// The requested parent.
        parent: u64,
    },
    /// The model's assets were freed (all its entities destroyed) or never existed.
    #[error("model {0} is not loaded")]
    NoSuchModel(u32),
    /// No light with that id.
    #[error("light {0} does not exist")]
    NoSuchLight(u32),
    /// No cut plane with that id.
    #[error("cut plane {0} does not exist")]
    NoSuchCutPlane(u32),
    /// The scene holds as many lights or cut planes as it may.
    #[error("the scene already holds the maximum of {1} {0}")]
    TooMany(&'static str, usize),
}

/// Scenes made so far in this process: each scene's [`DrawablesKey`] is its own.
static NEXT_SCENE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`Scene::drawables_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawablesKey {
    scene: u64,
    revision: u64,
    world: u64,
}

/// The scene graph of one session.
#[derive(Debug)]
pub struct Scene {
    entities: HashMap<EntityId, Entity, IdHash>,
    roots: Vec<EntityId>,
    models: Vec<Option<Arc<Model>>>,
    /// Entities created for each model's instances that still exist.
    model_refs: Vec<u64>,
    bvhs: HashMap<(ModelId, usize, usize), Arc<Bvh>>,
    lights: Vec<(LightId, Light)>,
    cut_planes: Vec<(CutPlaneId, CutPlane)>,
    next_id: u64,
    next_light: LightId,
    next_plane: CutPlaneId,
    max_entities: usize,
    revision: u64,
    /// This scene among all made in the process (see [`DrawablesKey`]).
    instance: u64,
    /// Bumped when world matrices or posed bounds are recomputed.
    world_revision: u64,
    /// Subtrees whose world matrices are stale; `None` after too many: recompute everything.
    dirty: Option<Vec<EntityId>>,
    /// Model instances by root entity (node-to-entity maps, the animation playing).
    instances: HashMap<EntityId, animate::Instance>,
    /// Entities with a skinned or morphed mesh.
    deformable: Vec<EntityId>,
    /// Deformable entities whose posed vertices depend on an entity's world matrix (its joints,
    /// and itself), by that entity.
    joint_users: HashMap<EntityId, Vec<EntityId>>,
    /// Deformable entities to pose again at the next update.
    deform_dirty: Vec<EntityId>,
    /// Vertices the deformable entities hold posed copies of.
    posed_vertices: u64,
    /// Compute posed vertices on the CPU (see [`Scene::set_cpu_posing`]).
    cpu_posing: bool,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl Scene {
    /// An empty scene holding at most `max_entities` entities, with no lights of its own: the
    /// renderer's environment lights it (image-based lighting), as the glTF reference viewer
    /// does. Clients add [`Light::SUN`] or others when they want punctual light.
    pub fn new(max_entities: usize) -> Self {
        Self {
            entities: HashMap::default(),
            roots: Vec::new(),
            models: Vec::new(),
            model_refs: Vec::new(),
            bvhs: HashMap::new(),
            lights: Vec::new(),
            cut_planes: Vec::new(),
            next_id: 1,
            next_light: 1,
            next_plane: 1,
            max_entities,
            revision: 0,
            instance: NEXT_SCENE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            world_revision: 0,
            dirty: Some(Vec::new()),
            instances: HashMap::new(),
            deformable: Vec::new(),
            joint_users: HashMap::new(),
            deform_dirty: Vec::new(),
            posed_vertices: 0,
            cpu_posing: true,
        }
    }

    /// Bumped by every change; the render loop uses it to tell whether anything moved.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What [`Self::drawables`] and [`Self::drawable_bounds`] depend on: equal keys (of this
    /// scene or any other) mean they return what they returned before, so a renderer may keep
    /// their results between frames of a still scene.
    pub fn drawables_key(&self) -> DrawablesKey {
        DrawablesKey {
            scene: self.instance,
            revision: self.revision,
            world: self.world_revision,
        }
    }

    /// The entity, if it exists.
    pub fn entity(&self, id: EntityId) -> Option<&Entity> {
        self.entities.get(&id)
    }

    fn get(&self, id: EntityId) -> Result<&Entity, SceneError> {
        self.entities.get(&id).ok_or(SceneError::NoSuchEntity(id.0))
    }

    fn get_mut(&mut self, id: EntityId) -> Result<&mut Entity, SceneError> {
        self.entities
            .get_mut(&id)
            .ok_or(SceneError::NoSuchEntity(id.0))
    }

    /// Root entities in creation order.
    pub fn roots(&self) -> &[EntityId] {
        &self.roots
    }

    /// A model by id, while any of its entities exists.
    pub fn model(&self, id: ModelId) -> Option<&Arc<Model>> {
        self.models.get(id.0 as usize)?.as_ref()
    }

    /// Models whose assets are alive, with their ids.
    pub fn models(&self) -> impl Iterator<Item = (ModelId, &Arc<Model>)> {
        self.models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((ModelId(i as u32), m.as_ref()?)))
    }

    /// An entity's children.
    pub fn children(&self, id: EntityId) -> Result<&[EntityId], SceneError> {
        Ok(&self.get(id)?.children)
    }

    fn mark_dirty(&mut self, id: EntityId) {
        self.revision += 1;
        if let Some(list) = &mut self.dirty {
            if list.len() >= 1024.max(self.entities.len() / 8) {
                self.dirty = None;
            } else {
                list.push(id);
            }
        }
    }

    fn mesh_of(&self, e: &Entity) -> Option<&crate::model::Mesh> {
        let (model, mesh) = e.mesh?;
        self.model(model)?.meshes.get(mesh)
    }
}
