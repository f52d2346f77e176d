//! The backend contract: a coarse device interface (alloc / upload / download / launch / sync,
//! no method per op) and backend selection. Adding an op never touches this trait.

pub mod cpu;
pub mod cuda;
pub mod wgpu;

use crate::graph::{Op, TensorDesc};
use crate::{Error, Result};

/// Opaque handle of a device buffer, owned by the backend that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferId(pub u64);

/// One kernel launch: an op with the types of its inputs and output.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// The operation.
    pub op: Op,
    /// Input types, in the op's order.
    pub inputs: Vec<TensorDesc>,
    /// Output type.
    pub output: TensorDesc,
}

impl Kernel {
    /// Checks that the input types fit the op and produce `output`, so a backend never
    /// indexes past a shape it was not promised.
    pub fn check(&self) -> Result<()> {
        let ins: Vec<&TensorDesc> = self.inputs.iter().collect();
        let want = crate::graph::infer(&self.op, &ins)?;
        if want != self.output {
            return Err(Error::Backend(format!(
                "{}: kernel output declared {:?} {}, the op produces {:?} {}",
                self.op.name(),
                self.output.dtype,
                self.output.shape,
                want.dtype,
                want.shape
            )));
        }
        Ok(())
    }

    /// Checks the kernel and that each buffer can hold its tensor (a buffer may be larger: the
    /// memory plan reuses buffers across tensors; a tensor always starts at byte 0).
    pub(crate) fn check_buffers(&self, inputs: &[u64], output: u64) -> Result<()> {
        self.check()?;
        if inputs.len() != self.inputs.len() {
            return Err(Error::Backend(format!(
                "{}: {} buffers for {} inputs",
                self.op.name(),
                inputs.len(),
                self.inputs.len()
            )));
        }
        for (i, (b, d)) in inputs.iter().zip(&self.inputs).chain([(&output, &self.output)]).enumerate() {
            if *b < d.bytes() as u64 {
                return Err(Error::Backend(format!(
                    "{}: buffer {i} holds {b} bytes, its tensor {:?} {} needs {}",
                    self.op.name(),
                    d.dtype,
                    d.shape,
                    d.bytes()
                )));
            }
        }
        Ok(())
    }
}

/// What a backend runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Backend name (`cpu`, `wgpu`, later `cuda`).
    pub backend: &'static str,
    /// Device name as the driver reports it.
    pub name: String,
    /// Graphics API or implementation (Vulkan, Metal, DX12, native).
    pub api: String,
    /// Discrete GPU, integrated GPU, CPU, ...
    pub device_type: String,
    /// Native f16 arithmetic available.
    pub f16: bool,
    /// Subgroup operations available.
    pub subgroups: bool,
    /// Tensor cores that take FP8 (E4M3) operands (CUDA compute capability 8.9 and up).
    pub fp8_mma: bool,
    /// Largest buffer the device can allocate, in bytes.
    pub max_buffer_bytes: u64,
    /// Largest storage buffer one binding can see, in bytes (bigger tensors are split).
    pub max_binding_bytes: u64,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mem = |b: u64| if b == u64::MAX { "host memory".to_string() } else { format!("{} MiB", b >> 20) };
        write!(
            f,
            "{:<5} {} | api {} | type {} | f16 {} | subgroups {} | max buffer {} | max binding {}",
            self.backend,
            self.name,
            self.api,
            self.device_type,
            yes(self.f16),
            yes(self.subgroups),
            mem(self.max_buffer_bytes),
            mem(self.max_binding_bytes)
        )
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A compute device. Launches are queued in order; `download` and `sync` wait for them.
/// All methods take `&self`: backends are shared across threads.
pub trait Backend: Send + Sync {
    /// The device this backend runs on.
    fn info(&self) -> &DeviceInfo;
    /// A buffer big enough for `desc` (contents undefined).
    fn alloc(&self, desc: &TensorDesc) -> Result<BufferId>;
    /// Returns a buffer to the backend for reuse.
    fn free(&self, buf: BufferId);
    /// Writes host bytes (the whole tensor) into a buffer, after all queued work.
    fn upload(&self, buf: BufferId, bytes: &[u8]) -> Result<()>;
    /// Fills a buffer with all-ones bytes (NaN for floats, -1 for integers), so an output
    /// element a kernel forgets to write shows up in tests.
    fn poison(&self, buf: BufferId) -> Result<()>;
    /// Queues one kernel: reads `inputs`, writes `output`.
    fn launch(&self, kernel: &Kernel, inputs: &[BufferId], output: BufferId) -> Result<()>;
    /// Queues one kernel of an op with a second output (`Op::side_output`), writing it to
    /// `side` as well. Backends that implement such ops override this.
    fn launch_with_side(&self, kernel: &Kernel, inputs: &[BufferId], output: BufferId, side: BufferId) -> Result<()> {
        let _ = (inputs, output, side);
        Err(Error::Backend(format!("{}: {} has no two-output kernels", self.info().backend, kernel.op.name())))
    }
    /// Waits for all queued work and reads `out.len()` bytes back.
    fn download(&self, buf: BufferId, out: &mut [u8]) -> Result<()>;
    /// Submits queued work and waits for it.
    fn sync(&self) -> Result<()>;
    /// Whether this backend runs a fused op (`Op::Attention`, ...) for these input types; the
    /// compiler leaves the primitives in place where it does not. Primitive ops are always run.
    fn supports(&self, op: &Op, inputs: &[&TensorDesc]) -> bool {
        let _ = (op, inputs);
        true
    }
}

