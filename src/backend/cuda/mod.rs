//! The CUDA backend (NVIDIA GPUs through cudarc, loaded at run time: lumen builds and runs
//! with no CUDA installed). Buffers are device allocations on one stream; kernels are the
//! `cuda/<family>.cu` sources compiled by NVRTC for the device's architecture at first use
//! (`nvrtc.rs`, cached on disk). Every op has a kernel: primitives in `launch.rs`, the fused
//! ops in `fused/` and `moe.rs`, dense matmuls through cuBLAS where it is found (`blas.rs`).
//! `lumen selftest --backend cuda` checks all of it against the CPU oracle on a GPU
//! (`cargo xtask gpu-check` prepares that run).

/// Launches `family` with the listed arguments (variables, borrowed by the builder).
macro_rules! kernel {
    ($b:ident, $s:ident, $family:literal, $cfg:expr, $($arg:ident),*) => {{
        let func = $b.function($s, $family)?;
        let mut lb = $b.stream.launch_builder(&func);
        $( lb.arg(&$arg); )*
        // SAFETY: the arguments match the kernel's parameters in cuda/<family>.cu, and the
        // buffers were checked against the kernel's tensor types before this launch.
        unsafe { lb.launch($cfg) }.map(|_| ()).map_err($crate::backend::cuda::driver_err(concat!("launching ", $family)))
    }};
}

mod blas;
pub use blas::available as blas_available;
mod fused;
mod gemv;
mod launch;
mod moe;
pub mod nvrtc;
mod quant;
pub use quant::fp8_activations;

use super::{Backend, BufferId, DeviceInfo, Kernel};
use crate::graph::{Op, TensorDesc};
use crate::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whether the NVIDIA driver library (libcuda) can be loaded. Checked before any cudarc call,
/// which would panic without it.
pub fn driver_available() -> bool {
    // SAFETY: only probes whether the shared library loads.
    std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

#[derive(Default)]
pub(crate) struct State {
    next: u64,
    bufs: HashMap<u64, CudaSlice<u8>>,
    funcs: HashMap<&'static str, CudaFunction>,
    /// Scratch of the fused MoE op, reused (and grown) across launches.
    moe: moe::Scratch,
}

/// One CUDA device.
pub struct CudaBackend {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    arch: &'static str,
    state: Mutex<State>,
    /// cuBLAS for dense matmuls (None: the plain kernel runs them).
    pub(crate) blas: Option<cudarc::cublas::CudaBlas>,
    /// Streaming multiprocessors (sizes grids of the bandwidth-bound kernels).
    pub(crate) sms: usize,
}

pub(crate) fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
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
            fp8_mma: (major, minor) >= (8, 9),
            max_buffer_bytes: total,
            max_binding_bytes: total,
        };
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_err("multiprocessor count"))?
            .max(1) as usize;
        let stream = ctx.default_stream();
        let blas = blas::open(&stream).map_err(|why| log::warn!("cuda: {why}; matmuls run on lumen's own kernel")).ok();
        Ok(CudaBackend {
            info,
            ctx,
            stream,
            arch: arch_of(major, minor),
            state: Mutex::new(State::default()),
            blas,
            sms,
        })
    }

    /// Whether this device's kernels can be had (NVRTC present, or precompiled PTX cached).
    pub fn kernels_available(&self) -> Result<()> {
        nvrtc::kernels_available(self.arch)
    }

    /// Whether dense matmuls go through cuBLAS.
    pub fn has_cublas(&self) -> bool {
        self.blas.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kernel `entry` (named like its family, or another entry of one: see `nvrtc::family_of`).
    pub(crate) fn function(&self, s: &mut State, entry: &'static str) -> Result<CudaFunction> {
        if let Some(f) = s.funcs.get(entry) {
            return Ok(f.clone());
        }
        let ptx = nvrtc::ptx(nvrtc::family_of(entry), self.arch)?;
        let module = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(driver_err("loading a module"))?;
        let f = module.load_function(entry).map_err(driver_err("loading a kernel"))?;
        s.funcs.insert(entry, f.clone());
        Ok(f)
    }

    fn ptr(&self, s: &State, id: BufferId) -> Result<u64> {
        let b = s.bufs.get(&id.0).ok_or_else(|| Error::Backend(format!("cuda: unknown buffer {}", id.0)))?;
        let (p, _sync) = b.device_ptr(&self.stream);
        Ok(p)
    }
}

impl Backend for CudaBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op, inputs: &[&TensorDesc]) -> bool {
        match op {
            Op::Moe { .. } | Op::QMoe { .. } => moe::supports(op, inputs),
            Op::Attention { .. }
            | Op::Elementwise { .. }
            | Op::MatMulEpilogue { .. }
            | Op::AddRmsNorm { .. }
            | Op::RopeHeads { .. } => fused::supports(op, inputs),
            _ => true,
        }
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
        let size = |s: &State, id: &BufferId| {
            s.bufs
                .get(&id.0)
                .map(|b| b.len() as u64)
                .ok_or_else(|| Error::Backend(format!("cuda: unknown buffer {}", id.0)))
        };
        let sizes: Vec<u64> = inputs.iter().map(|i| size(&s, i)).collect::<Result<_>>()?;
        k.check_buffers(&sizes, size(&s, &output)?)?;
        let ins: Vec<u64> = inputs.iter().map(|i| self.ptr(&s, *i)).collect::<Result<_>>()?;
        let out = self.ptr(&s, output)?;
        launch::launch(self, &mut s, k, &ins, out)
    }

    fn launch_with_side(&self, k: &Kernel, inputs: &[BufferId], output: BufferId, side: BufferId) -> Result<()> {
        let mut s = self.lock();
        let ins: Vec<u64> = inputs.iter().map(|i| self.ptr(&s, *i)).collect::<Result<_>>()?;
        let (out, side) = (self.ptr(&s, output)?, self.ptr(&s, side)?);
        fused::launch(self, &mut s, k, &ins, out, Some(side))
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
