//! The wgpu backend: one device with the adapter's own limits, tensors as (possibly split)
//! storage buffers reused through a pool, pipelines cached per shader signature, and every
//! launch recorded into one command encoder that is submitted once, when a result is read.

mod context;
mod dispatch;
mod launch;
mod moe;
mod pipeline;
mod prelude;
mod program;
mod quant;
mod record;
pub mod shaders;

pub use context::{adapters, describe, WgpuOptions};
pub use dispatch::{lower, lower_with, Dispatch};
pub use prelude::Signature;

use super::{Backend, BufferId, DeviceInfo, Kernel};
use crate::graph::TensorDesc;
use crate::{Error, Result};
use pipeline::Pipelines;
use record::Cmd;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A tensor on the device: one wgpu buffer per chunk of at most `chunk_bytes`.
struct DevBuf {
    chunks: Vec<wgpu::Buffer>,
    bytes: u64,
}

#[derive(Default)]
struct State {
    next: u64,
    bufs: HashMap<u64, DevBuf>,
    pool: HashMap<Vec<u64>, Vec<Vec<wgpu::Buffer>>>,
    pending: Vec<Cmd>,
    poison_src: Option<wgpu::Buffer>,
    submits: u64,
}

/// Counters of a wgpu backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgpuStats {
    /// Command buffers submitted so far.
    pub submits: u64,
    /// Compute pipelines built so far.
    pub pipelines: usize,
    /// Tensors allocated and not freed.
    pub live_buffers: usize,
    /// Freed tensors kept for reuse.
    pub pooled_buffers: usize,
}

/// The wgpu compute backend.
pub struct WgpuBackend {
    ctx: context::Context,
    chunk_bytes: u64,
    pipelines: Pipelines,
    state: Mutex<State>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl WgpuBackend {
    /// Opens a device as `opts` says.
    pub fn new(opts: &WgpuOptions) -> Result<Self> {
        let ctx = context::open(opts)?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        ctx.device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let limit = ctx.info.max_binding_bytes.min(ctx.limits.max_buffer_size);
        let chunk_bytes = (limit / 256) * 256;
        if chunk_bytes == 0 {
            return Err(Error::Backend(format!("wgpu: binding limit {limit} bytes is too small")));
        }
        let pipelines = Pipelines::new((chunk_bytes / 4) as u32);
        log::info!("wgpu: {} (chunks of {} MiB)", ctx.info, chunk_bytes >> 20);
        Ok(WgpuBackend { ctx, chunk_bytes, pipelines, state: Mutex::new(State::default()), errors })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Chunk sizes (bytes, multiples of 4) of a tensor of `bytes` bytes.
    fn chunk_sizes(&self, bytes: u64) -> Vec<u64> {
        let total = bytes.max(4).next_multiple_of(4);
        let mut v = Vec::new();
        let mut left = total;
        while left > 0 {
            let c = left.min(self.chunk_bytes);
            v.push(c);
            left -= c;
        }
        v
    }

    fn take_errors(&self) -> Result<()> {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_empty() {
            return Ok(());
        }
        let msg = e.join("; ");
        e.clear();
        Err(Error::Backend(format!("wgpu: {msg}")))
    }

    /// Submits everything pending (and then `extra`, e.g. readback copies) as one command
    /// buffer. Does nothing when there is nothing to do.
    fn flush_with(&self, s: &mut State, extra: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let mut enc =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lumen run") });
        record::record(&self.ctx, std::mem::take(&mut s.pending), &mut enc);
        extra(&mut enc);
        self.ctx.queue.submit([enc.finish()]);
        s.submits += 1;
        self.take_errors()
    }

    fn flush(&self, s: &mut State) -> Result<()> {
        if s.pending.is_empty() {
            return Ok(());
        }
        self.flush_with(s, |_| {})
    }

    /// Counters for tests and diagnostics.
    pub fn stats(&self) -> WgpuStats {
        let s = self.lock();
        WgpuStats {
            submits: s.submits,
            pipelines: self.pipelines.len(),
            live_buffers: s.bufs.len(),
            pooled_buffers: s.pool.values().map(Vec::len).sum(),
        }
    }

    fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Backend(format!("wgpu: waiting for the device failed: {e}")))?;
        self.take_errors()
    }
}

