//! Shape rules of the paged KV cache ops: attention reading keys and values through block
//! tables (`Op::PagedAttention`) and the in-place row write that fills the cache
//! (`Op::WriteRows`).

use super::{DType, Shape, TensorDesc};
use crate::error::{Error, Result};

/// Leading columns of each row of `PagedAttention`'s index tensor before the block table:
/// keys cached for the token's sequence, and the row of its sequence's first new token.
pub const PAGED_META: usize = 2;

/// Sizes of a paged attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedDims {
    /// New tokens (query rows) of the batch.
    pub t: usize,
    /// Query heads.
    pub hq: usize,
    /// Key/value heads.
    pub hkv: usize,
    /// Query/key head size.
    pub d: usize,
    /// Value head size.
    pub dv: usize,
    /// Rows (slots) of each pool.
    pub slots: usize,
    /// Blocks each token's table lists.
    pub max_blocks: usize,
}

/// Checks `PagedAttention`'s operands: q `[T, Hq, D]`, k_new `[T, Hkv, D]`, v_new
/// `[T, Hkv, Dv]`, k_pool `[slots, Hkv, D]`, v_pool `[slots, Hkv, Dv]`, index (i32)
/// `[T, PAGED_META + max_blocks]`; slots a multiple of `block_size`.
pub fn paged_dims(block_size: usize, inputs: &[&TensorDesc]) -> Result<PagedDims> {
    let err = |m: String| Err(Error::shape("paged_attention", m));
    let [q, kn, vn, kp, vp, ix] = inputs else {
        return err(format!("takes 6 inputs (q, k_new, v_new, k_pool, v_pool, index), got {}", inputs.len()));
    };
    for (d, what) in [(q, "q"), (kn, "k_new"), (vn, "v_new"), (kp, "k_pool"), (vp, "v_pool")] {
        if !d.dtype.is_float() || d.shape.rank() != 3 {
            return err(format!("{what} must be a rank-3 float tensor, got {:?} {}", d.dtype, d.shape));
        }
    }
    if !ix.dtype.is_int() || ix.shape.rank() != 2 || ix.shape.0[1] < PAGED_META {
        return err(format!("index must be an integer [T, {PAGED_META} + blocks], got {:?} {}", ix.dtype, ix.shape));
    }
    let [t, hq, d] = q.shape.0[..] else { unreachable!("rank checked") };
    let [slots, hkv, _] = kp.shape.0[..] else { unreachable!("rank checked") };
    let dv = vp.shape.0[2];
    let want = [
        (kn, Shape(vec![t, hkv, d]), "k_new"),
        (vn, Shape(vec![t, hkv, dv]), "v_new"),
        (kp, Shape(vec![slots, hkv, d]), "k_pool"),
        (vp, Shape(vec![slots, hkv, dv]), "v_pool"),
    ];
    for (x, s, what) in want {
        if x.shape != s {
            return err(format!("{what} must be {s} for q {} and pools of {slots} slots, got {}", q.shape, x.shape));
        }
    }
    if ix.shape.0[0] != t {
        return err(format!("index has {} rows for {t} tokens", ix.shape.0[0]));
    }
    if hkv == 0 || hq % hkv != 0 {
        return err(format!("{hq} query heads do not group over {hkv} key/value heads"));
    }
    if block_size == 0 || slots % block_size != 0 {
        return err(format!("pools of {slots} slots are not whole blocks of {block_size}"));
    }
    Ok(PagedDims { t, hq, hkv, d, dv, slots, max_blocks: ix.shape.0[1] - PAGED_META })
}

/// `PagedAttention`'s output: `[T, Hq, Dv]` in q's dtype.
pub(super) fn paged_attention(block_size: usize, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let p = paged_dims(block_size, inputs)?;
    Ok(TensorDesc::new(inputs[0].dtype, [p.t, p.hq, p.dv]))
}

/// `WriteRows`: rows `[N, C...]` (float) and indices (integer, N of them) into `[rows, C...]`.
pub(super) fn write_rows(rows: usize, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let err = |m: String| Err(Error::shape("write_rows", m));
    let (x, ix) = (inputs[0], inputs[1]);
    if !x.dtype.is_float() && x.dtype != DType::I32 && x.dtype != DType::U32 || x.shape.rank() < 1 {
        return err(format!("rows must be a tensor of rank >= 1, got {:?} {}", x.dtype, x.shape));
    }
    if !ix.dtype.is_int() || ix.shape.numel() != x.shape.0[0] {
        return err(format!("indices must be {} integers, got {:?} {}", x.shape.0[0], ix.dtype, ix.shape));
    }
    let mut dims = x.shape.0.clone();
    dims[0] = rows;
    Ok(TensorDesc::new(x.dtype, dims))
}
