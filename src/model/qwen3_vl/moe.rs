//! The MoE MLP of a Qwen3-VL MoE decoder layer: the `GraphBuilder::moe` composite over this
//! layer's router and expert stacks (the compiler fuses it into one `Op::Moe`), or
//! `GraphBuilder::qmoe` over quantized stacks (fused into one `Op::QMoe`).

use super::graph::Ctx;
use super::ExpertLayout;
use crate::graph::moe_tables;
use crate::{Error, Result};

pub(crate) fn block(c: &mut Ctx, x: crate::graph::NodeId, p: &str, t: usize) -> Result<crate::graph::NodeId> {
    let m = c.m.config.moe().cloned().ok_or_else(|| Error::Model("MoE block in a dense model".into()))?;
    let (e, k) = (m.num_experts, m.top_k);
    let router = c.w(&format!("{p}mlp.gate.weight"))?;
    let (gu_name, dn_name) = (format!("{p}mlp.experts.gate_up_proj"), format!("{p}mlp.experts.down_proj"));
    let ones = c.shared("moe.ones", || Ok(moe_tables(t, e, k)?.0))?;
    let offsets = c.shared("moe.offsets", || Ok(moe_tables(t, e, k)?.1))?;
    if let Some(q) = c.m.quant_of(&gu_name).filter(|q| c.m.quant_of(&dn_name) == Some(*q)) {
        let (gu, dn) = (c.wq(&gu_name, q)?, c.wq(&dn_name, q)?);
        return c.g.qmoe(x, router, gu, dn, k, ones, offsets);
    }
    let gate_up = c.w(&gu_name)?;
    let down = c.w(&dn_name)?;
    let trans = c.m.expert_layout == ExpertLayout::OutIn;
    c.g.moe(x, router, gate_up, down, k, trans, ones, offsets)
}
