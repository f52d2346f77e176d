//! Checkpoints written from the dense fixture for the loading tests: its files copied,
//! config.json edited, each tensor kept or replaced by what a conversion returns.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// A tensor to write: name, dtype, shape, bytes.
pub type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// A committed fixture's directory.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A scratch directory for this test process.
pub fn tmp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lumen-{tag}-{}", std::process::id()))
}

/// Whether `name` is a linear weight of the text decoder.
pub fn is_text_linear(name: &str) -> bool {
    name.contains(".layers.")
        && !name.contains("visual")
        && ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            .iter()
            .any(|p| name.ends_with(&format!("{p}.weight")))
}

/// A float tensor's values as f32.
pub fn values(t: &TensorView) -> Vec<f32> {
    let dt = match t.dtype() {
        Dtype::BF16 => lumen::graph::DType::BF16,
        Dtype::F16 => lumen::graph::DType::F16,
        _ => lumen::graph::DType::F32,
    };
    lumen::decode(dt, t.data())
}

/// Writes the dense fixture into `dir` with `edit` applied to its config.json and each tensor
/// replaced by what `convert` returns for it (None: kept as it is).
pub fn rewrite_dense(
    dir: &Path,
    edit: impl Fn(&mut serde_json::Value),
    convert: impl FnMut(&str, &TensorView) -> Option<Vec<Tensor>>,
) {
    rewrite("qwen3vl-dense", dir, edit, convert)
}

/// [`rewrite_dense`] for the fixture `name`.
pub fn rewrite(
    name: &str,
    dir: &Path,
    edit: impl Fn(&mut serde_json::Value),
    mut convert: impl FnMut(&str, &TensorView) -> Option<Vec<Tensor>>,
) {
    let src = fixture(name);
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<Tensor> = Vec::new();
    for (name, t) in st.tensors() {
        match convert(&name, &t) {
            Some(v) => out.extend(v),
            None => out.push((name, t.dtype(), t.shape().to_vec(), t.data().to_vec())),
        }
    }
    let views: Vec<(&str, TensorView)> =
        out.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// Positions (of `vocab` logits each) where two runs pick the same top token.
pub fn top1_agreement(a: &[f32], b: &[f32], vocab: usize) -> usize {
    let argmax = |r: &[f32]| r.iter().enumerate().fold(0, |best, (i, &v)| if v > r[best] { i } else { best });
    a.chunks_exact(vocab).zip(b.chunks_exact(vocab)).filter(|(x, y)| argmax(x) == argmax(y)).count()
}
