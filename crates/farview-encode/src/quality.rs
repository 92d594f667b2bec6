//! Image quality measures for tests and benchmarks.

use crate::EncodeError;

/// PSNR in dB over R, G and B (alpha ignored) of two equally sized, tightly packed RGBA8 images.
/// `f64::INFINITY` when they are identical.
pub fn psnr_rgba(a: &[u8], b: &[u8]) -> Result<f64, EncodeError> {
    if a.len() != b.len() || !a.len().is_multiple_of(4) || a.is_empty() {
        return Err(EncodeError::BufferSize {
            expected: a.len(),
            actual: b.len(),
        });
    }
    let mut sse = 0u64;
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for i in 0..3 {
            let d = i64::from(p[i]) - i64::from(q[i]);
            sse += (d * d) as u64;
        }
    }
    if sse == 0 {
        return Ok(f64::INFINITY);
    }
    let mse = sse as f64 / (a.len() / 4 * 3) as f64;
    Ok(10.0 * (255.0f64 * 255.0 / mse).log10())
}

/// PSNR in dB of two equally long 8-bit planes (a Y plane against its source, say); 99 dB when
/// they are identical, so a mean over frames stays finite.
pub fn psnr_plane(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)).pow(2))
        .sum();
    if sse == 0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 * n as f64 / sse as f64).log10()
}

/// What [`background_residue`] found in one decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residue {
    /// Background pixels (see [`background_residue`]) whose decoded colour is more than the
    /// threshold off the rendered one in R, G or B.
    pub stray: usize,
    /// Background pixels checked.
    pub background: usize,
    /// The largest channel difference seen on them.
    pub worst: u8,
}

/// Ghosts and specks on the flat background: the trail a moving model leaves in a stream whose
/// encoder skips macroblocks it believes unchanged. A mean PSNR hides them (the background is
/// most of the picture and a few hundred pixels barely move the mean), so this counts them.
///
/// The background is the colour of `source`'s top-left pixel (the renderer clears to one
/// colour); only background pixels at least `margin` pixels (Chebyshev distance) from anything
/// else are checked, so edge ringing next to the model is not counted as residue. Both images
/// are tightly packed RGBA8 of `width` x `height`.
pub fn background_residue(
    decoded: &[u8],
    source: &[u8],
    width: usize,
    height: usize,
    threshold: u8,
    margin: usize,
) -> Result<Residue, EncodeError> {
    let n = width * height;
    if source.len() != n * 4 || decoded.len() != source.len() || n == 0 {
        return Err(EncodeError::BufferSize {
            expected: n * 4,
            actual: if source.len() != n * 4 {
                source.len()
            } else {
                decoded.len()
            },
        });
    }
    let bg = [source[0], source[1], source[2]];
    let near = |p: &[u8]| (0..3).all(|i| p[i].abs_diff(bg[i]) <= 1);
    // Counts of non-background pixels within `margin` horizontally, then vertically (a
    // separable box filter over prefix sums): a pixel is checked when its box holds none.
    let other: Vec<u32> = source
        .chunks_exact(4)
        .map(|p| u32::from(!near(p)))
        .collect();
    let mut rows = vec![0u32; n];
    let mut prefix = vec![0u32; width.max(height) + 1];
    for y in 0..height {
        let row = &other[y * width..(y + 1) * width];
        for (x, v) in row.iter().enumerate() {
            prefix[x + 1] = prefix[x] + v;
        }
        for x in 0..width {
            let (a, b) = (x.saturating_sub(margin), (x + margin + 1).min(width));
            rows[y * width + x] = prefix[b] - prefix[a];
        }
    }
    let mut residue = Residue {
        stray: 0,
        background: 0,
        worst: 0,
    };
    for x in 0..width {
        for y in 0..height {
            prefix[y + 1] = prefix[y] + rows[y * width + x];
        }
        for y in 0..height {
            let (a, b) = (y.saturating_sub(margin), (y + margin + 1).min(height));
            if prefix[b] - prefix[a] != 0 {
                continue;
            }
            let i = (y * width + x) * 4;
            let d = (0..3)
                .map(|c| decoded[i + c].abs_diff(source[i + c]))
                .max()
                .unwrap_or(0);
            residue.background += 1;
            residue.worst = residue.worst.max(d);
            if d > threshold {
                residue.stray += 1;
            }
        }
    }
    Ok(residue)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_error() {
        let a = vec![100u8; 400];
        let mut b = a.clone();
        assert_eq!(psnr_rgba(&a, &b).unwrap(), f64::INFINITY);
        // Every colour channel off by 1: MSE 1 → 48.13 dB; alpha differences do not count.
        for p in b.chunks_exact_mut(4) {
            p[0] += 1;
            p[1] -= 1;
            p[2] += 1;
            p[3] = 0;
        }
        assert!((psnr_rgba(&a, &b).unwrap() - 48.1308).abs() < 1e-3);
        assert!(psnr_rgba(&a, &b[..396]).is_err());
        // One plane, every sample off by 2: MSE 4 → 42.11 dB.
        assert!((psnr_plane(&[10; 64], &[12; 64]) - 42.1104).abs() < 1e-3);
        assert_eq!(psnr_plane(&[7; 8], &[7; 8]), 99.0);
    }

    #[test]
    fn residue_counts_background_pixels_away_from_the_model() {
        let (w, h) = (40, 30);
        let mut source = vec![0u8; w * h * 4];
        for p in source.chunks_exact_mut(4) {
            p.copy_from_slice(&[50, 50, 50, 255]);
        }
        // The "model": a 4x4 orange block at (10..14, 10..14).
        for y in 10..14 {
            for x in 10..14 {
                source[(y * w + x) * 4..][..3].copy_from_slice(&[230, 120, 40]);
            }
        }
        let mut decoded = source.clone();
        let r = background_residue(&decoded, &source, w, h, 12, 2).unwrap();
        assert_eq!((r.stray, r.worst), (0, 0));
        // Checked: everything but the block grown by 2 px on each side (8x8).
        assert_eq!(r.background, w * h - 64);
        // A speck far away counts, one 13 levels off does, one 12 off does not; ringing right
        // next to the model (1 px away) is inside the margin and does not.
        decoded[(25 * w + 30) * 4] = 50 + 13;
        decoded[(5 * w + 5) * 4 + 2] = 50 - 12;
        decoded[(10 * w + 9) * 4 + 1] = 200;
        let r = background_residue(&decoded, &source, w, h, 12, 2).unwrap();
        assert_eq!((r.stray, r.worst), (1, 13));
        assert!(background_residue(&decoded[4..], &source, w, h, 12, 2).is_err());
    }
}
