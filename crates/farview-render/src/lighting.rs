//! The lighting a renderer applies besides the scene's own lights.

use glam::Vec3;

/// What the scene's lights do not cover: ambient light and the background (linear RGB). The
/// lights themselves are part of the scene (`Scene::lights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lighting {
    /// Ambient term.
    pub ambient: Vec3,
    /// Background colour (linear RGB).
    pub clear: Vec3,
}

impl Default for Lighting {
    fn default() -> Self {
        Self {
            ambient: Vec3::splat(0.35),
            clear: Vec3::new(0.02, 0.025, 0.035),
        }
    }
}
