//! FP4 E2M1, the element type of NVFP4: 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit;
//! magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 for codes 0..=7, the sign in bit 3; no infinities or
//! NaN.

/// Largest E2M1 magnitude.
pub const E2M1_MAX: f32 = 6.0;

const MAGNITUDES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// The value of a 4-bit E2M1 code (its low 4 bits).
pub fn e2m1_to_f32(code: u32) -> f32 {
    let m = MAGNITUDES[(code & 7) as usize];
    if code & 8 != 0 {
        -m
    } else {
        m
    }
}

/// The nearest E2M1 code to `v` (ties to the even mantissa), saturating at +-6; NaN maps to 0.
pub fn f32_to_e2m1(v: f32) -> u32 {
    if v.is_nan() {
        return 0;
    }
    let sign = if v.is_sign_negative() { 8 } else { 0 };
    let a = v.abs();
    let mut best = 0u32;
    for (c, &m) in MAGNITUDES.iter().enumerate().skip(1) {
        let (d, db) = ((a - m).abs(), (a - MAGNITUDES[best as usize]).abs());
        // Codes with an even mantissa bit (the low bit) win ties.
        if d < db || (d == db && c % 2 == 0) {
            best = c as u32;
        }
    }
    sign | best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_round_to_nearest_even() {
        for c in 0..16u32 {
            let v = e2m1_to_f32(c);
            // -0 (code 8) decodes to -0.0 and encodes back to 8.
            assert_eq!(f32_to_e2m1(v), c, "code {c} = {v}");
        }
        assert_eq!(f32_to_e2m1(0.25), 0, "0 and 0.5 tie: the even code 0");
        assert_eq!(f32_to_e2m1(0.75), 2, "0.5 and 1 tie: code 2 (1.0)");
        assert_eq!(f32_to_e2m1(2.5), 4, "2 and 3 tie: code 4 (2.0)");
        assert_eq!(f32_to_e2m1(5.0), 6, "4 and 6 tie: code 6 (4.0)");
        assert_eq!(f32_to_e2m1(5.1), 7);
        assert_eq!(f32_to_e2m1(-100.0), 15);
        assert_eq!(e2m1_to_f32(13), -3.0);
    }
}
