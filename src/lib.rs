//! lumen runs vision-language models (first the Qwen3-VL family) on any GPU: WGSL compute
//! shaders through wgpu everywhere, with a CPU oracle every kernel is checked against.
//!
//! Pipeline: model code builds a [`graph::Graph`] with [`graph::GraphBuilder`]; an
//! [`exec::Executor`] binds it to a [`backend::Backend`] chosen by [`backend::select`] and
//! runs it.
//!
//! ```
//! use lumen::{backend::cpu::CpuBackend, exec::Executor, graph::*, HostTensor};
//! let mut g = GraphBuilder::new();
//! let x = g.input("x", TensorDesc::new(DType::F32, [2, 3])).unwrap();
//! let y = g.softmax(x).unwrap();
//! g.output(y).unwrap();
//! let cpu = CpuBackend::new();
//! let mut ex = Executor::new(&cpu, g.build()).unwrap();
//! ex.set("x", &HostTensor::from_f32(DType::F32, [2, 3], &[1., 2., 3., 0., 0., 0.]).unwrap()).unwrap();
//! ex.run().unwrap();
//! let p = ex.read(y).unwrap().to_f32();
//! assert!((p[3] - 1.0 / 3.0).abs() < 1e-6);
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod bench;
pub mod compile;
pub mod engine;
mod error;
pub mod exec;
pub mod graph;
pub mod io;
pub mod model;
pub mod selftest;
pub mod serve;
mod tensor;

pub use api::{
    CancelHandle, ChatMessage, Completion, Content, FinishReason, Generation, GenerationOptions, ImageSource,
    LoadOptions, LoadProgress, Lumen, ModelInfo, ModelSource,
};
pub use error::{Error, Result};
pub use tensor::{decode, encode, HostTensor};
