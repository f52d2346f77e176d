//! The CUDA backend (NVIDIA GPUs through cudarc, loaded at run time: lumen builds and runs
//! with no CUDA installed). Buffers are device allocations on one stream; kernels are the
//! `cuda/<family>.cu` sources compiled by NVRTC for the device's architecture at first use
//! (`nvrtc.rs`, cached on disk). This is the start of the backend: device plumbing and the
//! elementwise families; every other op is reported as not implemented on cuda, and
//! `--backend auto` does not pick CUDA until the backend runs every op.

pub mod nvrtc;

use super::{Backend, BufferId, DeviceInfo, Kernel};
use crate::graph::{BinaryOp, DType, Op, TensorDesc, UnaryOp};
use crate::{Error, Result};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whether the NVIDIA driver library (libcuda) can be loaded. Checked before any cudarc call,
/// which would panic without it.
pub fn driver_available() -> bool {
    // SAFETY: only probes whether the shared library loads.
    std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// Dims and strides of a broadcasting binary op, as `cuda/prelude.cuh`'s `Layout6`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Layout6 {
    dims: [u64; 6],
    sa: [u64; 6],
    sb: [u64; 6],
}

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for Layout6 {}

#[derive(Default)]
struct State {
    next: u64,
    bufs: HashMap<u64, CudaSlice<u8>>,
    funcs: HashMap<&'static str, CudaFunction>,
}

/// One CUDA device.
pub struct CudaBackend {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: &'static str,
    state: Mutex<State>,
}

fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Backend(format!("cuda: {what}: {e:?}"))
}

/// The NVRTC architecture of a compute capability (`a` variants where the arch-specific
/// features matter: Hopper's wgmma, Blackwell's tcgen05).
fn arch_of(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (9, 0) => "sm_90a",
        (10, 0) => "sm_100a",
        (12, 0) => "sm_120a",
        (m, n) => Box::leak(format!("sm_{m}{n}").into_boxed_str()),
    }
}

fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::I32 => 3,
        DType::U32 => 4,
    }
}

