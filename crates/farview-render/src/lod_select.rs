//! Which level of detail a cluster draws: the coarsest whose error, projected to the screen at
//! the cluster's distance, stays within the frame's pixel budget (`lod_error_px`). Errors are
//! in the mesh's units and grow with each level ([`farview_scene::lod`]), so every finer level
//! is within the budget too, and a level switch moves the surface by at most the budget.

use farview_scene::Aabb;
use farview_scene::lod::LodLevel;
use glam::{Mat4, Vec3};

use crate::Camera;

/// The view a frame's levels are chosen for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LodView {
    eye: Vec3,
    /// Pixels per unit of size at distance 1 (`height / (2 tan(fov / 2))`).
    pixels_per_unit: f32,
    near: f32,
    /// Largest projected error allowed, pixels.
    budget_px: f32,
}

impl LodView {
    /// `None` when the budget is 0 (full detail everywhere) or not finite.
    pub(crate) fn new(camera: &Camera, height: u32, budget_px: f32) -> Option<Self> {
        if !(budget_px > 0.0 && budget_px.is_finite()) {
            return None;
        }
        let tan = (camera.fov_y * 0.5).tan().max(1e-4);
        Some(Self {
            eye: camera.position,
            pixels_per_unit: height as f32 / (2.0 * tan),
            near: camera.near.max(1e-4),
            budget_px,
        })
    }

    /// The level to draw of a cluster with `levels`, whose world bounds are `bounds`, under a
    /// world matrix that scales by at most `scale`.
    pub(crate) fn level(&self, levels: &[LodLevel], bounds: &Aabb, scale: f32) -> usize {
        self.coarsest_within(levels, bounds, scale).unwrap_or(0)
    }

    /// The coarsest of `levels` whose error is within the budget at `bounds` (as
    /// [`Self::level`]); `None` when none is.
    pub(crate) fn coarsest_within(
        &self,
        levels: &[LodLevel],
        bounds: &Aabb,
        scale: f32,
    ) -> Option<usize> {
        let distance = distance_to(self.eye, bounds).max(self.near);
        let allowed = self.budget_px * distance / (self.pixels_per_unit * scale.max(1e-12));
        levels.iter().rposition(|l| l.error <= allowed)
    }

    /// How many pixels `error` (mesh units) covers at `bounds` under `scale`.
    #[cfg(test)]
    pub(crate) fn projected_px(&self, error: f32, bounds: &Aabb, scale: f32) -> f32 {
        error * scale * self.pixels_per_unit / distance_to(self.eye, bounds).max(self.near)
    }
}

/// Distance from `p` to the nearest point of `b` (0 inside, and for empty bounds).
pub(crate) fn distance_to(p: Vec3, b: &Aabb) -> f32 {
    if b.is_empty() {
        return 0.0;
    }
    (p.clamp(b.min, b.max) - p).length()
}

/// The largest factor by which `m` stretches a length.
pub(crate) fn max_scale(m: &Mat4) -> f32 {
    m.x_axis
        .truncate()
        .length()
        .max(m.y_axis.truncate().length())
        .max(m.z_axis.truncate().length())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn levels() -> Vec<LodLevel> {
        [0.0, 0.01, 0.05, 0.2]
            .iter()
            .map(|&error| LodLevel {
                first: 0,
                count: 3,
                error,
                facing: Default::default(),
            })
            .collect()
    }

    #[test]
    fn the_coarsest_level_within_the_budget_is_chosen_and_it_projects_within_it() {
        let cam = Camera::looking_at(Vec3::ZERO, Vec3::NEG_Z, 60f32.to_radians(), 0.1, 1000.0);
        let view = LodView::new(&cam, 720, 1.0).unwrap();
        let mut last = 0;
        for d in [0.5f32, 2.0, 10.0, 50.0, 200.0, 1000.0] {
            let b = Aabb {
                min: Vec3::new(-1.0, -1.0, -d - 1.0),
                max: Vec3::new(1.0, 1.0, -d),
            };
            for scale in [0.5f32, 1.0, 3.0] {
                let l = view.level(&levels(), &b, scale);
                let px = view.projected_px(levels()[l].error, &b, scale);
                assert!(px <= 1.0 + 1e-4, "{d} {scale}: level {l} is {px} px");
                // The next coarser level would not be.
                if let Some(next) = levels().get(l + 1) {
                    assert!(view.projected_px(next.error, &b, scale) > 1.0);
                }
            }
            let l = view.level(&levels(), &b, 1.0);
            assert!(l >= last, "farther never finer");
            last = l;
        }
        assert_eq!(last, 3);
        // Inside the bounds: full detail. A zero budget: no view, full detail everywhere.
        let around = Aabb {
            min: Vec3::splat(-1.0),
            max: Vec3::splat(1.0),
        };
        assert_eq!(view.level(&levels(), &around, 1.0), 0);
        assert!(LodView::new(&cam, 720, 0.0).is_none());
    }
}
