use super::*;
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0) * r.random_range(0.0f32..3.0)).collect()
}

/// Every weight is within one step of its group's scale (plus the f16 rounding of the scale),
/// and the group's squared error is at most the symmetric scale's.
fn check_bound(w: &[f32], q: &Quantized) {
    let back = q.dequantize();
    let groups = q.k / q.group;
    for (at, (a, b)) in w.iter().zip(&back).enumerate() {
        let s = q.scales[at / q.k * groups + at % q.k / q.group].abs();
        let amax = w[at / q.group * q.group..][..q.group].iter().fold(0f32, |m, v| m.max(v.abs()));
        // Codes clamp at the ends: the f16 scale may round down by 2^-11 relative.
        let bound = s + amax * 2f32.powi(-10) + 1e-30;
        assert!((a - b).abs() <= bound, "{:?} at {at}: {a} vs {b}, scale {s}", q.format);
    }
    for (g, (vals, back)) in w.chunks(q.group).zip(back.chunks(q.group)).enumerate() {
        let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
        let sym = half::f16::from_f32(amax / q.format.qmax() as f32).to_f32();
        let sym_err: f32 = if sym == 0.0 {
            vals.iter().map(|v| v * v).sum()
        } else {
            vals.iter().map(|v| (v - (v / sym).round() * sym).powi(2)).sum()
        };
        let err: f32 = vals.iter().zip(back).map(|(a, b)| (a - b).powi(2)).sum();
        assert!(err <= sym_err * (1.0 + 1e-5) + 1e-30, "group {g}: {err} > symmetric {sym_err}");
    }
}

#[test]
fn round_trips_stay_within_half_a_step_on_odd_shapes() {
    for format in [QFormat::Q8, QFormat::Q4] {
        for (n, k, group) in [(1, 32, 32), (3, 64, 32), (7, 96, 32), (5, 128, 64), (2, 256, 128), (9, 40, 8)] {
            let w = random(n * k, (n * k) as u64);
            let q = quantize(&w, n, k, format, group).unwrap();
            assert_eq!(q.codes.len(), n * k * format.bits() / 32);
            assert_eq!(q.scales.len(), n * k / group);
            check_bound(&w, &q);
            let rel = {
                let back = q.dequantize();
                let num: f32 = w.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
                (num / w.iter().map(|a| a * a).sum::<f32>()).sqrt()
            };
            let want = if format == QFormat::Q8 { 0.01 } else { 0.2 };
            assert!(rel < want, "{format:?} [{n}, {k}] group {group}: relative error {rel}");
        }
    }
}

#[test]
fn zeros_negative_zero_and_extremes() {
    for format in [QFormat::Q8, QFormat::Q4] {
        let mut w = vec![0.0f32; 64];
        w[3] = -0.0;
        w[40] = 60000.0 * format.qmax() as f32; // the largest scale f16 holds
        w[41] = -1e-8;
        let q = quantize(&w, 1, 64, format, 32).unwrap();
        let back = q.dequantize();
        assert!(back[..32].iter().all(|&v| v == 0.0), "an all-zero group stays zero");
        assert!((back[40] - w[40]).abs() <= w[40] * 1e-3, "{} vs {}", back[40], w[40]);
        check_bound(&w, &q);
        // Codes at the extremes encode and decode.
        assert_eq!(format.value(format.encode(format.qmax())), format.qmax() as f32);
        assert_eq!(format.value(format.encode(-format.qmax() - 1)), (-format.qmax() - 1) as f32);
        let huge = vec![1e30f32; 32];
        assert!(quantize(&huge, 1, 32, format, 32).unwrap_err().to_string().contains("f16"));
        assert!(quantize(&[f32::NAN; 32], 1, 32, format, 32).is_err());
        assert!(quantize(&w, 1, 64, format, 48).is_err(), "64 is not a multiple of 48");
        assert!(quantize(&w, 1, 64, format, 0).is_err());
        assert!(quantize(&w[..63], 1, 64, format, 32).is_err());
    }
}

