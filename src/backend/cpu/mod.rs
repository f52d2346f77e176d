//! The CPU backend: the oracle every other backend is tested against. Each op is computed in
//! the plainest way that is obviously right (f32 in, f32/f64 accumulation), then stored in the
//! output's dtype exactly as the host conversion does it.

mod layout;
mod math;
mod moe;
mod quant;

use super::{Backend, BufferId, DeviceInfo, Kernel};
use crate::graph::{Op, TensorDesc};
use crate::tensor::{decode, encode, round_to};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// The oracle backend; buffers live in host memory.
pub struct CpuBackend {
    info: DeviceInfo,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    bufs: HashMap<u64, Vec<u8>>,
}

impl CpuBackend {
    /// A new CPU backend.
    pub fn new() -> Self {
        CpuBackend {
            info: DeviceInfo {
                backend: "cpu",
                name: "host CPU (reference oracle)".into(),
                api: "native".into(),
                device_type: "Cpu".into(),
                f16: false,
                subgroups: false,
                fp8_mma: false,
                max_buffer_bytes: u64::MAX,
                max_binding_bytes: u64::MAX,
            },
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn get(&self, id: BufferId) -> Result<&Vec<u8>> {
        self.bufs.get(&id.0).ok_or_else(|| Error::Backend(format!("cpu: unknown buffer {}", id.0)))
    }
    fn get_mut(&mut self, id: BufferId) -> Result<&mut Vec<u8>> {
        self.bufs.get_mut(&id.0).ok_or_else(|| Error::Backend(format!("cpu: unknown buffer {}", id.0)))
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn alloc(&self, desc: &TensorDesc) -> Result<BufferId> {
        let mut s = self.lock();
        s.next += 1;
        let id = s.next;
        s.bufs.insert(id, vec![0; desc.bytes()]);
        Ok(BufferId(id))
    }
    fn free(&self, buf: BufferId) {
        self.lock().bufs.remove(&buf.0);
    }
    fn upload(&self, buf: BufferId, bytes: &[u8]) -> Result<()> {
        let mut s = self.lock();
        let b = s.get_mut(buf)?;
        if b.len() != bytes.len() {
            return Err(Error::Data(format!("cpu: upload of {} bytes into a {}-byte buffer", bytes.len(), b.len())));
        }
        b.copy_from_slice(bytes);
        Ok(())
    }
    fn poison(&self, buf: BufferId) -> Result<()> {
        self.lock().get_mut(buf)?.fill(0xFF);
        Ok(())
    }
    fn launch(&self, k: &Kernel, inputs: &[BufferId], output: BufferId) -> Result<()> {
        let mut s = self.lock();
        let sizes: Vec<u64> = inputs.iter().map(|i| s.get(*i).map(|b| b.len() as u64)).collect::<Result<_>>()?;
        k.check_buffers(&sizes, s.get(output)?.len() as u64)?;
        if let Op::WriteRows { rows } = k.op {
            return write_rows(k, &mut s, inputs, output, rows);
        }
        if let Op::QMatMul { format, group } = k.op {
            return quant::qmatmul(k, &mut s, inputs, output, format, group);
        }
        if let Op::QMoe { top_k, format, group } = k.op {
            return quant::qmoe(k, &mut s, inputs, output, top_k, format, group);
        }
        let bytes = if let Some(b) = move_bytes(k, &s, inputs)? {
            b
        } else {
            let mut xs = Vec::with_capacity(inputs.len());
            for (id, d) in inputs.iter().zip(&k.inputs) {
                xs.push(decode(d.dtype, &s.get(*id)?[..d.bytes()]));
            }
            encode(k.output.dtype, &run(k, &xs)?)
        };
        let dst = s.get_mut(output)?;
        dst[..bytes.len()].copy_from_slice(&bytes);
        Ok(())
    }
    fn launch_with_side(&self, k: &Kernel, inputs: &[BufferId], output: BufferId, side: BufferId) -> Result<()> {
        let ins: Vec<&TensorDesc> = k.inputs.iter().collect();
        let Some(sd) = k.op.side_output(&ins) else {
            return Err(Error::Backend(format!("cpu: {} has no side output", k.op.name())));
        };
        self.launch(k, inputs, output)?;
        let mut s = self.lock();
        if (s.get(side)?.len() as u64) < sd.bytes() as u64 {
            return Err(Error::Backend(format!("cpu: side output buffer too small for {:?} {}", sd.dtype, sd.shape)));
        }
        let a = decode(k.inputs[0].dtype, &s.get(inputs[0])?[..k.inputs[0].bytes()]);
        let b = decode(k.inputs[1].dtype, &s.get(inputs[1])?[..k.inputs[1].bytes()]);
        let bytes = encode(sd.dtype, &sum(sd.dtype, &a, &b));
        s.get_mut(side)?[..bytes.len()].copy_from_slice(&bytes);
        Ok(())
    }
    fn download(&self, buf: BufferId, out: &mut [u8]) -> Result<()> {
        let s = self.lock();
        let b = s.get(buf)?;
        if b.len() < out.len() {
            return Err(Error::Data(format!("cpu: download of {} bytes from a {}-byte buffer", out.len(), b.len())));
        }
        out.copy_from_slice(&b[..out.len()]);
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// `Op::WriteRows` in place: only the indexed rows of `output` change.
fn write_rows(k: &Kernel, s: &mut State, inputs: &[BufferId], output: BufferId, rows: usize) -> Result<()> {
    let row_bytes = k.inputs[0].bytes() / k.inputs[0].shape.0[0].max(1);
    let src = s.get(inputs[0])?[..k.inputs[0].bytes()].to_vec();
    let idx: Vec<u32> = bytemuck::pod_collect_to_vec(&s.get(inputs[1])?[..k.inputs[1].bytes()]);
    let dst = s.get_mut(output)?;
    for (i, &r) in idx.iter().enumerate() {
        if r as usize >= rows {
            return Err(Error::Data(format!("write_rows: index {} is outside {rows} rows", r as i32)));
        }
        let at = r as usize * row_bytes;
        dst[at..at + row_bytes].copy_from_slice(&src[i * row_bytes..(i + 1) * row_bytes]);
    }
    Ok(())
}

/// a + b as stored in `dtype`.
fn sum(dtype: crate::graph::DType, a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| round_to(dtype, x + y)).collect()
}

/// Data movement ops copy elements bit for bit, whatever their dtype (integers above 2^24
/// included); returns None for ops that compute.
fn move_bytes(k: &Kernel, s: &State, inputs: &[BufferId]) -> Result<Option<Vec<u8>>> {
    let int_cast = matches!(k.op, Op::Cast(to) if to.is_int() && k.inputs[0].dtype.is_int());
    let moves = matches!(k.op, Op::Reshape(_) | Op::Permute(_) | Op::Slice { .. } | Op::Concat { .. });
    if !moves && !int_cast {
        return Ok(None);
    }
    let mut xs = Vec::with_capacity(inputs.len());
    for (id, d) in inputs.iter().zip(&k.inputs) {
        xs.push(&s.get(*id)?[..d.bytes()]);
    }
    Ok(Some(match k.output.dtype.size() {
        2 => bytemuck::cast_slice(&layout::apply::<u16>(k, &xs)).to_vec(),
        _ => bytemuck::cast_slice(&layout::apply::<u32>(k, &xs)).to_vec(),
    }))
}

/// Computes one kernel on f32 values (integers carried exactly as f32 up to 2^24).
fn run(k: &Kernel, x: &[Vec<f32>]) -> Result<Vec<f32>> {
    let d = &k.inputs;
    let last = |i: usize| d[i].shape.last();
    Ok(match &k.op {
        Op::Input { .. } | Op::Reshape(_) => x[0].clone(),
        Op::PagedAttention { scale, block_size } => {
            let ins: Vec<&crate::graph::TensorDesc> = d.iter().collect();
            math::paged_attention(x, crate::graph::paged_dims(*block_size, &ins)?, *scale, *block_size)?
        }
        Op::WriteRows { .. } => unreachable!("written in place by write_rows"),
        Op::QMatMul { .. } | Op::QMoe { .. } => unreachable!("computed from the raw codes by quant.rs"),
        Op::Random { seed, offset, scale, .. } => (0..k.output.shape.numel() as u64)
            .map(|i| crate::graph::random::uniform(*seed, i, *offset, *scale))
            .collect(),
        Op::Gather => math::gather(&x[0], last(0), &x[1])?,
        Op::MatMul { trans_b } => math::matmul(&x[0], &d[0].shape, &x[1], &d[1].shape, *trans_b)?,
        Op::Binary(op) => math::binary(*op, &x[0], &d[0].shape, &x[1], &d[1].shape, &k.output.shape),
        Op::Unary(op) => x[0].iter().map(|&v| math::unary(*op, v)).collect(),
        Op::Scale(f) => x[0].iter().map(|&v| v * f).collect(),
        Op::RmsNorm { eps } => math::rms_norm(&x[0], &x[1], *eps),
        Op::RopeHeads { style, norm } => {
            let s = &d[0].shape;
            let normed = match norm {
                Some(eps) => math::rms_norm(&x[0], &x[3], *eps).into_iter().map(|v| round_to(d[0].dtype, v)).collect(),
                None => x[0].clone(),
            };
            let r = math::rope(&normed, s, &x[1], &x[2], *style);
            let (t, h, dd) = (s.0[0], s.0[1], s.0[2]);
            let mut out = vec![0f32; r.len()];
            for ti in 0..t {
                for hi in 0..h {
                    let (src, dst) = ((ti * h + hi) * dd, (hi * t + ti) * dd);
                    // rope's output is stored (rounded) before the heads-first copy.
                    for c in 0..dd {
                        out[dst + c] = round_to(d[0].dtype, r[src + c]);
                    }
                }
            }
            out
        }
        Op::AddRmsNorm { eps } => math::rms_norm(&sum(d[0].dtype, &x[0], &x[1]), &x[2], *eps),
        Op::LayerNorm { eps } => math::layer_norm(&x[0], &x[1], &x[2], *eps),
        Op::SwiGlu => x[0].iter().zip(&x[1]).map(|(&g, &u)| math::silu(g) * u).collect(),
        Op::Softmax => math::softmax(&x[0], last(0)),
        Op::Rope { style } => math::rope(&x[0], &d[0].shape, &x[1], &x[2], *style),
        Op::Permute(_) | Op::Slice { .. } | Op::Concat { .. } => unreachable!("moved bit for bit by move_bytes"),
        Op::ScatterRows { accumulate } => math::scatter_rows(&x[0], last(0), &x[1], &x[2], *accumulate)?,
        Op::TopK { k: n } => math::top_k(&x[0], last(0), *n),
        Op::ArgMax => math::top_k(&x[0], last(0), 1),
        Op::TakeAlong => math::take_along(&x[0], last(0), &x[1], last(1))?,
        Op::Cast(_) => x[0].clone(),
        Op::Attention { scale, causal, tokens_first } => {
            let (sq, sk, sv) = (&d[0].shape.0, &d[1].shape.0, &d[2].shape.0);
            let dims = [sq[0], sq[1], sk[1], sq[2], sv[2], sk[0]];
            let o = math::attention(&x[0], &x[1], &x[2], x.get(3).map(|m| m.as_slice()), dims, *scale, *causal)?;
            if *tokens_first {
                let (h, t, dv) = (sq[0], sq[1], sv[2]);
                let mut out = vec![0f32; o.len()];
                for hi in 0..h {
                    for ti in 0..t {
                        out[(ti * h + hi) * dv..(ti * h + hi + 1) * dv]
                            .copy_from_slice(&o[(hi * t + ti) * dv..(hi * t + ti + 1) * dv]);
                    }
                }
                out
            } else {
                o
            }
        }
        Op::MatMulEpilogue { trans_b, code, .. } => {
            let product = math::matmul(&x[0], &d[0].shape, &x[1], &d[1].shape, *trans_b)?;
            let mut xs = vec![product];
            xs.extend(x[2..].iter().cloned());
            let mut shapes = vec![&k.output.shape];
            shapes.extend(d[2..].iter().map(|t| &t.shape));
            math::elementwise(code, &xs, &shapes, &k.output.shape)
        }
        Op::Elementwise { code, .. } => {
            let shapes: Vec<_> = d.iter().map(|t| &t.shape).collect();
            math::elementwise(code, x, &shapes, &k.output.shape)
        }
        Op::Moe { top_k, trans_b } => {
            let dims = crate::graph::moe_dims(*top_k, *trans_b, &d.iter().collect::<Vec<_>>())?;
            moe::moe(&x[0], &x[1], &*moe::dense_experts(&x[2], &x[3], dims), dims, *trans_b, d[0].dtype)?
        }
    })
}
