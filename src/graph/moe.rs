//! The mixture-of-experts composite: the MoE MLP built from primitives, routing on the device.
//! It runs on any backend as is (every expert over every token: cost T x E); the compiler's
//! MoE fusion (`compile/fuse_moe.rs`) recognises exactly this pattern and replaces it with
//! [`Op::Moe`], whose cost follows the tokens actually routed.

use super::{BinaryOp, DType, GraphBuilder, NodeId, Op};
use crate::error::{Error, Result};
use crate::quant::QFormat;
use crate::tensor::HostTensor;

/// The two constant tables [`GraphBuilder::moe`] reads, for `t` tokens, `e` experts and
/// `top_k`: `ones` `[top_k, 1]` (sums the chosen weights by a matmul) and `offsets` `[t, top_k]`
/// (row `t * e` of token t's block in the all-experts output), both f32.
pub fn moe_tables(t: usize, e: usize, top_k: usize) -> Result<(HostTensor, HostTensor)> {
    let ones = HostTensor::from_f32(DType::F32, [top_k, 1], &vec![1.0; top_k])?;
    let v: Vec<f32> = (0..t * top_k).map(|j| ((j / top_k) * e) as f32).collect();
    Ok((ones, HostTensor::from_f32(DType::F32, [t, top_k], &v)?))
}

/// A quantized weight `[out, in]`, or a stack of them `[E, out, in]` (MoE experts): codes and
/// scales (see [`Op::QMatMul`]), and NVFP4's global scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QWeight {
    /// Codes `U32 [(E,) out, in * bits / 32]`.
    pub codes: NodeId,
    /// Scales `[(E,) out, in / group]` (the format's scale dtype).
    pub scales: NodeId,
    /// NVFP4's global scales `F32 [E]` (`[1]` for one weight); None for the other formats.
    pub global: Option<NodeId>,
    /// The codes' format.
    pub format: QFormat,
    /// Inputs per scale.
    pub group: usize,
}

impl QWeight {
    /// The op's inputs after x: codes, scales (and the global scales).
    pub fn inputs(&self) -> Vec<NodeId> {
        let mut v = vec![self.codes, self.scales];
        v.extend(self.global);
        v
    }
}

#[derive(Clone, Copy)]
enum Experts {
    Dense { gate_up: NodeId, down: NodeId, trans_b: bool },
    Quantized { gate_up: QWeight, down: QWeight },
}

impl GraphBuilder {
    /// Mixture-of-experts MLP from primitives, with the semantics of [`Op::Moe`]: x `[T, H]`,
    /// router `[E, H]`, expert stacks gate_up / down (layout per `trans_b`, see `Op::Moe`), and
    /// the tables of [`moe_tables`]. Router softmax, top-k and renormalisation in f32 (weights
    /// then rounded to x's dtype, as transformers does); every expert's SwiGLU over all tokens
    /// as batched matmuls; the chosen rows picked per token and combined by one batched matmul.
    #[allow(clippy::too_many_arguments)]
    pub fn moe(
        &mut self,
        x: NodeId,
        router: NodeId,
        gate_up: NodeId,
        down: NodeId,
        top_k: usize,
        trans_b: bool,
        ones: NodeId,
        offsets: NodeId,
    ) -> Result<NodeId> {
        let descs = [self.desc(x), self.desc(router), self.desc(gate_up), self.desc(down)];
        let d = super::moe_dims(top_k, trans_b, &descs)?;
        self.moe_with(x, router, Experts::Dense { gate_up, down, trans_b }, d, ones, offsets)
    }

    /// [`Self::moe`] over weight-only quantized experts (stored `[E, out, in]`, see
    /// [`Op::QMoe`]): each expert stack is a batched `QMatMul`; the compiler fuses the pattern
    /// into one `Op::QMoe`.
    #[allow(clippy::too_many_arguments)]
    pub fn qmoe(
        &mut self,
        x: NodeId,
        router: NodeId,
        gate_up: QWeight,
        down: QWeight,
        top_k: usize,
        ones: NodeId,
        offsets: NodeId,
    ) -> Result<NodeId> {
        let (format, group) = (gate_up.format, gate_up.group);
        if (down.format, down.group) != (format, group) {
            return Err(Error::shape("qmoe", "gate_up and down must share one format and group size"));
        }
        let mut ids = vec![x, router, gate_up.codes, gate_up.scales, down.codes, down.scales];
        ids.extend(gate_up.global.iter().chain(&down.global));
        let descs: Vec<&super::TensorDesc> = ids.iter().map(|n| self.desc(*n)).collect();
        let d = super::qmoe_dims(top_k, format, group, &descs)?;
        self.moe_with(x, router, Experts::Quantized { gate_up, down }, d, ones, offsets)
    }

    fn moe_with(
        &mut self,
        x: NodeId,
        router: NodeId,
        experts: Experts,
        d: super::MoeDims,
        ones: NodeId,
        offsets: NodeId,
    ) -> Result<NodeId> {
        let top_k = d.k;
        let dt = self.desc(x).dtype;
        let (ok_ones, ok_off) = ([top_k, 1], [d.t, top_k]);
        if self.desc(ones).shape.0 != ok_ones || self.desc(offsets).shape.0 != ok_off {
            return Err(Error::shape("moe", "ones / offsets tables do not match moe_tables(T, E, top_k)"));
        }
        let logits = self.linear(x, router)?;
        let logits = self.cast_to(logits, DType::F32)?;
        let probs = self.softmax(logits)?;
        let idx = self.push(Op::TopK { k: top_k }, &[probs])?;
        let top = self.push(Op::TakeAlong, &[probs, idx])?;
        let sum = self.matmul(top, ones, false)?;
        let weights = self.push(Op::Binary(BinaryOp::Div), &[top, sum])?;
        let weights = self.cast_to(weights, dt)?;

        let expert = |g: &mut Self, a: NodeId, up: bool| match experts {
            Experts::Dense { gate_up, down, trans_b } => g.matmul(a, if up { gate_up } else { down }, trans_b),
            Experts::Quantized { gate_up, down } => g.qmatmul(a, &(if up { gate_up } else { down })),
        };
        let gu = expert(self, x, true)?; // [E, T, 2I]
        let gate = self.slice(gu, 2, 0, d.i)?;
        let up = self.slice(gu, 2, d.i, d.i)?;
        let act = self.swiglu(gate, up)?;
        let y = expert(self, act, false)?; // [E, T, H]
        let y = self.permute(y, &[1, 0, 2])?;
        let y = self.reshape(y, [d.t * d.e, d.h])?;

        // Row of (token, expert) in y is token * E + expert: computed on the device.
        let fidx = self.push(Op::Cast(DType::F32), &[idx])?;
        let rows = self.add(fidx, offsets)?;
        let rows = self.push(Op::Cast(DType::I32), &[rows])?;
        let rows = self.reshape(rows, [d.t * top_k])?;
        let picked = self.gather(y, rows)?;
        let picked = self.reshape(picked, [d.t, top_k, d.h])?;
        let w = self.reshape(weights, [d.t, 1, top_k])?;
        let out = self.matmul(w, picked, false)?; // [T, 1, H]
        self.reshape(out, [d.t, d.h])
    }

    /// `x` as `dtype` (no node when it already is).
    pub fn cast_to(&mut self, x: NodeId, dtype: DType) -> Result<NodeId> {
        if self.desc(x).dtype == dtype {
            return Ok(x);
        }
        self.push(Op::Cast(dtype), &[x])
    }
}
