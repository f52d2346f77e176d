//! Conformance cases of the paged KV cache ops: attention through block tables over a batch
//! mixing a decode token, a first prefill chunk and a later chunk (scattered, shared-nothing
//! blocks), and the in-place row write that fills the cache (checked on a buffer whose other
//! rows must survive).

use super::{compare, Suite};
use crate::backend::Kernel;
use crate::graph::{DType, Op, TensorDesc, PAGED_META};
use crate::HostTensor;

/// The cases, by name.
pub static CASES: &[(&str, super::ops::CaseFn)] =
    &[("paged_attention_matches_cpu", paged_attention_matches_cpu), ("write_rows_in_place", write_rows_in_place)];

const BS: usize = 16;

/// (past, new tokens, block table) per sequence.
const SEQS: [(usize, usize, [i32; 3]); 3] = [(37, 1, [5, 0, 7]), (0, 9, [3, 0, 0]), (20, 4, [2, 6, 0])];

fn index() -> (usize, Vec<i32>) {
    let mut rows = Vec::new();
    let mut start = 0;
    for (past, n, table) in SEQS {
        for _ in 0..n {
            rows.extend([past as i32, start as i32]);
            rows.extend(table);
        }
        start += n;
    }
    (start, rows)
}

fn paged_attention_matches_cpu(suite: &Suite) {
    // The last two are shapes CUDA's grouped kernel takes (16-bit, D = Dv of 64 / 128, up to
    // 8 q heads per kv head).
    let cases = [
        (DType::F32, 4, 2, 24, 20),
        (DType::BF16, 4, 2, 24, 20),
        (DType::BF16, 8, 2, 64, 64),
        (DType::F16, 8, 1, 128, 128),
    ];
    for (dt, hq, hkv, d, dv) in cases {
        let (t, ix) = index();
        let slots = 8 * BS;
        let mut c = suite.case("paged_attention");
        let q = c.float("q", dt, [t, hq, d]);
        let kn = c.float("k_new", dt, [t, hkv, d]);
        let vn = c.float("v_new", dt, [t, hkv, dv]);
        let kp = c.float("k_pool", dt, [slots, hkv, d]);
        let vp = c.float("v_pool", dt, [slots, hkv, dv]);
        let index = HostTensor::from_i32([t, PAGED_META + 3], &ix).expect("index tensor");
        let ix = c.given("index", index);
        let op = Op::PagedAttention { scale: (d as f32).powf(-0.5), block_size: BS };
        let y = c.g.push(op, &[q, kn, vn, kp, vp, ix]).expect("paged attention node");
        c.check(&format!("paged_attention_{dt:?}_h{hq}_kv{hkv}_d{d}"), y);
    }
}

/// Writes 5 rows into a 12-row buffer holding known values; the others must stay.
fn write_rows_in_place(suite: &Suite) {
    let b = suite.backend;
    let (rows, cols) = (12, 7);
    let base: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let new: Vec<f32> = (0..5 * cols).map(|i| -(i as f32) - 0.5).collect();
    let idx = [9, 0, 4, 11, 5];
    let mut want = base.clone();
    for (r, &at) in idx.iter().enumerate() {
        want[at as usize * cols..][..cols].copy_from_slice(&new[r * cols..][..cols]);
    }
    let out = TensorDesc::new(DType::F32, [rows, cols]);
    let run = || -> crate::Result<HostTensor> {
        let src = HostTensor::from_f32(DType::F32, [5, cols], &new)?;
        let ix = HostTensor::from_i32([5], &idx)?;
        let (buf, s, i) = (b.alloc(&out)?, b.alloc(&src.desc)?, b.alloc(&ix.desc)?);
        b.upload(buf, &crate::encode(DType::F32, &base))?;
        b.upload(s, &src.bytes)?;
        b.upload(i, &ix.bytes)?;
        let k =
            Kernel { op: Op::WriteRows { rows }, inputs: vec![src.desc.clone(), ix.desc.clone()], output: out.clone() };
        let r = b.launch(&k, &[s, i], buf).and_then(|_| {
            let mut bytes = vec![0u8; out.bytes()];
            b.download(buf, &mut bytes)?;
            HostTensor::from_f32(DType::F32, [rows, cols], &crate::decode(DType::F32, &bytes))
        });
        for x in [buf, s, i] {
            b.free(x);
        }
        r
    };
    let want = HostTensor::from_f32(DType::F32, [rows, cols], &want).expect("expected tensor");
    let (passed, detail) = compare(run(), &want, 1e-12);
    let detail = if passed { "indexed rows written, the others kept".into() } else { detail };
    suite.record("write_rows_in_place", passed, detail);
}
