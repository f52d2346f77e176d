//! The counter-based random numbers of `Op::Random`: element `i` of a tensor with key `seed`
//! is a pure function of (seed, i), computed with 32-bit integer hashes (PCG's output
//! permutation), so the CPU oracle, WGSL and CUDA produce the same values in any order, on
//! any number of threads. Used for synthetic weights generated on the device.

/// PCG's RXS-M-XS output permutation of one 32-bit state (a bijection).
pub fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (w >> 22) ^ w
}

/// 24 random bits of element `i` under `seed`.
pub fn bits(seed: u64, i: u64) -> u32 {
    let (k0, k1) = (seed as u32, (seed >> 32) as u32);
    let (lo, hi) = (i as u32, (i >> 32) as u32);
    pcg(pcg(lo ^ k0) ^ pcg(hi ^ k1)) >> 8
}

/// Element `i`: uniform on `[offset - scale, offset + scale)` (24-bit resolution).
pub fn uniform(seed: u64, i: u64, offset: f32, scale: f32) -> f32 {
    let u = bits(seed, i) as f32 * (1.0 / 16_777_216.0);
    offset + scale * (2.0 * u - 1.0)
}

/// A 64-bit key from a seed and a name (FNV-1a), so each tensor of a model gets its own stream.
pub fn key(seed: u64, name: &str) -> u64 {
    name.bytes().fold(0xcbf29ce484222325u64 ^ seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_spread_over_the_range_and_depend_on_seed_and_index() {
        let v: Vec<f32> = (0..10_000).map(|i| uniform(7, i, 1.0, 0.5)).collect();
        assert!(v.iter().all(|&x| (0.5..1.5).contains(&x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert_ne!(uniform(7, 3, 0.0, 1.0), uniform(8, 3, 0.0, 1.0));
        assert_ne!(uniform(7, 3, 0.0, 1.0), uniform(7, 3 + (1 << 32), 0.0, 1.0));
    }
}
