//! The graph compiler's passes, each in its own file: attention fusion (consulting what the
//! backend implements) and the memory plan. MoE and elementwise fusion come next.

pub mod fuse_attention;
pub mod memory;