#[test]
fn packing_is_little_endian_within_words() {
    let mut w = vec![0.0f32; 32];
    w[0] = 1.0;
    w[1] = -1.0;
    let q8 = quantize(&w, 1, 32, QFormat::Q8, 32).unwrap();
    assert_eq!(q8.codes[0], 0x0000_817f, "127 then -127 (the symmetric scale is exact here)");
    let q4 = quantize(&w, 1, 32, QFormat::Q4, 32).unwrap();
    assert_eq!(q4.codes[0], 0x8888_881f, "15 (7 + 8) then 1 (-7 + 8), then zeros (8)");
    // One weight larger than the rest: it takes the extra negative code.
    w[2] = 0.5;
    w[5] = 2.0;
    let q4 = quantize(&w, 1, 32, QFormat::Q4, 32).unwrap();
    assert!(q4.scales[0] < 0.0);
    assert_eq!((q4.codes[0] >> 20) & 0xf, 0, "2.0 is code 0 (-8 times a negative scale)");
    assert_eq!(QFormat::Q4.bytes(4096, 4096, 32), 4096 * 4096 / 2 + 4096 * 128 * 2);
}

#[test]
fn fp8_round_trips_within_e4m3_precision_on_odd_shapes() {
    for (n, k, group) in [(1, 128, 128), (3, 64, 32), (7, 96, 32), (2, 256, 128), (9, 40, 8)] {
        let mut w = random(n * k, (n * k) as u64 ^ 7);
        w[1] = -0.0;
        let q = quantize(&w, n, k, QFormat::Fp8, group).unwrap();
        assert_eq!(q.codes.len(), n * k / 4);
        let back = q.dequantize();
        for (at, (a, b)) in w.iter().zip(&back).enumerate() {
            let s = q.scales[at / group];
            // Half a step of a 3-bit mantissa, or of the subnormal spacing 2^-9 (times the scale).
            let bound = a.abs() * 2f32.powi(-4) + s * 2f32.powi(-10) + 1e-30;
            assert!((a - b).abs() <= bound, "[{n}, {k}] at {at}: {a} vs {b}, scale {s}");
        }
        // Each group's largest magnitude is exactly +-448 times its scale.
        for (vals, &s) in w.chunks(group).zip(&q.scales) {
            assert_eq!(s, vals.iter().fold(0f32, |m, v| m.max(v.abs())) / 448.0);
        }
    }
    let zeros = quantize(&[0.0; 32], 1, 32, QFormat::Fp8, 32).unwrap();
    assert_eq!((zeros.scales[0], zeros.codes[0]), (0.0, 0));
    let big = quantize(&[1e30; 32], 1, 32, QFormat::Fp8, 32).unwrap();
    assert_eq!(big.dequantize()[0], 1e30 / 448.0 * 448.0, "f32 scales hold any finite range");
    assert!(quantize(&[f32::INFINITY; 32], 1, 32, QFormat::Fp8, 32).is_err());
    assert_eq!(QFormat::Fp8.bytes(256, 256, 128), 256 * 256 + 256 * 2 * 4);
    assert_eq!(QFormat::parse("fp8").unwrap(), QFormat::Fp8);
}

#[test]
fn nvfp4_round_trips_within_e2m1_precision_with_exact_e4m3_scales() {
    for (n, k) in [(1, 64), (3, 128), (5, 192)] {
        let mut w = random(n * k, (n * k) as u64 ^ 11);
        w[2] = -0.0;
        let q = quantize(&w, n, k, QFormat::Nvfp4, 16).unwrap();
        assert_eq!((q.codes.len(), q.scales.len()), (n * k / 8, n * k / 16));
        let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(q.global, amax / (448.0 * 6.0));
        for &s in &q.scales {
            assert_eq!(fp8::e4m3_to_f32(fp8::f32_to_e4m3(s)), s, "scales are E4M3 values");
        }
        let back = q.dequantize();
        for (at, (a, b)) in w.iter().zip(&back).enumerate() {
            let step = q.scales[at / 16] * q.global;
            // Half the widest E2M1 step (2, between 4 and 6), and the E4M3 rounding of the
            // scale (2^-4 relative) over the group's largest value.
            let bound = step + 6.0 * step * 2f32.powi(-4) + 1e-30;
            assert!((a - b).abs() <= bound, "[{n}, {k}] at {at}: {a} vs {b}, step {step}");
        }
        let t = q.scales_tensor().unwrap();
        assert_eq!((t.desc.dtype, t.desc.shape.0.clone()), (DType::U32, vec![n, k / 64]));
    }
    assert!(quantize(&[0.5; 48], 1, 48, QFormat::Nvfp4, 16).is_err(), "inputs a multiple of 64");
    assert!(QFormat::Nvfp4.check(128, 32).is_err(), "groups of 16");
    assert_eq!(QFormat::Nvfp4.bytes(64, 128, 16), 64 * 128 / 2 + 64 * 8 + 4);
}

