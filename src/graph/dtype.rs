//! Element types and shapes of tensors.

use std::fmt;

/// Element type of a tensor. 16-bit floats are stored as raw bits (little-endian), as in
/// safetensors; every backend computes in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the upper half of a binary32).
    BF16,
    /// Signed 32-bit integer (token ids, indices).
    I32,
    /// Unsigned 32-bit integer.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// True for the integer types.
    pub fn is_int(self) -> bool {
        !self.is_float()
    }
}

/// A tensor shape: row-major, every tensor contiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// Builds a shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// The last dimension (1 for a scalar).
    pub fn last(&self) -> usize {
        self.0.last().copied().unwrap_or(1)
    }
    /// Number of rows when the tensor is viewed as `[rows, last]`.
    pub fn rows(&self) -> usize {
        self.numel() / self.last().max(1)
    }
    /// Strides (in elements) to read this tensor as if broadcast to `out`: aligned to the
    /// trailing dims, 0 on dims this tensor lacks or has as 1. `out` must be a broadcast of it.
    pub fn broadcast_strides(&self, out: &Shape) -> Vec<usize> {
        let pad = out.rank() - self.rank();
        let st = self.strides();
        (0..out.rank()).map(|d| if d < pad || self.0[d - pad] == 1 { 0 } else { st[d - pad] }).collect()
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(d.to_vec())
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(d)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The type of one tensor: dtype and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorDesc {
    /// Builds a descriptor.
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> Self {
        TensorDesc { dtype, shape: shape.into() }
    }
    /// Bytes the tensor occupies.
    pub fn bytes(&self) -> usize {
        self.shape.numel() * self.dtype.size()
    }
}
