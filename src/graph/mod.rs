//! The graph IR: typed tensors, a closed op set, and a builder that checks every node's shapes
//! as it is added. Model code builds graphs; it never names a backend.

mod builder;
mod dtype;
mod infer;
mod infer_fused;
mod infer_paged;
mod infer_quant;
mod moe;
mod op;
pub mod random;
pub mod rope;

pub use builder::GraphBuilder;
pub use dtype::{DType, Shape, TensorDesc};
pub use infer::{broadcast, infer, matmul_dims, MatmulDims};
pub use infer_fused::{moe_dims, MoeDims};
pub use infer_paged::{paged_dims, PagedDims, PAGED_META};
pub use infer_quant::{qmatmul_dims, qmoe_dims, QMatMulDims};
pub use moe::{moe_tables, QWeight};
use std::collections::HashMap;

pub use op::{BinaryOp, Inst, Op, RopeStyle, UnaryOp, MAX_EPILOGUE_INPUTS, MAX_PROGRAM, MAX_PROGRAM_INPUTS, MAX_STACK};

/// Index of a node in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One node: an op, its inputs (earlier nodes) and the type of its output.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Input nodes, in the op's order.
    pub inputs: Vec<NodeId>,
    /// Output type.
    pub desc: TensorDesc,
    /// Index of the scope (model part, e.g. `text.layers.3`) the node was built in.
    pub scope: u32,
}

/// A checked graph. Nodes are stored in a topological order (every input precedes its user).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<NodeId>,
    /// Scope names; index 0 is the unnamed top level.
    pub(crate) scopes: Vec<String>,
    /// Input nodes by name (graphs have hundreds of weight inputs: found by name without a scan).
    pub(crate) input_ids: HashMap<String, NodeId>,
}

impl Graph {
    /// All nodes, in execution order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// One node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }
    /// Nodes marked as outputs.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }
    /// Name of the scope a node was built in (`""` at the top level).
    pub fn scope(&self, id: NodeId) -> &str {
        self.scopes.get(self.nodes[id.0].scope as usize).map_or("", |s| s.as_str())
    }
    /// The input node with this name.
    pub fn input(&self, name: &str) -> Option<NodeId> {
        self.input_ids.get(name).copied()
    }
}
