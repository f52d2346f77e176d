//! Builds a Qwen-style MLP block (RMSNorm, gate/up, SwiGLU, down, residual) with bf16 weights,
//! runs it on the chosen backend and on the CPU oracle, and prints the difference and timings.
//!
//! `cargo run --release --example mlp -- [auto|wgpu|cpu] [tokens] [hidden] [intermediate]`

use lumen::backend::{cpu::CpuBackend, select, Backend};
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, NodeId, TensorDesc};
use lumen::HostTensor;
use std::time::Instant;

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn run(b: &dyn Backend, g: &lumen::graph::Graph, y: NodeId, inputs: &[(&str, HostTensor)]) -> lumen::Result<Vec<f32>> {
    let mut ex = Executor::new(b, g.clone())?;
    for (n, t) in inputs {
        ex.set(n, t)?;
    }
    ex.run()?;
    ex.read(y)?; // warm-up: pipelines compiled, buffers resident
    let t0 = Instant::now();
    ex.run()?;
    let out = ex.read(y)?.to_f32();
    println!("{:<5} {:>9.2} ms  ({})", b.info().backend, t0.elapsed().as_secs_f64() * 1e3, b.info().name);
    Ok(out)
}

fn main() -> lumen::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "auto".into());
    let (t, h, i) = (arg(2, 16), arg(3, 1024), arg(4, 3072));
    let sel = select(&which)?;
    println!("{}", sel.reason);
    let mut g = GraphBuilder::new();
    let x = g.input("x", TensorDesc::new(DType::F32, [t, h]))?;
    let nw = g.input("norm", TensorDesc::new(DType::BF16, [h]))?;
    let wg = g.input("gate", TensorDesc::new(DType::BF16, [i, h]))?;
    let wu = g.input("up", TensorDesc::new(DType::BF16, [i, h]))?;
    let wd = g.input("down", TensorDesc::new(DType::BF16, [h, i]))?;
    let n = g.rms_norm(x, nw, 1e-6)?;
    let (gt, up) = (g.linear(n, wg)?, g.linear(n, wu)?);
    let a = g.swiglu(gt, up)?;
    let d = g.linear(a, wd)?;
    let y = g.add(x, d)?;
    let graph = g.build();
    // A cheap deterministic pseudo-random fill.
    let fill = |n: usize, seed: u32| -> Vec<f32> {
        (0..n).map(|k| (((k as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    };
    let inputs = [
        ("x", HostTensor::from_f32(DType::F32, [t, h], &fill(t * h, 1))?),
        ("norm", HostTensor::from_f32(DType::BF16, [h], &fill(h, 2))?),
        ("gate", HostTensor::from_f32(DType::BF16, [i, h], &fill(i * h, 3))?),
        ("up", HostTensor::from_f32(DType::BF16, [i, h], &fill(i * h, 4))?),
        ("down", HostTensor::from_f32(DType::BF16, [h, i], &fill(h * i, 5))?),
    ];
    println!("MLP block: {t} tokens, hidden {h}, intermediate {i}, bf16 weights");
    let got = run(sel.backend.as_ref(), &graph, y, &inputs)?;
    let want = run(&CpuBackend::new(), &graph, y, &inputs)?;
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in got.iter().zip(&want) {
        num += ((a - b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    println!("relative error vs CPU oracle: {:.2e}", (num / den.max(1e-30)).sqrt());
    Ok(())
}
