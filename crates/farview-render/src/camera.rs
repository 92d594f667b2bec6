//! The camera a frame is rendered with.

use glam::{Mat4, Quat, Vec3};

/// Camera pose and projection; looks down local -Z with +Y up (glTF convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    /// World position.
    pub position: Vec3,
    /// World orientation.
    pub rotation: Quat,
    /// Vertical field of view, radians.
    pub fov_y: f32,
    /// Near plane.
    pub near: f32,
    /// Far plane.
    pub far: f32,
}

impl Default for Camera {
    fn default() -> Self {
        Self {
            position: Vec3::new(0.0, 0.0, 3.0),
            rotation: Quat::IDENTITY,
            fov_y: 45f32.to_radians(),
            near: 0.05,
            far: 1000.0,
        }
    }
}

impl Camera {
    /// A camera at `eye` looking at `target` with +Y up.
    pub fn looking_at(eye: Vec3, target: Vec3, fov_y: f32, near: f32, far: f32) -> Self {
        let view = Mat4::look_at_rh(eye, target, Vec3::Y);
        let (_, rotation, _) = view.inverse().to_scale_rotation_translation();
        Self {
            position: eye,
            rotation,
            fov_y,
            near,
            far,
        }
    }

    /// View-projection matrix for the given aspect ratio (wgpu clip space, depth 0..1).
    pub fn view_proj(&self, aspect: f32) -> Mat4 {
        let view = Mat4::from_rotation_translation(self.rotation, self.position).inverse();
        self.projection(aspect) * view
    }

    /// Projection matrix for the given aspect ratio.
    pub fn projection(&self, aspect: f32) -> Mat4 {
        Mat4::perspective_rh(self.fov_y, aspect, self.near, self.far)
    }
}
