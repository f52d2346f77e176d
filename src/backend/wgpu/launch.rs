//! One kernel launch on wgpu: buffer checks, lowering to dispatches, scratch tensors lent
//! from the pool, and the dispatches queued with their bindings and pipelines.

use super::dispatch::{self, lower_with, Dispatch};
use super::record::Cmd;
use super::{Signature, State, WgpuBackend};
use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::TensorDesc;
use crate::{Error, Result};

/// Where one launch writes: its output and, for two-output kernels, the side buffer and dtype.
pub(super) struct Outputs {
    main: BufferId,
    side: Option<(BufferId, crate::graph::DType)>,
}

impl WgpuBackend {
    /// Checks, lowers and queues one launch (with a side output for two-output kernels).
    pub(super) fn launch_any(
        &self,
        k: &Kernel,
        inputs: &[BufferId],
        output: BufferId,
        side: Option<BufferId>,
    ) -> Result<()> {
        let ins: Vec<&TensorDesc> = k.inputs.iter().collect();
        let side_desc = match side {
            Some(_) => Some(
                k.op.side_output(&ins)
                    .ok_or_else(|| Error::Backend(format!("wgpu: {} has no side output", k.op.name())))?,
            ),
            None => None,
        };
        {
            let s = self.lock();
            let size = |id: &BufferId| {
                s.bufs
                    .get(&id.0)
                    .map(|b| b.bytes)
                    .ok_or_else(|| Error::Backend(format!("wgpu: unknown buffer {}", id.0)))
            };
            let sizes: Vec<u64> = inputs.iter().map(size).collect::<Result<_>>()?;
            k.check_buffers(&sizes, size(&output)?)?;
            if let (Some(b), Some(d)) = (side, &side_desc) {
                if size(&b)? < d.bytes() as u64 {
                    return Err(Error::Backend(format!("wgpu: {}: side output buffer too small", k.op.name())));
                }
            }
        }
        let dispatches = lower_with(k, side.is_some())?;
        // Scratch tensors come from the pool and go back to it once recorded: later launches
        // that reuse them run after these dispatches on the same queue.
        let scratch_descs = dispatch::scratch(k)?;
        let mut scratch = Vec::with_capacity(scratch_descs.len());
        for d in &scratch_descs {
            scratch.push(self.alloc(d)?);
        }
        let outs = Outputs { main: output, side: side.zip(side_desc.map(|d| d.dtype)) };
        let recorded = self.record_launch(k, &dispatches, inputs, &scratch, &scratch_descs, outs);
        for b in scratch {
            self.free(b);
        }
        recorded
    }

    /// Queues the dispatches of one launch; buffer index i < inputs.len() is a kernel input,
    /// past that a scratch tensor.
    fn record_launch(
        &self,
        k: &Kernel,
        dispatches: &[Dispatch],
        inputs: &[BufferId],
        scratch: &[BufferId],
        scratch_descs: &[TensorDesc],
        outs: Outputs,
    ) -> Result<()> {
        let mut s = self.lock();
        let get = |s: &State, id: BufferId| -> Result<Vec<wgpu::Buffer>> {
            Ok(s.bufs
                .get(&id.0)
                .ok_or_else(|| Error::Backend(format!("wgpu: unknown buffer {}", id.0)))?
                .chunks
                .clone())
        };
        let ids: Vec<BufferId> = inputs.iter().chain(scratch).copied().collect();
        let dtypes: Vec<crate::graph::DType> = k.inputs.iter().chain(scratch_descs).map(|d| d.dtype).collect();
        for d in dispatches {
            let mut buffers = Vec::new();
            let mut sig_inputs = Vec::new();
            for &i in &d.inputs {
                let chunks = get(&s, ids[i])?;
                sig_inputs.push((dtypes[i], chunks.len() as u32));
                buffers.extend(chunks);
            }
            let (out, out_dtype) = match d.output {
                None => (get(&s, outs.main)?, k.output.dtype),
                Some(i) => (get(&s, ids[i])?, dtypes[i]),
            };
            let out_chunks = out.len() as u32;
            buffers.extend(out);
            let mut side_sig = None;
            if d.side {
                let (b, dt) = outs.side.ok_or_else(|| Error::Backend("wgpu: side output missing".into()))?;
                let chunks = get(&s, b)?;
                side_sig = Some((dt, chunks.len() as u32));
                buffers.extend(chunks);
            }
            let sig = Signature {
                inputs: sig_inputs,
                output: (out_dtype, out_chunks),
                side: side_sig,
                chunk_words: self.pipelines.chunk_words(),
            };
            let max = self.ctx.limits.max_storage_buffers_per_shader_stage;
            if sig.storage_bindings() > max {
                return Err(Error::Backend(format!(
                    "wgpu: {} needs {} storage bindings (tensors split into chunks), the device allows {max}",
                    k.op.name(),
                    sig.storage_bindings()
                )));
            }
            let pipe = self.pipelines.get(&self.ctx.device, d.family, d.entry, &sig)?;
            s.pending.push(Cmd::Dispatch { pipe, buffers, params: d.params.clone(), groups: d.groups });
        }
        Ok(())
    }
}