impl CudaBackend {
    /// Opens device `ordinal`; a clear error when there is no driver or no device.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_available() {
            return Err(Error::Backend("cuda: no NVIDIA driver (libcuda.so.1 could not be loaded)".into()));
        }
        let count = std::panic::catch_unwind(CudaContext::device_count)
            .map_err(|_| Error::Backend("cuda: the driver failed to report devices".into()))?
            .map_err(driver_err("counting devices"))?;
        if ordinal as i32 >= count {
            return Err(Error::Backend(format!("cuda: no device {ordinal} (the driver reports {count})")));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| Error::Backend("cuda: creating a context panicked".into()))?
            .map_err(driver_err("creating a context"))?;
        let (major, minor) = ctx.compute_capability().map_err(driver_err("compute capability"))?;
        let name = ctx.name().map_err(driver_err("device name"))?;
        let total = ctx.total_mem().map_err(driver_err("device memory"))? as u64;
        let info = DeviceInfo {
            backend: "cuda",
            name,
            api: format!("CUDA, compute capability {major}.{minor}"),
            device_type: "DiscreteGpu".into(),
            f16: true,
            subgroups: true,
            max_buffer_bytes: total,
            max_binding_bytes: total,
        };
        let stream = ctx.default_stream();
        Ok(CudaBackend { info, ctx, stream, arch: arch_of(major, minor), state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn function(&self, s: &mut State, family: &'static str) -> Result<CudaFunction> {
        if let Some(f) = s.funcs.get(family) {
            return Ok(f.clone());
        }
        let ptx = nvrtc::ptx(family, self.arch)?;
        let module = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(driver_err("loading a module"))?;
        let f = module.load_function(family).map_err(driver_err("loading a kernel"))?;
        s.funcs.insert(family, f.clone());
        Ok(f)
    }

    fn ptr(&self, s: &State, id: BufferId) -> Result<u64> {
        let b = s.bufs.get(&id.0).ok_or_else(|| Error::Backend(format!("cuda: unknown buffer {}", id.0)))?;
        let (p, _sync) = b.device_ptr(&self.stream);
        Ok(p)
    }
}

fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).max(1) as u32;
    let x = blocks.min(65535);
    LaunchConfig { grid_dim: (x, blocks.div_ceil(x), 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

fn padded(dims: &[usize], strides: &[usize]) -> Result<([u64; 6], [u64; 6])> {
    if dims.len() > 6 {
        return Err(Error::Backend(format!("cuda: rank {} exceeds 6", dims.len())));
    }
    let (mut d, mut s) = ([1u64; 6], [0u64; 6]);
    let pad = 6 - dims.len();
    for (i, (x, st)) in dims.iter().zip(strides).enumerate() {
        d[pad + i] = *x as u64;
        s[pad + i] = *st as u64;
    }
    Ok((d, s))
}

impl Backend for CudaBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op, _inputs: &[&TensorDesc]) -> bool {
        // No fused op yet: the compiler keeps their primitives.
        !matches!(
            op,
            Op::Attention { .. }
                | Op::Moe { .. }
                | Op::Elementwise { .. }
                | Op::MatMulEpilogue { .. }
                | Op::AddRmsNorm { .. }
                | Op::RopeHeads { .. }
        )
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<BufferId> {
        let bytes = desc.bytes().max(4);
        let buf = self.stream.alloc_zeros::<u8>(bytes).map_err(driver_err("allocating"))?;
        let mut s = self.lock();
        s.next += 1;
        let id = s.next;
        s.bufs.insert(id, buf);
        Ok(BufferId(id))
    }

    fn free(&self, buf: BufferId) {
        self.lock().bufs.remove(&buf.0);
    }

    fn upload(&self, buf: BufferId, bytes: &[u8]) -> Result<()> {
        let mut s = self.lock();
        let b = s.bufs.get_mut(&buf.0).ok_or_else(|| Error::Backend(format!("cuda: unknown buffer {}", buf.0)))?;
        if b.len() < bytes.len() {
            return Err(Error::Data(format!("cuda: upload of {} bytes into a {}-byte buffer", bytes.len(), b.len())));
        }
        let mut view = b.slice_mut(0..bytes.len());
        self.stream.memcpy_htod(bytes, &mut view).map_err(driver_err("uploading"))
    }

    fn poison(&self, buf: BufferId) -> Result<()> {
        let s = self.lock();
        let len = s.bufs.get(&buf.0).map(|b| b.len()).unwrap_or(0);
        let p = self.ptr(&s, buf)?;
        // SAFETY: p points at a live allocation of `len` bytes owned by this backend.
        unsafe { cudarc::driver::result::memset_d8_async(p, 0xFF, len, self.stream.cu_stream()) }
            .map_err(driver_err("poisoning"))
    }

    fn launch(&self, k: &Kernel, inputs: &[BufferId], output: BufferId) -> Result<()> {
        let mut s = self.lock();
        let sizes: Vec<u64> = inputs
            .iter()
            .map(|i| {
                s.bufs.get(&i.0).map(|b| b.len() as u64).ok_or_else(|| Error::Backend("cuda: unknown buffer".into()))
            })
            .collect::<Result<_>>()?;
        let out_len = s
            .bufs
            .get(&output.0)
            .map(|b| b.len() as u64)
            .ok_or_else(|| Error::Backend("cuda: unknown buffer".into()))?;
        k.check_buffers(&sizes, out_len)?;
        let n = k.output.shape.numel();
        let (dx, dy) = (dtype_code(k.inputs[0].dtype), dtype_code(k.output.dtype));
        let unary = |s: &mut State, op: i32, f: f32| -> Result<()> {
            let func = self.function(s, "unary")?;
            let (x, y) = (self.ptr(s, inputs[0])?, self.ptr(s, output)?);
            let n64 = n as u64;
            let mut b = self.stream.launch_builder(&func);
            b.arg(&x).arg(&y).arg(&n64).arg(&op).arg(&f).arg(&dx).arg(&dy);
            // SAFETY: the arguments match `unary` in cuda/unary.cu; buffers were checked above.
            unsafe { b.launch(grid(n)) }.map(|_| ()).map_err(driver_err("launching unary"))
        };
        match &k.op {
            Op::Unary(u) => {
                let op = match u {
                    UnaryOp::Silu => 0,
                    UnaryOp::Gelu => 1,
                    UnaryOp::GeluErf => 2,
                    UnaryOp::Exp => 3,
                    UnaryOp::Neg => 4,
                };
                unary(&mut s, op, 0.0)
            }
            Op::Scale(f) => unary(&mut s, 5, *f),
            Op::Cast(_) if k.inputs[0].dtype.is_float() || k.output.dtype.is_float() => unary(&mut s, 6, 0.0),
            Op::Binary(_) | Op::SwiGlu => {
                let op: i32 = match k.op {
                    Op::Binary(BinaryOp::Add) => 0,
                    Op::Binary(BinaryOp::Sub) => 1,
                    Op::Binary(BinaryOp::Mul) => 2,
                    Op::Binary(BinaryOp::Div) => 3,
                    _ => 4,
                };
                let out = &k.output.shape;
                let (dims, sa) = padded(&out.0, &k.inputs[0].shape.broadcast_strides(out))?;
                let (_, sb) = padded(&out.0, &k.inputs[1].shape.broadcast_strides(out))?;
                let l = Layout6 { dims, sa, sb };
                let func = self.function(&mut s, "binary")?;
                let (a, b, y) = (self.ptr(&s, inputs[0])?, self.ptr(&s, inputs[1])?, self.ptr(&s, output)?);
                let (n64, db) = (n as u64, dtype_code(k.inputs[1].dtype));
                let mut lb = self.stream.launch_builder(&func);
                lb.arg(&a).arg(&b).arg(&y).arg(&n64).arg(&op).arg(&l).arg(&dx).arg(&db).arg(&dy);
                // SAFETY: the arguments match `binary` in cuda/binary.cu; buffers were checked above.
                unsafe { lb.launch(grid(n)) }.map(|_| ()).map_err(driver_err("launching binary"))
            }
            other => Err(Error::Backend(format!("cuda: {} is not implemented on the CUDA backend yet", other.name()))),
        }
    }

    fn download(&self, buf: BufferId, out: &mut [u8]) -> Result<()> {
        let s = self.lock();
        let b = s.bufs.get(&buf.0).ok_or_else(|| Error::Backend(format!("cuda: unknown buffer {}", buf.0)))?;
        if b.len() < out.len() {
            return Err(Error::Data(format!("cuda: download of {} bytes from a {}-byte buffer", out.len(), b.len())));
        }
        let view = b.slice(0..out.len());
        self.stream.memcpy_dtoh(&view, out).map_err(driver_err("downloading"))?;
        self.stream.synchronize().map_err(driver_err("synchronising"))
    }

    fn sync(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver_err("synchronising"))
    }
}
