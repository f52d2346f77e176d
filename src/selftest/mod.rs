//! `lumen selftest`: the op conformance cases run inside the release binary on a chosen
//! backend against the CPU oracle (like llama.cpp's test-backend-ops), then the tiny-fixture
//! golden checks against transformers (`golden.rs`): seeded random inputs,
//! outputs poisoned with NaN before each run, relative L2 error under 1e-5 for f32 and 1e-2
//! where 16-bit floats are involved, integers exact. Failures are reported, never panics.

pub mod golden;
pub mod ops;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::{DType, GraphBuilder, NodeId, Shape, TensorDesc};
use crate::{HostTensor, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
        let seed = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        Case {
            suite: self,
            g: GraphBuilder::new(),
            inputs: vec![],
            rng: StdRng::seed_from_u64(seed),
            low_precision: false,
        }
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

/// Runs every op case on `backend`; a case that panics is a failed outcome.
pub fn run_ops(backend: &dyn Backend) -> Vec<Outcome> {
    let suite = Suite::new(backend);
    for (name, case) in ops::CASES {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&suite))).is_err() {
            suite.record(name, false, "panicked".into());
        }
    }
    suite.outcomes()
}

/// One conformance case: a graph over random inputs, checked by [`Case::check`].
pub struct Case<'s, 'b> {
    suite: &'s Suite<'b>,
    /// The graph being built.
    pub g: GraphBuilder,
    inputs: Vec<(String, HostTensor)>,
    rng: StdRng,
    low_precision: bool,
}

fn run_on(
    b: &dyn Backend,
    graph: crate::graph::Graph,
    inputs: &[(String, HostTensor)],
    out: NodeId,
) -> Result<HostTensor> {
    let mut ex = Executor::new(b, graph)?.poison_outputs(true);
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

impl Case<'_, '_> {
    /// A float input with values uniform in [-1, 1).
    pub fn float(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.numel()).map(|_| self.rng.random_range(-1.0..1.0)).collect();
        self.low_precision |= dtype != DType::F32;
        self.given(name, HostTensor::from_f32(dtype, shape, &v).expect("sizes match"))
    }

    /// An i32 input with values uniform in [0, hi).
    pub fn ints(&mut self, name: &str, shape: impl Into<Shape>, hi: i32) -> NodeId {
        let shape = shape.into();
        let v: Vec<i32> = (0..shape.numel()).map(|_| self.rng.random_range(0..hi)).collect();
        self.given(name, HostTensor::from_i32(shape, &v).expect("sizes match"))
    }

    /// An input with the given values.
    pub fn given(&mut self, name: &str, t: HostTensor) -> NodeId {
        let id = self.g.input(name, t.desc.clone()).expect("fresh input name");
        self.inputs.push((name.into(), t));
        id
    }

    /// Runs on the CPU oracle and on the suite's backend and records the comparison; returns
    /// the oracle's output (an empty f32 tensor when the oracle itself failed).
    pub fn check(self, name: &str, out: NodeId) -> HostTensor {
        let graph = self.g.clone_graph();
        let empty = || HostTensor::from_f32(DType::F32, [0], &[]).expect("empty tensor");
        let want = match run_on(&CpuBackend::new(), graph.clone(), &self.inputs, out) {
            Ok(w) => w,
            Err(e) => {
                self.suite.record(name, false, format!("the CPU oracle failed: {e}"));
                return empty();
            }
        };
        let desc: TensorDesc = want.desc.clone();
        let tol = if self.low_precision || desc.dtype != DType::F32 { 1e-2 } else { 1e-5 };
        let (passed, detail) = match run_on(self.suite.backend, graph, &self.inputs, out) {
            Err(e) => (false, format!("error: {e}")),
            Ok(got) if got.desc != desc => (
                false,
                format!("output type {:?} {}, want {:?} {}", got.desc.dtype, got.desc.shape, desc.dtype, desc.shape),
            ),
            Ok(got) if desc.dtype.is_int() => {
                let ok = got.to_i32() == want.to_i32();
                (ok, format!("{:?} {} {}", desc.dtype, desc.shape, if ok { "exact" } else { "integers differ" }))
            }
            Ok(got) => {
                let err = rel_err(&got.to_f32(), &want.to_f32());
                (err < tol, format!("{:?} {} rel err {err:.2e} (tol {tol:.0e})", desc.dtype, desc.shape))
            }
        };
        self.suite.record(name, passed, detail);
        want
    }
}
