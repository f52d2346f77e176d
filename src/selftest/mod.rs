//! `lumen selftest`: the op conformance cases run inside the release binary on a chosen
//! backend against the CPU oracle (like llama.cpp's test-backend-ops), then the tiny-fixture
//! golden checks against transformers (`golden.rs`); `fused_cases.rs` checks every fused op of
//! the compiler by compiling composites (`fused.rs`) for the backend: seeded random inputs,
//! outputs poisoned with NaN before each run, relative L2 error under 1e-5 for f32 and 1e-2
//! where 16-bit floats are involved, integers exact. Failures are reported, never panics.

pub mod fused;
pub mod fused_cases;
pub mod golden;
pub mod ops;
pub mod paged;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::compile::Options;
use crate::exec::Executor;
use crate::graph::{DType, NodeId, Shape, TensorDesc};
use crate::{HostTensor, Result};
use fused::Composite;
use std::cell::RefCell;

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Check name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured (or what went wrong).
    pub detail: String,
}

/// A backend under test and the outcomes so far.
pub struct Suite<'b> {
    backend: &'b dyn Backend,
    outcomes: RefCell<Vec<Outcome>>,
}

impl<'b> Suite<'b> {
    /// A suite checking `backend` against the CPU oracle.
    pub fn new(backend: &'b dyn Backend) -> Self {
        Suite { backend, outcomes: RefCell::new(Vec::new()) }
    }

    /// A new case whose random inputs are seeded by `name`.
    pub fn case(&self, name: &str) -> Case<'_, 'b> {
        Case { suite: self, b: Composite::new(name), low_precision: false, tol: None }
    }

    /// Records a check that is a plain condition.
    pub fn expect(&self, name: &str, ok: bool) {
        self.record(name, ok, if ok { "as expected".into() } else { "unexpected result".into() });
    }

    fn record(&self, name: &str, passed: bool, detail: String) {
        self.outcomes.borrow_mut().push(Outcome { name: name.into(), passed, detail });
    }

    /// The outcomes recorded so far.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.borrow().clone()
    }
}

/// Runs every op case and every fused-op case on `backend`; a case that panics is a failed
/// outcome.
pub fn run_ops(backend: &dyn Backend) -> Vec<Outcome> {
    run_ops_matching(backend, "")
}

/// Runs the op and fused-op case groups whose names (`qmatmul_matches_cpu`, ...) contain
/// `filter` on `backend`.
pub fn run_ops_matching(backend: &dyn Backend, filter: &str) -> Vec<Outcome> {
    let suite = Suite::new(backend);
    let all = ops::CASES.iter().chain(fused_cases::CASES).chain(paged::CASES);
    for (name, case) in all.filter(|(name, _)| name.contains(filter)) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&suite))).is_err() {
            suite.record(name, false, "panicked".into());
        }
    }
    suite.outcomes()
}

/// A seed derived from a case name (FNV-1a), so every case draws its own inputs.
pub fn seed_of(name: &str) -> u64 {
    crate::graph::random::key(0, name)
}

/// One conformance case: a graph over random inputs (the [`Composite`] it derefs to), checked
/// by [`Case::check`].
pub struct Case<'s, 'b> {
    suite: &'s Suite<'b>,
    b: Composite,
    low_precision: bool,
    /// Bounds other than the dtypes imply (see [`Case::within`]).
    tol: Option<(f64, f64)>,
}

impl std::ops::Deref for Case<'_, '_> {
    type Target = Composite;
    fn deref(&self) -> &Composite {
        &self.b
    }
}

impl std::ops::DerefMut for Case<'_, '_> {
    fn deref_mut(&mut self) -> &mut Composite {
        &mut self.b
    }
}

fn run_on(
    b: &dyn Backend,
    graph: crate::graph::Graph,
    inputs: &[(String, HostTensor)],
    out: NodeId,
    opts: Options,
) -> Result<HostTensor> {
    let mut ex = Executor::with_options(b, graph, &[], opts)?.poison_outputs(true);
    for (n, t) in inputs {
        ex.set(n, t)?;
    }
    ex.run()?;
    ex.read(out)
}

/// ||got - want|| / ||want|| (NaN if any element of `got` is NaN where `want` is not).
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::NAN;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        if g.is_nan() != w.is_nan() {
            return f64::NAN;
        }
        if w.is_nan() {
            continue;
        }
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Compares a backend's output with the oracle's: same type, integers exact, floats within
/// `tol` relative L2 error. Returns whether it passed and what was measured.
fn compare(got: Result<HostTensor>, want: &HostTensor, tol: f64) -> (bool, String) {
    let (passed, detail, _) = compare_err(got, want, tol);
    (passed, detail)
}

/// [`compare`], with the relative L2 error of a float output.
fn compare_err(got: Result<HostTensor>, want: &HostTensor, tol: f64) -> (bool, String, Option<f64>) {
    let desc: &TensorDesc = &want.desc;
    match got {
        Err(e) => (false, format!("error: {e}"), None),
        Ok(got) if got.desc != *desc => (
            false,
            format!("output type {:?} {}, want {:?} {}", got.desc.dtype, got.desc.shape, desc.dtype, desc.shape),
            None,
        ),
        Ok(got) if desc.dtype.is_int() => {
            let ok = got.to_i32() == want.to_i32();
            (ok, format!("{:?} {} {}", desc.dtype, desc.shape, if ok { "exact" } else { "integers differ" }), None)
        }
        Ok(got) => {
            let err = rel_err(&got.to_f32(), &want.to_f32());
            (err < tol, format!("{:?} {} rel err {err:.2e} (tol {tol:.0e})", desc.dtype, desc.shape), Some(err))
        }
    }
}

impl Case<'_, '_> {
    /// A float input with values uniform in [-1, 1).
    pub fn float(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        self.low_precision |= dtype != DType::F32;
        self.b.random(name, dtype, shape, 1.0)
    }

    /// Expects a relative L2 error in `[least, most)` instead of below what the dtypes imply:
    /// for a backend path that rounds more than the oracle on purpose (CUDA's FP8 activations),
    /// `least` showing that it ran.
    pub fn within(&mut self, least: f64, most: f64) {
        self.tol = Some((least, most));
    }

    /// Runs on the CPU oracle and on the suite's backend and records the comparison; returns
    /// the oracle's output (an empty f32 tensor when the oracle itself failed).
    pub fn check(self, name: &str, out: NodeId) -> HostTensor {
        let graph = self.b.g.clone_graph();
        let inputs = &self.b.inputs;
        let want = match run_on(&CpuBackend::new(), graph.clone(), inputs, out, Options::default()) {
            Ok(w) => w,
            Err(e) => {
                self.suite.record(name, false, format!("the CPU oracle failed: {e}"));
                return HostTensor::from_f32(DType::F32, [0], &[]).expect("empty tensor");
            }
        };
        let tol = if self.low_precision || want.desc.dtype != DType::F32 { 1e-2 } else { 1e-5 };
        let (least, tol) = self.tol.unwrap_or((0.0, tol));
        let got = run_on(self.suite.backend, graph, inputs, out, Options::default());
        let (mut passed, mut detail, err) = compare_err(got, &want, tol);
        if least > 0.0 {
            passed &= err.is_some_and(|e| e >= least);
            detail.push_str(&format!(" (at least {least:.0e}: the path that rounds more ran)"));
        }
        self.suite.record(name, passed, detail);
        want
    }
}
