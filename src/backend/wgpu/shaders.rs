//! The shader families (one `shaders/<family>.wgsl` each, embedded at build time) and their
//! assembly: prelude for a binding signature + optional reductions + the family's body, checked
//! with naga before any device sees it.

use super::prelude::Signature;
use crate::{Error, Result};

/// A shader family: one file, several entry points sharing one binding layout.
#[derive(Debug)]
pub struct Family {
    /// File stem under `shaders/`.
    pub name: &'static str,
    /// The WGSL body.
    pub source: &'static str,
    /// Number of tensor inputs every entry point binds.
    pub inputs: usize,
    /// Whether the body uses the workgroup reductions of `reduce.wgsl`.
    pub reduces: bool,
    /// WGSL placed before the body: what distinguishes families that share a file.
    pub prefix: &'static str,
    /// Entry points.
    pub entries: &'static [&'static str],
    /// Whether the family writes a second output (`side`).
    pub side: bool,
}

macro_rules! family {
    ($name:literal, $inputs:literal, $reduces:expr, [$($e:literal),*]) => {
        family!($name, $name, "", $inputs, $reduces, [$($e),*])
    };
    ($name:literal, $file:literal, $prefix:expr, $inputs:literal, $reduces:expr, [$($e:literal),*]) => {
        family!($name, $file, $prefix, $inputs, $reduces, false, [$($e),*])
    };
    ($name:literal, $file:literal, $prefix:expr, $inputs:literal, $reduces:expr, $side:expr, [$($e:literal),*]) => {
        Family {
            side: $side,
            name: $name,
            inputs: $inputs,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file, ".wgsl")),
            reduces: $reduces,
            prefix: $prefix,
            entries: &[$($e),*],
        }
    };
}

macro_rules! activations {
    () => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/activations.wgsl"))
    };
}

/// The prefix of a quantized-weight family: bits per code, whether codes are FP8 E4M3 (with
/// f32 scales), and the weight's global scale `glob(z)` (NVFP4: from the binding named; else 1).
macro_rules! q {
    ($bits:literal, $fp8:literal) => {
        concat!(
            "const BITS: u32 = ",
            $bits,
            "u;\nconst FP8: bool = ",
            $fp8,
            ";\nconst NVFP4: bool = false;\nconst ZP: bool = false;\n",
            "fn glob(z: u32) -> f32 { return 1.0; }\n"
        )
    };
    (q4z) => {
        concat!(
            "const BITS: u32 = 4u;\nconst FP8: bool = false;\nconst NVFP4: bool = false;\nconst ZP: bool = true;\n",
            "fn glob(z: u32) -> f32 { return 1.0; }\n"
        )
    };
    (nvfp4, $global:literal) => {
        concat!(
            "const BITS: u32 = 4u;\nconst FP8: bool = false;\nconst NVFP4: bool = true;\nconst ZP: bool = false;\n",
            "fn glob(z: u32) -> f32 { return ld_",
            $global,
            "(z); }\n"
        )
    };
}

/// The weight hooks of the quantized MoE families (`moe.wgsl` over codes and scales).
macro_rules! qmoe {
    () => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qmoe.wgsl"))
    };
}

