//! The Farview SDK: connect to a host over QUIC, drive the scene, receive the H.264 stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), farview_client::ClientError> {
//! use farview_client::{CameraPose, CameraPoseExt, Connection, ConnectOptions};
//!
//! let options = ConnectOptions::new("127.0.0.1:4433".parse().unwrap(), "<64 hex digits from the host>")?;
//! let mut conn = Connection::connect(options).await?;
//! let model = conn.load_model("BoxTextured/BoxTextured.gltf").await?;
//! println!("{} triangles", model.triangles);
//! conn.set_camera(CameraPose::looking_at([0.0, 0.0, 4.0], [0.0; 3])).await?;
//! while let Ok(frame) = conn.next_frame().await {
//!     // frame.data is an H.264 Annex-B access unit; feed it to a decoder.
//!     println!("frame {} keyframe={} {} bytes", frame.header.frame_number, frame.header.keyframe, frame.data.len());
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! Every method is cancellation-safe: dropping a request future never corrupts the control
//! stream (requests are handed whole to a writer task; a reply nobody waits for is discarded),
//! and [`Connection::next_frame`] loses no frame when cancelled.

mod connection;
mod error;
pub mod fleet;
mod pin;
mod queue;
mod scene;
mod sessions;
mod stats;

pub use connection::{ConnectOptions, Connection, Frame, LoadProgress, PendingReply};
pub use error::ClientError;
pub use farview_protocol::{
    AnimationCommand, AnimationInfo, AnimationState, CameraPose, CutPlane, EntityBounds,
    EntityNode, EntityTransform, ErrorCode, FIT_VIEW_DIRECTION, FrameAnimation, FrameHeader, Light,
    LightKind, LoadedModel, LookState, LookUpdate, MaterialOverride, ModelCamera, ModelFile,
    NO_ENVIRONMENT, OutlineSettings, RayHit, Reply, Request, SceneStats, StateOverride, StreamInfo,
    ToneMapping, TransformUpdate, WireError,
};
pub use pin::{Fingerprint, quic_client_config};
pub use scene::{Entity, PendingLoad};
pub use sessions::{
    ConnectionDetails, Counters, CreateSession, SessionClient, SessionHandle, SessionInfo,
};
pub use stats::{FrameStatistics, FrameTimings, Summary, summarize};

/// Helpers for building camera poses.
pub trait CameraPoseExt {
    /// A pose at `eye` looking at `target` with +Y up, 45° vertical field of view.
    fn looking_at(eye: [f32; 3], target: [f32; 3]) -> CameraPose;

    /// A pose on a circle around a loaded model's bounds (slightly above), looking at their
    /// centre, at `angle` radians, far enough that the whole model is in view.
    fn orbiting(model: &LoadedModel, angle: f32) -> CameraPose;
}

impl CameraPoseExt for CameraPose {
    fn orbiting(model: &LoadedModel, angle: f32) -> CameraPose {
        let c: Vec<f32> = (0..3)
            .map(|i| (model.bounds_min[i] + model.bounds_max[i]) * 0.5)
            .collect();
        let radius = (0..3)
            .map(|i| (model.bounds_max[i] - model.bounds_min[i]).powi(2))
            .sum::<f32>()
            .sqrt()
            * 0.5;
        let radius = if radius.is_finite() && radius > 1e-6 {
            radius
        } else {
            1.0
        };
        let fov = 45f32.to_radians();
        let dist = radius / (fov * 0.5).sin() * 1.1;
        let eye = [
            c[0] + dist * angle.sin(),
            c[1] + dist * 0.3,
            c[2] + dist * angle.cos(),
        ];
        let mut pose = CameraPose::looking_at(eye, [c[0], c[1], c[2]]);
        pose.near = (dist - radius).max(dist * 0.01) * 0.5;
        pose.far = (dist + radius) * 2.0;
        pose
    }

