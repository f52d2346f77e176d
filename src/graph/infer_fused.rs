//! Shape rules of the ops the compiler makes (fused MoE, elementwise programs), kept apart
//! from the primitive rules of `infer.rs`.

use super::{DType, TensorDesc};
use crate::error::{Error, Result};

/// Sizes of a fused MoE: tokens, hidden, experts, intermediate, experts per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeDims {
    /// Tokens.
    pub t: usize,
    /// Hidden size.
    pub h: usize,
    /// Experts.
    pub e: usize,
    /// Intermediate size of one expert.
    pub i: usize,
    /// Experts per token.
    pub k: usize,
}

/// Checks the operands of [`Op::Moe`] and returns its sizes.
pub fn moe_dims(top_k: usize, trans_b: bool, inputs: &[&TensorDesc]) -> Result<MoeDims> {
    let (x, r, gu, dn) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape, &inputs[3].shape);
    let bad = || {
        Err(Error::shape(
            "moe",
            format!(
                "expects x [T, H], router [E, H], gate_up {}, down {}, 1 <= top_k <= E; got x {x}, router {r}, \
                 gate_up {gu}, down {dn}, top_k {top_k}",
                if trans_b { "[E, 2I, H]" } else { "[E, H, 2I]" },
                if trans_b { "[E, H, I]" } else { "[E, I, H]" }
            ),
        ))
    };
    if x.rank() != 2 || r.rank() != 2 || gu.rank() != 3 || dn.rank() != 3 || !inputs.iter().all(|d| d.dtype.is_float())
    {
        return bad();
    }
    let (t, h, e) = (x.0[0], x.0[1], r.0[0]);
    let (gu_in, gu_out) = if trans_b { (gu.0[2], gu.0[1]) } else { (gu.0[1], gu.0[2]) };
    let (dn_in, dn_out) = if trans_b { (dn.0[2], dn.0[1]) } else { (dn.0[1], dn.0[2]) };
    let i = gu_out / 2;
    let fits =
        r.0[1] == h && gu.0[0] == e && dn.0[0] == e && gu_in == h && gu_out == 2 * i && dn_in == i && dn_out == h;
    if !fits || top_k == 0 || top_k > e || i == 0 {
        return bad();
    }
    Ok(MoeDims { t, h, e, i, k: top_k })
}

pub(super) fn moe(top_k: usize, trans_b: bool, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let d = moe_dims(top_k, trans_b, inputs)?;
    Ok(TensorDesc::new(inputs[0].dtype, [d.t, d.h]))
}

pub(super) fn elementwise(code: &[super::Inst], dtype: DType, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    use super::broadcast;
    use super::op::{Inst, MAX_PROGRAM, MAX_STACK};
    let err = |m: String| Err(Error::shape("elementwise", m));
    if !dtype.is_float() || inputs.iter().any(|d| !d.dtype.is_float()) {
        return err("inputs and output must be float tensors".into());
    }
    let mut shape = inputs[0].shape.clone();
    for d in &inputs[1..] {
        shape = match broadcast(&shape, &d.shape) {
            Some(s) => s,
            None => return err(format!("cannot broadcast {shape} with {}", d.shape)),
        };
    }
    if code.len() > MAX_PROGRAM {
        return err(format!("program of {} instructions exceeds {MAX_PROGRAM}", code.len()));
    }
    let mut depth = 0usize;
    for (pc, inst) in code.iter().enumerate() {
        let (pops, pushes) = match inst {
            Inst::Load(i) if (*i as usize) < inputs.len() => (0, 1),
            Inst::Load(i) => return err(format!("instruction {pc} loads input {i} of {}", inputs.len())),
            Inst::Binary(_) | Inst::SwiGlu => (2, 1),
            Inst::Round(d) if !d.is_float() => return err(format!("instruction {pc} rounds to {d:?}")),
            _ => (1, 1),
        };
        if depth < pops {
            return err(format!("instruction {pc} ({inst:?}) pops an empty stack"));
        }
        depth = depth - pops + pushes;
        if depth > MAX_STACK {
            return err(format!("program needs a stack deeper than {MAX_STACK}"));
        }
    }
    if depth != 1 {
        return err(format!("program leaves {depth} values, not 1"));
    }
    Ok(TensorDesc::new(dtype, shape))
}
