//! The live scene graph of one session: entities, their hierarchy and transforms, and the models
//! they draw. Commands mutate it; the render loop reads [`Scene::drawables`] once per frame.

use std::collections::HashMap;
use std::sync::Arc;

use glam::Mat4;

use crate::model::{Aabb, Model, Transform};

/// Identifies an entity within one scene. Ids are never reused, so a stale id fails cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub u64);

/// Identifies a model added to a scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u32);

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
}

/// Scene-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SceneStats {
    /// Live entities.
    pub entities: u64,
    /// Triangles drawn by visible entities.
    pub triangles: u64,
    /// Models held.
    pub models: u64,
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
}

/// The scene graph of one session.
#[derive(Debug)]
pub struct Scene {
    entities: HashMap<EntityId, Entity>,
    roots: Vec<EntityId>,
    models: Vec<Arc<Model>>,
    next_id: u64,
    max_entities: usize,
    revision: u64,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl Scene {
    /// An empty scene holding at most `max_entities` entities.
    pub fn new(max_entities: usize) -> Self {
        Self {
            entities: HashMap::new(),
            roots: Vec::new(),
            models: Vec::new(),
            next_id: 1,
            max_entities,
            revision: 0,
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

    /// Root entities in creation order.
    pub fn roots(&self) -> &[EntityId] {
        &self.roots
    }

    /// A model by id.
    pub fn model(&self, id: ModelId) -> Option<&Arc<Model>> {
        self.models.get(id.0 as usize)
    }

    /// All models with their ids.
    pub fn models(&self) -> impl Iterator<Item = (ModelId, &Arc<Model>)> {
        self.models
            .iter()
            .enumerate()
            .map(|(i, m)| (ModelId(i as u32), m))
    }

    /// Creates an entity under `parent` (or as a root).
    pub fn spawn(
        &mut self,
        name: Option<String>,
        parent: Option<EntityId>,
        local: Transform,
        mesh: Option<(ModelId, usize)>,
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
            },
        );
        match parent.and_then(|p| self.entities.get_mut(&p)) {
            Some(p) => p.children.push(id),
            None => self.roots.push(id),
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
        let root = self.spawn(Some(name.to_owned()), None, Transform::IDENTITY, None)?;
        let mut triangles = 0u64;
        let mut entities = 1u32;
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
            let id = self.spawn(
                node.name.clone(),
                Some(parent),
                node.local,
                mesh.map(|m| (model_id, m)),
            )?;
            entities += 1;
            stack.extend(node.children.iter().rev().map(|&c| (c, id)));
        }
        let info = ModelInfo {
            root,
            model: model_id,
            bounds: Aabb::EMPTY,
            triangles,
            vertices: model.vertex_count() as u64,
            textures: model.textures.len() as u32,
            entities,
            ignored_extensions: model.ignored_extensions.clone(),
        };
        self.models.push(Arc::new(model));
        self.update_world_transforms();
        let bounds = self.world_bounds(root).unwrap_or(Aabb::EMPTY);
        Ok(ModelInfo { bounds, ..info })
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
        let e = self
            .entities
            .get_mut(&id)
            .ok_or(SceneError::NoSuchEntity(id.0))?;
        e.local = local;
        self.revision += 1;
        Ok(())
    }

    /// Shows or hides an entity and its subtree.
    pub fn set_visible(&mut self, id: EntityId, visible: bool) -> Result<(), SceneError> {
        let e = self
            .entities
            .get_mut(&id)
            .ok_or(SceneError::NoSuchEntity(id.0))?;
        e.visible = visible;
        self.revision += 1;
        Ok(())
    }

    /// Recomputes every world matrix from the roots down (iteratively: deep trees are fine).
    pub fn update_world_transforms(&mut self) {
        let mut stack: Vec<(EntityId, Mat4)> =
            self.roots.iter().map(|&r| (r, Mat4::IDENTITY)).collect();
        while let Some((id, parent_world)) = stack.pop() {
            if let Some(e) = self.entities.get_mut(&id) {
                e.world = parent_world * e.local.to_matrix();
                let w = e.world;
                stack.extend(e.children.iter().map(|&c| (c, w)));
            }
        }
    }

    /// World-space bounds of an entity's subtree (empty when nothing in it has geometry).
    pub fn world_bounds(&self, id: EntityId) -> Result<Aabb, SceneError> {
        if !self.entities.contains_key(&id) {
            return Err(SceneError::NoSuchEntity(id.0));
        }
        let mut bounds = Aabb::EMPTY;
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(e) = self.entities.get(&id) else {
                continue;
            };
            if let Some(mesh) = self.mesh_of(e) {
                for p in &mesh.primitives {
                    bounds = bounds.union(&p.bounds.transformed(&e.world));
                }
            }
            stack.extend(e.children.iter().copied());
        }
        Ok(bounds)
    }

    fn mesh_of(&self, e: &Entity) -> Option<&crate::model::Mesh> {
        let (model, mesh) = e.mesh?;
        self.models.get(model.0 as usize)?.meshes.get(mesh)
    }

    /// Visible entities with a mesh, with their world matrices, in hierarchy order.
    pub fn drawables(&self) -> Vec<Drawable> {
        let mut out = Vec::new();
        let mut stack: Vec<EntityId> = self.roots.iter().rev().copied().collect();
        while let Some(id) = stack.pop() {
            let Some(e) = self.entities.get(&id) else {
                continue;
            };
            if !e.visible {
                continue;
            }
            if let Some((model, mesh)) = e.mesh {
                out.push(Drawable {
                    entity: id,
                    world: e.world,
                    model,
                    mesh,
                });
            }
            stack.extend(e.children.iter().rev().copied());
        }
        out
    }

    /// Counters for statistics queries and logs.
    pub fn stats(&self) -> SceneStats {
        let triangles = self
            .drawables()
            .iter()
            .filter_map(|d| self.models.get(d.model.0 as usize)?.meshes.get(d.mesh))
            .flat_map(|m| &m.primitives)
            .map(|p| p.triangle_count() as u64)
            .sum();
        SceneStats {
            entities: self.entities.len() as u64,
            triangles,
            models: self.models.len() as u64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{Mesh, ModelNode, Primitive};
    use glam::Vec3;

    fn triangle_model() -> Model {
        let prim = Primitive {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            normals: vec![[0.0, 0.0, 1.0]; 3],
            uvs: vec![[0.0; 2]; 3],
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
