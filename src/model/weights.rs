//! Checkpoint weights: single or sharded safetensors (`model.safetensors.index.json`),
//! memory-mapped, f32 / f16 / bf16 kept in their stored dtype (backends widen on the fly).

use crate::graph::{DType, Shape, TensorDesc};
use crate::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One tensor of a checkpoint, borrowed from the mapped file.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    /// Its stored dtype.
    pub dtype: DType,
    /// Its stored shape.
    pub shape: &'a [usize],
    /// Raw little-endian bytes.
    pub bytes: &'a [u8],
}

impl WeightView<'_> {
    /// Type of the tensor.
    pub fn desc(&self) -> TensorDesc {
        TensorDesc::new(self.dtype, self.shape.to_vec())
    }
}

struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// All tensors of a checkpoint directory, by name.
pub struct Weights {
    maps: Vec<Mmap>,
    files: Vec<PathBuf>,
    entries: HashMap<String, Entry>,
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
                "{}: tensor `{name}` has dtype {other:?}; lumen reads f32, f16, bf16, i32 and u32",
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
        let mut w = Weights { maps: Vec::new(), files: files.to_vec(), entries: HashMap::new() };
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
                let entry = Entry {
                    file: fi,
                    dtype: dtype(info.dtype, &name, path)?,
                    shape: info.shape.clone(),
                    start: base + info.data_offsets.0,
                    end: base + info.data_offsets.1,
                };
                if let Some(prev) = w.entries.insert(name.clone(), entry) {
                    return Err(Error::Model(format!(
                        "tensor `{name}` is in both {} and {}",
                        files[prev.file].display(),
                        path.display()
                    )));
                }
            }
            w.maps.push(map);
        }
        Ok(w)
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor by name, or an error naming it.
    pub fn get(&self, name: &str) -> Result<WeightView<'_>> {
        let e = self.entries.get(name).ok_or_else(|| {
            let where_ = self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
            Error::Model(format!("missing tensor `{name}` (looked in {where_})"))
        })?;
        Ok(WeightView { dtype: e.dtype, shape: &e.shape, bytes: &self.maps[e.file][e.start..e.end] })
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
