//! Tensors bigger than one storage binding: split over several bindings. A tiny binding cap
//! exercises every accessor on small data; one real >128 MiB table checks lavapipe's limit.

mod common;

use common::{wgpu, Case};
use lumen::backend::Backend;
use lumen::exec::Executor;
use lumen::graph::{DType, GraphBuilder, Op, TensorDesc};
use lumen::HostTensor;

#[test]
fn gather_from_a_split_table_matches_cpu() {
    let mut c = Case::new("split_gather");
    let t = c.float("table", DType::F32, [40, 33]);
    let i = c.ints("idx", [9], 40);
    let y = c.g.gather(t, i).unwrap();
    c.check_split("split_gather_f32_6_chunks", y);
}

#[test]
fn matmul_with_split_bf16_weights_matches_cpu() {
    let mut c = Case::new("split_matmul");
    let x = c.float("x", DType::F32, [3, 50]);
    let w = c.float("w", DType::BF16, [20, 50]);
    let y = c.g.linear(x, w).unwrap();
    c.check_split("split_matmul_bf16_weights", y);
}

#[test]
fn split_16_bit_outputs_match_cpu() {
    let mut c = Case::new("split_add");
    let a = c.float("a", DType::BF16, [27, 23]);
    let b = c.float("b", DType::BF16, [23]);
    let y = c.g.add(a, b).unwrap();
    c.check_split("split_add_bf16", y);
    let mut c = Case::new("split_concat");
    let a = c.float("a", DType::F16, [7, 45]);
    let b = c.float("b", DType::F16, [7, 2]);
    let y = c.g.concat(&[a, b], 1).unwrap();
    c.check_split("split_concat_f16", y);
}

#[test]
fn row_ops_on_split_tensors_match_cpu() {
    let mut c = Case::new("split_rms");
    let x = c.float("x", DType::F32, [4, 300]);
    let w = c.float("w", DType::F32, [300]);
    let y = c.g.rms_norm(x, w, 1e-6).unwrap();
    c.check_split("split_rms_norm", y);
    let mut c = Case::new("split_scatter");
    let base = c.float("base", DType::BF16, [30, 20]);
    let idx = c.given("idx", HostTensor::from_i32([3], &[29, 0, 14]).unwrap());
    let rows = c.float("rows", DType::BF16, [3, 20]);
    let y = c.g.push(Op::ScatterRows { accumulate: true }, &[base, idx, rows]).unwrap();
    c.check_split("split_scatter_rows", y);
    let mut c = Case::new("split_topk");
    let x = c.float("x", DType::F32, [2, 600]);
    let y = c.g.push(Op::TopK { k: 5 }, &[x]).unwrap();
    c.check_split("split_top_k", y);
}

#[test]
fn gather_from_a_table_larger_than_the_device_binding_limit() {
    let Some(b) = wgpu() else { return };
    let (rows, cols) = (33_000usize, 1024usize);
    let bytes = (rows * cols * 4) as u64;
    println!("table {bytes} bytes, device binding limit {} bytes", b.info().max_binding_bytes);
    let data: Vec<f32> = (0..rows * cols).map(|i| (i / cols) as f32 + (i % cols) as f32 / 1024.0).collect();
    let mut g = GraphBuilder::new();
    let t = g.input("table", TensorDesc::new(DType::F32, [rows, cols])).unwrap();
    let i = g.input("idx", TensorDesc::new(DType::I32, [5])).unwrap();
    let y = g.gather(t, i).unwrap();
    let mut ex = Executor::new(b, g.build()).unwrap().poison_outputs(true);
    ex.set("table", &HostTensor::from_f32(DType::F32, [rows, cols], &data).unwrap()).unwrap();
    let picks = [0, 16_383, 32_767, 32_768, 32_999];
    ex.set("idx", &HostTensor::from_i32([5], &picks).unwrap()).unwrap();
    ex.run().unwrap();
    let got = ex.read(y).unwrap().to_f32();
    for (n, &r) in picks.iter().enumerate() {
        let want = &data[r as usize * cols..(r as usize + 1) * cols];
        assert_eq!(&got[n * cols..(n + 1) * cols], want, "row {r}");
    }
}
