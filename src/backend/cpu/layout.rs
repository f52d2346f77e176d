//! Reference data movement (reshape, permute, slice, concat, integer casts), element by
//! element on raw bits so every dtype moves exactly.

use crate::backend::Kernel;
use crate::graph::{Op, Shape};

/// Runs a data movement kernel on elements of type `T` (u16 for 16-bit dtypes, u32 else).
pub fn apply<T: bytemuck::Pod>(k: &Kernel, inputs: &[&[u8]]) -> Vec<T> {
    let xs: Vec<Vec<T>> = inputs.iter().map(|b| bytemuck::pod_collect_to_vec(b)).collect();
    let s = &k.inputs[0].shape;
    match &k.op {
        Op::Permute(p) => permute(&xs[0], s, p),
        Op::Slice { axis, start, len } => slice(&xs[0], s, *axis, *start, *len),
        Op::Concat { axis } => {
            let parts: Vec<_> = xs.iter().zip(&k.inputs).map(|(v, t)| (v.as_slice(), &t.shape)).collect();
            concat(&parts, *axis)
        }
        _ => xs[0].clone(),
    }
}

/// Output dim i is input dim `perm[i]`.
pub fn permute<T: Copy>(x: &[T], s: &Shape, perm: &[usize]) -> Vec<T> {
    let in_strides = s.strides();
    let out_dims: Vec<usize> = perm.iter().map(|&a| s.0[a]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&a| in_strides[a]).collect();
    strided(x, &out_dims, &src_strides, 0)
}

/// `len` indices of `axis` from `start`.
pub fn slice<T: Copy>(x: &[T], s: &Shape, axis: usize, start: usize, len: usize) -> Vec<T> {
    let st = s.strides();
    let mut dims = s.0.clone();
    dims[axis] = len;
    strided(x, &dims, &st, start * st[axis])
}

/// Joins the parts along `axis`.
pub fn concat<T: Copy>(parts: &[(&[T], &Shape)], axis: usize) -> Vec<T> {
    let outer: usize = parts[0].1 .0[..axis].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for (x, s) in parts {
            let block: usize = s.0[axis..].iter().product();
            out.extend_from_slice(&x[o * block..(o + 1) * block]);
        }
    }
    out
}

/// Reads `x[offset + sum(idx_i * strides_i)]` for every index of `dims`, row-major.
fn strided<T: Copy>(x: &[T], dims: &[usize], strides: &[usize], offset: usize) -> Vec<T> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        out.push(x[offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()]);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}
