//! Visibility and the hierarchical state and material overrides, resolved down the tree into
//! what the renderer draws ([`Scene::drawables`]) and counted ([`Scene::stats`]).

use crate::state::{DrawState, MaterialOverride, StateOverride};

use super::{Drawable, EntityId, Scene, SceneError, SceneStats};

impl Scene {
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
                        variant: state.variant,
                        material,
                    },
                    deformable: e.deform.is_some(),
                });
            }
            stack.extend(e.children.iter().rev().map(|&c| (c, state, material)));
        }
        out
    }

    /// Triangles loaded: each model instance's source triangles (its meshes once, however many
    /// of its nodes draw them). A size's triangle budget counts these, not the triangles drawn.
    pub fn loaded_triangles(&self) -> u64 {
        self.instances
            .values()
            .filter_map(|i| self.model(i.model))
            .map(|m| m.triangle_count() as u64)
            .sum()
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
