//! Where `farview stream` puts the camera: a direction from yaw and pitch around the model's
//! centre, at the host's fitted distance or a given one, turning by the orbit over the run.

use farview_client::{CameraPose, CameraPoseExt, FIT_VIEW_DIRECTION};

/// Pitch is kept off the poles, where "up" stops defining the camera's roll.
const MAX_PITCH_DEG: f32 = 89.0;

/// The camera flags, resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Orbit {
    /// Degrees about +Y from the model's front (+Z), positive towards +X.
    pub(crate) yaw_deg: f32,
    /// Degrees above the horizon.
    pub(crate) pitch_deg: f32,
    /// Metres from the centre; `None`: as the host frames the model.
    pub(crate) distance: Option<f32>,
    /// Full turns over the run.
    pub(crate) turns: f32,
}

/// The default pitch: the host's framing direction (front, a little above).
pub(crate) fn default_pitch_deg() -> f32 {
    let [x, y, z] = FIT_VIEW_DIRECTION;
    y.atan2((x * x + z * z).sqrt()).to_degrees()
}

impl Orbit {
    /// Unit direction from the centre to the camera at `progress` (0..1) through the run.
    pub(crate) fn direction(&self, progress: f32) -> [f32; 3] {
        let yaw = (self.yaw_deg + progress * self.turns * 360.0).to_radians();
        let pitch = self
            .pitch_deg
            .clamp(-MAX_PITCH_DEG, MAX_PITCH_DEG)
            .to_radians();
        [
            pitch.cos() * yaw.sin(),
            pitch.sin(),
            pitch.cos() * yaw.cos(),
        ]
    }

    /// The pose at `distance` from the centre of `bounds`, looking at it, with the field of view
    /// of `fitted` and near and far planes around the bounds.
    pub(crate) fn pose(
        &self,
        progress: f32,
        bounds: ([f32; 3], [f32; 3]),
        distance: f32,
        fitted: &CameraPose,
    ) -> CameraPose {
        let (min, max) = bounds;
        let centre: [f32; 3] = std::array::from_fn(|i| (min[i] + max[i]) * 0.5);
        let diagonal = (0..3).map(|i| (max[i] - min[i]).powi(2)).sum::<f32>();
        let radius = (diagonal.sqrt() * 0.5).max(1e-4);
        let back = self.direction(progress);
        let eye = std::array::from_fn(|i| centre[i] + back[i] * distance);
        let near = (distance - radius * 2.0).max(distance * 0.01).max(1e-3);
        CameraPose {
            fov_y: fitted.fov_y,
            near,
            far: (distance + radius * 2.0).max(near * 2.0),
            ..CameraPose::looking_at(eye, centre)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::{Quat, Vec3};

    #[test]
    fn the_default_direction_is_the_hosts() {
        let orbit = Orbit {
            yaw_deg: 0.0,
            pitch_deg: default_pitch_deg(),
            distance: None,
            turns: 1.0,
        };
        let d = Vec3::from(orbit.direction(0.0));
        let host = Vec3::from(FIT_VIEW_DIRECTION).normalize();
        assert!(d.distance(host) < 1e-5, "{d} vs {host}");
        // Half way round a full turn it looks from behind.
        let half = Vec3::from(orbit.direction(0.5));
        assert!(half.z < -0.9 && half.x.abs() < 1e-5, "{half}");
    }

    #[test]
    fn the_pose_looks_at_the_centre_from_the_distance() {
        let orbit = Orbit {
            yaw_deg: 90.0,
            pitch_deg: 30.0,
            distance: Some(5.0),
            turns: 0.0,
        };
        let fitted = CameraPose {
            position: [0.0, 0.0, 3.0],
            rotation: [0.0, 0.0, 0.0, 1.0],
            fov_y: 0.8,
            near: 0.1,
            far: 10.0,
        };
        let p = orbit.pose(0.0, ([1.0, 1.0, 1.0], [3.0, 3.0, 3.0]), 5.0, &fitted);
        let eye = Vec3::from(p.position);
        let centre = Vec3::splat(2.0);
        assert!((eye.distance(centre) - 5.0).abs() < 1e-4);
        let forward = Quat::from_array(p.rotation) * Vec3::NEG_Z;
        assert!(
            forward.dot((centre - eye).normalize()) > 0.9999,
            "{forward}"
        );
        let up = Quat::from_array(p.rotation) * Vec3::Y;
        assert!(up.y > 0.0, "no roll: {up}");
        assert!(p.near > 0.0 && p.near < 5.0 - 3f32.sqrt() && p.far > 5.0 + 3f32.sqrt());
        assert_eq!(p.fov_y, 0.8);
    }
}
