//! Frustum culling: a draw whose world bounds lie wholly outside the camera's view volume is
//! not submitted. The test is conservative (a box that straddles a plane, or whose bounds are
//! not finite, is drawn), so culling never removes a visible pixel; the render test
//! `frustum_culling_changes_no_pixel` renders with and without it and compares.

use farview_scene::Aabb;
use glam::{Mat4, Vec3, Vec4};

/// The six planes of a view volume, pointing inwards (`dot(n, p) + d >= 0` inside).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frustum {
    planes: [Vec4; 6],
}

impl Frustum {
    /// From a view-projection matrix in wgpu's clip space (`-w <= x, y <= w`, `0 <= z <= w`).
    pub(crate) fn new(view_proj: Mat4) -> Self {
        let (r0, r1, r2, r3) = (
            view_proj.row(0),
            view_proj.row(1),
            view_proj.row(2),
            view_proj.row(3),
        );
        Self {
            planes: [r3 + r0, r3 - r0, r3 + r1, r3 - r1, r2, r3 - r2],
        }
    }

    /// The same volume in the space of a mesh drawn with `world`: a plane `p` becomes
    /// `world^T p`, so that `b` in mesh space is tested exactly as its image under `world`
    /// (tighter than the world box around that image).
    pub(crate) fn in_space_of(&self, world: &Mat4) -> Self {
        let t = world.transpose();
        Self {
            planes: self.planes.map(|p| t * p),
        }
    }

    /// Whether any part of `b` may be inside. Empty bounds (nothing to measure) count as inside:
    /// the draw goes ahead, as it did before culling.
    pub(crate) fn may_see(&self, b: &Aabb) -> bool {
        if b.is_empty() {
            return true;
        }
        self.planes.iter().all(|p| {
            let n = p.truncate();
            // The corner furthest along the plane's normal: if even it is outside, all are.
            let far = Vec3::select(n.cmpge(Vec3::ZERO), b.max, b.min);
            // Non-finite bounds give NaN: kept.
            let distance = n.dot(far) + p.w;
            distance >= 0.0 || distance.is_nan()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Camera;

    fn unit_box_at(c: Vec3) -> Aabb {
        Aabb {
            min: c - Vec3::splat(0.5),
            max: c + Vec3::splat(0.5),
        }
    }

    #[test]
    fn boxes_in_view_straddling_or_behind() {
        // At the origin looking down -Z, 60° vertical field, 16:9, near 0.1, far 100.
        let cam = Camera::looking_at(Vec3::ZERO, -Vec3::Z, 60f32.to_radians(), 0.1, 100.0);
        let f = Frustum::new(cam.view_proj(16.0 / 9.0));
        assert!(f.may_see(&unit_box_at(Vec3::new(0.0, 0.0, -10.0))));
        // Behind the camera, beyond the far plane, far to the side, far above: outside.
        assert!(!f.may_see(&unit_box_at(Vec3::new(0.0, 0.0, 10.0))));
        assert!(!f.may_see(&unit_box_at(Vec3::new(0.0, 0.0, -102.0))));
        assert!(!f.may_see(&unit_box_at(Vec3::new(40.0, 0.0, -10.0))));
        assert!(!f.may_see(&unit_box_at(Vec3::new(0.0, 20.0, -10.0))));
        // Straddling the left edge, the near plane or the far plane: kept.
        // Half-width at z = -10 is tan(30°) * 16/9 * 10 ≈ 10.26.
        assert!(f.may_see(&unit_box_at(Vec3::new(-10.5, 0.0, -10.0))));
        assert!(f.may_see(&unit_box_at(Vec3::new(0.0, 0.0, 0.2))));
        assert!(f.may_see(&unit_box_at(Vec3::new(0.0, 0.0, -100.3))));
        // Just past the left edge (the box's near corner beyond it): culled.
        assert!(!f.may_see(&unit_box_at(Vec3::new(-11.5, 0.0, -10.0))));
        // Nothing to measure, or not finite: drawn.
        assert!(f.may_see(&Aabb::EMPTY));
        let nan = Aabb {
            min: Vec3::splat(f32::NAN),
            max: Vec3::splat(f32::NAN),
        };
        assert!(f.may_see(&nan));
    }
}
