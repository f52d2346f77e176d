//! The wgpu runtime's contract: one submission per graph run (readback included), pipelines
//! built once, freed buffers reused.

mod common;

use lumen::backend::wgpu::{WgpuBackend, WgpuOptions};
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, TensorDesc};
use lumen::HostTensor;

#[test]
fn one_submission_per_run_cached_pipelines_and_reused_buffers() {
    let b = match WgpuBackend::new(&WgpuOptions::default()) {
        Ok(b) => b,
        Err(e) if common::gpu_required() => panic!("LUMEN_REQUIRE_GPU_ADAPTER=1 but no wgpu adapter: {e}"),
        Err(e) => return eprintln!("SKIPPED wgpu runtime test: {e}"),
    };
    let mut g = GraphBuilder::new();
    let x = g.input("x", TensorDesc::new(DType::F32, [3, 40])).unwrap();
    let w = g.input("w", TensorDesc::new(DType::BF16, [40])).unwrap();
    let up = g.input("up", TensorDesc::new(DType::BF16, [24, 40])).unwrap();
    let n = g.rms_norm(x, w, 1e-6).unwrap();
    let h = g.linear(n, up).unwrap();
    let y = g.softmax(h).unwrap();
    let graph = g.build();
    let tensors = graph.nodes().len();
    let fill = |d: DType, s: &[usize]| HostTensor::from_f32(d, s.to_vec(), &vec![0.25; s.iter().product()]).unwrap();

    let mut ex = Executor::new(&b, graph.clone()).unwrap();
    ex.set("x", &fill(DType::F32, &[3, 40])).unwrap();
    ex.set("w", &fill(DType::BF16, &[40])).unwrap();
    ex.set("up", &fill(DType::BF16, &[24, 40])).unwrap();
    let s0 = b.stats();
    ex.run().unwrap();
    let out = ex.read(y).unwrap().to_f32();
    assert!(out.iter().all(|v| (v - 1.0 / 24.0).abs() < 1e-6), "{out:?}");
    let s1 = b.stats();
    assert_eq!(s1.submits, s0.submits + 1, "run + readback must be one submission");
    assert_eq!(s1.pipelines, 3);
    ex.run().unwrap();
    ex.read(y).unwrap();
    let s2 = b.stats();
    assert_eq!(s2.submits, s1.submits + 1);
    assert_eq!(s2.pipelines, s1.pipelines, "a second run builds no pipeline");
    // Inputs, plus the memory plan's slots (fewer than the computed tensors).
    let held = 3 + ex.slot_count();
    assert!(ex.slot_count() < tensors - 3);
    assert_eq!(s2.live_buffers, held);
    drop(ex);
    let s3 = b.stats();
    assert_eq!((s3.live_buffers, s3.pooled_buffers), (0, held));
    let mut again = Executor::new(&b, graph).unwrap();
    again.set("x", &fill(DType::F32, &[3, 40])).unwrap();
    again.set("w", &fill(DType::BF16, &[40])).unwrap();
    again.set("up", &fill(DType::BF16, &[24, 40])).unwrap();
    let s4 = b.stats();
    assert_eq!((s4.live_buffers, s4.pooled_buffers), (held, 0), "a new executor reuses every pooled buffer");
}
