//! Per-op timings, CPU oracle and wgpu side by side in one run (quote ratios, not absolute
//! times: lavapipe is a CPU). `cargo bench --bench ops`.

use criterion::{criterion_group, criterion_main, Criterion};
use lumen::backend::cpu::CpuBackend;
use lumen::backend::wgpu::{WgpuBackend, WgpuOptions};
use lumen::backend::Backend;
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, NodeId, TensorDesc};
use lumen::HostTensor;

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

criterion_group!(benches, bench);
criterion_main!(benches);
