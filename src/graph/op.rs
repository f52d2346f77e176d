//! The closed set of operations a graph is made of. Adding an op touches this enum, the shape
//! rules (`infer.rs`), the CPU oracle, one shader and (later) one CUDA file.

use super::{DType, Shape, TensorDesc};

/// Elementwise binary ops; both operands broadcast numpy-style (trailing dims aligned, each
/// dim equal or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

/// Elementwise unary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// x * sigmoid(x)
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    Gelu,
    /// GELU, exact: x * (1 + erf(x / sqrt 2)) / 2 (`nn.GELU()`, the vision patch mergers).
    GeluErf,
    /// e^x
    Exp,
    /// -x
    Neg,
}

/// How rotary embedding pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RopeStyle {
    /// Dimension i rotates with i + R/2 (`rotate_half`, used by Qwen and Llama).
    Half,
    /// Dimension 2i rotates with 2i + 1 (GPT-J style).
    Interleaved,
}

/// One step of an elementwise program: a stack machine over f32 values, evaluated once per
/// output element (see [`Op::Elementwise`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inst {
    /// Push input i's element (broadcast to the output's shape).
    Load(u8),
    /// Replace the top with op(top).
    Unary(UnaryOp),
    /// Replace the top with top * factor.
    Scale(f32),
    /// Pop b, then replace the top a with a op b.
    Binary(BinaryOp),
    /// Pop up, then replace the top gate with silu(gate) * up.
    SwiGlu,
    /// Round the top to a 16-bit float dtype (what storing an intermediate would do).
    Round(DType),
}

/// Most instructions in one elementwise program (what one params block carries).
pub const MAX_PROGRAM: usize = 24;
/// Deepest stack an elementwise program may use.
pub const MAX_STACK: usize = 8;
/// Most inputs of one elementwise program.
pub const MAX_PROGRAM_INPUTS: usize = 4;
/// Most extra inputs of a matmul epilogue.
pub const MAX_EPILOGUE_INPUTS: usize = 2;

