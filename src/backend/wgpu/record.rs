//! Encodes the queued launches of a run into one command encoder: one params buffer for all
//! dispatches (dynamic offsets), consecutive dispatches in one compute pass.

use super::context::Context;
use super::pipeline::Pipe;
use super::prelude::PARAMS_BYTES;
use std::sync::Arc;

/// One queued command.
pub enum Cmd {
    /// A compute dispatch with its bindings (params first, then storage chunks in order).
    Dispatch { pipe: Arc<Pipe>, buffers: Vec<wgpu::Buffer>, params: Vec<u32>, groups: [u32; 3] },
    /// Copy `dst.size()` bytes of `src` over `dst` (poisoning outputs in tests).
    Fill { src: wgpu::Buffer, dst: wgpu::Buffer },
}

/// Records `cmds` into `enc`, in order.
pub fn record(ctx: &Context, cmds: Vec<Cmd>, enc: &mut wgpu::CommandEncoder) {
    if cmds.is_empty() {
        return;
    }
    let dev = &ctx.device;
    let stride = PARAMS_BYTES.max(ctx.limits.min_uniform_buffer_offset_alignment as u64);
    let n = cmds.iter().filter(|c| matches!(c, Cmd::Dispatch { .. })).count().max(1) as u64;
    let mut blob = vec![0u8; (n * stride) as usize];
    let mut slot = 0usize;
    for c in &cmds {
        if let Cmd::Dispatch { params, .. } = c {
            let bytes: &[u8] = bytemuck::cast_slice(params);
            let at = slot * stride as usize;
            blob[at..at + bytes.len()].copy_from_slice(bytes);
            slot += 1;
        }
    }
    let params = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("lumen params"),
        size: n * stride,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&params, 0, &blob);
    let mut slot = 0u64;
    let mut i = 0;
    while i < cmds.len() {
        if let Cmd::Fill { src, dst } = &cmds[i] {
            enc.copy_buffer_to_buffer(src, 0, dst, 0, dst.size());
            i += 1;
            continue;
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        while let Some(Cmd::Dispatch { pipe, buffers, groups, .. }) = cmds.get(i) {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &params,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAMS_BYTES),
                }),
            }];
            for (j, b) in buffers.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: b.as_entire_binding() });
            }
            let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipe.layout,
                entries: &entries,
            });
            pass.set_pipeline(&pipe.pipeline);
            pass.set_bind_group(0, &bg, &[(slot * stride) as u32]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            slot += 1;
            i += 1;
        }
    }
}