#[test]
fn q4z_round_trips_no_worse_than_min_max_with_zero_exact() {
    for (n, k, group) in [(1, 32, 32), (3, 64, 32), (7, 96, 32), (5, 128, 64), (2, 256, 128), (9, 40, 8)] {
        let mut w = random(n * k, (n * k) as u64 ^ 13);
        w[0] = 0.0;
        w[1] = -0.0;
        let q = quantize(&w, n, k, QFormat::Q4z, group).unwrap();
        assert_eq!((q.codes.len(), q.scales.len(), q.zeros.len()), (n * k / 8, n * k / group, n * k / group));
        let back = q.dequantize();
        assert_eq!((back[0], back[1]), (0.0, 0.0), "zero is a code");
        for (g, (vals, back)) in w.chunks(group).zip(back.chunks(group)).enumerate() {
            let (lo, hi) = vals.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
            // The plain min-max choice, which the search may only improve on.
            let s = half::f16::from_f32((hi - lo) / 15.0).to_f32();
            let z = (-lo / s).round();
            let plain: f32 = vals.iter().map(|v| (v - ((v / s + z).round().clamp(0.0, 15.0) - z) * s).powi(2)).sum();
            let err: f32 = vals.iter().zip(back).map(|(a, b)| (a - b).powi(2)).sum();
            assert!(err <= plain * (1.0 + 1e-5), "group {g}: {err} > min-max {plain}");
            assert!(q.zeros[g] <= 15);
        }
        let rel = {
            let num: f32 = w.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
            (num / w.iter().map(|a| a * a).sum::<f32>()).sqrt()
        };
        assert!(rel < 0.12, "[{n}, {k}] group {group}: relative error {rel}");
        // The scale words carry both halves exactly.
        let t = q.scales_tensor().unwrap();
        assert_eq!((t.desc.dtype, t.desc.shape.0.clone()), (DType::U32, vec![n, k / group]));
        assert_eq!(scales_from_bytes(QFormat::Q4z, &t.bytes), q.scales);
        assert_eq!(zeros_from_bytes(QFormat::Q4z, &t.bytes), q.zeros);
    }
    // All-positive and all-negative groups use every code; an all-zero group stays zero.
    let pos: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 / 31.0).collect();
    let q = quantize(&pos, 1, 32, QFormat::Q4z, 32).unwrap();
    assert_eq!(q.zeros[0], 0);
    assert!(q.dequantize().iter().zip(&pos).all(|(a, b)| (a - b).abs() <= q.scales[0]));
    let neg: Vec<f32> = pos.iter().map(|v| -v).collect();
    assert_eq!(quantize(&neg, 1, 32, QFormat::Q4z, 32).unwrap().zeros[0], 15);
    let zeros = quantize(&[0.0; 32], 1, 32, QFormat::Q4z, 32).unwrap();
    assert!(zeros.dequantize().iter().all(|&v| v == 0.0));
    assert!(quantize(&[1e30; 32], 1, 32, QFormat::Q4z, 32).unwrap_err().to_string().contains("f16"));
    assert!(quantize(&[f32::NAN; 32], 1, 32, QFormat::Q4z, 32).is_err());
    assert!(QFormat::Q4z.check(64, 4).is_err(), "groups of whole words");
    assert_eq!(QFormat::Q4z.bytes(64, 128, 32), 64 * 128 / 2 + 64 * 4 * 4);
    assert_eq!(QFormat::parse("q4z").unwrap(), QFormat::Q4z);
}
