//! Per-op timings, CPU oracle and wgpu side by side in one run (quote ratios, not absolute
//! times: lavapipe is a CPU). `cargo bench --bench ops`.

use criterion::{criterion_group, criterion_main, Criterion};
use lumen::backend::cpu::CpuBackend;
use lumen::backend::wgpu::{WgpuBackend, WgpuOptions};
use lumen::backend::Backend;
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, NodeId, TensorDesc};
use lumen::quant::{quantize, QFormat};
use lumen::HostTensor;
use std::time::Duration;

type Build = fn(&mut GraphBuilder) -> (NodeId, Vec<(&'static str, TensorDesc)>);

fn fill(d: &TensorDesc) -> HostTensor {
    let n = d.shape.numel();
    let v: Vec<f32> = (0..n).map(|k| ((k as u32).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0).collect();
    HostTensor::from_f32(d.dtype, d.shape.clone(), &v).unwrap()
}

fn linear(g: &mut GraphBuilder) -> (NodeId, Vec<(&'static str, TensorDesc)>) {
    let xd = TensorDesc::new(DType::F32, [64, 512]);
    let wd = TensorDesc::new(DType::BF16, [512, 512]);
    let x = g.input("x", xd.clone()).unwrap();
    let w = g.input("w", wd.clone()).unwrap();
    (g.linear(x, w).unwrap(), vec![("x", xd), ("w", wd)])
}

fn rms_norm(g: &mut GraphBuilder) -> (NodeId, Vec<(&'static str, TensorDesc)>) {
    let xd = TensorDesc::new(DType::F32, [256, 2048]);
    let wd = TensorDesc::new(DType::BF16, [2048]);
    let x = g.input("x", xd.clone()).unwrap();
    let w = g.input("w", wd.clone()).unwrap();
    (g.rms_norm(x, w, 1e-6).unwrap(), vec![("x", xd), ("w", wd)])
}

fn softmax(g: &mut GraphBuilder) -> (NodeId, Vec<(&'static str, TensorDesc)>) {
    let xd = TensorDesc::new(DType::F32, [16, 128, 128]);
    let x = g.input("x", xd.clone()).unwrap();
    (g.softmax(x).unwrap(), vec![("x", xd)])
}

fn bench(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let gpu = WgpuBackend::new(&WgpuOptions::default()).ok();
    let mut backends: Vec<&dyn Backend> = vec![&cpu];
    match &gpu {
        Some(g) => backends.push(g),
        None => eprintln!("no wgpu adapter: benchmarking the CPU backend only"),
    }
    let cases: [(&str, Build); 3] =
        [("linear_64x512x512_bf16w", linear), ("rms_norm_256x2048", rms_norm), ("softmax_16x128x128", softmax)];
    for (name, build) in cases {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for b in &backends {
            let mut g = GraphBuilder::new();
            let (y, inputs) = build(&mut g);
            let mut ex = Executor::new(*b, g.build()).unwrap();
            for (n, d) in &inputs {
                ex.set(n, &fill(d)).unwrap();
            }
            group.bench_function(b.info().backend, |bch| {
                bch.iter(|| {
                    ex.run().unwrap();
                    ex.read(y).unwrap()
                })
            });
        }
        group.finish();
    }
}

/// Decode GEMV, the shape of a 2048-wide model's fused q/k/v projection for one token: x
/// `[1, 2048]` times a `[6144, 2048]` weight on wgpu, as bf16 (`MatMul { trans_b }`) and as Q8
/// and Q4 codes with groups of 32 (`QMatMul`). Memory-bound: the weight bytes read per token
/// are 2 : 1.06 : 0.56.
fn qmatmul_decode(c: &mut Criterion) {
    let Ok(gpu) = WgpuBackend::new(&WgpuOptions::default()) else {
        eprintln!("no wgpu adapter: skipping the qmatmul decode benchmark");
        return;
    };
    let (n, k, group) = (6144, 2048, 32);
    let xd = TensorDesc::new(DType::BF16, [1, k]);
    let wd = TensorDesc::new(DType::BF16, [n, k]);
    let w = fill(&TensorDesc::new(DType::F32, [n, k])).to_f32();
    let mut bg = c.benchmark_group("qmatmul_decode_1x2048x6144");
    bg.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let mut run = |name: &str, g: GraphBuilder, y: NodeId, inputs: Vec<(&str, HostTensor)>| {
        let mut ex = Executor::new(&gpu, g.build()).unwrap();
        for (name, t) in &inputs {
            ex.set(name, t).unwrap();
        }
        bg.bench_function(name, |bch| {
            bch.iter(|| {
                ex.run().unwrap();
                ex.read(y).unwrap()
            })
        });
    };
    let mut g = GraphBuilder::new();
    let (x, wn) = (g.input("x", xd.clone()).unwrap(), g.input("w", wd.clone()).unwrap());
    let y = g.linear(x, wn).unwrap();
    let wt = HostTensor::from_f32(DType::BF16, [n, k], &w).unwrap();
    run("bf16_matmul", g, y, vec![("x", fill(&xd)), ("w", wt)]);
    for format in [QFormat::Q8, QFormat::Q4] {
        let q = quantize(&w, n, k, format, group).unwrap();
        let (codes, scales) = (q.codes_tensor().unwrap(), q.scales_tensor().unwrap());
        let mut g = GraphBuilder::new();
        let x = g.input("x", xd.clone()).unwrap();
        let qn = g.input("q", codes.desc.clone()).unwrap();
        let sn = g.input("s", scales.desc.clone()).unwrap();
        let y = g.qlinear(x, qn, sn, format, group).unwrap();
        run(&format!("{}_g{group}", format.name()), g, y, vec![("x", fill(&xd)), ("q", codes), ("s", scales)]);
    }
    bg.finish();
}

criterion_group!(benches, bench, qmatmul_decode);
criterion_main!(benches);
