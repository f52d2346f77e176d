//! The elementwise program area of a params block (see `shaders/program.wgsl`): what the
//! elementwise kernels and matmul epilogues interpret.

use super::dispatch::{padded, MAX_RANK};
use crate::graph::{Inst, Shape};
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
    // Scale's factor follows its word.
    for (word, arg) in code.iter().filter_map(Inst::encode) {
        v.push(word);
        v.extend(arg.map(f32::to_bits));
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
