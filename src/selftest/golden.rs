//! The tiny-fixture golden checks of `lumen selftest`: each committed checkpoint under a
//! fixtures folder (`qwen3vl-dense`, `qwen3vl-moe`, with `reference.safetensors` and
//! `cases.json` from HF transformers) runs its reference prompts, on the reference's own input
//! ids and pixel values, and its logits at every position must match transformers'.

use super::Outcome;
use crate::backend::Backend;
use crate::engine::Session;
use crate::model::qwen3_vl::{Pixels, PrefillInputs, Qwen3VL};
use crate::{Error, Result};
use std::path::Path;

/// The fixture checkpoints looked for.
pub const MODELS: [&str; 2] = ["qwen3vl-dense", "qwen3vl-moe"];

/// Largest max|got - want| / max|want| accepted for logits.
pub const TOLERANCE: f32 = 1e-3;

/// A fixture's `reference.safetensors` (transformers' inputs and outputs per case).
pub struct Reference(Vec<u8>);

impl Reference {
    /// Reads the reference of the checkpoint in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("reference.safetensors");
        Ok(Reference(std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?))
    }
    /// Shape and raw bytes of tensor `name`, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<u8>)>> {
        let st = safetensors::SafeTensors::deserialize(&self.0)
            .map_err(|e| Error::Data(format!("reference.safetensors: {e}")))?;
        Ok(st.tensor(name).ok().map(|t| (t.shape().to_vec(), t.data().to_vec())))
    }
    /// Tensor `name` as f32 values.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let (_, b) = self.tensor(name)?.ok_or_else(|| Error::Data(format!("reference lacks `{name}`")))?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }
    /// Tensor `name` as i32 values.
    pub fn i32s(&self, name: &str) -> Result<Vec<i32>> {
        let (_, b) = self.tensor(name)?.ok_or_else(|| Error::Data(format!("reference lacks `{name}`")))?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }
    /// The reference's own pixel values of `case`, one `Pixels` per image.
    pub fn pixels(&self, case: &str) -> Result<Vec<Pixels>> {
        let Some((_, grids)) = self.tensor(&format!("{case}.image_grid_thw"))? else { return Ok(vec![]) };
        let grids: Vec<i32> = bytemuck::pod_collect_to_vec(&grids);
        let all = self.f32s(&format!("{case}.pixel_values"))?;
        let patches: usize = grids.chunks(3).map(|g| (g[0] * g[1] * g[2]) as usize).sum();
        let dim = all.len() / patches.max(1);
        let mut at = 0;
        Ok(grids
            .chunks(3)
            .map(|g| {
                let grid = [g[0] as usize, g[1] as usize, g[2] as usize];
                let n = grid.iter().product::<usize>() * dim;
                let p = Pixels { data: all[at..(at + n).min(all.len())].to_vec(), grid_thw: grid };
                at += n;
                p
            })
            .collect())
    }
}

/// max |got - want| / max |want| (infinite when a value is NaN or the lengths differ).
pub fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).fold(0f32, |m, (g, w)| if g.is_nan() { f32::INFINITY } else { m.max((g - w).abs()) }) / scale
}

fn case_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    Ok(v["cases"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
        .unwrap_or_default())
}

fn check_model(backend: &dyn Backend, dir: &Path, model: &str) -> Result<Vec<Outcome>> {
    let reference = Reference::open(dir)?;
    let mut session = Session::new(backend, Qwen3VL::load(dir)?);
    let mut out = Vec::new();
    for case in case_names(dir)? {
        let name = format!("{model}/{case} logits");
        let ids = reference.i32s(&format!("{case}.input_ids"))?.iter().map(|&i| i as u32).collect();
        let inp = PrefillInputs { ids, images: reference.pixels(&case)? };
        let outcome = match session.prefill(&inp, true, false) {
            Ok(p) => {
                let err = max_rel(&p.logits.to_f32(), &reference.f32s(&format!("{case}.logits"))?);
                Outcome {
                    name,
                    passed: err < TOLERANCE,
                    detail: format!("max rel err {err:.2e} (tol {TOLERANCE:.0e})"),
                }
            }
            Err(e) => Outcome { name, passed: false, detail: format!("error: {e}") },
        };
        out.push(outcome);
    }
    Ok(out)
}

/// Runs every fixture checkpoint found under `dir` on `backend` (none found: no outcomes).
pub fn run(backend: &dyn Backend, dir: &Path) -> Vec<Outcome> {
    let mut out = Vec::new();
    for model in MODELS {
        let d = dir.join(model);
        if !d.join("reference.safetensors").exists() {
            continue;
        }
        match check_model(backend, &d, model) {
            Ok(v) => out.extend(v),
            Err(e) => {
                out.push(Outcome { name: format!("{model} fixture"), passed: false, detail: format!("error: {e}") })
            }
        }
    }
    out
}
