//! lumen runs vision-language models (first the Qwen3-VL family) on any GPU: tuned CUDA
//! kernels on NVIDIA, WGSL compute shaders through wgpu everywhere else (Vulkan, Metal, DX12),
//! with a CPU oracle every kernel is checked against.
//!
//! Applications start with [`Lumen`]: load a model once, ask it from any thread, read the
//! answer as it streams, cancel it from anywhere (see [`api`]).
//!
//! ```
//! use lumen::{ChatMessage, Content, GenerationOptions, LoadOptions, Lumen, ModelSource};
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen3vl-dense");
//! # let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/images/rocket.jpg");
//! let model = Lumen::load(&ModelSource::dir(dir), &LoadOptions::default())?;
//! let question = ChatMessage::user(vec![Content::image_path(photo), Content::text("What is this?")]);
//! for piece in model.generate(&[question], &GenerationOptions::greedy(16))? {
//!     print!("{}", piece?);
//! }
//! # Ok::<(), lumen::Error>(())
//! ```
//!
//! Underneath, model code builds a [`graph::Graph`] with [`graph::GraphBuilder`]; the
//! [`compile`] passes fuse it for a backend; an [`exec::Executor`] binds it to a
//! [`backend::Backend`] chosen by [`backend::select`] and runs it:
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
pub mod quant;
pub mod selftest;
pub mod serve;
mod tensor;

pub use api::{
    CancelHandle, ChatMessage, Completion, Content, FinishReason, Generation, GenerationOptions, ImageSource,
    LoadOptions, LoadProgress, Lumen, ModelInfo, ModelSource,
};
pub use error::{Error, Result};
pub use tensor::{decode, encode, HostTensor};
