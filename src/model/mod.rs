//! Model directories: config, weights, and the Qwen3-VL graphs built from them.

pub mod config;
pub mod processor;
pub mod quant_config;
pub mod qwen3_vl;
pub mod synthetic;
pub mod weights;

pub use config::{Config, MoeConfig, TextConfig, VisionConfig};
