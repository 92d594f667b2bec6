//! Environment tests: decoding with limits and the BRDF table (CPU), and the prefilters on the
//! machine's real adapter (Mesa's software rasterizers in CI), checked by reading texels back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod decode;
mod measure;
mod prefilter;
mod readback;

use std::f64::consts::PI;
use std::path::PathBuf;

use glam::Vec3;

use super::*;
use crate::AdapterChoice;

fn asset(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .join(path)
}

/// The default adapter, or `None` (the test is skipped) on a machine without one.
fn gpu() -> Option<GpuContext> {
    match GpuContext::new(AdapterChoice::Auto) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// Every adapter kind present among GL and Vulkan (lavapipe and llvmpipe on CI).
fn backends() -> Vec<GpuContext> {
    [AdapterChoice::Gl, AdapterChoice::Vulkan]
        .into_iter()
        .filter_map(|c| GpuContext::new(c).ok())
        .collect()
}

/// The cube face and texel that sampling direction `c` reads (the GL/Vulkan major-axis table,
/// t = 0 the first row in memory).
fn cube_texel(c: [f64; 3], size: u32) -> (u32, u32, u32) {
    let [x, y, z] = c;
    let (face, sc, tc, ma) = if x.abs() >= y.abs() && x.abs() >= z.abs() {
        if x > 0.0 {
            (0, -z, -y, x)
        } else {
            (1, z, -y, -x)
        }
    } else if y.abs() >= z.abs() {
        if y > 0.0 {
            (2, x, z, y)
        } else {
            (3, x, -z, -y)
        }
    } else if z > 0.0 {
        (4, x, -y, z)
    } else {
        (5, -x, -y, -z)
    };
    let to_texel = |v: f64| (((v / ma + 1.0) * 0.5 * f64::from(size)) as u32).min(size - 1);
    (face, to_texel(sc), to_texel(tc))
}

/// The sampling direction of a texel's centre (the inverse of [`cube_texel`]).
fn texel_direction(face: u32, x: u32, y: u32, size: u32) -> Vec3 {
    let s = (x as f32 + 0.5) / size as f32 * 2.0 - 1.0;
    let t = (y as f32 + 0.5) / size as f32 * 2.0 - 1.0;
    match face {
        0 => Vec3::new(1.0, -t, -s),
        1 => Vec3::new(-1.0, -t, s),
        2 => Vec3::new(s, 1.0, t),
        3 => Vec3::new(s, -1.0, -t),
        4 => Vec3::new(s, -t, 1.0),
        _ => Vec3::new(-s, -t, -1.0),
    }
    .normalize()
}

/// The Sample Viewer's panorama coordinates (u, v from the top row) for world direction `w`:
/// `u_EnvRotation` (90 degrees about +Y) then `panorama_to_cubemap`'s y-mirrored `dirToUV`,
/// written out from its shaders independently of our code.
fn panorama_uv_of_world(w: [f64; 3]) -> (f64, f64) {
    let c = [w[2], w[1], -w[0]];
    let p = [c[0], -c[1], c[2]];
    let u = 0.5 + 0.5 * p[2].atan2(p[0]) / PI;
    let v_gl = 1.0 - p[1].clamp(-1.0, 1.0).acos() / PI;
    (u, v_gl)
}

fn index_of_max(texels: &[[f32; 4]], channel: usize) -> usize {
    let mut best = 0;
    for (i, t) in texels.iter().enumerate() {
        if t[channel] > texels[best][channel] {
            best = i;
        }
    }
    best
}

/// The Sample Viewer's LUT() at one point, written directly from its shader (f64, its own
/// sampling code), independent of `lut.rs`.
fn reference_lut(n_dot_v: f64, roughness: f64, samples: u32) -> (f64, f64) {
    let v = [(1.0 - n_dot_v * n_dot_v).sqrt(), 0.0, n_dot_v];
    let (mut a, mut b) = (0.0, 0.0);
    for i in 0..samples {
        let xi = (
            f64::from(i) / f64::from(samples),
            f64::from(i.reverse_bits()) / 4_294_967_296.0,
        );
        let alpha = roughness * roughness;
        let cos_t = ((1.0 - xi.1) / (1.0 + (alpha * alpha - 1.0) * xi.1))
            .sqrt()
            .clamp(0.0, 1.0);
        let sin_t = (1.0 - cos_t * cos_t).sqrt();
        let phi = 2.0 * PI * xi.0;
        let h = normalize3([sin_t * phi.cos(), sin_t * phi.sin(), cos_t]);
        let d = v[0] * h[0] + v[1] * h[1] + v[2] * h[2];
        let l = normalize3([
            2.0 * d * h[0] - v[0],
            2.0 * d * h[1] - v[1],
            2.0 * d * h[2] - v[2],
        ]);
        let (n_l, n_h, v_h) = (
            l[2].clamp(0.0, 1.0),
            h[2].clamp(0.0, 1.0),
            d.clamp(0.0, 1.0),
        );
        if n_l > 0.0 {
            let a2 = roughness.powf(4.0);
            let vis = 0.5
                / (n_l * (n_dot_v * n_dot_v * (1.0 - a2) + a2).sqrt()
                    + n_dot_v * (n_l * n_l * (1.0 - a2) + a2).sqrt());
            let v_pdf = vis * v_h * n_l / n_h;
            let fc = (1.0 - v_h).powf(5.0);
            a += (1.0 - fc) * v_pdf;
            b += fc * v_pdf;
        }
    }
    (4.0 * a / f64::from(samples), 4.0 * b / f64::from(samples))
}

fn normalize3(v: [f64; 3]) -> [f64; 3] {
    let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|c| c / l)
}
