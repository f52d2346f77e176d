//! `HostTensor`: a tensor in host memory, stored in its own dtype, with f32 conversions.

use crate::graph::{DType, Shape, TensorDesc};
use crate::{Error, Result};
use half::{bf16, f16};

/// A contiguous tensor in host memory (raw little-endian bytes of its dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Type and shape.
    pub desc: TensorDesc,
    /// `desc.bytes()` bytes.
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// Wraps raw bytes, checking their length.
    pub fn from_bytes(desc: TensorDesc, bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() != desc.bytes() {
            return Err(Error::Data(format!(
                "{:?} {} needs {} bytes, got {}",
                desc.dtype,
                desc.shape,
                desc.bytes(),
                bytes.len()
            )));
        }
        Ok(HostTensor { desc, bytes })
    }

    /// Converts f32 values to `dtype` (round to nearest even; truncation for integers).
    pub fn from_f32(dtype: DType, shape: impl Into<Shape>, data: &[f32]) -> Result<Self> {
        let desc = TensorDesc::new(dtype, shape);
        if data.len() != desc.shape.numel() {
            return Err(Error::Data(format!(
                "shape {} needs {} values, got {}",
                desc.shape,
                desc.shape.numel(),
                data.len()
            )));
        }
        let bytes = encode(dtype, data);
        Ok(HostTensor { desc, bytes })
    }

    /// An i32 tensor.
    pub fn from_i32(shape: impl Into<Shape>, data: &[i32]) -> Result<Self> {
        Self::from_bytes(TensorDesc::new(DType::I32, shape), bytemuck::cast_slice(data).to_vec())
    }

    /// A u32 tensor.
    pub fn from_u32(shape: impl Into<Shape>, data: &[u32]) -> Result<Self> {
        Self::from_bytes(TensorDesc::new(DType::U32, shape), bytemuck::cast_slice(data).to_vec())
    }

    /// Values widened to f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        decode(self.desc.dtype, &self.bytes)
    }

    /// Values as i32 (floats truncated toward zero).
    pub fn to_i32(&self) -> Vec<i32> {
        match self.desc.dtype {
            DType::I32 | DType::U32 => {
                self.bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
            }
            _ => self.to_f32().iter().map(|&v| v as i32).collect(),
        }
    }
}

/// `v` rounded to `dtype` as storing it would (floats; f32 and integer dtypes unchanged).
pub fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::BF16 => bf16::from_f32(v).to_f32(),
        DType::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Encodes f32 values as `dtype` bytes.
pub fn encode(dtype: DType, data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * dtype.size());
    for &v in data {
        match dtype {
            DType::F32 => out.extend(v.to_le_bytes()),
            DType::F16 => out.extend(f16::from_f32(v).to_le_bytes()),
            DType::BF16 => out.extend(bf16::from_f32(v).to_le_bytes()),
            DType::I32 => out.extend((v as i32).to_le_bytes()),
            DType::U32 => out.extend((v as u32).to_le_bytes()),
        }
    }
    out
}

/// Decodes `dtype` bytes to f32 values.
pub fn decode(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let w = dtype.size();
    bytes
        .chunks_exact(w)
        .map(|c| match dtype {
            DType::F32 => f32::from_le_bytes(c.try_into().unwrap()),
            DType::F16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
            DType::BF16 => bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            DType::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f32,
            DType::U32 => u32::from_le_bytes(c.try_into().unwrap()) as f32,
        })
        .collect()
}
