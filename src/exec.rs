//! Runs a graph on a backend: one buffer per tensor (views share their input's), inputs
//! uploaded (or bound to buffers that already live on the device, such as weights) and kept
//! between runs, one launch per node in graph order, readback only when asked. The compiler's
//! plan (fusion, buffer reuse) will replace the one-launch-per-node plan.

use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{Graph, NodeId, Op};
use crate::tensor::HostTensor;
use crate::{Error, Result};

/// A graph bound to a backend, with its device buffers.
pub struct Executor<'b> {
    backend: &'b dyn Backend,
    graph: Graph,
    kernels: Vec<Option<Kernel>>,
    /// The node whose buffer each node uses (itself, or for views the viewed node's root).
    root: Vec<usize>,
    bufs: Vec<Option<BufferId>>,
    owned: Vec<bool>,
    poison: bool,
}

impl<'b> Executor<'b> {
    /// Allocates a buffer for every computed tensor of `graph` on `backend`; inputs get theirs
    /// when set or bound.
    pub fn new(backend: &'b dyn Backend, graph: Graph) -> Result<Self> {
        let n = graph.nodes().len();
        let mut ex = Executor {
            backend,
            kernels: Vec::with_capacity(n),
            root: Vec::with_capacity(n),
            bufs: vec![None; n],
            owned: vec![false; n],
            poison: false,
            graph,
        };
        for (i, node) in ex.graph.nodes().iter().enumerate() {
            if node.op.is_view() {
                ex.root.push(ex.root[node.inputs[0].0]);
                ex.kernels.push(None);
                continue;
            }
            ex.root.push(i);
            if let Op::Input { .. } = node.op {
                ex.kernels.push(None);
                continue;
            }
            ex.bufs[i] = Some(backend.alloc(&node.desc)?);
            ex.owned[i] = true;
            ex.kernels.push(Some(Kernel {
                op: node.op.clone(),
                inputs: node.inputs.iter().map(|i| ex.graph.node(*i).desc.clone()).collect(),
                output: node.desc.clone(),
            }));
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

    fn input_id(&self, name: &str) -> Result<usize> {
        Ok(self.graph.input(name).ok_or_else(|| Error::Graph(format!("no input named `{name}`")))?.0)
    }

    /// Uploads the value of a named input; it stays on the device across runs.
    pub fn set(&mut self, name: &str, t: &HostTensor) -> Result<()> {
        let id = self.input_id(name)?;
        let want = &self.graph.nodes()[id].desc;
        if *want != t.desc {
            return Err(Error::InputMismatch {
                name: name.into(),
                want_dtype: want.dtype,
                want_shape: want.shape.clone(),
                got_dtype: t.desc.dtype,
                got_shape: t.desc.shape.clone(),
            });
        }
        let buf = match (self.bufs[id], self.owned[id]) {
            (Some(b), true) => b,
            _ => {
                let b = self.backend.alloc(want)?;
                self.bufs[id] = Some(b);
                self.owned[id] = true;
                b
            }
        };
        self.backend.upload(buf, &t.bytes)
    }

    /// Uses a buffer that already lives on the device (weights, a KV cache from an earlier
    /// step) as a named input. The caller keeps owning it and must keep it alive while this
    /// executor runs; a buffer of the wrong size is reported by the first launch that reads it.
    pub fn bind(&mut self, name: &str, buf: BufferId) -> Result<()> {
        let id = self.input_id(name)?;
        if let (Some(old), true) = (self.bufs[id], self.owned[id]) {
            self.backend.free(old);
        }
        self.bufs[id] = Some(buf);
        self.owned[id] = false;
        Ok(())
    }

    /// Names of the inputs not yet set or bound.
    pub fn unset_inputs(&self) -> Vec<&str> {
        self.graph
            .nodes()
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Input { name } if self.bufs[i].is_none() => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn buf(&self, node: usize) -> Result<BufferId> {
        let r = self.root[node];
        self.bufs[r].ok_or_else(|| match &self.graph.nodes()[r].op {
            Op::Input { name } => Error::Graph(format!("input `{name}` was never set")),
            op => Error::Graph(format!("node {r} ({}) has no buffer", op.name())),
        })
    }

    /// Queues every kernel of the graph. Does not wait.
    pub fn run(&mut self) -> Result<()> {
        if let Some(name) = self.unset_inputs().first() {
            return Err(Error::Graph(format!("input `{name}` was never set")));
        }
        for (i, k) in self.kernels.iter().enumerate() {
            let Some(k) = k else { continue };
            let out = self.buf(i)?;
            if self.poison {
                self.backend.poison(out)?;
            }
            let ins = self.graph.nodes()[i].inputs.iter().map(|n| self.buf(n.0)).collect::<Result<Vec<_>>>()?;
            self.backend.launch(k, &ins, out)?;
        }
        Ok(())
    }

    /// Waits for queued work and reads one tensor back.
    pub fn read(&self, id: NodeId) -> Result<HostTensor> {
        let desc =
            self.graph.nodes().get(id.0).ok_or_else(|| Error::Graph(format!("unknown node {}", id.0)))?.desc.clone();
        let mut bytes = vec![0; desc.bytes()];
        self.backend.download(self.buf(id.0)?, &mut bytes)?;
        HostTensor::from_bytes(desc, bytes)
    }

    /// Hands a computed tensor's buffer to the caller (e.g. a KV cache for the next step's
    /// graph): the executor stops owning it and will not free it. Views hand over their root.
    pub fn take(&mut self, id: NodeId) -> Result<BufferId> {
        let node = self.graph.nodes().get(id.0).ok_or_else(|| Error::Graph(format!("unknown node {}", id.0)))?;
        let r = self.root[id.0];
        if !self.owned[r] || matches!(node.op, Op::Input { .. }) {
            return Err(Error::Graph(format!(
                "node {} ({}) is not a computed tensor this executor owns",
                id.0,
                node.op.name()
            )));
        }
        self.owned[r] = false;
        self.buf(r)
    }
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        for (b, owned) in self.bufs.iter().zip(&self.owned) {
            if let (Some(b), true) = (b, owned) {
                self.backend.free(*b);
            }
        }
    }
}
