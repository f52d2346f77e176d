//! Pre-quantized int4 checkpoints with zero points: GPTQ (v1 and v2 zero points), AutoAWQ GEMM
//! and asymmetric compressed-tensors. Each is the dense fixture with its text decoder's linear
//! weights quantized to q4z by lumen and written in the checkpoint's own layout, packed as the
//! writers pack them (AutoGPTQ's `QuantLinear.pack`: codes along the inputs, zeros along the
//! outputs, v1 zeros less one; AutoAWQ's `WQLinear_GEMM.from_linear`: `[K, N / 8]` with outputs
//! interleaved 0 2 4 6 1 3 5 7; compressed-tensors' `pack_to_int32`: values + 8, zero points
//! along the outputs). The loaded codes and scale words must be lumen's own, bit for bit (GPTQ
//! v1: a zero of 0 reads as 16, as GPTQ's kernels read it), the model must follow the
//! full-precision one, and variants lumen does not read are clear errors. The MoE fixture's
//! experts, stored one matrix per expert, load into the layer's two stacks the same way.
//! Symmetric GPTQ int8 (zero points all 128) loads as q8.

mod common;

use common::checkpoint::{
    fixture, is_text_linear, logits40, rewrite_dense, rewrite_moe_per_expert, stack_of, tmp, top1_agreement, uploaded,
    values, Tensor,
};
use lumen::model::qwen3_vl::Qwen3VL;
use lumen::quant::{q4z_word, quantize, QFormat, Quantized};
use safetensors::Dtype;
use std::path::Path;

const GROUP: usize = 16;
const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Gptq { v1: bool },
    Awq,
    CompressedTensors,
}

/// The `quantization_config` of `layout` with groups of `group` inputs (None: by channel).
fn config(layout: Layout, group: Option<usize>) -> serde_json::Value {
    let g = group.map_or(-1, |g| g as i64);
    match layout {
        Layout::Gptq { v1 } => serde_json::json!({
            "quant_method": "gptq", "bits": 4, "group_size": g, "desc_act": false, "sym": false,
            "checkpoint_format": if v1 { "gptq" } else { "gptq_v2" }}),
        Layout::Awq => serde_json::json!({
            "quant_method": "awq", "bits": 4, "group_size": g, "zero_point": true, "version": "gemm",
            "modules_to_not_convert": null}),
        Layout::CompressedTensors => serde_json::json!({
            "quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null, "weights": {
                "num_bits": 4, "type": "int", "symmetric": false,
                "strategy": if group.is_some() { "group" } else { "channel" }, "group_size": group,
                "actorder": null, "dynamic": false}}}}),
    }
}

fn i32s(words: &[u32]) -> Vec<u8> {
    bytemuck::cast_slice(words).to_vec()
}

/// Eight 4-bit values into a word, value `i` in nibble `i`.
fn pack8(v: impl Iterator<Item = u32>) -> u32 {
    v.enumerate().fold(0, |w, (i, x)| w | (x & 15) << (4 * i))
}

