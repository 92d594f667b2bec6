//! The GGX split-sum BRDF lookup table, computed once per process on the CPU (it does not depend
//! on the environment) and uploaded with every environment.
//!
//! It is the Khronos glTF Sample Viewer 1.1.0's `LUT()` (`ibl_filtering.frag`, distribution
//! GGX, 512 samples), evaluated at texel centres: texel `(x, y)` of the `size x size` table holds
//! `NdotV = (x + 0.5) / size`, perceptual `roughness = (y + 0.5) / size` (row 0 first in memory,
//! which texture coordinate v = 0 addresses). With `V = (sqrt(1 - NdotV^2), 0, NdotV)`, `N = +Z`
//! and the Sample Viewer's GGX half vectors `H_i` (see [`super::samples`]), `L = reflect(-V, H)`:
//!
//! ```text
//! A = 4/n sum (1 - Fc) Vis VdotH NdotL / NdotH      (r: scale of F0)
//! B = 4/n sum      Fc  Vis VdotH NdotL / NdotH      (g: bias)
//! Fc = (1 - VdotH)^5,  Vis = V_SmithGGXCorrelated(NdotV, NdotL, roughness)
//!    = 0.5 / (NdotL sqrt(NdotV^2 (1 - a2) + a2) + NdotV sqrt(NdotL^2 (1 - a2) + a2)), a2 = roughness^4
//! ```
//!
//! over the samples with `NdotL > 0` (dot products clamped to [0, 1]). Blue is 0, alpha 1.

use std::sync::OnceLock;

use super::f16::f32_to_f16;
use super::samples::{ggx_half_vector, hammersley};

/// The table's side in texels. The Sample Viewer renders 1024 x 1024; the table is smooth, and
/// bilinear filtering of 256 x 256 texels stays within about 1e-3 of it (see the tests).
pub(crate) const LUT_SIZE: u32 = 256;
/// Samples per texel, the Sample Viewer's.
pub(crate) const LUT_SAMPLES: u32 = 512;

/// Smith-GGX height-correlated visibility, as the Sample Viewer's `V_SmithGGXCorrelated`.
fn v_smith_ggx_correlated(n_dot_v: f64, n_dot_l: f64, roughness: f64) -> f64 {
    let a2 = roughness.powi(4);
    let ggx_v = n_dot_l * (n_dot_v * n_dot_v * (1.0 - a2) + a2).sqrt();
    let ggx_l = n_dot_v * (n_dot_l * n_dot_l * (1.0 - a2) + a2).sqrt();
    0.5 / (ggx_v + ggx_l)
}

/// The (scale, bias) table, rows of increasing roughness.
pub(crate) fn compute(size: u32, samples: u32) -> Vec<[f32; 2]> {
    let mut table = Vec::with_capacity(size as usize * size as usize);
    let mut halves = Vec::with_capacity(samples as usize);
    for y in 0..size {
        let roughness = (f64::from(y) + 0.5) / f64::from(size);
        halves.clear();
        halves.extend((0..samples).map(|i| ggx_half_vector(hammersley(i, samples), roughness).0));
        for x in 0..size {
            let n_dot_v = (f64::from(x) + 0.5) / f64::from(size);
            let v = [(1.0 - n_dot_v * n_dot_v).sqrt(), 0.0, n_dot_v];
            let (mut a, mut b) = (0.0, 0.0);
            for h in &halves {
                let v_h = v[0] * h[0] + v[2] * h[2];
                // reflect(-V, H) = 2 (V.H) H - V, normalized.
                let l = [
                    2.0 * v_h * h[0] - v[0],
                    2.0 * v_h * h[1],
                    2.0 * v_h * h[2] - v[2],
                ];
                let l_len = (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]).sqrt();
                let n_dot_l = (l[2] / l_len).clamp(0.0, 1.0);
                if n_dot_l > 0.0 {
                    let n_dot_h = h[2].clamp(0.0, 1.0);
                    let v_dot_h = v_h.clamp(0.0, 1.0);
                    let v_pdf =
                        v_smith_ggx_correlated(n_dot_v, n_dot_l, roughness) * v_dot_h * n_dot_l
                            / n_dot_h;
                    let fc = (1.0 - v_dot_h).powi(5);
                    a += (1.0 - fc) * v_pdf;
                    b += fc * v_pdf;
                }
            }
            let n = f64::from(samples);
            table.push([(4.0 * a / n) as f32, (4.0 * b / n) as f32]);
        }
    }
    table
}

/// The default table as Rgba16Float texels (`LUT_SIZE` rows of `LUT_SIZE`), computed on first use.
pub(crate) fn rgba16f() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let start = std::time::Instant::now();
        let texels: Vec<u16> = compute(LUT_SIZE, LUT_SAMPLES)
            .into_iter()
            .flat_map(|[a, b]| [f32_to_f16(a), f32_to_f16(b), 0, f32_to_f16(1.0)])
            .collect();
        tracing::debug!(elapsed = ?start.elapsed(), size = LUT_SIZE, "BRDF lookup table computed");
        texels
    })
}
