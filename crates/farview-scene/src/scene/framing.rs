//! Framing: where a camera goes to see an entity's subtree (or the whole scene) whole, the
//! "fit view" of viewers and the CLI's default camera.

use glam::Vec3;

use crate::model::Aabb;

use super::{EntityId, Scene, SceneError};

/// A camera placement that frames some bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewFit {
    /// Camera position.
    pub eye: Vec3,
    /// Point looked at (the centre of the bounds).
    pub target: Vec3,
    /// Near plane that keeps the bounds in front of it.
    pub near: f32,
    /// Far plane behind the bounds.
    pub far: f32,
}

impl ViewFit {
    /// Places a camera looking along `-direction` (from the `direction` side) at `bounds`, far
    /// enough that their bounding sphere fits the narrower of the vertical field of view
    /// `fov_y` and the horizontal one at `aspect`, with 5% to spare. `None` for empty or
    /// non-finite bounds, a zero direction or a field of view outside (0, π).
    pub fn frame(bounds: &Aabb, direction: Vec3, fov_y: f32, aspect: f32) -> Option<Self> {
        let dir = direction.try_normalize()?;
        let usable = !bounds.is_empty()
            && bounds.min.is_finite()
            && bounds.max.is_finite()
            && fov_y > 0.0
            && fov_y < std::f32::consts::PI
            && aspect.is_finite()
            && aspect > 0.0;
        if !usable {
            return None;
        }
        let target = bounds.center();
        let radius = (bounds.size().length() * 0.5).max(1e-4);
        let fov_x = 2.0 * ((fov_y * 0.5).tan() * aspect).atan();
        let half = fov_y.min(fov_x) * 0.5;
        let distance = radius / half.sin() * 1.05;
        let eye = target + dir * distance;
        Some(Self {
            eye,
            target,
            near: (distance - radius * 2.0).max(distance * 0.01),
            far: distance + radius * 2.0,
        })
    }
}

impl Scene {
    /// Frames entity `id`'s subtree, or every root when `id` is `None` (see [`ViewFit::frame`]).
    /// Fails when the entity does not exist or nothing in it has geometry.
    pub fn fit_view(
        &self,
        id: Option<EntityId>,
        direction: Vec3,
        fov_y: f32,
        aspect: f32,
    ) -> Result<ViewFit, SceneError> {
        let bounds = match id {
            Some(id) => self.world_bounds(id)?,
            None => self
                .roots()
                .iter()
                .filter_map(|r| self.world_bounds(*r).ok())
                .fold(Aabb::EMPTY, |a, b| a.union(&b)),
        };
        ViewFit::frame(&bounds, direction, fov_y, aspect).ok_or_else(|| {
            SceneError::InvalidArgument(
                "nothing to frame: no geometry, or a zero direction or bad field of view".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_bounding_sphere_fits_the_narrower_field_of_view() {
        let b = Aabb {
            min: Vec3::splat(-1.0),
            max: Vec3::splat(1.0),
        };
        let fov = 45f32.to_radians();
        let wide = ViewFit::frame(&b, Vec3::Z, fov, 16.0 / 9.0).unwrap();
        assert_eq!(wide.target, Vec3::ZERO);
        let r = 3f32.sqrt();
        let d = wide.eye.length();
        assert!((d - r / (fov * 0.5).sin() * 1.05).abs() < 1e-4, "{d}");
        assert!(wide.eye.x.abs() < 1e-6 && wide.eye.z > 0.0);
        assert!(wide.near > 0.0 && wide.near < d - r && wide.far > d + r);
        // Portrait: the horizontal field of view is narrower, so the camera backs off.
        let tall = ViewFit::frame(&b, Vec3::Z, fov, 0.5).unwrap();
        assert!(tall.eye.length() > d * 1.5);
    }

    #[test]
    fn nothing_to_frame_is_refused() {
        let b = Aabb {
            min: Vec3::ZERO,
            max: Vec3::ONE,
        };
        assert!(ViewFit::frame(&Aabb::EMPTY, Vec3::Z, 0.8, 1.0).is_none());
        assert!(ViewFit::frame(&b, Vec3::ZERO, 0.8, 1.0).is_none());
        assert!(ViewFit::frame(&b, Vec3::Z, 0.0, 1.0).is_none());
        assert!(ViewFit::frame(&b, Vec3::Z, f32::NAN, 1.0).is_none());
        assert!(Scene::default().fit_view(None, Vec3::Z, 0.8, 1.0).is_err());
    }
}
