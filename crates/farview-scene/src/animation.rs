//! Keyframe animation as glTF defines it: channels that drive a node's translation, rotation,
//! scale or morph weights from a sampler (key times and values, STEP, LINEAR or CUBICSPLINE),
//! and the playback of one animation on a model instance.
//!
//! Sampling is pure arithmetic on imported data (no allocation per frame beyond the caller's
//! buffers); import has checked that times are finite and non-decreasing and that each sampler
//! holds as many values as its keys need.

use glam::{Quat, Vec4};

/// What a channel drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPath {
    /// Node translation (3 values a key).
    Translation,
    /// Node rotation, a unit quaternion x, y, z, w (4 values a key).
    Rotation,
    /// Node scale (3 values a key).
    Scale,
    /// The morph weights of the node's mesh (as many values a key as it has targets).
    Weights,
}

/// How values between keys are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// Each key's value holds until the next key.
    Step,
    /// Straight line between keys (spherical for rotations).
    #[default]
    Linear,
    /// Cubic Hermite spline: each key stores an in-tangent, a value and an out-tangent.
    CubicSpline,
}

/// One channel: a node property driven by key times and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Index into [`crate::Model::nodes`].
    pub node: usize,
    /// The property.
    pub path: ChannelPath,
    /// Interpolation between keys.
    pub interpolation: Interpolation,
    /// Key times in seconds, non-decreasing.
    pub times: Vec<f32>,
    /// Values per key: `components` each (three times that for CUBICSPLINE: in-tangent, value,
    /// out-tangent), flattened.
    pub values: Vec<f32>,
    /// Values a key has (3, 4, or the number of morph targets).
    pub components: usize,
}

/// A named set of channels played together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Animation {
    /// Name from the file, or `animation N`.
    pub name: String,
    /// Its channels.
    pub channels: Vec<Channel>,
    /// The last key time over all channels, seconds.
    pub duration: f32,
}

impl Channel {
    /// Writes the channel's value at `t` seconds into `out` (`components` values; clamped to
    /// the first and last keys outside them). Rotations come out normalized.
    pub fn sample(&self, t: f32, out: &mut [f32]) {
        let n = self.components;
        let (Some(&first), Some(&last)) = (self.times.first(), self.times.last()) else {
            return;
        };
        let stride = match self.interpolation {
            Interpolation::CubicSpline => 3 * n,
            _ => n,
        };
        // The value part of key k.
        let value = |k: usize| -> &[f32] {
            let base = k * stride
                + if self.interpolation == Interpolation::CubicSpline {
                    n
                } else {
                    0
                };
            self.values.get(base..base + n).unwrap_or(&[])
        };
        let copy = |out: &mut [f32], v: &[f32]| {
            for (o, x) in out.iter_mut().zip(v) {
                *o = *x;
            }
        };
        if t <= first || self.times.len() == 1 {
            copy(out, value(0));
            return self.normalize(out);
        }
        if t >= last {
            copy(out, value(self.times.len() - 1));
            return self.normalize(out);
        }
        // The key at or before t: times are sorted, so a binary search.
        let k = self.times.partition_point(|&x| x <= t).saturating_sub(1);
        let (t0, t1) = (self.times[k], self.times[k + 1]);
        let dt = t1 - t0;
        let s = if dt > 0.0 { (t - t0) / dt } else { 0.0 };
        match self.interpolation {
            Interpolation::Step => copy(out, value(k)),
            Interpolation::Linear if self.path == ChannelPath::Rotation => {
                let q = |v: &[f32]| Quat::from_slice(v).normalize();
                let (a, b) = (q(value(k)), q(value(k + 1)));
                copy(out, &a.slerp(b, s).to_array());
            }
            Interpolation::Linear => {
                for ((o, a), b) in out.iter_mut().zip(value(k)).zip(value(k + 1)) {
                    *o = a + (b - a) * s;
                }
            }
            Interpolation::CubicSpline => {
                let key = |k: usize, part: usize| -> &[f32] {
                    let base = k * stride + part * n;
                    self.values.get(base..base + n).unwrap_or(&[])
                };
                let (p0, m0) = (key(k, 1), key(k, 2));
                let (p1, m1) = (key(k + 1, 1), key(k + 1, 0));
                let (s2, s3) = (s * s, s * s * s);
                let h00 = 2.0 * s3 - 3.0 * s2 + 1.0;
                let h10 = s3 - 2.0 * s2 + s;
                let h01 = -2.0 * s3 + 3.0 * s2;
                let h11 = s3 - s2;
                for (i, o) in out.iter_mut().enumerate().take(n) {
                    let at = |v: &[f32]| v.get(i).copied().unwrap_or(0.0);
                    *o = h00 * at(p0) + h10 * dt * at(m0) + h01 * at(p1) + h11 * dt * at(m1);
                }
            }
        }
        self.normalize(out);
    }

    fn normalize(&self, out: &mut [f32]) {
        if self.path == ChannelPath::Rotation && out.len() >= 4 {
            let q = Vec4::from_slice(out).normalize_or(Vec4::W);
            out[..4].copy_from_slice(&q.to_array());
        }
    }
}

