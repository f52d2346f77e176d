//! Checkpoint weights: single or sharded safetensors (`model.safetensors.index.json`),
//! memory-mapped, f32 / f16 / bf16 kept in their stored dtype (backends widen on the fly);
//! or synthetic weights (names and shapes only), generated on the device from a seed.

use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{random, DType, Op, Shape, TensorDesc};
use crate::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a tensor's values come from.
#[derive(Debug, Clone, Copy)]
pub enum WeightData<'a> {
    /// Raw little-endian bytes, borrowed from the mapped file.
    Bytes(&'a [u8]),
    /// Seeded random numbers (`Op::Random`): uniform on `[offset - scale, offset + scale)`.
    Random {
        /// Key of this tensor's stream.
        seed: u64,
        /// Centre of the range.
        offset: f32,
        /// Half-width of the range.
        scale: f32,
    },
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    /// Its stored dtype.
    pub dtype: DType,
    /// Its stored shape.
    pub shape: &'a [usize],
    /// Its values.
    pub data: WeightData<'a>,
}

impl<'a> WeightView<'a> {
    /// Type of the tensor.
    pub fn desc(&self) -> TensorDesc {
        TensorDesc::new(self.dtype, self.shape.to_vec())
    }

    /// The stored bytes (None for synthetic weights).
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.data {
            WeightData::Bytes(b) => Some(b),
            WeightData::Random { .. } => None,
        }
    }

    /// The stored bytes of the tensor `name` (this one), or an error naming it when it is
    /// synthetic (where a checkpoint's own bytes are needed).
    pub fn stored(&self, name: &str) -> Result<&'a [u8]> {
        self.bytes().ok_or_else(|| Error::Model(format!("`{name}` has no stored bytes")))
    }

    /// Puts the tensor on `backend`: uploads stored bytes, or generates synthetic values there
    /// (no host copy of a synthetic model ever exists).
    pub fn to_device(&self, backend: &dyn Backend) -> Result<BufferId> {
        let desc = self.desc();
        let buf = backend.alloc(&desc)?;
        let put = match self.data {
            WeightData::Bytes(b) => backend.upload(buf, b),
            WeightData::Random { seed, offset, scale } => {
                let op = Op::Random { seed, offset, scale, dtype: self.dtype, shape: desc.shape.clone() };
                backend.launch(&Kernel { op, inputs: vec![], output: desc }, &[], buf)
            }
        };
        if let Err(e) = put {
            backend.free(buf);
            return Err(e);
        }
        Ok(buf)
    }
}

enum Source {
    Stored { file: usize, start: usize, end: usize },
    Random { offset: f32, scale: f32 },
}

struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    source: Source,
    /// A tensor of bytes (FP8 E4M3, or U8: NVFP4's packed codes) and its own shape; `dtype` /
    /// `shape` then describe its bytes as u32 words of four along the last axis (the layout of
    /// quantized codes, `crate::quant`).
    bytes: Option<(Dtype, Vec<usize>)>,
}

/// All tensors of a checkpoint directory (or a synthetic model), by name.
pub struct Weights {
    maps: Vec<Mmap>,
    files: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
    seed: u64,
}

