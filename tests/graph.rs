//! The builder rejects misuse with typed errors naming the shapes; the executor rejects bad
//! inputs; backend selection explains itself.

mod common;

use lumen::backend::cpu::CpuBackend;
use lumen::backend::select;
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, Op, TensorDesc};
use lumen::{Error, HostTensor};

fn f32t(shape: &[usize]) -> TensorDesc {
    TensorDesc::new(DType::F32, shape.to_vec())
}

#[test]
fn matmul_with_mismatched_inner_sizes_is_a_shape_error_naming_both_shapes() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", f32t(&[3, 64])).unwrap();
    let w = g.input("w", f32t(&[32, 63])).unwrap();
    let e = g.linear(x, w).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    let msg = e.to_string();
    assert!(msg.contains("[3, 64]") && msg.contains("[32, 63]"), "{msg}");
}

#[test]
fn builder_rejects_bad_shapes_and_types() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", f32t(&[4, 6])).unwrap();
    let ids = g.input("ids", TensorDesc::new(DType::I32, [3])).unwrap();
    let w5 = g.input("w5", f32t(&[5])).unwrap();
    assert!(g.rms_norm(x, w5, 1e-6).is_err(), "weight length must match the last axis");
    assert!(g.gather(ids, x).is_err(), "table and indices swapped");
    assert!(g.softmax(ids).is_err(), "softmax of integers");
    assert!(g.reshape(x, [5, 5]).is_err(), "element count changes");
    assert!(g.permute(x, &[0, 0]).is_err(), "not a permutation");
    assert!(g.slice(x, 1, 4, 3).is_err(), "slice past the end");
    assert!(g.push(Op::TopK { k: 7 }, &[x]).is_err(), "k larger than the axis");
    let y = g.input("y", f32t(&[4, 5])).unwrap();
    assert!(g.add(x, y).is_err(), "not broadcastable");
    assert!(g.concat(&[x, y], 0).is_err(), "concat along the wrong axis");
    assert!(g.concat(&[x, y], 1).is_ok());
    assert!(g.input("x", f32t(&[1])).is_err(), "duplicate input name");
    let k = g.input("k", f32t(&[3, 7, 8])).unwrap();
    let q = g.input("q", f32t(&[4, 7, 8])).unwrap();
    assert!(g.attention(q, k, k, None, 1.0).is_err(), "3 kv heads cannot serve 4 query heads");
}

#[test]
fn broadcast_and_gqa_shapes_are_inferred() {
    let mut g = GraphBuilder::new();
    let a = g.input("a", f32t(&[4, 1, 7])).unwrap();
    let b = g.input("b", f32t(&[3, 1])).unwrap();
    let c = g.add(a, b).unwrap();
    assert_eq!(g.desc(c).shape.0, vec![4, 3, 7]);
    let q = g.input("q", f32t(&[8, 5, 16])).unwrap();
    let k = g.input("k", f32t(&[2, 9, 16])).unwrap();
    let o = g.attention(q, k, k, None, 0.25).unwrap();
    assert_eq!(g.desc(o).shape.0, vec![8, 5, 16]);
}

#[test]
fn executor_rejects_wrong_inputs_and_unset_inputs() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", f32t(&[2, 3])).unwrap();
    let y = g.softmax(x).unwrap();
    g.output(y).unwrap();
    let cpu = CpuBackend::new();
    let mut ex = Executor::new(&cpu, g.build()).unwrap();
    let e = ex.run().unwrap_err();
    assert!(e.to_string().contains("never set"), "{e}");
    let wrong = HostTensor::from_f32(DType::F32, [3, 2], &[0.0; 6]).unwrap();
    assert!(matches!(ex.set("x", &wrong), Err(Error::InputMismatch { .. })));
    assert!(ex.set("nope", &wrong).is_err());
    assert!(HostTensor::from_f32(DType::F32, [2, 2], &[0.0; 3]).is_err());
}

#[test]
fn cpu_oracle_reports_out_of_range_indices() {
    let mut g = GraphBuilder::new();
    let t = g.input("t", f32t(&[4, 2])).unwrap();
    let i = g.input("i", TensorDesc::new(DType::I32, [1])).unwrap();
    let y = g.gather(t, i).unwrap();
    let cpu = CpuBackend::new();
    let mut ex = Executor::new(&cpu, g.build()).unwrap();
    ex.set("t", &HostTensor::from_f32(DType::F32, [4, 2], &[0.0; 8]).unwrap()).unwrap();
    ex.set("i", &HostTensor::from_i32([1], &[4]).unwrap()).unwrap();
    let e = ex.run().unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let _ = y;
}

