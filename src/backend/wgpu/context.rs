//! Finding adapters and opening a device with the adapter's own limits.

use crate::backend::DeviceInfo;
use crate::{Error, Result};

/// How to pick and configure the wgpu device.
#[derive(Debug, Clone, Default)]
pub struct WgpuOptions {
    /// Refuse software adapters (lavapipe, WARP, SwiftShader).
    pub hardware_only: bool,
    /// Only adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Cap on bytes per binding below the device's limit, to exercise tensor splitting in tests.
    pub max_binding_bytes: Option<u64>,
}

/// An opened device.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: DeviceInfo,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu can see, best first.
pub fn adapters() -> Vec<wgpu::Adapter> {
    let mut v = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    v.sort_by_key(rank);
    v
}

fn rank(a: &wgpu::Adapter) -> (u8, u8) {
    let i = a.get_info();
    let ty = match i.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match i.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, api)
}

/// Describes an adapter (limits as it reports them).
pub fn describe(a: &wgpu::Adapter) -> DeviceInfo {
    let (i, f, l) = (a.get_info(), a.features(), a.limits());
    DeviceInfo {
        backend: "wgpu",
        name: i.name,
        api: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        fp8_mma: false,
        max_buffer_bytes: l.max_buffer_size,
        max_binding_bytes: l.max_storage_buffer_binding_size,
    }
}

/// Opens the best adapter allowed by `opts`, requesting its own limits.
pub fn open(opts: &WgpuOptions) -> Result<Context> {
    let all = adapters();
    let seen: Vec<String> =
        all.iter().map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().device_type)).collect();
    let adapter = all
        .into_iter()
        .filter(|a| !opts.hardware_only || a.get_info().device_type != wgpu::DeviceType::Cpu)
        .find(|a| {
            opts.adapter_name
                .as_ref()
                .is_none_or(|n| a.get_info().name.to_lowercase().contains(&n.to_lowercase()))
        })
        .ok_or_else(|| {
            let what = if opts.hardware_only { "hardware GPU adapter" } else { "adapter" };
            if seen.is_empty() {
                Error::Backend(format!(
                    "no wgpu {what} found (no Vulkan/Metal/DX12/GL driver; on Linux without a GPU install lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)"
                ))
            } else {
                Error::Backend(format!("no wgpu {what} matches; found: {}", seen.join(", ")))
            }
        })?;
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("lumen"),
        required_features: wgpu::Features::empty(),
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| Error::Backend(format!("wgpu: cannot open {}: {e}", adapter.get_info().name)))?;
    let mut info = describe(&adapter);
    if let Some(cap) = opts.max_binding_bytes {
        info.max_binding_bytes = info.max_binding_bytes.min(cap);
    }
    Ok(Context { device, queue, limits, info })
}
