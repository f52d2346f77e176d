//! MoE experts a pre-quantized checkpoint stores one matrix per expert
//! (`P.layers.L.mlp.experts.E.{gate,up,down}_proj.weight`, as Qwen's MoE `-FP8` releases and
//! llm-compressor / GPTQ / AWQ exports name them): naming them, and the two stacks `Op::QMoe`
//! reads that they are gathered into (gate_up: each expert's gate rows, then its up rows).

use super::Qwen3VL;
use crate::{Error, Result};
use std::collections::HashSet;

impl Qwen3VL {
    /// The per-expert weights of an expert stack (`P.mlp.experts.gate_up_proj`: each expert's
    /// gate and up; `down_proj`: its down), by expert; None for another name.
    pub(crate) fn expert_parts(&self, stack: &str) -> Option<Vec<Vec<String>>> {
        let e = self.config.moe()?.num_experts;
        let (prefix, kinds): (&str, &[&str]) = match stack.strip_suffix("gate_up_proj") {
            Some(p) => (p, &["gate_proj", "up_proj"]),
            None => (stack.strip_suffix("down_proj")?, &["down_proj"]),
        };
        if !prefix.ends_with(".mlp.experts.") {
            return None;
        }
        Some((0..e).map(|x| kinds.iter().map(|k| format!("{prefix}{x}.{k}.weight")).collect()).collect())
    }

    /// (experts, rows, inputs) of an expert stack whose matrices the checkpoint stores one per
    /// expert, `out_in` giving a stored matrix's `[out, in]` (None: not stored so).
    pub(crate) fn stored_stack_dims(
        &self,
        stack: &str,
        out_in: impl Fn(&str) -> Option<(usize, usize)>,
    ) -> Option<(usize, usize, usize)> {
        let parts = self.expert_parts(stack)?;
        let dims: Option<Vec<(usize, usize)>> = parts[0].iter().map(|p| out_in(p)).collect();
        let dims = dims?;
        Some((parts.len(), dims.iter().map(|d| d.0).sum(), dims[0].1))
    }

    /// The kind (`gate_proj`, `up_proj`, `down_proj`) of one expert's matrix
    /// `P.layers.L.mlp.experts.E.KIND.weight` of an MoE layer, else None.
    pub(crate) fn expert_of<'n>(&self, name: &'n str) -> Option<&'n str> {
        let m = self.config.moe()?;
        let rest = name.strip_prefix(&self.tname("layers."))?;
        let (layer, rest) = rest.split_once(".mlp.experts.")?;
        let (e, kind) = rest.strip_suffix(".weight")?.split_once('.')?;
        let layers = self.config.text.num_layers;
        let ok = layer.parse::<usize>().is_ok_and(|l| l < layers && m.is_moe_layer(l))
            && e.parse::<usize>().is_ok_and(|e| e < m.num_experts);
        ok.then_some(kind)
    }

    /// The `[out, in]` shape one expert's matrix of kind `kind` has.
    pub(crate) fn expert_shape(&self, kind: &str) -> Option<[usize; 2]> {
        let (h, i) = (self.config.text.hidden_size, self.config.moe()?.intermediate_size);
        match kind {
            "gate_proj" | "up_proj" => Some([i, h]),
            "down_proj" => Some([h, i]),
            _ => None,
        }
    }

    /// A layer with any expert among `read` (names of tensors read) has every expert's three
    /// matrices: `stored` gives the tensor that holds matrix `P...experts.E.KIND.weight` in the
    /// checkpoint's `format` (its codes) and whether it is there; else this names the first
    /// missing one.
    pub(crate) fn every_expert(
        &self,
        read: &HashSet<String>,
        format: &str,
        stored: impl Fn(&str) -> (String, bool),
    ) -> Result<()> {
        let experts = self.config.moe().map_or(0, |m| m.num_experts);
        for l in 0..self.config.text.num_layers {
            let prefix = self.tname(&format!("layers.{l}.mlp.experts."));
            if !read.iter().any(|n| n.starts_with(&prefix)) {
                continue;
            }
            for e in 0..experts {
                for kind in ["gate_proj", "up_proj", "down_proj"] {
                    let (tensor, there) = stored(&format!("{prefix}{e}.{kind}.weight"));
                    if !there {
                        return Err(Error::Model(format!("missing {format} expert tensor `{tensor}`")));
                    }
                }
            }
        }
        Ok(())
    }
}