/// A chosen backend and why it was chosen.
pub struct Selected {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// One line saying what was picked and why.
    pub reason: String,
}

/// Picks a backend: `"cpu"`, `"wgpu"` (first hardware adapter, else a software one), `"cuda"`
/// (NVIDIA device 0; still incomplete), or `"auto"` (a hardware wgpu adapter when one exists,
/// else the CPU oracle; CUDA joins once its backend runs every op).
pub fn select(which: &str) -> Result<Selected> {
    match which {
        "cuda" => {
            let b = cuda::CudaBackend::new(0)?;
            let blas = if b.has_cublas() { "cuBLAS" } else { "lumen's kernel, cuBLAS not found" };
            let reason = format!(
                "cuda: requested with --backend cuda; using {} ({}; matmuls through {blas})",
                b.info().name,
                b.info().api
            );
            Ok(Selected { backend: Box::new(b), reason })
        }
        "cpu" => Ok(Selected {
            backend: Box::new(cpu::CpuBackend::new()),
            reason: "cpu: requested with --backend cpu".into(),
        }),
        "wgpu" => {
            let b = wgpu::WgpuBackend::new(&wgpu::WgpuOptions::default())?;
            let reason = format!("wgpu: requested with --backend wgpu; using {}", b.info().name);
            Ok(Selected { backend: Box::new(b), reason })
        }
        "auto" => {
            // CUDA first on NVIDIA GPUs, when its kernels can be had.
            let cuda_note = if cuda::driver_available() {
                match cuda::CudaBackend::new(0).and_then(|b| b.kernels_available().map(|_| b)) {
                    Ok(b) => {
                        let reason = format!(
                            "cuda: auto picked {} ({}; matmuls through {})",
                            b.info().name,
                            b.info().api,
                            if b.has_cublas() { "cuBLAS" } else { "lumen's kernel, cuBLAS not found" }
                        );
                        return Ok(Selected { backend: Box::new(b), reason });
                    }
                    Err(e) => format!("; an NVIDIA driver is present but CUDA is unusable: {e}"),
                }
            } else {
                String::new()
            };
            let opts = wgpu::WgpuOptions { hardware_only: true, ..Default::default() };
            match wgpu::WgpuBackend::new(&opts) {
                Ok(b) => {
                    let reason = format!(
                        "wgpu: auto picked hardware adapter {} ({}){cuda_note}",
                        b.info().name,
                        b.info().api
                    );
                    Ok(Selected { backend: Box::new(b), reason })
                }
                Err(e) => Ok(Selected {
                    backend: Box::new(cpu::CpuBackend::new()),
                    reason: format!(
                        "cpu: auto found no hardware GPU adapter ({e}); pass --backend wgpu to use a software adapter{cuda_note}"
                    ),
                }),
            }
        }
        other => Err(Error::Backend(format!("unknown backend `{other}`; expected auto, wgpu, cuda or cpu"))),
    }
}

/// One line per backend and adapter found (what `lumen devices` prints).
pub fn device_lines() -> Vec<String> {
    let mut v = vec![cpu::CpuBackend::new().info().to_string()];
    v.push(match cuda::CudaBackend::new(0) {
        Ok(b) => b.info().to_string(),
        Err(e) => format!("cuda  ({e})"),
    });
    v.push(match cuda::nvrtc::version() {
        Ok((a, b)) => format!("nvrtc {a}.{b} (compiles the CUDA kernels)"),
        Err(e) => format!("nvrtc ({e})"),
    });
    v.push(if cuda::blas_available() {
        "cublas (found: dense matmuls on CUDA go through it)".into()
    } else {
        "cublas (libcublas not found: CUDA matmuls use lumen's kernel)".into()
    });
    let adapters = wgpu::adapters();
    if adapters.is_empty() {
        v.push("wgpu  (no adapter found: no Vulkan/Metal/DX12/GL driver)".into());
    }
    v.extend(adapters.iter().map(|a| wgpu::describe(a).to_string()));
    v
}