/// One operation. Every op has one output; tensors are contiguous row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A fused chain of elementwise ops (made by the compiler's elementwise fusion): `code`
    /// runs once per output element over the inputs broadcast to the output's shape (the
    /// broadcast of all input shapes), intermediates in f32 (rounded where `Round` says),
    /// and the result is stored as `dtype`.
    Elementwise {
        /// The program.
        code: Vec<Inst>,
        /// Output dtype.
        dtype: DType,
    },
    /// A tensor of seeded random numbers (no inputs): element i is
    /// `random::uniform(seed, i, offset, scale)`, uniform on `[offset - scale, offset + scale)`,
    /// stored as `dtype`. Synthetic weights are generated on the device with it.
    Random {
        /// Key of the stream (see [`super::random::key`]).
        seed: u64,
        /// Centre of the range.
        offset: f32,
        /// Half-width of the range.
        scale: f32,
        /// Output dtype (a float type).
        dtype: DType,
        /// Output shape.
        shape: Shape,
    },
    /// Attention over a paged KV cache, batched over the new tokens of many sequences: q
    /// `[T, Hq, D]`, the new keys and values `[T, Hkv, D|Dv]`, the cache pools
    /// `[slots, Hkv, D|Dv]` (blocks of `block_size` slots) and an i32 index
    /// `[T, PAGED_META + max_blocks]`: per token, the keys cached for its sequence (`past`),
    /// the row of its sequence's first new token (`start`), then its sequence's block table.
    /// Token t attends to cached keys j < past (slot `table[j / bs] * bs + j % bs`) and to the
    /// new keys of rows start..=t (causal). Output `[T, Hq, Dv]`; grouped-query heads.
    PagedAttention {
        /// Multiplies q.k.
        scale: f32,
        /// Slots per cache block.
        block_size: usize,
    },
    /// Writes rows `[N, C...]` at the given indices of the output `[rows, C...]`, launched on
    /// an existing buffer whose other rows keep their contents (how the engine fills its
    /// paged KV cache). Never part of a compiled graph.
    WriteRows {
        /// Rows of the output.
        rows: usize,
    },
    /// A graph input (activations or weights), set by name before a run.
    Input {
        /// The name the caller sets it by.
        name: String,
    },
    /// Row gather (embedding lookup): table `[R, C]` (float), indices (i32/u32, any shape)
    /// -> `indices.shape + [C]`.
    Gather,
    /// Matrix product `a [..., M, K]` with `b`: `[..., N, K]` when `trans_b` (weights stored
    /// `[out, in]` as in safetensors) else `[..., K, N]`. Batch counts may differ when one
    /// divides the other: see [`super::matmul_dims`] (grouped-query attention reads K and V
    /// without copies; one input runs through a stack of expert weights).
    MatMul {
        /// Whether `b` is stored transposed (`[N, K]`).
        trans_b: bool,
    },
    /// `x [..., K]` times a weight-only quantized weight stored `[N, K]` (see [`crate::quant`]):
    /// inputs x (float), codes `U32 [N, K * bits / 32]`, scales `[N, K / group]` of the format's
    /// scale dtype (F16; F32 for FP8; NVFP4: E4M3 bytes in `U32 [N, K / group / 4]`), and for
    /// NVFP4 the weight's F32 global scale `[1]` (`[B]` for a stack); output
    /// `[..., N]` in x's dtype, f32 accumulation. Backends dequantize in registers. A stack of
    /// `B` weights (codes `[B, N, K * bits / 32]`, scales `[B, N, K / group]`: MoE experts)
    /// takes x `[M, K]` (every weight reads the same rows) or `[B, M, K]`; output `[B, M, N]`.
    QMatMul {
        /// The codes' format.
        format: crate::quant::QFormat,
        /// Inputs per scale.
        group: usize,
    },
    /// Broadcasting elementwise binary op.
    Binary(BinaryOp),
    /// Elementwise unary op.
    Unary(UnaryOp),
    /// x * factor
    Scale(f32),
    /// RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * w`; inputs x, w `[C]`.
    RmsNorm {
        /// Added to the mean square.
        eps: f32,
    },
    /// LayerNorm over the last axis; inputs x, w `[C]`, b `[C]`.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// silu(gate) * up; inputs gate and up of the same shape.
    SwiGlu,
    /// Softmax over the last axis, computed in f32.
    Softmax,
    /// Rotary embedding of x `[T, H, D]` by per-token angle tables: inputs x, cos `[T, R/2]`,
    /// sin `[T, R/2]` (f32, R even, R <= D; dims past R pass through). The tables come from a
    /// position table (`graph::rope`), so 1-D text, 2-D vision and interleaved multi-axis
    /// MRoPE are all this one op.
    Rope {
        /// Which dimensions form a rotating pair.
        style: RopeStyle,
    },
    /// Same data, new shape (same element count). Costs nothing on every backend.
    Reshape(Shape),
    /// Axis permutation: output dim i is input dim `perm[i]`.
    Permute(Vec<usize>),
    /// `len` elements of `axis` starting at `start`.
    Slice {
        /// Axis to cut.
        axis: usize,
        /// First index kept.
        start: usize,
        /// Number of indices kept.
        len: usize,
    },
    /// Concatenation of all inputs along `axis`.
    Concat {
        /// Axis to join along.
        axis: usize,
    },
    /// Row scatter: inputs base `[R, C]`, distinct indices `[N]`, rows `[N, C]`; output is
    /// base with row `idx[n]` replaced by (or, with `accumulate`, increased by) row n.
    /// Places image embeddings at image-token positions (and adds DeepStack features).
    ScatterRows {
        /// Add to the base row instead of replacing it.
        accumulate: bool,
    },
    /// Indices (i32) of the k largest values along the last axis, largest first; ties go to
    /// the lower index. Output `[..., k]`.
    TopK {
        /// How many to keep.
        k: usize,
    },
    /// Values of x at the given last-axis indices: inputs x `[..., C]`, idx `[..., k]`.
    TakeAlong,
    /// Index (i32) of the largest value along the last axis (ties: lowest index).
    ArgMax,
    /// Conversion to another dtype (float to int truncates toward zero).
    Cast(DType),
    /// Fused scaled dot-product attention (made by the compiler from the primitive pattern of
    /// [`super::GraphBuilder::attention`]): q `[Hq, T, D]`, k `[Hkv, S, D]`, v `[Hkv, S, Dv]`
    /// (Hkv divides Hq; q head h reads kv head `h / (Hq / Hkv)`), an optional additive mask
    /// `[T, S]` (f32); `causal` additionally hides key j from query t when
    /// `j > t + S - T` (queries are the last T positions). Output `[Hq, T, Dv]`, or with
    /// `tokens_first` `[T, Hq, Dv]` (what the output projection reads).
    Attention {
        /// Multiplies q.k before the mask and softmax.
        scale: f32,
        /// Hide future keys.
        causal: bool,
        /// Write the output tokens-first.
        tokens_first: bool,
    },
    /// A matmul whose result goes straight through an elementwise program (made by the
    /// compiler: bias adds, activations, residual adds after a projection): inputs a, b as for
    /// [`Op::MatMul`], then up to two more inputs broadcast to the product's shape. In `code`
    /// input 0 is the product (f32, before any rounding) and input i + 1 is extra input i.
    MatMulEpilogue {
        /// Whether `b` is stored transposed (`[N, K]`).
        trans_b: bool,
        /// The epilogue program.
        code: Vec<Inst>,
        /// Output dtype.
        dtype: DType,
    },
    /// Rotary embedding fused with its neighbours in an attention block (made by the
    /// compiler): x `[T, H, D]`, cos, sin as for [`Op::Rope`], and with `norm` a per-head
    /// RMSNorm weight w `[D]` applied first (Qwen3's q/k norm, result rounded to x's dtype).
    /// The output is written heads-first, `[H, T, D]`, as attention reads it.
    RopeHeads {
        /// Which dimensions form a rotating pair.
        style: RopeStyle,
        /// The RMSNorm epsilon when a norm comes first.
        norm: Option<f32>,
    },
    /// RMSNorm of a sum (the residual add and the next layer's norm in one kernel): inputs
    /// a, b (same shape and dtype) and w `[C]`; output `rms_norm(round(a + b)) * w` where
    /// round stores the sum in a's dtype. Launched with a side output (see
    /// `Backend::launch_with_side`) it also writes that sum, so the residual stream survives.
    AddRmsNorm {
        /// Added to the mean square.
        eps: f32,
    },
    /// Fused mixture-of-experts MLP (made by the compiler from the primitive pattern of
    /// [`super::GraphBuilder::moe`]): x `[T, H]`, router `[E, H]`, gate_up and down expert
    /// stacks (`[E, H, 2I]` and `[E, I, H]`, or with `trans_b` `[E, 2I, H]` and `[E, H, I]`).
    /// Per token: logits = x.router (rounded to x's dtype), softmax in f32, the `top_k`
    /// largest (ties to the lower expert), weights renormalised to sum 1 (then rounded);
    /// each chosen expert computes silu(x.gate) * (x.up) and .down (each product rounded to
    /// x's dtype); the output is the weighted sum over the chosen experts. Output `[T, H]`.
    /// Work is proportional to the tokens routed to each expert, never tokens x experts.
    Moe {
        /// Experts per token.
        top_k: usize,
        /// Expert weights stored `[E, out, in]` (as in safetensors) rather than `[E, in, out]`.
        trans_b: bool,
    },
    /// [`Op::Moe`] over weight-only quantized experts (made by the compiler from
    /// [`super::GraphBuilder::qmoe`]): x `[T, H]`, router `[E, H]` (full precision), then the
    /// gate_up stack's codes `U32 [E, 2I, H * bits / 32]` and scales (`[E, 2I, H / group]`, dtype
    /// as `QMatMul`'s), the down stack's codes `U32 [E, H, I * bits / 32]` and scales; for NVFP4
    /// then the gate_up and down stacks' global scales `F32 [E]`
    /// (stored `[E, out, in]`). Semantics of `Op::Moe` with each expert weight dequantized.
    QMoe {
        /// Experts per token.
        top_k: usize,
        /// The codes' format.
        format: crate::quant::QFormat,
        /// Inputs per scale.
        group: usize,
    },
}

