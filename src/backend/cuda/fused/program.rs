//! Elementwise programs on CUDA (`cuda/program.cu`): the program and each input's broadcast
//! strides travel by value in one `Program` argument; a matmul epilogue runs it over the
//! product kept in f32.

use super::super::launch::{dtype_code, matmul, per_element};
use super::super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{matmul_dims, DType, Inst, Op, Shape, TensorDesc, MAX_PROGRAM};
use crate::{Error, Result};
use cudarc::driver::{DevicePtr, DeviceRepr, PushKernelArg};

/// Most inputs one program reads (`cuda/program.cu` takes four pointers).
const INPUTS: usize = 4;
/// Highest rank the strides cover.
const RANK: usize = 6;

/// The program and its operands' layout, as `cuda/program.cu` declares `Program`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Program {
    dims: [u64; RANK],
    strides: [[u64; RANK]; INPUTS],
    code: [u32; MAX_PROGRAM],
    args: [f32; MAX_PROGRAM],
    dtypes: [i32; INPUTS],
    len: i32,
    dy: i32,
}

const _: () = assert!(std::mem::size_of::<Program>() == 456);

// SAFETY: plain old data with the C layout the kernel declares (sizes checked on both sides).
unsafe impl DeviceRepr for Program {}

/// Whether a program over inputs of these shapes fits `Program`.
pub(super) fn fits(code: &[Inst], inputs: usize, out: &Shape) -> bool {
    code.len() <= MAX_PROGRAM && inputs <= INPUTS && out.rank() <= RANK
}

/// Encodes `code` over inputs of the given shapes and dtypes, broadcast to `out`.
fn encode(code: &[Inst], inputs: &[(&Shape, DType)], out: &Shape, dy: DType) -> Result<Program> {
    if !fits(code, inputs.len(), out) {
        return Err(Error::Backend(format!(
            "cuda: an elementwise program of {} instructions over {} inputs of rank {} does not fit",
            code.len(),
            inputs.len(),
            out.rank()
        )));
    }
    let pad = RANK - out.rank();
    let mut p = Program {
        dims: [1; RANK],
        strides: [[0; RANK]; INPUTS],
        code: [0; MAX_PROGRAM],
        args: [0.0; MAX_PROGRAM],
        dtypes: [0; INPUTS],
        len: 0,
        dy: dtype_code(dy),
    };
    for (d, &n) in out.0.iter().enumerate() {
        p.dims[pad + d] = n as u64;
    }
    for (j, (s, dt)) in inputs.iter().enumerate() {
        for (d, st) in s.broadcast_strides(out).into_iter().enumerate() {
            p.strides[j][pad + d] = st as u64;
        }
        p.dtypes[j] = dtype_code(*dt);
    }
    let mut n = 0;
    // Rounding to f32 encodes as nothing (it keeps the value).
    for (word, arg) in code.iter().filter_map(Inst::encode) {
        p.code[n] = word;
        p.args[n] = arg.unwrap_or(0.0);
        n += 1;
    }
    p.len = n as i32;
    Ok(p)
}

/// Queues `program` over input pointers `xs` (one to four), writing `n` elements of `y`.
fn run(b: &CudaBackend, s: &mut State, xs: &[u64], y: u64, n: usize, p: Program) -> Result<()> {
    let x = |j: usize| xs.get(j).copied().unwrap_or(xs[0]);
    let (x0, x1, x2, x3, n64) = (x(0), x(1), x(2), x(3), n as u64);
    kernel!(b, s, "program", per_element(n), x0, x1, x2, x3, y, n64, p)
}

/// `Op::Elementwise`: one thread per output element.
pub(super) fn elementwise(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let Op::Elementwise { code, .. } = &k.op else { unreachable!("called for elementwise ops") };
    let inputs: Vec<(&Shape, DType)> = k.inputs.iter().map(|d| (&d.shape, d.dtype)).collect();
    let p = encode(code, &inputs, &k.output.shape, k.output.dtype)?;
    run(b, s, ins, y, k.output.shape.numel(), p)
}

/// Whether a matmul epilogue can run: the product's batches fit the matmul's grid.
pub(super) fn epilogue_fits(code: &[Inst], inputs: &[&TensorDesc], trans_b: bool) -> bool {
    matmul_dims(&inputs[0].shape, &inputs[1].shape, trans_b).is_ok_and(|d| d.batch <= 65535)
        && inputs.len() <= INPUTS + 1 // a, b, then extras: the product and extras are the program's inputs
        && code.len() <= MAX_PROGRAM
}

/// `Op::MatMulEpilogue`: the product in f32 (as the CPU oracle keeps it: input 0 of the
/// program), in `y` itself when the output is f32 (each element is read before it is
/// overwritten) or else in a scratch buffer, then the program over it and the extra inputs.
pub(super) fn epilogue(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let Op::MatMulEpilogue { trans_b, code, .. } = &k.op else { unreachable!("called for matmul epilogues") };
    let out = &k.output;
    let product = TensorDesc::new(DType::F32, out.shape.clone());
    let mut inputs: Vec<(&Shape, DType)> = vec![(&out.shape, DType::F32)];
    inputs.extend(k.inputs[2..].iter().map(|d| (&d.shape, d.dtype)));
    let p = encode(code, &inputs, &out.shape, out.dtype)?;
    let n = out.shape.numel();
    if n == 0 {
        return Ok(());
    }
    let types = (&k.inputs[0], &k.inputs[1], &product);
    if out.dtype == DType::F32 {
        matmul(b, s, types, *trans_b, ins[0], ins[1], y)?;
        let mut xs = vec![y];
        xs.extend(&ins[2..]);
        return run(b, s, &xs, y, n, p);
    }
    // SAFETY: the matmul writes every element before the program reads it. Dropping the
    // slice frees it in stream order, after both kernels.
    let scratch = unsafe { b.stream.alloc::<u8>(product.bytes()) }
        .map_err(super::super::driver_err("allocating the epilogue's product"))?;
    let (prod, _sync) = scratch.device_ptr(&b.stream);
    matmul(b, s, types, *trans_b, ins[0], ins[1], prod)?;
    let mut xs = vec![prod];
    xs.extend(&ins[2..]);
    run(b, s, &xs, y, n, p)
}
