//! Image preprocessing identical in effect to transformers' Qwen2-VL image processor.
