//! FP8 E4M3 as PyTorch's `float8_e4m3fn` and the OCP FP8 spec define it: 1 sign bit, 4
//! exponent bits (bias 7), 3 mantissa bits; subnormals; no infinities; `0x7f` / `0xff` are NaN;
//! the largest finite magnitude is 448.

/// Largest finite E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// The value of an E4M3 byte.
pub fn e4m3_to_f32(b: u8) -> f32 {
    let (e, m) = ((b >> 3) & 15, b & 7);
    if e == 15 && m == 7 {
        return f32::NAN;
    }
    let mag = if e == 0 { m as f32 * 2f32.powi(-9) } else { (8 + m) as f32 * 2f32.powi(e as i32 - 10) };
    if b & 0x80 != 0 {
        -mag
    } else {
        mag
    }
}

/// The nearest E4M3 byte to `v` (ties to the even mantissa), saturating at +-448; NaN maps to
/// `0x7f`. The sign of zero is kept.
pub fn f32_to_e4m3(v: f32) -> u8 {
    if v.is_nan() {
        return 0x7f;
    }
    let sign = if v.is_sign_negative() { 0x80 } else { 0 };
    let a = v.abs();
    if a >= E4M3_MAX {
        return sign | 0x7e;
    }
    // Magnitudes grow with the code over 0..=0x7e: the largest code at or below `a`.
    let (mut lo, mut hi) = (0u8, 0x7eu8);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if e4m3_to_f32(mid) <= a {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (below, above) = (e4m3_to_f32(lo), e4m3_to_f32(lo + 1));
    let up = a - below > above - a || (a - below == above - a && lo & 1 == 1);
    sign | if up { lo + 1 } else { lo }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_code_round_trips_and_known_values_decode() {
        for b in 0..=255u8 {
            let v = e4m3_to_f32(b);
            if b & 0x7f == 0x7f {
                assert!(v.is_nan());
                continue;
            }
            assert_eq!(f32_to_e4m3(v), b, "code {b:#x} = {v}");
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9), "smallest subnormal");
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6), "smallest normal");
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0xc0), -2.0);
    }

    #[test]
    fn rounding_is_to_nearest_even_and_saturates() {
        // 1.0 (0x38) and 1.125 (0x39): the midpoint goes to the even code.
        assert_eq!(f32_to_e4m3(1.0625), 0x38);
        assert_eq!(f32_to_e4m3(1.0626), 0x39);
        // 1.125 (0x39) and 1.25 (0x3a): the midpoint goes to the even code, upwards.
        assert_eq!(f32_to_e4m3(1.1875), 0x3a);
        assert_eq!(f32_to_e4m3(1e6), 0x7e);
        assert_eq!(f32_to_e4m3(-1e6), 0xfe);
        assert_eq!(f32_to_e4m3(-0.0), 0x80);
        assert_eq!(f32_to_e4m3(2f32.powi(-11)), 0x00, "below half the smallest subnormal");
        assert_eq!(f32_to_e4m3(f32::NAN), 0x7f);
    }
}
