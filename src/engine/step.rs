//! The compiled decode step a session keeps between steps. Building and compiling the step's
//! graph costs milliseconds of host time per token (qwen3-vl-8b: 1,233 nodes, ~4.5 ms on a slow
//! host core, more than the 3.5 ms an H200 needs to read the weights), and consecutive steps
//! differ only in the length of their KV inputs: so the first step is built and compiled, and
//! each later one retypes that compiled graph (`compile::reshape`) and sets the token's inputs
//! (`DecodeGraph::step_data`). Where retyping fails (a backend refusing a fused op at the new
//! size) the step is built and compiled afresh.

use crate::backend::Backend;
use crate::compile::{compile, reshape, Compiled, Options};
use crate::graph::{NodeId, TensorDesc};
use crate::model::qwen3_vl::{DecodeGraph, Qwen3VL};
use crate::{Error, HostTensor, Result};

/// A compiled decode step and what running it needs.
pub(crate) struct Step {
    /// The step as compiled (for the KV length it was built or retyped for).
    pub compiled: Compiled,
    /// Weight inputs, by name.
    pub weights: Vec<String>,
    /// Every data input, with this step's values.
    pub data: Vec<(String, HostTensor)>,
    /// Per layer, the names of the KV inputs ...
    pub kv_inputs: Vec<(String, String)>,
    /// ... and the grown KV outputs, and the logits (ids of the graph as built).
    pub kv: Vec<(NodeId, NodeId)>,
    pub logits: NodeId,
}

impl Step {
    /// The step for `token` after `past` positions: `prev` retyped, or built and compiled.
    pub fn next(
        prev: Option<Step>,
        model: &Qwen3VL,
        backend: &dyn Backend,
        opts: Options,
        (token, past, rope_delta): (u32, usize, i64),
    ) -> Result<Step> {
        if let Some(step) = prev {
            let fresh = DecodeGraph::step_data(model, token, past, rope_delta)?;
            if let Some(compiled) = step.retyped(past, backend)? {
                let mut data = step.data;
                for (name, t) in fresh {
                    let slot = data.iter_mut().find(|(n, _)| *n == name);
                    let slot = slot.ok_or_else(|| Error::Graph(format!("decode step has no input `{name}`")))?;
                    slot.1 = t;
                }
                return Ok(Step { compiled, data, ..step });
            }
        }
        let dg = DecodeGraph::build(model, token, past, rope_delta)?;
        let keep: Vec<_> = dg.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        let compiled = compile(&dg.graph, &keep, backend, opts)?;
        Ok(Step { compiled, weights: dg.weights, data: dg.data, kv_inputs: dg.kv_inputs, kv: dg.kv, logits: dg.logits })
    }

    /// The compiled step with every KV input `[kv_heads, past, head_dim]`; None if it does not
    /// retype.
    fn retyped(&self, past: usize, backend: &dyn Backend) -> Result<Option<Compiled>> {
        let g = &self.compiled.graph;
        let mut inputs = Vec::with_capacity(2 * self.kv_inputs.len());
        for name in self.kv_inputs.iter().flat_map(|(k, v)| [k, v]) {
            let id = g.input(name).ok_or_else(|| Error::Graph(format!("decode step has no input `{name}`")))?;
            let d = &g.node(id).desc;
            let mut dims = d.shape.0.clone();
            if dims.len() != 3 {
                return Ok(None);
            }
            dims[1] = past;
            inputs.push((id, TensorDesc::new(d.dtype, dims)));
        }
        Ok(reshape(&self.compiled, &inputs, backend))
    }
}