/// The distribution of a synthetic weight: norm scales near 1, everything else uniform with
/// the variance of 1 / fan-in (the last dimension), which keeps activations in range.
pub fn synthetic_range(name: &str, shape: &[usize]) -> (f32, f32) {
    if name.contains("norm") && name.ends_with("weight") {
        (1.0, 0.1)
    } else {
        let fan_in = *shape.last().unwrap_or(&1) as f32;
        (0.0, (3.0 / fan_in.max(1.0)).sqrt())
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

fn dtype(d: Dtype, name: &str, path: &Path) -> Result<DType> {
    Ok(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        other => {
            return Err(Error::Model(format!(
                "{}: tensor `{name}` has dtype {other:?}; lumen reads f32, f16, bf16, i32, u32, i64 and f8_e4m3",
                path.display()
            )))
        }
    })
}

impl Weights {
    /// Opens `dir/model.safetensors`, or every shard named by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", index.display())))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Model(format!("{}: no `weight_map` object", index.display())))?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            shards.sort();
            shards.dedup();
            if shards.is_empty() {
                return Err(Error::Model(format!("{}: `weight_map` names no shard", index.display())));
            }
            shards.iter().map(|s| dir.join(s)).collect()
        } else {
            vec![dir.join("model.safetensors")]
        };
        Self::open_files(&files)
    }

    /// Opens the given safetensors files as one set of tensors.
    pub fn open_files(files: &[PathBuf]) -> Result<Self> {
        let mut w = Weights { maps: Vec::new(), files: files.to_vec(), entries: BTreeMap::new(), seed: 0 };
        for (fi, path) in files.iter().enumerate() {
            let f = File::open(path).map_err(|e| io(path, e))?;
            // SAFETY: the file is mapped read-only; lumen never writes to it, and a checkpoint
            // changed on disk while mapped is outside what any loader can defend against.
            let map = unsafe { Mmap::map(&f) }.map_err(|e| io(path, e))?;
            // Validates the header and that every tensor lies inside the file.
            SafeTensors::deserialize(&map)
                .map_err(|e| Error::Model(format!("{}: not a valid safetensors file: {e}", path.display())))?;
            let (n, meta) =
                SafeTensors::read_metadata(&map).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
            let base = 8 + n;
            for (name, info) in meta.tensors() {
                let source =
                    Source::Stored { file: fi, start: base + info.data_offsets.0, end: base + info.data_offsets.1 };
                let entry = if matches!(info.dtype, Dtype::F8_E4M3 | Dtype::U8) {
                    let mut words = info.shape.clone();
                    match words.last_mut() {
                        Some(last) if *last % 4 == 0 => *last /= 4,
                        _ => {
                            return Err(Error::Model(format!(
                                "{}: {:?} tensor `{name}` of shape {:?}: lumen reads byte tensors whose last axis \
                                 is a multiple of 4",
                                path.display(),
                                info.dtype,
                                info.shape
                            )))
                        }
                    }
                    Entry { dtype: DType::U32, shape: words, source, bytes: Some((info.dtype, info.shape.clone())) }
                } else if info.dtype == Dtype::I64 {
                    // Metadata (compressed-tensors' weight_shape): each value as two u32 words.
                    let mut words = info.shape.clone();
                    match words.last_mut() {
                        Some(last) => *last *= 2,
                        None => words.push(2),
                    }
                    Entry { dtype: DType::U32, shape: words, source, bytes: None }
                } else {
                    Entry { dtype: dtype(info.dtype, &name, path)?, shape: info.shape.clone(), source, bytes: None }
                };
                if let Some(Entry { source: Source::Stored { file, .. }, .. }) = w.entries.insert(name.clone(), entry) {
                    return Err(Error::Model(format!(
                        "tensor `{name}` is in both {} and {}",
                        files[file].display(),
                        path.display()
                    )));
                }
            }
            w.maps.push(map);
        }
        Ok(w)
    }

    /// Synthetic weights: the given tensors in `dtype`, with values generated from `seed` and
    /// each tensor's name (see [`synthetic_range`]) wherever they are put.
    pub fn synthetic(tensors: &[(String, Vec<usize>)], dtype: DType, seed: u64) -> Result<Self> {
        if !dtype.is_float() {
            return Err(Error::Input(format!("synthetic weights must be a float type, not {dtype:?}")));
        }
        let mut entries = BTreeMap::new();
        for (name, shape) in tensors {
            let (offset, scale) = synthetic_range(name, shape);
            entries.insert(
                name.clone(),
                Entry { dtype, shape: shape.clone(), source: Source::Random { offset, scale }, bytes: None },
            );
        }
        Ok(Weights { maps: Vec::new(), files: Vec::new(), entries, seed })
    }

    /// Every tensor name, sorted (so a check over them names the same tensor first every run).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Drops the pages of `name` in the mapped checkpoint from this process's memory once the
    /// tensor is on the device (Unix; elsewhere nothing happens): loading then never holds the
    /// checkpoint and its device copy at once. A later read faults the pages back in from the
    /// file, unchanged.
    pub fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(Entry { source: Source::Stored { file, start, end }, .. }) = self.entries.get(name) {
            // SAFETY: the map is a read-only shared file mapping (`Mmap::map`): MADV_DONTNEED
            // only evicts its resident pages, and any read, now or later, sees the file's
            // bytes again. Nothing is written through it.
            let _ = unsafe {
                self.maps[*file].unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *start, end - start)
            };
        }
    }

    /// The shape of an FP8 E4M3 tensor (which [`Self::get`] shows as u32 words of four codes);
    /// None for any other tensor.
    pub fn fp8_shape(&self, name: &str) -> Option<&[usize]> {
        self.byte_shape(name, Dtype::F8_E4M3)
    }

    /// The shape of a U8 tensor (NVFP4 codes, two a byte; shown as u32 words of four bytes);
    /// None for any other tensor.
    pub fn u8_shape(&self, name: &str) -> Option<&[usize]> {
        self.byte_shape(name, Dtype::U8)
    }

    fn byte_shape(&self, name: &str, dtype: Dtype) -> Option<&[usize]> {
        self.entries.get(name).and_then(|e| e.bytes.as_ref()).filter(|(d, _)| *d == dtype).map(|(_, s)| s.as_slice())
    }

    /// A tensor by name, or an error naming it.
    pub fn get(&self, name: &str) -> Result<WeightView<'_>> {
        let e = self.entries.get(name).ok_or_else(|| {
            let where_ = self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
            Error::Model(format!("missing tensor `{name}` (looked in {where_})"))
        })?;
        let data = match e.source {
            Source::Stored { file, start, end } => WeightData::Bytes(&self.maps[file][start..end]),
            Source::Random { offset, scale } => {
                WeightData::Random { seed: random::key(self.seed, name), offset, scale }
            }
        };
        Ok(WeightView { dtype: e.dtype, shape: &e.shape, data })
    }

    /// A tensor that must have `shape`; the error names the tensor and both shapes.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<WeightView<'_>> {
        let v = self.get(name)?;
        if v.shape != shape {
            return Err(Error::Model(format!(
                "tensor `{name}` has shape {}, the config implies {}",
                Shape::new(v.shape.to_vec()),
                Shape::new(shape.to_vec())
            )));
        }
        Ok(v)
    }
}
