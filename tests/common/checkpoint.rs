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

/// A fresh scratch directory for this test process (removed when dropped).
pub fn tmp(tag: &str) -> super::scratch::Scratch {
    super::scratch::Scratch::new(tag)
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
    rewrite(&fixture("qwen3vl-dense"), dir, edit, convert)
}

/// [`rewrite_dense`] for the checkpoint in `src`.
pub fn rewrite(
    src: &Path,
    dir: &Path,
    edit: impl Fn(&mut serde_json::Value),
    mut convert: impl FnMut(&str, &TensorView) -> Option<Vec<Tensor>>,
) {
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
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

/// Writes the MoE checkpoint in `src` (expert stacks in the hub layout `[E, in, out]`: the MoE
/// fixture's) into `dir` with `edit` applied to its config.json, its experts
/// stored one `[out, in]` matrix per expert (`P.mlp.experts.E.{gate,up,down}_proj.weight`, as
/// pre-quantized MoE checkpoints store them) and every text decoder linear weight, expert
/// matrices included, replaced by what `convert(name, values, out, in)` returns. Expert
/// matrices come expert by expert, gate before up.
pub fn rewrite_moe_per_expert(
    src: &Path,
    dir: &Path,
    edit: impl Fn(&mut serde_json::Value),
    mut convert: impl FnMut(&str, Vec<f32>, usize, usize) -> Vec<Tensor>,
) {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let text = &config["text_config"];
    let (h, i) =
        (text["hidden_size"].as_u64().unwrap() as usize, text["moe_intermediate_size"].as_u64().unwrap() as usize);
    rewrite(src, dir, edit, |name, t| {
        let v = values(t);
        if is_text_linear(name) {
            return Some(convert(name, v, t.shape()[0], t.shape()[1]));
        }
        let (prefix, gate_up) = match (name.strip_suffix("gate_up_proj"), name.strip_suffix("down_proj")) {
            (Some(p), _) => (p, true),
            (None, Some(p)) if p.ends_with("experts.") => (p, false),
            _ => return None,
        };
        // The stack is [E, in, out] (the hub layout); each expert's matrix is [out, in].
        let (e, rows_in, cols_out) = (t.shape()[0], t.shape()[1], t.shape()[2]);
        let mut out = Vec::new();
        for x in 0..e {
            let m = &v[x * rows_in * cols_out..(x + 1) * rows_in * cols_out];
            let col = |c: usize| (0..rows_in).map(move |r| m[r * cols_out + c]);
            let parts: Vec<(&str, std::ops::Range<usize>)> =
                if gate_up { vec![("gate_proj", 0..i), ("up_proj", i..2 * i)] } else { vec![("down_proj", 0..h)] };
            for (kind, cols) in parts {
                let w: Vec<f32> = cols.clone().flat_map(col).collect();
                out.extend(convert(&format!("{prefix}{x}.{kind}.weight"), w, cols.len(), rows_in));
            }
        }
        Some(out)
    });
}

/// The expert stack (`P.mlp.experts.gate_up_proj` / `down_proj`) an expert's matrix
/// `P.mlp.experts.E.KIND.weight` belongs to.
pub fn stack_of(part: &str) -> Option<String> {
    let (prefix, rest) = part.rsplit_once(".mlp.experts.")?;
    let kind = rest.strip_suffix(".weight")?.split_once('.')?.1;
    let stack = if kind == "down_proj" { "down_proj" } else { "gate_up_proj" };
    Some(format!("{prefix}.mlp.experts.{stack}"))
}

/// Logits of `m` on the CPU oracle over 40 fixed token ids (no image): what the checkpoint
/// tests compare a pre-quantized model with its full-precision one on.
pub fn logits40(m: lumen::model::qwen3_vl::Qwen3VL) -> Vec<f32> {
    let vocab = m.config.text.vocab_size as u32;
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % vocab).collect();
    let inputs = lumen::model::qwen3_vl::PrefillInputs { ids, images: vec![] };
    let cpu = lumen::backend::cpu::CpuBackend::new();
    let mut session = lumen::engine::Session::new(&cpu, m);
    let logits = session.prefill(&inputs, true, false).unwrap().logits.to_f32();
    logits
}

/// A quantized weight (or expert stack) of `m` as uploaded to the CPU oracle: its codes' and
/// scales' bytes, its global scales' (NVFP4; else empty) and the codes' shape.
pub struct Uploaded {
    pub codes: Vec<u8>,
    pub scales: Vec<u8>,
    pub global: Vec<u8>,
    pub codes_shape: Vec<usize>,
}

/// Uploads the quantized weight `name` of `m` and downloads what it became.
pub fn uploaded(m: &lumen::model::qwen3_vl::Qwen3VL, name: &str) -> Uploaded {
    use lumen::backend::Backend;
    let cpu = lumen::backend::cpu::CpuBackend::new();
    let bufs = m.upload_weight(&cpu, &lumen::model::qwen3_vl::quantized_names(name).0).unwrap();
    let (cd, sd) = m.quantized_descs(name).unwrap();
    let gd = m.global_desc(name).unwrap();
    let download = |at: usize, bytes: usize| {
        let mut v = vec![0u8; bytes];
        cpu.download(bufs[at].1, &mut v).unwrap();
        v
    };
    Uploaded {
        codes: download(0, cd.bytes()),
        scales: download(1, sd.bytes()),
        global: gd.map_or(Vec::new(), |g| download(2, g.bytes())),
        codes_shape: cd.shape.0.to_vec(),
    }
}

impl Uploaded {
    /// The code words.
    pub fn words(&self) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.codes)
    }

    /// The weights back as f32 (`format` without zero points or a global scale), rows of
    /// every matrix of a stack one after another.
    pub fn dequantize(&self, format: lumen::quant::QFormat, group: usize) -> Vec<f32> {
        let (lead, last) = self.codes_shape.split_at(self.codes_shape.len() - 1);
        lumen::quant::Quantized {
            format,
            group,
            n: lead.iter().product(),
            k: last[0] * format.per_word(),
            codes: self.words(),
            scales: lumen::decode(format.scale_dtype(), &self.scales),
            zeros: Vec::new(),
            global: 1.0,
        }
        .dequantize()
    }
}