#[test]
fn backend_selection_says_what_it_picked_and_why() {
    let cpu = select("cpu").unwrap();
    assert_eq!(cpu.backend.info().backend, "cpu");
    assert!(cpu.reason.contains("requested"));
    let auto = select("auto").unwrap();
    assert!(!auto.reason.is_empty());
    assert!(auto.reason.starts_with(auto.backend.info().backend), "{}", auto.reason);
    let e = select("vulkan").err().unwrap();
    assert!(e.to_string().contains("expected auto, wgpu, cuda or cpu"), "{e}");
    match select("wgpu") {
        Ok(s) => assert_eq!(s.backend.info().backend, "wgpu"),
        Err(e) if common::gpu_required() => panic!("LUMEN_REQUIRE_GPU_ADAPTER=1 but --backend wgpu failed: {e}"),
        Err(e) => eprintln!("SKIPPED wgpu selection: {e}"),
    }
}

#[test]
fn backends_reject_inconsistent_kernels_instead_of_panicking() {
    use lumen::backend::{Backend, Kernel};
    let k =
        Kernel { op: Op::Gather, inputs: vec![f32t(&[8]), TensorDesc::new(DType::I32, [2])], output: f32t(&[2, 8]) };
    assert!(k.check().is_err(), "a rank-1 table is not a gather table");
    let good = Kernel { op: Op::Softmax, inputs: vec![f32t(&[2, 3])], output: f32t(&[2, 3]) };
    let cpu = CpuBackend::new();
    let mut backends: Vec<&dyn Backend> = vec![&cpu];
    if let Some(w) = common::wgpu() {
        backends.push(w);
    }
    for b in backends {
        let x = b.alloc(&f32t(&[2, 3])).unwrap();
        let small = b.alloc(&f32t(&[2, 2])).unwrap();
        let e = b.launch(&k, &[x, x], x).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = b.launch(&good, &[x], small).unwrap_err();
        assert!(e.to_string().contains("needs 24"), "{}: {e}", b.info().backend);
        b.launch(&good, &[x], x).unwrap();
        b.free(x);
        b.free(small);
    }
}

#[test]
fn executor_binds_device_buffers_and_hands_outputs_over() {
    use lumen::backend::Backend;
    let cpu = CpuBackend::new();
    let mut g = GraphBuilder::new();
    let x = g.input("x", f32t(&[2, 3])).unwrap();
    let w = g.input("w", f32t(&[6])).unwrap();
    let wv = g.reshape(w, [2, 3]).unwrap();
    let y = g.add(x, wv).unwrap();
    let graph = g.build();
    let shared = cpu.alloc(&f32t(&[6])).unwrap();
    cpu.upload(shared, bytemuck::cast_slice(&[10f32, 20., 30., 40., 50., 60.])).unwrap();
    let mut ex = Executor::new(&cpu, graph.clone()).unwrap();
    ex.set("x", &HostTensor::from_f32(DType::F32, [2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap()).unwrap();
    assert_eq!(ex.unset_inputs(), vec!["w"]);
    ex.bind("w", shared).unwrap();
    ex.run().unwrap();
    assert_eq!(ex.read(y).unwrap().to_f32(), vec![11., 22., 33., 44., 55., 66.]);
    let out = ex.take(y).unwrap();
    assert!(ex.take(x).is_err(), "inputs are not the executor's to hand over");
    drop(ex);
    // The bound weight and the handed-over output outlive the executor.
    let mut bytes = vec![0u8; 24];
    cpu.download(out, &mut bytes).unwrap();
    assert_eq!(bytemuck::cast_slice::<u8, f32>(&bytes)[5], 66.0);
    cpu.download(shared, &mut bytes).unwrap();
    assert_eq!(bytemuck::cast_slice::<u8, f32>(&bytes)[0], 10.0);
}

#[test]
fn memory_plan_reuses_buffers_and_intermediates_do_not_survive() {
    let cpu = CpuBackend::new();
    let mut g = GraphBuilder::new();
    let x = g.input("x", f32t(&[8, 256])).unwrap();
    let mut h = x;
    let mut mids = Vec::new();
    for i in 0..12 {
        h = if i % 2 == 0 { g.softmax(h).unwrap() } else { g.scale(h, 1.5).unwrap() };
        mids.push(h);
    }
    let graph = g.build();
    let naive: usize = graph.nodes().iter().skip(1).map(|n| n.desc.bytes()).sum();
    let mut ex = Executor::new(&cpu, graph).unwrap();
    assert!(ex.activation_bytes() * 4 <= naive, "{} of {naive} bytes", ex.activation_bytes());
    ex.set("x", &HostTensor::from_f32(DType::F32, [8, 256], &[0.5; 2048]).unwrap()).unwrap();
    ex.run().unwrap();
    assert!((ex.read(h).unwrap().to_f32()[0] - 1.5 / 256.0).abs() < 1e-6);
    let e = ex.read(mids[3]).unwrap_err().to_string();
    assert!(e.contains("does not survive"), "{e}");
    let mut keep = Executor::keeping(&cpu, ex.graph().clone(), &[mids[3]]).unwrap();
    keep.set("x", &HostTensor::from_f32(DType::F32, [8, 256], &[0.5; 2048]).unwrap()).unwrap();
    keep.run().unwrap();
    assert!((keep.read(mids[3]).unwrap().to_f32()[0] - 1.5 / 256.0).abs() < 1e-6);
}
