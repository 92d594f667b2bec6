//! Entities and their hierarchy: spawning, model instances, destroying subtrees, reparenting,
//! local transforms and world-matrix propagation. Every walk over a subtree or up the parent
//! chain is iterative on an explicit stack, so a hierarchy as deep as the entity limit allows
//! cannot overflow the thread's stack.

use std::collections::HashMap;
use std::sync::Arc;

use glam::{Mat4, Vec3};

use crate::model::{Aabb, Model, Transform};
use crate::state::{Light, MaterialOverride, StateOverride};

use super::{Entity, EntityId, HierarchyEntry, MAX_LIGHTS, ModelId, ModelInfo, Scene, SceneError};

impl Scene {
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
                deform: None,
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
        // Each skinned or morphed mesh instance holds its own posed copy of its vertices (and
        // a GPU buffer of them): bounded per scene, like entities.
        let posed = super::animate::posed_vertices(&model);
        if self.posed_vertices.saturating_add(posed) > super::animate::MAX_POSED_VERTICES {
            return Err(SceneError::TooMany(
                "posed (skinned or morphed) vertices",
                super::animate::MAX_POSED_VERTICES as usize,
            ));
        }
        self.posed_vertices += posed;
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
        // An explicit stack, not recursion: import guarantees a forest, but not a shallow one.
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
        // Skinned and morphed meshes, and the instance record animation needs.
        let mut node_list = vec![None; model.nodes.len()];
        for (&n, &id) in &node_entities {
            if let Some(slot) = node_list.get_mut(n) {
                *slot = Some(id);
            }
        }
        for (n, node) in model.nodes.iter().enumerate() {
            let Some(Some(id)) = node_list.get(n).copied() else {
                continue;
            };
            let Some(skinned) = super::animate::deformable(&model, node) else {
                continue;
            };
            // Its pose follows its joints' world matrices and its own.
            let skin_joints = node
                .skin
                .filter(|_| skinned)
                .and_then(|s| model.skins.get(s))
                .map_or(&[][..], |s| s.joints.as_slice());
            for joint in skin_joints
                .iter()
                .filter_map(|&j| node_list.get(j).copied().flatten())
            {
                self.joint_users.entry(joint).or_default().push(id);
            }
            self.joint_users.entry(id).or_default().push(id);
            self.deform_dirty.push(id);
            if let Some(e) = self.entities.get_mut(&id) {
                e.deform = Some(Box::new(super::animate::Deform {
                    root,
                    skin: node.skin.filter(|_| skinned),
                    weights: super::animate::rest_weights(&model, n),
                    output: None,
                    inputs: (Vec::new(), Vec::new()),
                    bounds: None,
                    boxes: None,
                    revision: 0,
                }));
                self.deformable.push(id);
            }
        }
        self.instances.insert(
            root,
            super::animate::Instance {
                model: model_id,
                nodes: node_list,
                playback: None,
            },
        );
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
        if !self.deformable.is_empty() {
            let entities = &self.entities;
            let mut freed = 0u64;
            self.deformable.retain(|d| {
                entities.contains_key(d) || {
                    freed += 1;
                    false
                }
            });
            // Recount what the remaining posed copies hold.
            if freed > 0 {
                self.posed_vertices = self
                    .deformable
                    .iter()
                    .filter_map(|d| self.entities.get(d))
                    .filter_map(|e| self.mesh_of(e))
                    .map(|m| {
                        m.primitives
                            .iter()
                            .map(|p| p.positions.len() as u64)
                            .sum::<u64>()
                    })
                    .sum();
            }
        }
        let entities = &self.entities;
        self.instances.retain(|root, _| entities.contains_key(root));
        if !self.joint_users.is_empty() {
            self.joint_users.retain(|joint, users| {
                users.retain(|u| entities.contains_key(u));
                entities.contains_key(joint) && !users.is_empty()
            });
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

    /// Recomputes stale world matrices (iteratively: deep trees are fine), then the posed
    /// vertices of skinned and morphed meshes. Cheap when nothing changed; only the changed
    /// subtrees are walked unless many changed.
    pub fn update_world_transforms(&mut self) {
        self.update_world_matrices();
        self.update_deformations();
    }

    fn update_world_matrices(&mut self) {
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
        self.world_revision += 1;
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
            if let Some(users) = self.joint_users.get(&id) {
                self.deform_dirty.extend_from_slice(users);
            }
        }
    }
}