/// How one animation plays on a model instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Playback {
    /// Index into the model's animations.
    pub animation: usize,
    /// Position in the animation, seconds (within `0..=duration`).
    pub time: f32,
    /// Rate: 1 is real time, negative plays backwards.
    pub speed: f32,
    /// Whether it wraps at the ends (else it stops there).
    pub looping: bool,
    /// Whether time advances.
    pub playing: bool,
}

impl Playback {
    /// Advances by `dt` seconds of wall time over an animation `duration` seconds long.
    pub fn advance(&mut self, dt: f32, duration: f32) {
        if !self.playing || !dt.is_finite() {
            return;
        }
        let t = self.time + dt * self.speed;
        self.time = if duration <= 0.0 || !t.is_finite() {
            0.0
        } else if self.looping {
            t.rem_euclid(duration)
        } else {
            // Reaching the end it plays towards stops it there.
            if (self.speed > 0.0 && t >= duration) || (self.speed < 0.0 && t <= 0.0) {
                self.playing = false;
            }
            t.clamp(0.0, duration)
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn channel(
        path: ChannelPath,
        interpolation: Interpolation,
        times: &[f32],
        values: &[f32],
        n: usize,
    ) -> Channel {
        Channel {
            node: 0,
            path,
            interpolation,
            times: times.to_vec(),
            values: values.to_vec(),
            components: n,
        }
    }

    fn at(c: &Channel, t: f32) -> Vec<f32> {
        let mut out = vec![0.0; c.components];
        c.sample(t, &mut out);
        out
    }

    #[test]
    fn step_holds_each_key_until_the_next() {
        let c = channel(
            ChannelPath::Translation,
            Interpolation::Step,
            &[0.0, 1.0, 2.0],
            &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0],
            3,
        );
        assert_eq!(at(&c, -1.0), [0.0, 0.0, 0.0]);
        assert_eq!(at(&c, 0.99), [0.0, 0.0, 0.0]);
        assert_eq!(at(&c, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(at(&c, 1.5), [1.0, 0.0, 0.0]);
        assert_eq!(at(&c, 9.0), [2.0, 0.0, 0.0]);
    }

    #[test]
    fn linear_interpolates_and_rotations_slerp() {
        let c = channel(
            ChannelPath::Scale,
            Interpolation::Linear,
            &[1.0, 3.0],
            &[1.0, 1.0, 1.0, 3.0, 5.0, 1.0],
            3,
        );
        assert_eq!(at(&c, 2.0), [2.0, 3.0, 1.0]);
        let quarter = Quat::from_rotation_y(std::f32::consts::FRAC_PI_2);
        let r = channel(
            ChannelPath::Rotation,
            Interpolation::Linear,
            &[0.0, 1.0],
            &[
                0.0, 0.0, 0.0, 1.0, quarter.x, quarter.y, quarter.z, quarter.w,
            ],
            4,
        );
        let half = Quat::from_slice(&at(&r, 0.5));
        let expected = Quat::from_rotation_y(std::f32::consts::FRAC_PI_4);
        assert!(half.abs_diff_eq(expected, 1e-5), "{half} vs {expected}");
        assert!((half.length() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn cubic_spline_passes_through_keys_and_follows_tangents() {
        // One component: key 0 value 0 out-tangent 1; key 1 value 1 in-tangent 1: a straight
        // line with slope 1 over a 2 s interval would need tangents 0.5 per second... use the
        // Hermite basis directly: at s = 0.5, h00 = h01 = 0.5, h10 = 0.125, h11 = -0.125.
        let c = channel(
            ChannelPath::Weights,
            Interpolation::CubicSpline,
            &[0.0, 2.0],
            // key0: in, value, out; key1: in, value, out
            &[9.0, 0.0, 1.0, 3.0, 1.0, 9.0],
            1,
        );
        assert_eq!(at(&c, 0.0), [0.0]);
        assert_eq!(at(&c, 2.0), [1.0]);
        let mid = at(&c, 1.0)[0];
        let expected = 0.5 * 0.0 + 0.125 * 2.0 * 1.0 + 0.5 * 1.0 - 0.125 * 2.0 * 3.0;
        assert!((mid - expected).abs() < 1e-6, "{mid} vs {expected}");
    }

    #[test]
    fn playback_loops_or_stops_and_plays_backwards() {
        let mut p = Playback {
            animation: 0,
            time: 0.0,
            speed: 1.0,
            looping: true,
            playing: true,
        };
        p.advance(2.5, 2.0);
        assert!((p.time - 0.5).abs() < 1e-6);
        p.speed = -1.0;
        p.advance(1.0, 2.0);
        assert!((p.time - 1.5).abs() < 1e-6, "{}", p.time);
        let mut once = Playback {
            looping: false,
            ..p
        };
        once.speed = 2.0;
        once.advance(1.0, 2.0);
        assert_eq!(once.time, 2.0);
        assert!(!once.playing, "stops at the end");
    }
}