    fn looking_at(eye: [f32; 3], target: [f32; 3]) -> CameraPose {
        let (ex, ey, ez) = (eye[0], eye[1], eye[2]);
        // forward = normalize(target - eye); camera looks down -Z, so -Z maps to forward.
        let f =
            normalize([target[0] - ex, target[1] - ey, target[2] - ez]).unwrap_or([0.0, 0.0, -1.0]);
        let up = if f[1].abs() > 0.999 {
            [0.0, 0.0, -1.0]
        } else {
            [0.0, 1.0, 0.0]
        };
        let r = normalize(cross(f, up)).unwrap_or([1.0, 0.0, 0.0]);
        let u = cross(r, f);
        // Rotation matrix columns: right, up, back (-forward).
        let m = [r, u, [-f[0], -f[1], -f[2]]];
        CameraPose {
            position: eye,
            rotation: quat_from_basis(m),
            fov_y: 45f32.to_radians(),
            near: 0.05,
            far: 1000.0,
        }
    }
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalize(v: [f32; 3]) -> Option<[f32; 3]> {
    let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (len > 1e-12 && len.is_finite()).then(|| [v[0] / len, v[1] / len, v[2] / len])
}

/// Quaternion (x, y, z, w) from an orthonormal basis given as columns.
fn quat_from_basis(c: [[f32; 3]; 3]) -> [f32; 4] {
    let (m00, m11, m22) = (c[0][0], c[1][1], c[2][2]);
    let trace = m00 + m11 + m22;
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            (c[1][2] - c[2][1]) / s,
            (c[2][0] - c[0][2]) / s,
            (c[0][1] - c[1][0]) / s,
            0.25 * s,
        ]
    } else if m00 > m11 && m00 > m22 {
        let s = (1.0 + m00 - m11 - m22).sqrt() * 2.0;
        [
            0.25 * s,
            (c[1][0] + c[0][1]) / s,
            (c[2][0] + c[0][2]) / s,
            (c[1][2] - c[2][1]) / s,
        ]
    } else if m11 > m22 {
        let s = (1.0 + m11 - m00 - m22).sqrt() * 2.0;
        [
            (c[1][0] + c[0][1]) / s,
            0.25 * s,
            (c[2][1] + c[1][2]) / s,
            (c[2][0] - c[0][2]) / s,
        ]
    } else {
        let s = (1.0 + m22 - m00 - m11).sqrt() * 2.0;
        [
            (c[2][0] + c[0][2]) / s,
            (c[2][1] + c[1][2]) / s,
            0.25 * s,
            (c[0][1] - c[1][0]) / s,
        ]
    };
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    [q[0] / n, q[1] / n, q[2] / n, q[3] / n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotates v by quaternion q.
    fn rotate(q: [f32; 4], v: [f32; 3]) -> [f32; 3] {
        let u = [q[0], q[1], q[2]];
        let t = cross(u, v).map(|x| x * 2.0);
        let c = cross(u, t);
        [
            v[0] + q[3] * t[0] + c[0],
            v[1] + q[3] * t[1] + c[1],
            v[2] + q[3] * t[2] + c[2],
        ]
    }

    #[test]
    fn looking_at_points_minus_z_at_the_target() {
        for eye in [
            [0.0, 0.0, 5.0],
            [3.0, 1.0, -2.0],
            [-4.0, 2.0, 0.5],
            [0.0, 5.0, 0.0],
        ] {
            let pose = CameraPose::looking_at(eye, [0.0; 3]);
            assert!(pose.validate().is_ok());
            let fwd = rotate(pose.rotation, [0.0, 0.0, -1.0]);
            let want = normalize([-eye[0], -eye[1], -eye[2]]).unwrap_or_default();
            for i in 0..3 {
                assert!(
                    (fwd[i] - want[i]).abs() < 1e-4,
                    "eye {eye:?}: forward {fwd:?} want {want:?}"
                );
            }
        }
    }
}
