//! Op conformance: every case of `lumen::selftest::ops` (every op, odd shapes, seeded random
//! inputs, outputs poisoned with NaN first) and of `lumen::selftest::fused_cases` (every fused
//! op, compiled from its composite) on wgpu against the CPU oracle; the same suite
//! `lumen selftest` runs. Tolerance: 1e-5 relative for f32, 1e-2 with 16-bit floats (2e-2 for
//! a 16-bit MoE), integers exact.

mod common;

use lumen::backend::Backend;
use lumen::selftest::{fused_cases, ops, run_ops, Outcome};

fn report(label: &str, outcomes: &[Outcome]) {
    for o in outcomes {
        println!("conformance {:<44} {label:<10} {} {}", o.name, if o.passed { "ok" } else { "FAILED" }, o.detail);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    assert!(failed.is_empty(), "{label}: {} of {} checks failed: {failed:#?}", failed.len(), outcomes.len());
}

#[test]
fn every_op_matches_the_cpu_oracle_on_wgpu() {
    let Some(w) = common::wgpu() else { return };
    let outcomes = run_ops(w);
    assert!(outcomes.len() > ops::CASES.len() + fused_cases::CASES.len(), "every case checks at least once");
    assert!(outcomes.iter().any(|o| o.name.starts_with("fused_moe")), "the fused-op cases ran");
    report(w.info().backend, &outcomes);
}

#[test]
fn the_suite_passes_on_the_oracle_itself() {
    let cpu = lumen::backend::cpu::CpuBackend::new();
    report("cpu", &run_ops(&cpu));
}
