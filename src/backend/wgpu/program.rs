//! The elementwise program area of a params block (see `shaders/program.wgsl`): what the
//! elementwise kernels and matmul epilogues interpret.

use super::dispatch::{padded, MAX_RANK};
use crate::graph::{BinaryOp, DType, Inst, Shape, UnaryOp};
use crate::{Error, Result};

/// First params word of the program area (see `shaders/program.wgsl`).
const PROGRAM_AT: usize = 12;
/// Params words left for the program's code.
const PROGRAM_WORDS: usize = 64 - PROGRAM_AT - 1 - MAX_RANK - 4 * MAX_RANK;

/// Writes the program area: length, output dims, each input's broadcast strides (None: an
/// input the program does not load, such as a matmul's accumulator), the code.
pub(super) fn program(p: &mut Vec<u32>, code: &[Inst], out: &Shape, inputs: &[Option<&Shape>]) -> Result<()> {
    p.resize(PROGRAM_AT + 1, 0);
    let (d, _) = padded(&out.0, &out.strides())?;
    p.extend(d);
    for j in 0..4 {
        let st = match inputs.get(j).copied().flatten() {
            Some(s) => padded(&out.0, &s.broadcast_strides(out))?.1,
            None => vec![0; MAX_RANK],
        };
        p.extend(st);
    }
    let words = program_words(code)?;
    p[PROGRAM_AT] = words.len() as u32;
    p.extend(words);
    Ok(())
}

/// The words of an elementwise program (see `shaders/program.wgsl`).
fn program_words(code: &[Inst]) -> Result<Vec<u32>> {
    let mut v = Vec::with_capacity(code.len() + 4);
    for inst in code {
        match *inst {
            Inst::Load(i) => v.push((i as u32) << 8),
            Inst::Unary(op) => {
                let a = match op {
                    UnaryOp::Silu => 0,
                    UnaryOp::Gelu => 1,
                    UnaryOp::GeluErf => 2,
                    UnaryOp::Exp => 3,
                    UnaryOp::Neg => 4,
                };
                v.push(1 | (a << 8));
            }
            Inst::Scale(f) => v.extend([2, f.to_bits()]),
            Inst::Binary(op) => {
                let a = match op {
                    BinaryOp::Add => 0,
                    BinaryOp::Sub => 1,
                    BinaryOp::Mul => 2,
                    BinaryOp::Div => 3,
                };
                v.push(3 | (a << 8));
            }
            Inst::SwiGlu => v.push(4),
            Inst::Round(DType::BF16) => v.push(5),
            Inst::Round(DType::F16) => v.push(5 | (1 << 8)),
            Inst::Round(_) => {}
        }
    }
    if v.len() > PROGRAM_WORDS {
        return Err(Error::Backend(format!("wgpu: elementwise program of {} words exceeds {PROGRAM_WORDS}", v.len())));
    }
    Ok(v)
}

/// Whether an elementwise program fits one params block.
pub(super) fn program_fits(code: &[Inst]) -> bool {
    program_words(code).is_ok()
}
