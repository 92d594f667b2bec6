//! The importance-sample tables of the prefilters, computed once per pass on the CPU.
//!
//! The Khronos glTF Sample Viewer 1.1.0 (`ibl_filtering.frag`) draws, per output texel, sample
//! `i` of `n` from the Hammersley point `(i / n, radicalInverse(i))`, maps it to a direction in
//! the texel's tangent frame (GGX half vector or cosine-weighted direction) and reads the source
//! cube at lod `0.5 * log2(6 * width^2 / (n * pdf))`, `width` being the source cube's size. None
//! of that depends on the texel except the frame, so each table entry holds the direction in
//! the frame (`xyz`) and the lod (`w`); `shaders/ibl_filter.wgsl` rotates it per texel.

use std::f64::consts::PI;

/// One sample: direction in the tangent frame (normal = +Z) and source lod.
pub(crate) type Sample = [f32; 4];

/// The Van der Corput radical inverse of `i` in base 2 (`radicalInverse_VdC`).
pub(crate) fn radical_inverse(i: u32) -> f64 {
    f64::from(i.reverse_bits()) * 2.328_306_436_538_696_3e-10
}

/// The Hammersley point `i` of `n` (`hammersley2d`).
pub(crate) fn hammersley(i: u32, n: u32) -> (f64, f64) {
    (f64::from(i) / f64::from(n), radical_inverse(i))
}

/// The Sample Viewer's `D_GGX(NdotH, alpha)`.
fn d_ggx(n_dot_h: f64, alpha: f64) -> f64 {
    let a = n_dot_h * alpha;
    let k = alpha / (1.0 - n_dot_h * n_dot_h + a * a);
    k * k / PI
}

/// The GGX half vector of Hammersley point `xi` for perceptual `roughness` (the Sample
/// Viewer's `GGX()`), as (direction around +Z, pdf of the reflected direction when V = N).
pub(crate) fn ggx_half_vector(xi: (f64, f64), roughness: f64) -> ([f64; 3], f64) {
    let alpha = roughness * roughness;
    let cos_theta = ((1.0 - xi.1) / (1.0 + (alpha * alpha - 1.0) * xi.1))
        .sqrt()
        .clamp(0.0, 1.0);
    let sin_theta = (1.0 - cos_theta * cos_theta).max(0.0).sqrt();
    let phi = 2.0 * PI * xi.0;
    let pdf = d_ggx(cos_theta, alpha) / 4.0;
    (
        normalize([sin_theta * phi.cos(), sin_theta * phi.sin(), cos_theta]),
        pdf,
    )
}

fn normalize(v: [f64; 3]) -> [f64; 3] {
    let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|c| c / l)
}

/// The source lod of a sample (`computeLod`, lod bias 0).
fn lod(pdf: f64, count: u32, source_size: u32) -> f64 {
    let w = f64::from(source_size);
    0.5 * (6.0 * w * w / (f64::from(count) * pdf)).log2()
}

fn entry(dir: [f64; 3], lod: f64) -> Sample {
    // An infinite lod (pdf 0) clamps to the smallest level anyway.
    let lod = if lod.is_finite() { lod } else { 64.0 };
    [dir[0] as f32, dir[1] as f32, dir[2] as f32, lod as f32]
}

/// The GGX prefilter's samples for perceptual `roughness` > 0: `L = reflect(-N, H)` in the frame
/// (the Sample Viewer sets V = N) with its lod; only samples with `N.L > 0`, which are the ones
/// the Sample Viewer accumulates (weighted by `N.L`, which is `L.z` here).
pub(crate) fn ggx(roughness: f64, count: u32, source_size: u32) -> Vec<Sample> {
    (0..count)
        .filter_map(|i| {
            let (h, pdf) = ggx_half_vector(hammersley(i, count), roughness);
            // reflect(-N, H) = 2 (N.H) H - N with N = +Z.
            let l = normalize([
                2.0 * h[2] * h[0],
                2.0 * h[2] * h[1],
                2.0 * h[2] * h[2] - 1.0,
            ]);
            (l[2] > 0.0).then(|| entry(l, lod(pdf, count, source_size)))
        })
        .collect()
}

/// The Lambertian (irradiance) prefilter's samples: cosine-weighted directions (pdf
/// `cos / pi`), all of which the Sample Viewer averages.
pub(crate) fn lambertian(count: u32, source_size: u32) -> Vec<Sample> {
    (0..count)
        .map(|i| {
            let xi = hammersley(i, count);
            let cos_theta = (1.0 - xi.1).sqrt();
            let sin_theta = xi.1.sqrt();
            let phi = 2.0 * PI * xi.0;
            let dir = normalize([sin_theta * phi.cos(), sin_theta * phi.sin(), cos_theta]);
            entry(dir, lod(cos_theta / PI, count, source_size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hammersley_matches_the_bit_reversal() {
        assert_eq!(radical_inverse(0), 0.0);
        assert_eq!(radical_inverse(1), 0.5);
        assert_eq!(radical_inverse(2), 0.25);
        assert_eq!(radical_inverse(3), 0.75);
        assert_eq!(hammersley(3, 8), (0.375, 0.75));
    }

    #[test]
    fn tables_are_unit_directions_in_the_upper_hemisphere() {
        for table in [
            ggx(0.25, 1024, 256),
            ggx(1.0, 1024, 256),
            lambertian(2048, 256),
        ] {
            assert!(!table.is_empty());
            for s in &table {
                let len = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt();
                assert!((len - 1.0).abs() < 1e-5, "{s:?}");
                assert!(s[2] > 0.0 || s[2].abs() < 1e-6, "{s:?}");
                assert!(s[3].is_finite(), "{s:?}");
            }
        }
        assert_eq!(lambertian(2048, 256).len(), 2048);
        // Rough GGX loses the samples that reflect below the horizon; smooth GGX keeps nearly all.
        let rough = ggx(1.0, 1024, 256).len();
        let smooth = ggx(0.25, 1024, 256).len();
        assert!(rough < smooth && smooth > 1000, "{rough} {smooth}");
    }

    #[test]
    fn lods_follow_the_sample_viewer_formula() {
        // Roughness 1: alpha 1, D = 1/pi everywhere, pdf = 1/(4 pi).
        let want = 0.5 * (6.0 * 256.0f64 * 256.0 * 4.0 * PI / 1024.0).log2();
        for s in ggx(1.0, 1024, 256) {
            assert!((f64::from(s[3]) - want).abs() < 1e-4, "{} vs {want}", s[3]);
        }
        // Lambertian straight up: pdf 1/pi.
        let first = lambertian(2048, 256)[0];
        let want = 0.5 * (6.0 * 256.0f64 * 256.0 * PI / 2048.0).log2();
        assert!((f64::from(first[3]) - want).abs() < 1e-4);
        assert_eq!(&first[..3], &[0.0, 0.0, 1.0]);
    }
}
