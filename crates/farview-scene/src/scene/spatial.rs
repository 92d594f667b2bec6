//! Spatial queries: bounds of a subtree (in world or the entity's own space) and raycasts
//! against the drawn meshes (through per-primitive BVHs built on first use).

use std::sync::Arc;

use glam::{Mat4, Vec3};

use crate::model::Aabb;
use crate::raycast::{Bvh, Ray, TriangleHit, triangle};
use crate::state::CutPlane;

use super::{EntityId, Hit, Scene, SceneError};

impl Scene {
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
                // A skinned or morphed mesh's bounds are those of its current pose.
                match e.deform.as_ref().and_then(|d| d.bounds) {
                    Some(posed) => bounds = bounds.union(&posed.transformed(&m)),
                    None => {
                        for p in &mesh.primitives {
                            bounds = bounds.union(&p.bounds.transformed(&m));
                        }
                    }
                }
            }
            stack.extend(e.children.iter().copied());
        }
        Ok(bounds)
    }

    /// World-space bounds of what one drawable draws: its mesh's primitives, or its current
    /// pose when skinned or morphed, under its world matrix. Empty when the entity or mesh is
    /// gone. Renderers cull with it, so it must never be smaller than what is drawn.
    pub fn drawable_bounds(&self, d: &super::Drawable) -> Aabb {
        let Some(e) = self.entities.get(&d.entity) else {
            return Aabb::EMPTY;
        };
        match e.deform.as_ref().and_then(|x| x.bounds) {
            Some(posed) => posed.transformed(&d.world),
            None => self
                .model(d.model)
                .and_then(|m| m.meshes.get(d.mesh))
                .map_or(Aabb::EMPTY, |mesh| {
                    mesh.primitives
                        .iter()
                        .fold(Aabb::EMPTY, |b, p| b.union(&p.bounds.transformed(&d.world)))
                }),
        }
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
}

/// Whether a (possibly unnormalised) ray enters a box within its parameter range.
fn box_hit(b: &Aabb, ray: &Ray) -> bool {
    crate::raycast::slab(b, ray.origin, ray.direction.recip(), ray.max_distance).is_some()
}
