//! Measuring lumen the way the MLPerf Inference VLM benchmark does (Qwen3-VL on the Shopify
//! product catalogue): samples ([`dataset`], [`jsonl`], [`prompt`]), a load generator for the
//! Offline and Server scenarios over any [`crate::engine::serve::Serve`] engine ([`load`]),
//! figures ([`stats`], [`score`]) and their presentation ([`report`], [`plot`]); [`http`]
//! drives the same scenarios against an OpenAI-compatible server; [`cli`] ties them into
//! `lumen serve-bench` (run by `cargo xtask bench`).

pub mod cli;
pub mod dataset;
pub mod http;
pub mod jsonl;
pub mod load;
pub mod plot;
pub mod prompt;
pub mod report;
pub mod score;
pub mod stats;
pub mod words;
