//! The live scene graph of one session: entities, their hierarchy and transforms, the models
//! they draw, per-entity overrides, lights and cut planes. Commands mutate it; the render loop
//! calls [`Scene::update_world_transforms`] and reads [`Scene::drawables`] once per frame.

use std::collections::HashMap;
use std::sync::Arc;

use glam::{Mat4, Vec3};

use crate::model::{Aabb, Model, Transform};
use crate::raycast::{Bvh, Ray, TriangleHit, triangle};
use crate::state::{CutPlane, DrawState, Light, MaterialOverride, StateOverride};

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

/// The scene graph of one session.
#[derive(Debug)]
pub struct Scene {
    entities: HashMap<EntityId, Entity>,
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
    /// Subtrees whose world matrices are stale; `None` after too many: recompute everything.
    dirty: Option<Vec<EntityId>>,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl Scene {
    /// An empty scene holding at most `max_entities` entities, lit by [`Light::SUN`] (light 0).
    pub fn new(max_entities: usize) -> Self {
        Self {
            entities: HashMap::new(),
            roots: Vec::new(),
            models: Vec::new(),
            model_refs: Vec::new(),
            bvhs: HashMap::new(),
            lights: vec![(0, Light::SUN)],
            cut_planes: Vec::new(),
            next_id: 1,
            next_light: 1,
            next_plane: 1,
            max_entities,
            revision: 0,
            dirty: Some(Vec::new()),
        }
    }

    /// Bumped by every change; the render loop uses it to tell whether anything moved.
    pub fn revision(&self) -> u64 {
        self.revision
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

    /// Creates an entity under `parent` (or as a root).
    pub fn spawn(
        &mut self,
        name: Option<String>,
        parent: Option<EntityId>,
        local: Transform,
        mesh: Option<(ModelId, usize)>,
    ) -> Result<EntityId, SceneError> {
        let id = self.spawn_inner(name, parent, local, mesh, None)?;
        self.mark_dirty(id);
        Ok(id)
    }

    fn spawn_inner(
        &mut self,
        name: Option<String>,
        parent: Option<EntityId>,
        local: Transform,
        mesh: Option<(ModelId, usize)>,
        instance_of: Option<ModelId>,
    ) -> Result<EntityId, SceneError> {
        if !local.is_finite() {
            return Err(SceneError::NonFiniteTransform);
        }
        if self.entities.len() >= self.max_entities {
            return Err(SceneError::TooManyEntities(self.max_entities));
        }
        if let Some(p) = parent
            && !self.entities.contains_key(&p)
        {
            return Err(SceneError::NoSuchEntity(p.0));
        }
        let id = EntityId(self.next_id);
        self.next_id += 1;
        let parent_world = parent
            .and_then(|p| self.entities.get(&p))
            .map_or(Mat4::IDENTITY, |e| e.world);
        self.entities.insert(
            id,
            Entity {
                name,
                parent,
                children: Vec::new(),
                local,
                world: parent_world * local.to_matrix(),
                mesh,
                visible: true,
                state: StateOverride::default(),
                material: MaterialOverride::default(),
                instance_of,
            },
        );
        match parent.and_then(|p| self.entities.get_mut(&p)) {
            Some(p) => p.children.push(id),
            None => self.roots.push(id),
        }
        if let Some(m) = instance_of
            && let Some(r) = self.model_refs.get_mut(m.0 as usize)
        {
            *r += 1;
        }
        self.revision += 1;
        Ok(id)
    }

    /// Adds a model and instantiates its node tree under a new root entity named `name`.
    pub fn add_model(&mut self, name: &str, model: Model) -> Result<ModelInfo, SceneError> {
        let needed = 1 + model.nodes.len();
        if self.entities.len() + needed > self.max_entities {
            return Err(SceneError::TooManyEntities(self.max_entities));
        }
        let model_id = ModelId(self.models.len() as u32);
        self.models.push(Some(Arc::new(model)));
        self.model_refs.push(0);
        self.instantiate(name, model_id)
    }

    /// Instantiates a loaded model again under a new root, sharing its assets (GPU ones too).
    pub fn instantiate(&mut self, name: &str, model_id: ModelId) -> Result<ModelInfo, SceneError> {
        let model = self
            .model(model_id)
            .cloned()
            .ok_or(SceneError::NoSuchModel(model_id.0))?;
        let needed = 1 + model.nodes.len();
        if self.entities.len() + needed > self.max_entities {
            return Err(SceneError::TooManyEntities(self.max_entities));
        }
        let root = self.spawn_inner(
            Some(name.to_owned()),
            None,
            Transform::IDENTITY,
            None,
            Some(model_id),
        )?;
        let mut hierarchy = vec![HierarchyEntry {
            entity: root,
            parent: None,
            name: Some(name.to_owned()),
            has_mesh: false,
        }];
        let mut triangles = 0u64;
        let mut node_entities: HashMap<usize, EntityId> = HashMap::new();
        // Iterative walk: import guarantees a forest, but depth is still bounded by the stack here.
        let mut stack: Vec<(usize, EntityId)> =
            model.roots.iter().rev().map(|&n| (n, root)).collect();
        while let Some((node_index, parent)) = stack.pop() {
            let Some(node) = model.nodes.get(node_index) else {
                continue;
            };
            let mesh = node.mesh.filter(|&m| m < model.meshes.len());
            if let Some(m) = mesh {
                triangles += model.meshes[m]
                    .primitives
                    .iter()
                    .map(|p| p.triangle_count() as u64)
                    .sum::<u64>();
            }
            let id = self.spawn_inner(
                node.name.clone(),
                Some(parent),
                node.local,
                mesh.map(|m| (model_id, m)),
                Some(model_id),
            )?;
            hierarchy.push(HierarchyEntry {
                entity: id,
                parent: Some(parent),
                name: node.name.clone(),
                has_mesh: mesh.is_some(),
            });
            node_entities.insert(node_index, id);
            stack.extend(node.children.iter().rev().map(|&c| (c, id)));
        }
        self.mark_dirty(root);
        self.update_world_transforms();
        let bounds = self.world_bounds(root).unwrap_or(Aabb::EMPTY);
        // The file's lights, placed where their nodes are now (they do not follow later moves).
        let mut lights_added = 0;
        for (node, light) in &model.extras.lights {
            let Some(world) = node_entities
                .get(node)
                .and_then(|e| self.entities.get(e))
                .map(|e| e.world)
            else {
                continue;
            };
            let placed = Light {
                position: world.transform_point3(Vec3::ZERO),
                direction: world
                    .transform_vector3(Vec3::NEG_Z)
                    .normalize_or(Vec3::NEG_Z),
                ..*light
            };
            if self.lights.len() < MAX_LIGHTS && self.add_light(placed).is_ok() {
                lights_added += 1;
            }
        }
        Ok(ModelInfo {
            root,
            model: model_id,
            bounds,
            triangles,
            vertices: model.vertex_count() as u64,
            textures: model.textures.len() as u32,
            entities: hierarchy.len() as u32,
            ignored_extensions: model.ignored_extensions.clone(),
            hierarchy,
            lights_added,
            extras: model.extras.clone(),
        })
    }

    /// Destroys an entity and its subtree; returns how many entities went. A model whose last
    /// entity goes is freed (its GPU assets follow at the renderer's next sync).
    pub fn destroy(&mut self, id: EntityId) -> Result<usize, SceneError> {
        let parent = self.get(id)?.parent;
        match parent.and_then(|p| self.entities.get_mut(&p)) {
            Some(p) => p.children.retain(|&c| c != id),
            None => self.roots.retain(|&r| r != id),
        }
        let mut removed = 0;
        let mut stack = vec![id];
        while let Some(e) = stack.pop() {
            let Some(entity) = self.entities.remove(&e) else {
                continue;
            };
            removed += 1;
            stack.extend(entity.children);
            if let Some(m) = entity.instance_of {
                let i = m.0 as usize;
                if let Some(r) = self.model_refs.get_mut(i) {
                    *r = r.saturating_sub(1);
                    if *r == 0 {
                        if let Some(slot) = self.models.get_mut(i) {
                            *slot = None;
                        }
                        self.bvhs.retain(|k, _| k.0 != m);
                    }
                }
            }
        }
        self.revision += 1;
        Ok(removed)
    }

    /// Moves an entity under `parent` (or to the roots). With `keep_world` its local transform
    /// is recomputed so it stays where it is in the world; otherwise its local transform is kept
    /// and it moves with its new parent.
    pub fn reparent(
        &mut self,
        id: EntityId,
        parent: Option<EntityId>,
        keep_world: bool,
    ) -> Result<(), SceneError> {
        self.get(id)?;
        if let Some(p) = parent {
            // Walk up from the new parent: meeting `id` means a cycle.
            let mut cur = Some(p);
            while let Some(c) = cur {
                if c == id {
                    return Err(SceneError::WouldCycle {
                        entity: id.0,
                        parent: p.0,
                    });
                }
                cur = self.get(c)?.parent;
            }
        }
        self.update_world_transforms();
        let new_local = if keep_world {
            let parent_world = parent
                .and_then(|p| self.entities.get(&p))
                .map_or(Mat4::IDENTITY, |e| e.world);
            let world = self.get(id)?.world;
            Transform::from_matrix(parent_world.inverse() * world).ok_or_else(|| {
                SceneError::InvalidArgument(
                    "the new parent's transform cannot be inverted (zero scale?)".into(),
                )
            })?
        } else {
            self.get(id)?.local
        };
        let old = self.get(id)?.parent;
        match old.and_then(|p| self.entities.get_mut(&p)) {
            Some(p) => p.children.retain(|&c| c != id),
            None => self.roots.retain(|&r| r != id),
        }
        match parent.and_then(|p| self.entities.get_mut(&p)) {
            Some(p) => p.children.push(id),
            None => self.roots.push(id),
        }
        let e = self.get_mut(id)?;
        e.parent = parent;
        e.local = new_local;
        self.mark_dirty(id);
        Ok(())
    }

    /// Sets an entity's local transform.
    pub fn set_local_transform(
        &mut self,
        id: EntityId,
        local: Transform,
    ) -> Result<(), SceneError> {
        if !local.is_finite() {
            return Err(SceneError::NonFiniteTransform);
        }
        self.get_mut(id)?.local = local;
        self.mark_dirty(id);
        Ok(())
    }

    /// Sets many local transforms at once: all or nothing (every entity and value is checked
    /// before the first is changed).
    pub fn set_local_transforms(
        &mut self,
        updates: &[(EntityId, Transform)],
    ) -> Result<(), SceneError> {
        for (id, t) in updates {
            if !t.is_finite() {
                return Err(SceneError::NonFiniteTransform);
            }
            self.get(*id)?;
        }
        for (id, t) in updates {
            if let Some(e) = self.entities.get_mut(id) {
                e.local = *t;
            }
            self.mark_dirty(*id);
        }
        Ok(())
    }

    /// Shows or hides an entity and its subtree.
    pub fn set_visible(&mut self, id: EntityId, visible: bool) -> Result<(), SceneError> {
        self.get_mut(id)?.visible = visible;
        self.revision += 1;
        Ok(())
    }

    /// Replaces an entity's hierarchical state override.
    pub fn set_state_override(
        &mut self,
        id: EntityId,
        state: StateOverride,
    ) -> Result<(), SceneError> {
        if !state.is_valid() {
            return Err(SceneError::InvalidArgument(
                "tint components must be finite and in [0, 1]".into(),
            ));
        }
        self.get_mut(id)?.state = state;
        self.revision += 1;
        Ok(())
    }

    /// Replaces an entity's material override.
    pub fn set_material_override(
        &mut self,
        id: EntityId,
        material: MaterialOverride,
    ) -> Result<(), SceneError> {
        if !material.is_valid() {
            return Err(SceneError::InvalidArgument(
                "material override values must be finite: colours, metallic and roughness in [0, 1], emissive in [0, 1e4]".into(),
            ));
        }
        self.get_mut(id)?.material = material;
        self.revision += 1;
        Ok(())
    }

    /// An entity's children.
    pub fn children(&self, id: EntityId) -> Result<&[EntityId], SceneError> {
        Ok(&self.get(id)?.children)
    }

    /// Recomputes stale world matrices (iteratively: deep trees are fine). Cheap when nothing
    /// changed; only the changed subtrees are walked unless many changed.
    pub fn update_world_transforms(&mut self) {
        // Dirty entities read their parent's world matrix when they are reached, not when the
        // walk starts: a parent that is dirty too may be recomputed first, and a subtree reached
        // from a stale ancestor is walked again from that ancestor, so the order is irrelevant.
        let mut stack: Vec<(EntityId, Option<Mat4>)> = match self.dirty.replace(Vec::new()) {
            Some(list) if list.is_empty() => return,
            Some(list) => list.into_iter().map(|id| (id, None)).collect(),
            None => self
                .roots
                .iter()
                .map(|&r| (r, Some(Mat4::IDENTITY)))
                .collect(),
        };
        while let Some((id, parent_world)) = stack.pop() {
            let parent_world = match parent_world {
                Some(w) => w,
                None => match self.entities.get(&id) {
                    Some(e) => e
                        .parent
                        .and_then(|p| self.entities.get(&p))
                        .map_or(Mat4::IDENTITY, |p| p.world),
                    None => continue,
                },
            };
            if let Some(e) = self.entities.get_mut(&id) {
                e.world = parent_world * e.local.to_matrix();
                let w = e.world;
                stack.extend(e.children.iter().map(|&c| (c, Some(w))));
            }
        }
    }

    fn subtree_bounds(&self, id: EntityId, to_space: Mat4) -> Result<Aabb, SceneError> {
        self.get(id)?;
        let mut bounds = Aabb::EMPTY;
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(e) = self.entities.get(&id) else {
                continue;
            };
            if let Some(mesh) = self.mesh_of(e) {
                let m = to_space * e.world;
                for p in &mesh.primitives {
                    bounds = bounds.union(&p.bounds.transformed(&m));
                }
            }
            stack.extend(e.children.iter().copied());
        }
        Ok(bounds)
    }

    /// World-space bounds of an entity's subtree (empty when nothing in it has geometry). Call
    /// [`Self::update_world_transforms`] first after changes.
    pub fn world_bounds(&self, id: EntityId) -> Result<Aabb, SceneError> {
        self.subtree_bounds(id, Mat4::IDENTITY)
    }

    /// Bounds of an entity's subtree in the entity's own space.
    pub fn local_bounds(&self, id: EntityId) -> Result<Aabb, SceneError> {
        let inv = self.get(id)?.world.inverse();
        if !inv.is_finite() {
            return Err(SceneError::InvalidArgument(
                "the entity's world transform cannot be inverted (zero scale?)".into(),
            ));
        }
        self.subtree_bounds(id, inv)
    }

    fn mesh_of(&self, e: &Entity) -> Option<&crate::model::Mesh> {
        let (model, mesh) = e.mesh?;
        self.model(model)?.meshes.get(mesh)
    }

    /// Visible entities with a mesh, with their world matrices and resolved overrides, in
    /// hierarchy order. Invisible subtrees are left out whole; entities hidden by state are left
    /// out, but a descendant that sets `hidden: false` is drawn.
    pub fn drawables(&self) -> Vec<Drawable> {
        let mut out = Vec::new();
        let root_state = (StateOverride::default(), MaterialOverride::default());
        let mut stack: Vec<(EntityId, StateOverride, MaterialOverride)> = self
            .roots
            .iter()
            .rev()
            .map(|&r| (r, root_state.0, root_state.1))
            .collect();
        while let Some((id, parent_state, parent_material)) = stack.pop() {
            let Some(e) = self.entities.get(&id) else {
                continue;
            };
            if !e.visible {
                continue;
            }
            // Hidden by state still walks the children: one of them may unhide itself.
            let state = e.state.inherit(&parent_state);
            let material = e.material.inherit(&parent_material);
            if let Some((model, mesh)) = e.mesh
                && state.hidden != Some(true)
                && self.model(model).is_some()
            {
                out.push(Drawable {
                    entity: id,
                    world: e.world,
                    model,
                    mesh,
                    state: DrawState {
                        see_through: state.see_through == Some(true),
                        selected: state.selected == Some(true),
                        tint: state.tint,
                        material,
                    },
                });
            }
            stack.extend(e.children.iter().rev().map(|&c| (c, state, material)));
        }
        out
    }

    /// Casts a ray against every drawn mesh (hidden entities and cut-away parts are not hit).
    /// With `closest`, at most one hit; otherwise every hit, nearest first (at most `limit`).
    pub fn raycast(&mut self, ray: &Ray, closest: bool, limit: usize) -> Vec<Hit> {
        self.update_world_transforms();
        let mut hits: Vec<Hit> = Vec::new();
        let mut tri_hits = Vec::new();
        let cuts: Vec<CutPlane> = self.cut_planes.iter().map(|(_, p)| *p).collect();
        for d in self.drawables() {
            let Some(model) = self.model(d.model).cloned() else {
                continue;
            };
            let Some(mesh) = model.meshes.get(d.mesh) else {
                continue;
            };
            let inv = d.world.inverse();
            if !inv.is_finite() {
                continue;
            }
            let origin = inv.transform_point3(ray.origin);
            let dir = inv.transform_vector3(ray.direction);
            let normal_m = inv.transpose();
            let best = if closest {
                hits.first().map_or(ray.max_distance, |h| h.distance)
            } else {
                ray.max_distance
            };
            for (pi, p) in mesh.primitives.iter().enumerate() {
                // Cheap reject against the primitive's box before touching its BVH.
                let local = Ray {
                    origin,
                    direction: dir,
                    max_distance: best,
                };
                if !box_hit(&p.bounds, &local) {
                    continue;
                }
                let key = (d.model, d.mesh, pi);
                let bvh = self
                    .bvhs
                    .entry(key)
                    .or_insert_with(|| Arc::new(Bvh::build(p)))
                    .clone();
                tri_hits.clear();
                bvh.intersect(
                    p,
                    origin,
                    dir,
                    best,
                    closest && cuts.is_empty(),
                    &mut tri_hits,
                );
                for TriangleHit { t, triangle: ti } in tri_hits.drain(..) {
                    let position = ray.origin + ray.direction * t;
                    if cuts.iter().any(|c| c.cuts(position)) {
                        continue;
                    }
                    let Some((a, b, c)) = triangle(p, ti) else {
                        continue;
                    };
                    let mut normal = normal_m
                        .transform_vector3((b - a).cross(c - a))
                        .normalize_or(Vec3::Y);
                    if normal.dot(ray.direction) > 0.0 {
                        normal = -normal;
                    }
                    let hit = Hit {
                        entity: d.entity,
                        position,
                        normal,
                        distance: t,
                    };
                    if closest {
                        if hits.first().is_none_or(|h| t < h.distance) {
                            hits.clear();
                            hits.push(hit);
                        }
                    } else {
                        hits.push(hit);
                    }
                }
            }
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        hits.truncate(limit.max(1));
        hits
    }

    /// Lights with their ids.
    pub fn lights(&self) -> &[(LightId, Light)] {
        &self.lights
    }

    /// Adds a light.
    pub fn add_light(&mut self, light: Light) -> Result<LightId, SceneError> {
        light.validate().map_err(SceneError::InvalidArgument)?;
        if self.lights.len() >= MAX_LIGHTS {
            return Err(SceneError::TooMany("lights", MAX_LIGHTS));
        }
        let id = self.next_light;
        self.next_light += 1;
        self.lights.push((id, light));
        self.revision += 1;
        Ok(id)
    }

    /// Replaces a light.
    pub fn update_light(&mut self, id: LightId, light: Light) -> Result<(), SceneError> {
        light.validate().map_err(SceneError::InvalidArgument)?;
        let slot = self
            .lights
            .iter_mut()
            .find(|(i, _)| *i == id)
            .ok_or(SceneError::NoSuchLight(id))?;
        slot.1 = light;
        self.revision += 1;
        Ok(())
    }

    /// Removes a light (light 0, the default sun, too).
    pub fn remove_light(&mut self, id: LightId) -> Result<(), SceneError> {
        let before = self.lights.len();
        self.lights.retain(|(i, _)| *i != id);
        if self.lights.len() == before {
            return Err(SceneError::NoSuchLight(id));
        }
        self.revision += 1;
        Ok(())
    }

    /// Cut planes with their ids.
    pub fn cut_planes(&self) -> &[(CutPlaneId, CutPlane)] {
        &self.cut_planes
    }

    fn checked_plane(plane: CutPlane) -> Result<CutPlane, SceneError> {
        let normal = plane
            .normal
            .try_normalize()
            .filter(|_| plane.distance.is_finite())
            .ok_or_else(|| {
                SceneError::InvalidArgument(
                    "a cut plane needs a finite, non-zero normal and a finite distance".into(),
                )
            })?;
        Ok(CutPlane {
            normal,
            distance: plane.distance,
        })
    }

    /// Adds a cut plane.
    pub fn add_cut_plane(&mut self, plane: CutPlane) -> Result<CutPlaneId, SceneError> {
        let plane = Self::checked_plane(plane)?;
        if self.cut_planes.len() >= MAX_CUT_PLANES {
            return Err(SceneError::TooMany("cut planes", MAX_CUT_PLANES));
        }
        let id = self.next_plane;
        self.next_plane += 1;
        self.cut_planes.push((id, plane));
        self.revision += 1;
        Ok(id)
    }

    /// Moves a cut plane.
    pub fn update_cut_plane(&mut self, id: CutPlaneId, plane: CutPlane) -> Result<(), SceneError> {
        let plane = Self::checked_plane(plane)?;
        let slot = self
            .cut_planes
            .iter_mut()
            .find(|(i, _)| *i == id)
            .ok_or(SceneError::NoSuchCutPlane(id))?;
        slot.1 = plane;
        self.revision += 1;
        Ok(())
    }

    /// Removes a cut plane.
    pub fn remove_cut_plane(&mut self, id: CutPlaneId) -> Result<(), SceneError> {
        let before = self.cut_planes.len();
        self.cut_planes.retain(|(i, _)| *i != id);
        if self.cut_planes.len() == before {
            return Err(SceneError::NoSuchCutPlane(id));
        }
        self.revision += 1;
        Ok(())
    }

    /// Counters for statistics queries and logs.
    pub fn stats(&self) -> SceneStats {
        let triangles = self
            .drawables()
            .iter()
            .filter_map(|d| self.model(d.model)?.meshes.get(d.mesh))
            .flat_map(|m| &m.primitives)
            .map(|p| p.triangle_count() as u64)
            .sum();
        SceneStats {
            entities: self.entities.len() as u64,
            triangles,
            models: self.models.iter().flatten().count() as u64,
            lights: self.lights.len() as u64,
            cut_planes: self.cut_planes.len() as u64,
        }
    }
}

/// Whether a (possibly unnormalised) ray enters a box within its parameter range.
fn box_hit(b: &Aabb, ray: &Ray) -> bool {
    crate::raycast::slab(b, ray.origin, ray.direction.recip(), ray.max_distance).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        };
        Model {
            meshes: vec![Mesh {
                name: None,
                primitives: vec![prim],
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
                },
                ModelNode {
                    name: Some("child".into()),
                    local: Transform {
                        translation: Vec3::Y * 5.0,
                        ..Transform::IDENTITY
                    },
                    mesh: Some(0),
                    children: vec![],
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
            Vec3::new(10.0, 0.0, 0.0)
                + Vec3::Y * 0.0
                + scene.entity(child).unwrap().local.translation,
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
        assert_eq!(scene.lights().len(), 1, "the default sun");
        let point = Light {
            kind: crate::LightKind::Point,
            color: [1.0, 0.0, 0.0],
            intensity: 10.0,
            position: Vec3::Y,
            direction: Vec3::ZERO,
            range: Some(5.0),
        };
        let id = scene.add_light(point).unwrap();
        for _ in 2..MAX_LIGHTS {
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
        scene.remove_light(0).unwrap();
        assert_eq!(scene.remove_light(0), Err(SceneError::NoSuchLight(0)));
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
}