macro_rules! program {
    () => {
        concat!(activations!(), include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/program.wgsl")))
    };
}

/// Activation functions shared by the unary and elementwise families.
pub const ACTIVATIONS: &str = activations!();

/// Workgroup reductions included by the families that need them.
pub const REDUCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/reduce.wgsl"));

/// Every shader family.
pub static FAMILIES: &[Family] = &[
    family!("unary", "unary", ACTIVATIONS, 1, false, ["silu", "gelu", "gelu_erf", "exp_op", "neg", "scale", "cast_float", "cast_int"]),
    family!("random", 0, false, ["random"]),
    family!("paged_attention", 6, true, ["paged_attention"]),
    family!("write_rows", 2, false, ["write_rows"]),
    family!("binary", 2, false, ["add", "sub", "mul", "div", "swiglu"]),
    family!("matmul", "matmul", "fn epi(i: u32, v: f32) -> f32 { return v; }\n", 2, false, ["matmul", "matvec"]),
    family!("matmul_ep0", "matmul", concat!(program!(), "const HAS_ACC: bool = true;\nconst SLOTS: u32 = 1u;\n",
        "fn load(s: u32, i: u32) -> f32 { return 0.0; }\nfn epi(i: u32, v: f32) -> f32 { return run_program(i, v); }\n"),
        2, false, ["matmul", "matvec"]),
    family!("matmul_ep1", "matmul", concat!(program!(), "const HAS_ACC: bool = true;\nconst SLOTS: u32 = 2u;\n",
        "fn load(s: u32, i: u32) -> f32 { return ld_c(i); }\nfn epi(i: u32, v: f32) -> f32 { return run_program(i, v); }\n"),
        3, false, ["matmul", "matvec"]),
    family!("matmul_ep2", "matmul", concat!(program!(), "const HAS_ACC: bool = true;\nconst SLOTS: u32 = 3u;\n",
        "fn load(s: u32, i: u32) -> f32 { if (s == 1u) { return ld_c(i); } return ld_d(i); }\n",
        "fn epi(i: u32, v: f32) -> f32 { return run_program(i, v); }\n"), 4, false, ["matmul", "matvec"]),
    family!("rms_norm", "rms_norm", concat!(
        "fn x_at(i: u32) -> f32 { return ld_a(i); }\nfn w_at(j: u32) -> f32 { return ld_b(j); }\n",
        "fn put_side(i: u32, v: f32) {}\n"), 2, true, ["rms_norm"]),
    family!("add_rms_norm", "rms_norm", concat!(
        "fn x_at(i: u32) -> f32 { return rnd_a(ld_a(i) + ld_b(i)); }\nfn w_at(j: u32) -> f32 { return ld_c(j); }\n",
        "fn put_side(i: u32, v: f32) {}\n"), 3, true, false, ["rms_norm"]),
    family!("add_rms_norm_side", "rms_norm", concat!(
        "fn x_at(i: u32) -> f32 { return rnd_a(ld_a(i) + ld_b(i)); }\nfn w_at(j: u32) -> f32 { return ld_c(j); }\n",
        "fn put_side(i: u32, v: f32) { st_side(i, v); }\n"), 3, true, true, ["rms_norm"]),
    family!("layer_norm", 3, true, ["layer_norm"]),
    family!("softmax", 1, true, ["softmax"]),
    family!("rope", 3, false, ["rope"]),
    family!("copy", 1, false, ["copy", "copy_int"]),
    family!("rope_heads", "rope_heads", "const NORM: bool = false;\nfn norm_w(j: u32) -> f32 { return 1.0; }\n", 3, true, ["rope_heads"]),
    family!("norm_rope_heads", "rope_heads", "const NORM: bool = true;\nfn norm_w(j: u32) -> f32 { return ld_d(j); }\n", 4, true, ["rope_heads"]),
    family!("gather", 2, false, ["gather_rows", "take_along"]),
    family!("scatter", 3, false, ["scatter_copy", "scatter_rows"]),
    family!("topk", 1, true, ["top_k"]),
    family!("attention", "attention", "fn mask_at(i: u32) -> f32 { return 0.0; }\n", 3, true, ["attention"]),
    family!("moe_route", 1, false, ["route", "align"]),
    family!("elementwise1", "elementwise", concat!(program!(), "const HAS_ACC: bool = false;\nconst SLOTS: u32 = 1u;\n",
        "fn load(s: u32, i: u32) -> f32 { return ld_a(i); }\n"), 1, false, ["elementwise"]),
    family!("elementwise2", "elementwise", concat!(program!(), "const HAS_ACC: bool = false;\nconst SLOTS: u32 = 2u;\n",
        "fn load(s: u32, i: u32) -> f32 { if (s == 0u) { return ld_a(i); } return ld_b(i); }\n"),
        2, false, ["elementwise"]),
    family!("elementwise3", "elementwise", concat!(program!(), "const HAS_ACC: bool = false;\nconst SLOTS: u32 = 3u;\n",
        "fn load(s: u32, i: u32) -> f32 { if (s == 0u) { return ld_a(i); } if (s == 1u) { return ld_b(i); } return ld_c(i); }\n"),
        3, false, ["elementwise"]),
    family!("elementwise", "elementwise", concat!(program!(), "const HAS_ACC: bool = false;\nconst SLOTS: u32 = 4u;\n",
        "fn load(s: u32, i: u32) -> f32 { if (s == 0u) { return ld_a(i); } if (s == 1u) { return ld_b(i); } ",
        "if (s == 2u) { return ld_c(i); } return ld_d(i); }\n"), 4, false, ["elementwise"]),
    family!("moe", "moe", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/moe_dense.wgsl")), 3, false,
        ["gate_up", "down", "combine", "gate_up_vec", "down_vec"]),
    // Q8 and Q4 codes: one file, the format fixed per module so decoding unrolls.
    family!("qmatmul", "qmatmul", q!(8, false), 3, false, ["qmatmul", "qmatvec", "qmatvec1"]),
    family!("qmatmul_q4", "qmatmul", q!(4, false), 3, false, ["qmatmul", "qmatvec", "qmatvec1"]),
    family!("qmatmul_q4z", "qmatmul", q!(q4z), 3, false, ["qmatmul", "qmatvec", "qmatvec1"]),
    family!("qmatmul_fp8", "qmatmul", q!(8, true), 3, false, ["qmatmul", "qmatvec", "qmatvec1"]),
    family!("qmatmul_nvfp4", "qmatmul", q!(nvfp4, "d"), 4, false, ["qmatmul", "qmatvec", "qmatvec1"]),
    family!("qmoe", "moe", concat!(q!(8, false), qmoe!()), 4, false, ["gate_up", "down", "gate_up_vec", "down_vec"]),
    family!("qmoe_q4", "moe", concat!(q!(4, false), qmoe!()), 4, false, ["gate_up", "down", "gate_up_vec", "down_vec"]),
    family!("qmoe_q4z", "moe", concat!(q!(q4z), qmoe!()), 4, false, ["gate_up", "down", "gate_up_vec", "down_vec"]),
    family!("qmoe_fp8", "moe", concat!(q!(8, true), qmoe!()), 4, false, ["gate_up", "down", "gate_up_vec", "down_vec"]),
    family!("qmoe_nvfp4", "moe", concat!(q!(nvfp4, "e"), qmoe!()), 5, false, ["gate_up", "down", "gate_up_vec", "down_vec"]),
    family!("attention_masked", "attention", "fn mask_at(i: u32) -> f32 { return ld_d(i); }\n", 4, true, ["attention"]),
];

/// The family named `name`.
pub fn family(name: &str) -> Result<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name).ok_or_else(|| Error::Backend(format!("wgpu: no shader family `{name}`")))
}

/// Full WGSL of a family specialised for `sig`.
pub fn assemble(f: &Family, sig: &Signature) -> String {
    let mut s = sig.prelude();
    if f.reduces {
        s.push_str(REDUCE);
    }
    s.push_str(f.prefix);
    s.push_str("// ---- shaders/");
    s.push_str(f.name);
    s.push_str(".wgsl ----\n");
    s.push_str(f.source);
    s
}

/// Parses and validates WGSL with naga, returning the module and its analysis.
pub fn validate(label: &str, src: &str) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| Error::Backend(format!("shader {label}: {}", e.emit_to_string(src))))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
        .validate(&module)
        .map_err(|e| Error::Backend(format!("shader {label}: {}", e.emit_to_string(src))))?;
    Ok((module, info))
}
