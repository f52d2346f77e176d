//! Pipeline cache: one shader module per (family, binding signature), one pipeline per entry
//! point, each built once per device.

use super::prelude::{Signature, PARAMS_BYTES};
use super::shaders::{assemble, family, validate};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A compute pipeline with its bind group layout.
pub struct Pipe {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type Key = (&'static str, &'static str, Signature);

/// Pipelines by (family, entry, signature).
pub struct Pipelines {
    chunk_words: u32,
    cache: Mutex<HashMap<Key, Arc<Pipe>>>,
}

impl Pipelines {
    pub fn new(chunk_words: u32) -> Self {
        Pipelines { chunk_words, cache: Mutex::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn chunk_words(&self) -> u32 {
        self.chunk_words
    }

    pub fn get(
        &self,
        dev: &wgpu::Device,
        fam: &'static str,
        entry: &'static str,
        sig: &Signature,
    ) -> Result<Arc<Pipe>> {
        let key = (fam, entry, sig.clone());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let f = family(fam)?;
        if !f.entries.contains(&entry) {
            return Err(Error::Backend(format!("wgpu: shader family {fam} has no entry {entry}")));
        }
        let src = assemble(f, sig);
        // naga checks the source first so a shader bug is an error here, not a device panic.
        validate(fam, &src)?;
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(fam),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let n_in: u32 = sig.inputs.iter().map(|i| i.1).sum();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
            },
            count: None,
        }];
        for b in 0..sig.storage_bindings() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: b + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: b < n_in },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout =
            dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(fam), entries: &entries });
        let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(fam),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let p = Arc::new(Pipe { pipeline, layout });
        cache.insert(key, p.clone());
        Ok(p)
    }
}