impl Backend for WgpuBackend {
    fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    fn supports(&self, op: &crate::graph::Op, inputs: &[&TensorDesc]) -> bool {
        match op {
            // One invocation per head dimension (and the query row in workgroup memory).
            crate::graph::Op::Attention { .. } => inputs[0].shape.last() <= 256 && inputs[2].shape.last() <= 256,
            // The program travels in the params block.
            crate::graph::Op::Elementwise { code, .. } | crate::graph::Op::MatMulEpilogue { code, .. } => {
                program::program_fits(code)
            }
            // Routing state in workgroup and private memory.
            crate::graph::Op::Moe { top_k, .. } | crate::graph::Op::QMoe { top_k, .. } => {
                inputs.get(1).is_some_and(|r| r.shape.0.first().is_some_and(|&e| e <= moe::MAX_EXPERTS))
                    && *top_k <= moe::MAX_TOP_K
            }
            _ => true,
        }
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<BufferId> {
        let bytes = desc.bytes() as u64;
        let sizes = self.chunk_sizes(bytes);
        let mut s = self.lock();
        let chunks = match s.pool.get_mut(&sizes).and_then(|v| v.pop()) {
            Some(c) => c,
            None => sizes
                .iter()
                .map(|&size| {
                    self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect(),
        };
        s.next += 1;
        let id = s.next;
        s.bufs.insert(id, DevBuf { chunks, bytes });
        drop(s);
        self.take_errors()?;
        Ok(BufferId(id))
    }

    fn free(&self, buf: BufferId) {
        let mut s = self.lock();
        if let Some(b) = s.bufs.remove(&buf.0) {
            let sizes: Vec<u64> = b.chunks.iter().map(|c| c.size()).collect();
            s.pool.entry(sizes).or_default().push(b.chunks);
        }
    }

    fn upload(&self, buf: BufferId, bytes: &[u8]) -> Result<()> {
        let mut s = self.lock();
        // Queue writes land before the next submit's commands: submit earlier launches first.
        self.flush(&mut s)?;
        let b = s.bufs.get(&buf.0).ok_or_else(|| Error::Backend(format!("wgpu: unknown buffer {}", buf.0)))?;
        if bytes.len() as u64 != b.bytes {
            return Err(Error::Data(format!("wgpu: upload of {} bytes into a {}-byte tensor", bytes.len(), b.bytes)));
        }
        let mut at = 0usize;
        for c in &b.chunks {
            let end = (at + c.size() as usize).min(bytes.len());
            let part = &bytes[at..end];
            if part.len().is_multiple_of(4) {
                self.ctx.queue.write_buffer(c, 0, part);
            } else {
                let mut padded = part.to_vec();
                padded.resize(part.len().next_multiple_of(4), 0);
                self.ctx.queue.write_buffer(c, 0, &padded);
            }
            at = end;
        }
        drop(s);
        self.take_errors()
    }

    fn poison(&self, buf: BufferId) -> Result<()> {
        let mut s = self.lock();
        let chunks =
            s.bufs.get(&buf.0).ok_or_else(|| Error::Backend(format!("wgpu: unknown buffer {}", buf.0)))?.chunks.clone();
        let need = chunks.iter().map(|c| c.size()).max().unwrap_or(4);
        if s.poison_src.as_ref().is_none_or(|p| p.size() < need) {
            // Make the source big enough; earlier queued copies keep their own (smaller) source alive.
            self.flush(&mut s)?;
            let src = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("lumen poison"),
                size: need,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
            src.slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Backend(format!("wgpu: mapping the poison buffer failed: {e}")))?
                .copy_from_slice(&vec![0xFF; need as usize]);
            src.unmap();
            s.poison_src = Some(src);
        }
        let src = s.poison_src.clone().ok_or_else(|| Error::Backend("wgpu: no poison source".into()))?;
        s.pending.extend(chunks.into_iter().map(|dst| Cmd::Fill { src: src.clone(), dst }));
        Ok(())
    }

    fn launch(&self, k: &Kernel, inputs: &[BufferId], output: BufferId) -> Result<()> {
        self.launch_any(k, inputs, output, None)
    }

    fn launch_with_side(&self, k: &Kernel, inputs: &[BufferId], output: BufferId, side: BufferId) -> Result<()> {
        self.launch_any(k, inputs, output, Some(side))
    }

    fn download(&self, buf: BufferId, out: &mut [u8]) -> Result<()> {
        let mut s = self.lock();
        let b = s.bufs.get(&buf.0).ok_or_else(|| Error::Backend(format!("wgpu: unknown buffer {}", buf.0)))?;
        if out.len() as u64 > b.bytes {
            return Err(Error::Data(format!("wgpu: download of {} bytes from a {}-byte tensor", out.len(), b.bytes)));
        }
        let chunks = b.chunks.clone();
        let staging: Vec<wgpu::Buffer> = chunks
            .iter()
            .map(|c| {
                self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("lumen staging"),
                    size: c.size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        // The run and its readback go in one submission.
        self.flush_with(&mut s, |enc| {
            for (c, st) in chunks.iter().zip(&staging) {
                enc.copy_buffer_to_buffer(c, 0, st, 0, c.size());
            }
        })?;
        drop(s);
        let (tx, rx) = std::sync::mpsc::channel();
        for st in &staging {
            let tx = tx.clone();
            st.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        }
        self.wait()?;
        // Another thread's poll may be the one running our callbacks: wait for all of them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let mut done = 0;
        while done < staging.len() {
            match rx.recv_timeout(std::time::Duration::from_millis(5)) {
                Ok(Ok(())) => done += 1,
                Ok(Err(e)) => return Err(Error::Backend(format!("wgpu: mapping the readback failed: {e}"))),
                Err(_) if std::time::Instant::now() > deadline => {
                    return Err(Error::Backend("wgpu: readback did not complete within 600 s".into()))
                }
                Err(_) => self.wait()?,
            }
        }
        let mut at = 0usize;
        for st in &staging {
            if at >= out.len() {
                break;
            }
            let view = st
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Backend(format!("wgpu: reading back failed: {e}")))?;
            let n = (out.len() - at).min(view.len());
            out[at..at + n].copy_from_slice(&view[..n]);
            at += n;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut s = self.lock();
        self.flush(&mut s)?;
        drop(s);
        self.wait()
    }
}