impl UnaryOp {
    /// The op's number in the kernels (the WGSL and CUDA programs and unary kernels).
    pub fn code(self) -> u32 {
        match self {
            UnaryOp::Silu => 0,
            UnaryOp::Gelu => 1,
            UnaryOp::GeluErf => 2,
            UnaryOp::Exp => 3,
            UnaryOp::Neg => 4,
        }
    }
}

impl BinaryOp {
    /// The op's number in the kernels (SwiGLU, not a `BinaryOp`, is 4 in the binary kernels).
    pub fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        }
    }
}

impl Inst {
    /// The instruction as the program kernels read it: a word (opcode in the low byte, operand
    /// above it) and, for `Scale`, its factor; None for a rounding to f32 (a no-op).
    pub fn encode(&self) -> Option<(u32, Option<f32>)> {
        Some(match *self {
            Inst::Load(i) => ((i as u32) << 8, None),
            Inst::Unary(op) => (1 | (op.code() << 8), None),
            Inst::Scale(f) => (2, Some(f)),
            Inst::Binary(op) => (3 | (op.code() << 8), None),
            Inst::SwiGlu => (4, None),
            Inst::Round(DType::BF16) => (5, None),
            Inst::Round(DType::F16) => (5 | (1 << 8), None),
            Inst::Round(_) => return None,
        })
    }
}

