//! Runs a graph on a backend: one buffer per tensor (views share their input's), inputs
//! uploaded once and kept between runs, one launch per node in graph order, readback only
//! when asked. The compiler's plan (fusion, buffer reuse) will replace the one-per-node plan.

use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{Graph, NodeId, Op};
use crate::tensor::HostTensor;
use crate::{Error, Result};

/// A graph bound to a backend, with its device buffers.
pub struct Executor<'b> {
    backend: &'b dyn Backend,
    graph: Graph,
    kernels: Vec<Option<Kernel>>,
    bufs: Vec<BufferId>,
    owned: Vec<bool>,
    set: Vec<bool>,
    poison: bool,
}

impl<'b> Executor<'b> {
    /// Allocates a buffer for every tensor of `graph` on `backend`.
    pub fn new(backend: &'b dyn Backend, graph: Graph) -> Result<Self> {
        let n = graph.nodes().len();
        let mut ex = Executor {
            backend,
            kernels: Vec::with_capacity(n),
            bufs: Vec::with_capacity(n),
            owned: Vec::with_capacity(n),
            set: vec![false; n],
            poison: false,
            graph,
        };
        for node in ex.graph.nodes() {
            if node.op.is_view() {
                ex.bufs.push(ex.bufs[node.inputs[0].0]);
                ex.owned.push(false);
                ex.kernels.push(None);
                continue;
            }
            ex.bufs.push(backend.alloc(&node.desc)?);
            ex.owned.push(true);
            ex.kernels.push(match node.op {
                Op::Input { .. } => None,
                _ => Some(Kernel {
                    op: node.op.clone(),
                    inputs: node.inputs.iter().map(|i| ex.graph.node(*i).desc.clone()).collect(),
                    output: node.desc.clone(),
                }),
            });
        }
        Ok(ex)
    }

    /// Fill every computed tensor with NaN (all-ones bytes) before each run, so an element a
    /// kernel fails to write is caught. For tests.
    pub fn poison_outputs(mut self, on: bool) -> Self {
        self.poison = on;
        self
    }

    /// The graph being run.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Uploads the value of a named input; it stays on the device across runs.
    pub fn set(&mut self, name: &str, t: &HostTensor) -> Result<()> {
        let id = self.graph.input(name).ok_or_else(|| Error::Graph(format!("no input named `{name}`")))?;
        let want = &self.graph.node(id).desc;
        if *want != t.desc {
            return Err(Error::InputMismatch {
                name: name.into(),
                want_dtype: want.dtype,
                want_shape: want.shape.clone(),
                got_dtype: t.desc.dtype,
                got_shape: t.desc.shape.clone(),
            });
        }
        self.backend.upload(self.bufs[id.0], &t.bytes)?;
        self.set[id.0] = true;
        Ok(())
    }

    /// Queues every kernel of the graph. Does not wait.
    pub fn run(&mut self) -> Result<()> {
        for (i, node) in self.graph.nodes().iter().enumerate() {
            if let Op::Input { name } = &node.op {
                if !self.set[i] {
                    return Err(Error::Graph(format!("input `{name}` was never set")));
                }
            }
        }
        for (i, k) in self.kernels.iter().enumerate() {
            let Some(k) = k else { continue };
            if self.poison {
                self.backend.poison(self.bufs[i])?;
            }
            let ins: Vec<BufferId> = self.graph.nodes()[i].inputs.iter().map(|n| self.bufs[n.0]).collect();
            self.backend.launch(k, &ins, self.bufs[i])?;
        }
        Ok(())
    }

    /// Waits for queued work and reads one tensor back.
    pub fn read(&self, id: NodeId) -> Result<HostTensor> {
        let desc =
            self.graph.nodes().get(id.0).ok_or_else(|| Error::Graph(format!("unknown node {}", id.0)))?.desc.clone();
        let mut bytes = vec![0; desc.bytes()];
        self.backend.download(self.bufs[id.0], &mut bytes)?;
        HostTensor::from_bytes(desc, bytes)
    }
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        for (b, owned) in self.bufs.iter().zip(&self.owned) {
            if *owned {
                self.backend.free(*b);
            }
        }
    }
}
