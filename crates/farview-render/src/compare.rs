//! Comparing rendered frames: what tests and benches use to say how close two pictures are.

/// PSNR in dB over the R, G and B channels of two RGBA8 frames of the same size (alpha is
/// ignored); infinite when they are equal. Frames of different lengths compare over the
/// shorter.
pub fn psnr_rgb(a: &[u8], b: &[u8]) -> f64 {
    let pixels = a.len().min(b.len()) / 4;
    if pixels == 0 {
        return f64::INFINITY;
    }
    let se: f64 = a
        .chunks_exact(4)
        .zip(b.chunks_exact(4))
        .flat_map(|(p, q)| (0..3).map(move |i| (f64::from(p[i]) - f64::from(q[i])).powi(2)))
        .sum();
    let mse = se / (pixels * 3) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_frames_are_infinite_and_a_uniform_error_gives_its_psnr() {
        let a = vec![100u8; 64];
        assert!(psnr_rgb(&a, &a).is_infinite());
        let mut b = a.clone();
        for (i, v) in b.iter_mut().enumerate() {
            if i % 4 != 3 {
                *v += 10;
            }
        }
        // MSE 100: 10 log10(255² / 100) = 28.13 dB.
        assert!((psnr_rgb(&a, &b) - 28.13).abs() < 0.01);
    }
}