/// The tensors of weight `name` quantized as `q`, in `layout`.
fn pack(layout: Layout, name: &str, q: &Quantized) -> Vec<Tensor> {
    let (n, k, groups) = (q.n, q.k, q.k / q.group);
    let code = |r: usize, c: usize| (q.codes[(r * k + c) / 8] >> (4 * ((r * k + c) % 8))) & 15;
    let zero = |r: usize, g: usize| q.zeros[r * groups + g] as u32;
    let scales_kn: Vec<f32> = (0..groups * n).map(|i| q.scales[(i % n) * groups + i / n]).collect();
    let m = name.strip_suffix(".weight").unwrap();
    let f16 = |v: &[f32]| lumen::encode(lumen::graph::DType::F16, v);
    match layout {
        Layout::Gptq { v1 } => {
            let qweight: Vec<u32> =
                (0..k / 8 * n).map(|i| pack8((0..8).map(|j| code(i % n, 8 * (i / n) + j)))).collect();
            let less = v1 as u32;
            let qzeros: Vec<u32> = (0..groups * n / 8)
                .map(|i| pack8((0..8).map(|j| zero(8 * (i % (n / 8)) + j, i / (n / 8)).wrapping_sub(less))))
                .collect();
            let g_idx: Vec<u32> = (0..k).map(|i| (i / q.group) as u32).collect();
            vec![
                (format!("{m}.qweight"), Dtype::I32, vec![k / 8, n], i32s(&qweight)),
                (format!("{m}.qzeros"), Dtype::I32, vec![groups, n / 8], i32s(&qzeros)),
                (format!("{m}.scales"), Dtype::F16, vec![groups, n], f16(&scales_kn)),
                (format!("{m}.g_idx"), Dtype::I32, vec![k], i32s(&g_idx)),
            ]
        }
        Layout::Awq => {
            let qweight: Vec<u32> = (0..k * n / 8)
                .map(|i| pack8(AWQ_ORDER.iter().map(|&o| code(8 * (i % (n / 8)) + o, i / (n / 8)))))
                .collect();
            let qzeros: Vec<u32> = (0..groups * n / 8)
                .map(|i| pack8(AWQ_ORDER.iter().map(|&o| zero(8 * (i % (n / 8)) + o, i / (n / 8)))))
                .collect();
            vec![
                (format!("{m}.qweight"), Dtype::I32, vec![k, n / 8], i32s(&qweight)),
                (format!("{m}.qzeros"), Dtype::I32, vec![groups, n / 8], i32s(&qzeros)),
                (format!("{m}.scales"), Dtype::F16, vec![groups, n], f16(&scales_kn)),
            ]
        }
        Layout::CompressedTensors => {
            // Codes q + 8 along the inputs are q4z's unsigned codes; zero points z + 8 likewise.
            let rows = n.div_ceil(8);
            let zp: Vec<u32> = (0..rows * groups)
                .map(|i| pack8((0..8).map(|j| (i / groups) * 8 + j).filter(|&r| r < n).map(|r| zero(r, i % groups))))
                .collect();
            let shape: Vec<u8> = [n as i64, k as i64].iter().flat_map(|v| v.to_le_bytes()).collect();
            vec![
                (format!("{name}_packed"), Dtype::I32, vec![n, k / 8], i32s(&q.codes)),
                (format!("{name}_zero_point"), Dtype::I32, vec![rows, groups], i32s(&zp)),
                (format!("{name}_scale"), Dtype::F16, vec![n, groups], f16(&q.scales)),
                (format!("{name}_shape"), Dtype::I64, vec![2], shape),
            ]
        }
    }
}

/// Writes the dense fixture in `layout` into `dir` (config edited by `edit`, tensors by
/// `tamper`); returns each packed weight's q4z quantization. `overflow`: the first group of
/// each `o_proj` weight is made non-negative, so that its zero point is 0 (which GPTQ v1 stores
/// as 15 and reads as 16).
fn write(
    dir: &Path,
    layout: Layout,
    overflow: bool,
    edit: impl Fn(&mut serde_json::Value),
    tamper: impl Fn(&mut Vec<Tensor>),
) -> Vec<(String, Quantized)> {
    let mut out = Vec::new();
    let config = |c: &mut serde_json::Value| {
        c["quantization_config"] = config(layout, Some(GROUP));
        edit(c);
    };
    rewrite_dense(dir, config, |name, t| {
        if !is_text_linear(name) {
            return None;
        }
        let (n, k) = (t.shape()[0], t.shape()[1]);
        let mut w = values(t);
        if overflow && name.ends_with("o_proj.weight") {
            w[..GROUP].iter_mut().for_each(|v| *v = v.abs());
        }
        let q = quantize(&w, n, k, QFormat::Q4z, GROUP).unwrap();
        let mut tensors = pack(layout, name, &q);
        tamper(&mut tensors);
        out.push((name.to_string(), q));
        Some(tensors)
    });
    out
}

