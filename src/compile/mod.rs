//! The graph compiler's passes, each in its own file. Today: the memory plan; fusion passes
//! (attention, MoE, elementwise) come next.

pub mod memory;
