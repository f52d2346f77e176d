//! Pre-quantized compressed-tensors checkpoints (`quant_method: compressed-tensors`, `format:
//! pack-quantized`, as llm-compressor writes GPTQ / round-to-nearest W4A16 and W8A16 models):
//! each quantized linear weight `W [N, K]` is `W_packed` (int32 `[N, K * bits / 32]`, codes
//! `q + 2^(bits - 1)` packed little-endian along the inputs), `W_scale [N, K / group]` (`[N, 1]`
//! by channel) and `W_shape` (`[N, K]`). An int4 weight's words are lumen's q4 codes as they
//! are; an int8 weight's become q8's two's-complement codes by flipping each byte's top bit;
//! scales become f16 when that is exact (else the load stops, naming the tensor). Symmetric
//! schemes only: zero points and activation ordering are refused.

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::graph::DType;
use crate::quant::QFormat;
use crate::tensor::{decode, encode};
use crate::{Error, Result};
use std::collections::HashSet;

/// The packed codes, scales and shape tensors of weight `name` (`X.weight`).
fn parts(name: &str) -> [String; 3] {
    ["_packed", "_scale", "_shape"].map(|s| format!("{name}{s}"))
}

impl Qwen3VL {
    /// The format and group of a weight the checkpoint stores packed (None otherwise).
    pub(crate) fn stored_packed(&self, name: &str) -> Option<Quantization> {
        let p = self.config.packed?;
        let [codes, _, _] = parts(name);
        let w = self.weights.get(&codes).ok()?;
        let format = if p.bits == 4 { QFormat::Q4 } else { QFormat::Q8 };
        let k = w.shape.get(1)? * format.per_word();
        Some(Quantization::with_group(format, p.group.unwrap_or(k)))
    }

    /// Checks every packed tensor: a text decoder linear weight the config implies (`specs`),
    /// with codes, scales and shape of matching sizes. Returns the names of the tensors read.
    pub(crate) fn check_packed(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        let packed: Vec<String> =
            self.weights.names().filter_map(|n| n.strip_suffix("_packed").map(String::from)).collect();
        if self.config.packed.is_none() {
            return match packed.first() {
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}_packed` looks packed but config.json has no compressed-tensors quantization_config"
                ))),
                None => Ok(HashSet::new()),
            };
        };
        if let Some(z) = self.weights.names().find(|n| n.ends_with("_zero_point") || n.ends_with("_g_idx")) {
            return Err(Error::Model(format!(
                "tensor `{z}`: zero points and activation orders are not supported (symmetric weights are)"
            )));
        }
        let mut read = HashSet::new();
        for name in packed {
            let spec = specs.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone());
            let (Some([n, k]), true) =
                (spec.as_deref().and_then(|s| <[usize; 2]>::try_from(s).ok()), self.is_text_linear(&name))
            else {
                return Err(Error::Model(format!(
                    "packed tensor `{name}_packed`: lumen reads packed weights of the text decoder's dense linear \
                     layers (not yet of MoE experts, the MoE router or the vision tower)"
                )));
            };
            let q = self.stored_packed(&name).ok_or_else(|| Error::Model(format!("`{name}_packed` is unreadable")))?;
            let [codes, scales, shape] = parts(&name);
            let cw = self.weights.get(&codes)?;
            let sw = self.weights.get(&scales)?;
            let pw = q.format.per_word();
            let groups = if k.is_multiple_of(q.group) { k / q.group } else { 0 };
            let fine = cw.shape == [n, k / pw]
                && matches!(cw.dtype, DType::I32 | DType::U32)
                && k.is_multiple_of(pw)
                && groups > 0
                && q.group.is_multiple_of(pw)
                && sw.shape == [n, groups]
                && sw.dtype.is_float();
            if !fine {
                return Err(Error::Model(format!(
                    "`{name}` [{n}, {k}] in {} with groups of {}: expects `{codes}` int32 [{n}, {}] and `{scales}` \
                     [{n}, {groups}] (groups a multiple of {pw} dividing {k}), got {:?} {:?} and {:?} {:?}",
                    q.format.name(),
                    q.group,
                    k / pw,
                    cw.dtype,
                    cw.shape,
                    sw.dtype,
                    sw.shape
                )));
            }
            if let Ok(s) = self.weights.get(&shape) {
                // Two u32 words per i64 value: the low words must be N and K.
                let v: Vec<u32> = bytemuck::pod_collect_to_vec(s.stored(&shape)?);
                let dims: Vec<u32> = if s.dtype == DType::U32 && v.len() == 4 { vec![v[0], v[2]] } else { v };
                if dims != [n as u32, k as u32] {
                    return Err(Error::Model(format!("`{shape}` says {dims:?}, the config implies [{n}, {k}]")));
                }
                read.insert(shape);
            }
            read.extend([codes, scales]);
        }
        Ok(read)
    }

    /// Uploads a packed weight: its codes in lumen's layout, its scales as exact f16.
    pub(crate) fn upload_packed(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
    ) -> Result<()> {
        let q = self.stored_packed(name).ok_or_else(|| Error::Model(format!("`{name}` is not packed")))?;
        let [cn, sn, shape] = parts(name);
        let cw = self.weights.get(&cn)?;
        let sw = self.weights.get(&sn)?;
        let values = decode(sw.dtype, sw.stored(&sn)?);
        if let Some(bad) = values.iter().find(|v| half::f16::from_f32(**v).to_f32() != **v) {
            return Err(Error::Model(format!("`{sn}` holds {bad:e}, which an f16 scale cannot hold exactly")));
        }
        let raw = cw.stored(&cn)?;
        if q.format == QFormat::Q8 {
            // Offset codes (q + 128) to two's complement: flip each byte's top bit.
            let flipped: Vec<u8> = raw.iter().map(|b| b ^ 0x80).collect();
            backend.upload(codes, &flipped)?;
        } else {
            backend.upload(codes, raw)?;
        }
        backend.upload(scales, &encode(DType::F16, &values))?;
        for t in [&cn, &sn, &shape] {
            self.weights.release(t);
        }
        Ok(())
    }
}