#[test]
fn gptq_awq_and_asymmetric_compressed_tensors_load_exactly_and_follow_full_precision() {
    let full = Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap();
    let vocab = full.config.text.vocab_size;
    let run = logits40;
    let reference = run(full);
    let v1 = Layout::Gptq { v1: true };
    // GPTQ v1 a second time with zero points of 0, which it reads as 16 (the model then strays
    // from bf16 where they are, so only the loaded values are checked there).
    let runs = [
        (v1, false),
        (Layout::Gptq { v1: false }, false),
        (Layout::Awq, false),
        (Layout::CompressedTensors, false),
        (v1, true),
    ];
    for (layout, overflow) in runs {
        let dir = tmp(&format!("zp-{layout:?}").replace([' ', '{', '}', ':'], ""));
        let written = write(&dir, layout, overflow, |_| {}, |_| {});
        let m = Qwen3VL::load(&dir).unwrap();
        assert!(m.weight_summary().contains("q4z"), "{}", m.weight_summary());
        assert_eq!(written.len(), m.config.text.num_layers * 7);
        let mut sixteens = 0;
        for (name, q) in &written {
            assert_eq!(m.quant_of(name).map(|q| (q.format, q.group)), Some((QFormat::Q4z, GROUP)));
            let up = uploaded(&m, name);
            assert_eq!(up.words(), q.codes, "{layout:?} {name}: codes");
            // GPTQ v1 stores zero - 1 in 4 bits: a zero of 0 wraps to 15 and reads back as 16.
            let zero = |z: u8| if layout == (Layout::Gptq { v1: true }) && z == 0 { 16 } else { z };
            let want: Vec<u32> =
                q.scales.iter().zip(&q.zeros).map(|(&s, &z)| q4z_word(half::f16::from_f32(s), zero(z))).collect();
            sixteens += want.iter().filter(|&&w| w >> 16 == 16).count();
            assert_eq!(bytemuck::pod_collect_to_vec::<u8, u32>(&up.scales), want, "{layout:?} {name}: scale words");
        }
        let got = run(m);
        let agree = top1_agreement(&got, &reference, vocab);
        println!("{layout:?}: top-1 agreement {agree}/40 with bf16 ({sixteens} groups with GPTQ v1's zero of 16)");
        assert_eq!(sixteens > 0, overflow, "{layout:?}: {sixteens} zeros of 16");
        assert!(overflow || agree * 100 >= 65 * 40, "{layout:?}: {agree}/40");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A weight quantized to q8 in groups of `q.group`, in GPTQ's symmetric int8 tensors (v1: zero
/// points stored less one): four codes `q + 128` a word along the inputs, `[K / 4, N]`; zeros
/// four a word along the outputs.
fn gptq8(name: &str, q: &Quantized, v1: bool) -> Vec<Tensor> {
    let (n, k, groups) = (q.n, q.k, q.k / q.group);
    // q8's two's-complement byte of input c of row r, as GPTQ's unsigned q + 128.
    let code = |r: usize, c: usize| ((q.codes[(r * k + c) / 4] >> (8 * (c % 4))) & 255) ^ 0x80;
    let pack4 = |v: [u32; 4]| v.iter().enumerate().fold(0u32, |w, (i, x)| w | x << (8 * i));
    let qweight: Vec<u32> =
        (0..k / 4 * n).map(|i| pack4(std::array::from_fn(|j| code(i % n, 4 * (i / n) + j)))).collect();
    let qzeros = vec![pack4([128 - v1 as u32; 4]); groups * n / 4];
    let scales: Vec<f32> = (0..groups * n).map(|i| q.scales[(i % n) * groups + i / n]).collect();
    let g_idx: Vec<u32> = (0..k).map(|i| (i / q.group) as u32).collect();
    let m = name.strip_suffix(".weight").unwrap();
    vec![
        (format!("{m}.qweight"), Dtype::I32, vec![k / 4, n], i32s(&qweight)),
        (format!("{m}.qzeros"), Dtype::I32, vec![groups, n / 4], i32s(&qzeros)),
        (format!("{m}.scales"), Dtype::F16, vec![groups, n], lumen::encode(lumen::graph::DType::F16, &scales)),
        (format!("{m}.g_idx"), Dtype::I32, vec![k], i32s(&g_idx)),
    ]
}

fn gptq8_config(v1: bool, group: usize) -> serde_json::Value {
    serde_json::json!({"quant_method": "gptq", "bits": 8, "group_size": group, "desc_act": false, "sym": true,
        "checkpoint_format": if v1 { "gptq" } else { "gptq_v2" }})
}

/// GPTQ int8, symmetric (zero points all 128; v1 stores 127): each weight quantized to q8 by
/// lumen and packed as AutoGPTQ packs 8-bit weights loads as q8 bit for bit; the MoE fixture's
/// experts, stored one matrix per expert, load into the layer's stacks.
#[test]
fn gptq_int8_symmetric_loads_as_q8() {
    let full = logits40(Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap());
    for v1 in [true, false] {
        let dir = tmp(&format!("gptq8-{v1}"));
        let mut written = Vec::new();
        rewrite_dense(
            &dir,
            |c| c["quantization_config"] = gptq8_config(v1, GROUP),
            |name, t| {
                if !is_text_linear(name) {
                    return None;
                }
                let q = quantize(&values(t), t.shape()[0], t.shape()[1], QFormat::Q8, GROUP).unwrap();
                let tensors = gptq8(name, &q, v1);
                written.push((name.to_string(), q));
                Some(tensors)
            },
        );
        let m = Qwen3VL::load(&dir).unwrap();
        assert!(m.weight_summary().contains("q8"), "{}", m.weight_summary());
        assert_eq!(written.len(), m.config.text.num_layers * 7);
        for (name, q) in &written {
            assert_eq!(m.quant_of(name).map(|q| (q.format, q.group)), Some((QFormat::Q8, GROUP)));
            let up = uploaded(&m, name);
            assert_eq!(up.words(), q.codes, "v1 {v1} {name}: codes");
            let want: Vec<f32> = q.scales.iter().map(|&s| half::f16::from_f32(s).to_f32()).collect();
            assert_eq!(lumen::decode(lumen::graph::DType::F16, &up.scales), want, "v1 {v1} {name}: scales");
        }
        let agree = top1_agreement(&logits40(m), &full, full.len() / 40);
        println!("GPTQ int8 (v1 {v1}): top-1 agreement {agree}/40 with bf16");
        assert!(agree * 100 >= 90 * 40, "{agree}/40");
    }
    let full_moe = Qwen3VL::load(&fixture("qwen3vl-moe")).unwrap();
    let vocab = full_moe.config.text.vocab_size;
    let reference = logits40(full_moe);
    let dir = tmp("gptq8-moe");
    let mut stacks: Vec<(String, Vec<u32>)> = Vec::new();
    rewrite_moe_per_expert(
        &fixture("qwen3vl-moe"),
        &dir,
        |c| c["quantization_config"] = gptq8_config(true, 8),
        |name, w, n, k| {
            let q = quantize(&w, n, k, QFormat::Q8, 8).unwrap();
            if let Some(stack) = stack_of(name) {
                match stacks.iter_mut().find(|s| s.0 == stack) {
                    Some(s) => s.1.extend(&q.codes),
                    None => stacks.push((stack, q.codes.clone())),
                }
            }
            gptq8(name, &q, true)
        },
    );
    let m = Qwen3VL::load(&dir).unwrap();
    assert_eq!(stacks.len(), 2 * m.config.text.num_layers);
    for (name, codes) in &stacks {
        assert_eq!(m.quant_of(name).map(|q| (q.format, q.group)), Some((QFormat::Q8, 8)), "{name}");
        assert_eq!(&uploaded(&m, name).words(), codes, "{name}: codes");
    }
    let agree = top1_agreement(&logits40(m), &reference, vocab);
    println!("GPTQ int8 MoE (experts per expert): top-1 agreement {agree}/40 with bf16");
    assert!(agree * 100 >= 85 * 40, "{agree}/40");
    // A zero point other than 128 (an asymmetric int8 weight) stops the load, naming it.
    let dir = tmp("gptq8-asym");
    rewrite_dense(
        &dir,
        |c| {
            c["quantization_config"] =
                serde_json::json!({"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"})
        },
        |name, t| {
            is_text_linear(name).then(|| {
                let (n, k) = (t.shape()[0], t.shape()[1]);
                let m = name.strip_suffix(".weight").unwrap();
                vec![
                    (format!("{m}.qweight"), Dtype::I32, vec![k / 4, n], vec![0; k * n]),
                    (format!("{m}.qzeros"), Dtype::I32, vec![1, n / 4], vec![100; n]),
                    (format!("{m}.scales"), Dtype::F16, vec![1, n], vec![0; 2 * n]),
                ]
            })
        },
    );
    let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
    assert!(err.contains("is not 128"), "{err}");
}

/// A change to config.json.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;
/// A change to one weight's tensors.
type Tamper = Box<dyn Fn(&mut Vec<Tensor>)>;

#[test]
fn zero_point_variants_lumen_cannot_read_are_clear_errors() {
    let dir = tmp("zp-errors");
    let q =
        |k: &'static str, v: serde_json::Value| -> Edit { Box::new(move |c| c["quantization_config"][k] = v.clone()) };
    let keep = || -> Tamper { Box::new(|_| {}) };
    let gptq = Layout::Gptq { v1: false };
    let cases: Vec<(Layout, Edit, Tamper, &str)> = vec![
        (gptq, q("desc_act", true.into()), keep(), "desc_act"),
        (gptq, q("bits", 8.into()), keep(), "8-bit"),
        (gptq, q("checkpoint_format", "marlin".into()), keep(), "marlin"),
        (gptq, q("dynamic", serde_json::json!({"-:.*mlp.*": {}})), keep(), "dynamic"),
        (gptq, q("group_size", 0.into()), keep(), "group_size"),
        (Layout::Awq, q("version", "gemv".into()), keep(), "gemv"),
        (Layout::Awq, q("zero_point", false.into()), keep(), "zero_point"),
        (Layout::Awq, q("quant_method", "hqq".into()), keep(), "`hqq` is not supported"),
        (gptq, q("group_size", 32.into()), keep(), "groups of 32"),
        (
            // desc_act false, but a g_idx that is an activation order.
            gptq,
            Box::new(|_| {}),
            Box::new(|t| {
                let g = t.iter_mut().find(|t| t.0.ends_with("g_idx")).unwrap();
                g.3.swap(0, 4 * GROUP);
            }),
            "activation order",
        ),
        (gptq, Box::new(|_| {}), Box::new(|t| t.retain(|t| !t.0.ends_with("qzeros"))), "qzeros"),
        (
            Layout::CompressedTensors,
            Box::new(|_| {}),
            Box::new(|t| t.retain(|t| !t.0.ends_with("_zero_point"))),
            "_zero_point",
        ),
        (
            // Tensors packed as GPTQ's in a checkpoint whose config says nothing.
            gptq,
            Box::new(|c| c.as_object_mut().unwrap().remove("quantization_config").map(drop).unwrap_or(())),
            keep(),
            "looks packed",
        ),
    ];
    for (layout, edit, tamper, what) in cases {
        write(&dir, layout, false, edit, tamper);
        let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
        println!("{layout:?}: {err}");
        assert!(err.contains(what), "{what}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The code words and scale words a q4z weight loads as with groups of `g` (a divisor of its
/// own group: each group's word repeated).
fn q4z_words(q: &Quantized, g: usize) -> Vec<u32> {
    let per = q.k / g;
    (0..q.n * per)
        .map(|i| {
            let at = i / per * (q.k / q.group) + i % per * g / q.group;
            q4z_word(half::f16::from_f32(q.scales[at]), q.zeros[at])
        })
        .collect()
}

#[test]
fn moe_experts_stored_per_expert_load_into_the_stacks() {
    let full = Qwen3VL::load(&fixture("qwen3vl-moe")).unwrap();
    let vocab = full.config.text.vocab_size;
    let (h, i) = (full.config.text.hidden_size, full.config.moe().unwrap().intermediate_size);
    let run = logits40;
    let reference = run(full);
    // Groups of 8 (the experts' down projections have 40 inputs), and by channel: the stacks
    // then share groups of gcd(hidden, intermediate) inputs, each row's scale repeated.
    let by_channel = (1..=h.min(i)).rev().find(|g| h % g == 0 && i % g == 0).unwrap();
    for (layout, group) in
        [(Layout::Gptq { v1: false }, Some(8)), (Layout::Awq, Some(8)), (Layout::CompressedTensors, None)]
    {
        let dir = tmp(&format!("zp-moe-{}", config(layout, group)["quant_method"].as_str().unwrap()));
        let g = group.unwrap_or(by_channel);
        // Per stack: its code words and scale words, expert by expert.
        let mut stacks: Vec<(String, Vec<u32>, Vec<u32>)> = Vec::new();
        rewrite_moe_per_expert(
            &fixture("qwen3vl-moe"),
            &dir,
            |c| c["quantization_config"] = config(layout, group),
            |name, w, n, k| {
                let q = quantize(&w, n, k, QFormat::Q4z, group.unwrap_or(k)).unwrap();
                if let Some(stack) = stack_of(name) {
                    if !stacks.iter().any(|s| s.0 == stack) {
                        stacks.push((stack.clone(), vec![], vec![]));
                    }
                    let s = stacks.iter_mut().find(|s| s.0 == stack).unwrap();
                    s.1.extend(&q.codes);
                    s.2.extend(q4z_words(&q, g));
                }
                pack(layout, name, &q)
            },
        );
        let m = Qwen3VL::load(&dir).unwrap();
        assert_eq!(stacks.len(), 2 * m.config.text.num_layers);
        for (name, codes_want, scales_want) in &stacks {
            assert_eq!(m.quant_of(name).map(|q| (q.format, q.group)), Some((QFormat::Q4z, g)), "{name}");
            let up = uploaded(&m, name);
            assert_eq!(&up.words(), codes_want, "{layout:?} {name}: codes");
            assert_eq!(&bytemuck::pod_collect_to_vec::<u8, u32>(&up.scales), scales_want, "{layout:?} {name}: scales");
        }
        let agree = top1_agreement(&run(m), &reference, vocab);
        println!("{layout:?} MoE, groups of {g}: top-1 agreement {agree}/40 with bf16");
        // Int4 by channel over these nearly flat logits agrees least (22/40); a stack read in
        // the wrong order would agree on almost none.
        assert!(agree * 100 >= 50 * 40, "{layout:?}: {agree}/40");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn a_missing_packed_expert_is_named() {
    let dir = tmp("zp-moe-missing");
    let gone = "model.language_model.layers.0.mlp.experts.1.down_proj";
    rewrite_moe_per_expert(
        &fixture("qwen3vl-moe"),
        &dir,
        |c| c["quantization_config"] = config(Layout::Awq, Some(8)),
        |name, w, n, k| {
            let q = quantize(&w, n, k, QFormat::Q4z, 8).unwrap();
            if name.starts_with(gone) {
                return vec![];
            }
            pack(Layout::Awq, name, &q)
        },
    );
    let err = Qwen3VL::load(&dir).err().expect("an expert is missing").to_string();
    assert!(err.contains(&format!("{gone}.qweight")), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
