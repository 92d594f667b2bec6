//! IEEE half-precision conversion for uploading (and, in tests, reading back) Rgba16Float texels.

/// The largest finite half: brighter values are clamped to it rather than becoming infinite.
pub(crate) const F16_MAX: f32 = 65504.0;

/// `x` as half-precision bits, rounded to nearest even; beyond the half range clamped to
/// ±[`F16_MAX`]; NaN becomes 0.
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        return 0;
    }
    // 65520 and above would round to infinity.
    if abs >= 0x477f_f000 {
        return sign | 0x7bff;
    }
    // Below 2^-14: a subnormal half, in units of 2^-24 (exact products, ties to even).
    if abs < 0x3880_0000 {
        let units = (f32::from_bits(abs) * 16_777_216.0).round_ties_even();
        return sign | units as u16;
    }
    let exponent = (abs >> 23) + 15 - 127;
    let mantissa = abs & 0x7f_ffff;
    let mut half = (exponent << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        // A carry out of the mantissa correctly bumps the exponent.
        half += 1;
    }
    sign | half as u16
}

/// Half-precision bits as `f32` (exact).
#[cfg(test)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let mantissa = f32::from(h & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rounds_to_nearest_even() {
        for v in [
            0.0f32,
            1.0,
            -2.0,
            0.5,
            65504.0,
            6.103_515_6e-5,
            5.960_464_5e-8,
            1234.0,
        ] {
            assert_eq!(f16_to_f32(f32_to_f16(v)), v, "{v}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(1e9), 0x7bff);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7bff);
        assert_eq!(f32_to_f16(f32::NAN), 0);
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even 1.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9: up to the even one.
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Just under 2 rounds up across the exponent.
        assert_eq!(f32_to_f16(1.999_9), 0x4000);
        // Every RGBE value of an 8-bit mantissa in the half range is exact.
        for e in 113..=142 {
            for m in [1u32, 77, 128, 255] {
                let v = m as f32 * 2f32.powi(e - 136);
                assert_eq!(f16_to_f32(f32_to_f16(v)), v, "{m} * 2^{}", e - 136);
            }
        }
    }
}
