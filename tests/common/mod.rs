//! Shared test harness: the backends under test and a conformance runner that compares each
//! of them with the CPU oracle on seeded random inputs.
#![allow(dead_code)]

pub mod checkpoint;
pub mod scratch;
pub mod tiny;

use lumen::backend::cpu::CpuBackend;
use lumen::backend::wgpu::{WgpuBackend, WgpuOptions};
use lumen::backend::Backend;
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, NodeId, Shape, TensorDesc};
use lumen::HostTensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// Whether a missing adapter must fail the tests (CI sets this).
pub fn gpu_required() -> bool {
    std::env::var("LUMEN_REQUIRE_GPU_ADAPTER").is_ok_and(|v| v == "1")
}

fn open(opts: WgpuOptions, what: &str) -> Option<WgpuBackend> {
    match WgpuBackend::new(&opts) {
        Ok(b) => {
            println!("wgpu {what} backend: {}", lumen::backend::Backend::info(&b));
            Some(b)
        }
        Err(e) if gpu_required() => panic!("LUMEN_REQUIRE_GPU_ADAPTER=1 but no wgpu adapter for {what}: {e}"),
        Err(e) => {
            eprintln!("SKIPPED wgpu {what}: no adapter ({e}); set LUMEN_REQUIRE_GPU_ADAPTER=1 to make this a failure");
            None
        }
    }
}

/// The wgpu backend shared by all tests of a binary, or None (with one printed line) when
/// no adapter exists and none is required.
pub fn wgpu() -> Option<&'static WgpuBackend> {
    static B: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    B.get_or_init(|| open(WgpuOptions::default(), "conformance")).as_ref()
}

/// Bytes per binding in the split configuration: small enough that test tensors span
/// several bindings, as a real embedding table does on a 128 MiB-binding adapter.
pub const SPLIT_BYTES: u64 = 1024;

/// A wgpu backend whose bindings are capped at [`SPLIT_BYTES`].
pub fn wgpu_split() -> Option<&'static WgpuBackend> {
    static B: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    B.get_or_init(|| {
        open(WgpuOptions { max_binding_bytes: Some(SPLIT_BYTES), ..Default::default() }, "split-binding")
            .inspect(|b| assert_eq!(lumen::backend::Backend::info(b).max_binding_bytes, SPLIT_BYTES))
    })
    .as_ref()
}

/// Builds one conformance case: declares random inputs as it goes.
pub struct Case {
    pub g: GraphBuilder,
    pub inputs: Vec<(String, HostTensor)>,
    rng: StdRng,
    pub low_precision: bool,
}

impl Case {
    pub fn new(name: &str) -> Self {
        let seed = lumen::selftest::seed_of(name);
        Case { g: GraphBuilder::new(), inputs: vec![], rng: StdRng::seed_from_u64(seed), low_precision: false }
    }

    /// A float input with values uniform in [-1, 1).
    pub fn float(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.numel()).map(|_| self.rng.random_range(-1.0..1.0)).collect();
        self.low_precision |= dtype != DType::F32;
        self.given(name, HostTensor::from_f32(dtype, shape, &v).unwrap())
    }

    /// An i32 input with values uniform in [0, hi).
    pub fn ints(&mut self, name: &str, shape: impl Into<Shape>, hi: i32) -> NodeId {
        let shape = shape.into();
        let v: Vec<i32> = (0..shape.numel()).map(|_| self.rng.random_range(0..hi)).collect();
        self.given(name, HostTensor::from_i32(shape, &v).unwrap())
    }

    /// An input with the given values.
    pub fn given(&mut self, name: &str, t: HostTensor) -> NodeId {
        let id = self.g.input(name, t.desc.clone()).unwrap();
        self.inputs.push((name.into(), t));
        id
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn run_on(&self, b: &dyn Backend, out: NodeId) -> HostTensor {
        let graph = self.g.clone_graph();
        let mut ex = Executor::new(b, graph).unwrap().poison_outputs(true);
        for (n, t) in &self.inputs {
            ex.set(n, t).unwrap();
        }
        ex.run().unwrap();
        ex.read(out).unwrap()
    }

    /// Runs on the CPU oracle and on every other backend under test, comparing outputs.
    /// Returns the oracle's output.
    pub fn check(self, name: &str, out: NodeId) -> HostTensor {
        self.check_on(name, out, &[("wgpu", wgpu())])
    }

    /// Like [`Case::check`], also on the split-binding wgpu backend.
    pub fn check_split(self, name: &str, out: NodeId) -> HostTensor {
        self.check_on(name, out, &[("wgpu", wgpu()), ("wgpu-split", wgpu_split())])
    }

    fn check_on(self, name: &str, out: NodeId, backends: &[(&str, Option<&WgpuBackend>)]) -> HostTensor {
        let want = self.run_on(&CpuBackend::new(), out);
        let desc: TensorDesc = want.desc.clone();
        let lp = self.low_precision || desc.dtype != DType::F32;
        let tol = if lp { 1e-2 } else { 1e-5 };
        for (label, b) in backends {
            let Some(b) = b else { continue };
            let got = self.run_on(*b, out);
            assert_eq!(got.desc, desc, "{name} on {label}: output type");
            if desc.dtype.is_int() {
                assert_eq!(
                    got.to_i32(),
                    want.to_i32(),
                    "{name} on {label}: integer output differs from the CPU oracle"
                );
                println!("conformance {name:<44} {label:<10} {:?} {} exact", desc.dtype, desc.shape);
            } else {
                let err = rel_err(&got.to_f32(), &want.to_f32());
                println!(
                    "conformance {name:<44} {label:<10} {:?} {} rel err {err:.2e} (tol {tol:.0e})",
                    desc.dtype, desc.shape
                );
                assert!(
                    err < tol,
                    "{name} on {label}: relative error {err:e} >= {tol:e} (NaN means an element was not written)"
                );
            }
        }
        want
    }
}

/// ||got - want|| / ||want|| of two tensors of one length (NaN if any element of `got` is NaN
/// where `want` is not).
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    lumen::selftest::rel_err(got, want)
}

/// Runs the `lumen` binary with `args` (a runtime directory set for wgpu where none is).
pub fn lumen(args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lumen"));
    c.args(args);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    c.output().unwrap()
}