impl Op {
    /// Short name used in errors, logs and kernel tables.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Random { .. } => "random",
            Op::PagedAttention { .. } => "paged_attention",
            Op::WriteRows { .. } => "write_rows",
            Op::Gather => "gather",
            Op::MatMul { .. } => "matmul",
            Op::QMatMul { .. } => "qmatmul",
            Op::Binary(BinaryOp::Add) => "add",
            Op::Binary(BinaryOp::Sub) => "sub",
            Op::Binary(BinaryOp::Mul) => "mul",
            Op::Binary(BinaryOp::Div) => "div",
            Op::Unary(UnaryOp::Silu) => "silu",
            Op::Unary(UnaryOp::Gelu) => "gelu",
            Op::Unary(UnaryOp::GeluErf) => "gelu_erf",
            Op::Unary(UnaryOp::Exp) => "exp",
            Op::Unary(UnaryOp::Neg) => "neg",
            Op::Scale(_) => "scale",
            Op::RmsNorm { .. } => "rms_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::SwiGlu => "swiglu",
            Op::Softmax => "softmax",
            Op::Rope { .. } => "rope",
            Op::Reshape(_) => "reshape",
            Op::Permute(_) => "permute",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::ScatterRows { .. } => "scatter_rows",
            Op::TopK { .. } => "top_k",
            Op::TakeAlong => "take_along",
            Op::ArgMax => "argmax",
            Op::Cast(_) => "cast",
            Op::Attention { .. } => "attention",
            Op::Moe { .. } => "moe",
            Op::QMoe { .. } => "qmoe",
            Op::Elementwise { .. } => "elementwise",
            Op::AddRmsNorm { .. } => "add_rms_norm",
            Op::MatMulEpilogue { .. } => "matmul_epilogue",
            Op::RopeHeads { norm: None, .. } => "rope_heads",
            Op::RopeHeads { norm: Some(_), .. } => "norm_rope_heads",
        }
    }

    /// The type of the second output a kernel of this op can write (when launched with a
    /// side output), given its input types.
    pub fn side_output(&self, inputs: &[&TensorDesc]) -> Option<TensorDesc> {
        match self {
            Op::AddRmsNorm { .. } => inputs.first().map(|d| (*d).clone()),
            _ => None,
        }
    }

    /// True for ops that only reinterpret their input's buffer and launch no kernel.
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape(_))
    }
}
