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
    }
}
