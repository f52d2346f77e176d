//! The MoE MLP as primitives (routing stays on the device): router softmax in f32, top-k,
//! renormalise; every expert's SwiGLU over the tokens as one batched matmul each for gate/up
//! and down (expert weights read in their stored layout); the chosen experts' outputs picked
//! per token and combined with the routing weights in one batched matmul. The compiler's MoE
//! fusion replaces this with grouped GEMMs over the tokens actually routed.

use super::graph::Ctx;
use super::ExpertLayout;
use crate::graph::{DType, NodeId, Op};
use crate::{Error, HostTensor, Result};

pub(crate) fn block(c: &mut Ctx, x: NodeId, p: &str, t: usize) -> Result<NodeId> {
    let m = c.m.config.moe().cloned().ok_or_else(|| Error::Model("MoE block in a dense model".into()))?;
    let (e, k, i, h) = (m.num_experts, m.top_k, m.intermediate_size, c.m.config.text.hidden_size);
    let router = c.w(&format!("{p}mlp.gate.weight"))?;
    let logits = c.g.linear(x, router)?;
    let probs = c.g.softmax(logits)?;
    let idx = c.g.push(Op::TopK { k }, &[probs])?;
    let top = c.g.push(Op::TakeAlong, &[probs, idx])?;
    let ones = c.shared("moe.ones", || HostTensor::from_f32(DType::F32, [k, 1], &vec![1.0; k]))?;
    let sum = c.g.matmul(top, ones, false)?;
    let weights = c.g.push(Op::Binary(crate::graph::BinaryOp::Div), &[top, sum])?;

    let trans = c.m.expert_layout == ExpertLayout::OutIn;
    let gate_up = c.w(&format!("{p}mlp.experts.gate_up_proj"))?;
    let gu = c.g.matmul(x, gate_up, trans)?; // [E, T, 2I]
    let gate = c.g.slice(gu, 2, 0, i)?;
    let up = c.g.slice(gu, 2, i, i)?;
    let act = c.g.swiglu(gate, up)?;
    let down = c.w(&format!("{p}mlp.experts.down_proj"))?;
    let y = c.g.matmul(act, down, trans)?; // [E, T, H]
    let y = c.g.permute(y, &[1, 0, 2])?;
    let y = c.g.reshape(y, [t * e, h])?;

    // Row of (token, expert) in y is token * E + expert: computed on the device.
    let offsets = c.shared("moe.offsets", || {
        let v: Vec<f32> = (0..t * k).map(|j| ((j / k) * e) as f32).collect();
        HostTensor::from_f32(DType::F32, [t, k], &v)
    })?;
    let fidx = c.g.push(Op::Cast(DType::F32), &[idx])?;
    let rows = c.g.add(fidx, offsets)?;
    let rows = c.g.push(Op::Cast(DType::I32), &[rows])?;
    let rows = c.g.reshape(rows, [t * k])?;
    let picked = c.g.gather(y, rows)?;
    let picked = c.g.reshape(picked, [t, k, h])?;
    let w = c.g.reshape(weights, [t, 1, k])?;
    let out = c.g.matmul(w, picked, false)?; // [T, 1, H]
    c.g.reshape(out, [t, h])
}
