//! Runs a graph on a backend, compiled first (`compile/`: fusion, memory plan): computed
//! tensors live in the plan's slots (buffers reused once their readers have run), inputs are
//! uploaded or bound to buffers already on the device (weights, KV caches) and kept between
//! runs, one launch per node in graph order, and readback only of tensors that survive the run
//! (outputs and tensors nothing reads).

use crate::backend::{Backend, BufferId, Kernel};
use crate::compile::memory::MemoryPlan;
use crate::compile::{compile, Compiled, Options};
use crate::graph::{DType, Graph, NodeId, Op, TensorDesc};
use crate::tensor::HostTensor;
use crate::{Error, Result};

/// A graph bound to a backend, with its device buffers.
pub struct Executor<'b> {
    backend: &'b dyn Backend,
    graph: Graph,
    kernels: Vec<Option<Kernel>>,
    plan: MemoryPlan,
    slots: Vec<BufferId>,
    slot_owned: Vec<bool>,
    inputs: Vec<Option<(BufferId, bool)>>,
    /// Node of the caller's graph -> node of the compiled graph (None when fused away).
    map: Vec<Option<NodeId>>,
    /// Per compiled node, the node its kernel also writes (side output).
    side: Vec<Option<NodeId>>,
    poison: bool,
}

impl<'b> Executor<'b> {
    /// Plans `graph`'s memory and allocates its slots on `backend`; inputs get their buffers
    /// when set or bound. Besides the graph's outputs and its sinks, `keep` survives each run.
    pub fn new(backend: &'b dyn Backend, graph: Graph) -> Result<Self> {
        Self::keeping(backend, graph, &[])
    }

    /// Like [`Executor::new`], also keeping the nodes in `keep` readable after a run.
    /// The graph is compiled first (fusion for what `backend` implements, then the memory plan);
    /// node ids of the caller's graph keep working for `read` and `take`.
    pub fn keeping(backend: &'b dyn Backend, graph: Graph, keep: &[NodeId]) -> Result<Self> {
        Self::with_options(backend, graph, keep, Options::default())
    }

    /// Like [`Executor::keeping`], with the compiler's passes chosen by `opts`.
    pub fn with_options(backend: &'b dyn Backend, graph: Graph, keep: &[NodeId], opts: Options) -> Result<Self> {
        Self::from_compiled(backend, compile(&graph, keep, backend, opts)?)
    }

    /// Runs an already compiled graph (e.g. one [`crate::compile::reshape`] retyped).
    pub fn from_compiled(backend: &'b dyn Backend, c: Compiled) -> Result<Self> {
        let (graph, map, plan, side, launched) = (c.graph, c.map, c.plan, c.side, c.launched);
        let n = graph.nodes().len();
        let mut ex = Executor {
            backend,
            kernels: Vec::with_capacity(n),
            slots: Vec::with_capacity(plan.slot_bytes.len()),
            slot_owned: Vec::with_capacity(plan.slot_bytes.len()),
            inputs: vec![None; n],
            map,
            side,
            poison: false,
            plan,
            graph,
        };
        for &bytes in &ex.plan.slot_bytes {
            let words = bytes.div_ceil(4);
            ex.slots.push(backend.alloc(&TensorDesc::new(DType::F32, [words]))?);
            ex.slot_owned.push(true);
        }
        for (i, node) in ex.graph.nodes().iter().enumerate() {
            ex.kernels.push(match launched[i] {
                false => None,
                true => Some(Kernel {
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

    /// The compiled graph being run (after fusion; its node ids differ from the caller's).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Bytes of activation memory the plan uses (all slots).
    pub fn activation_bytes(&self) -> usize {
        self.plan.peak_bytes()
    }

    /// Device buffers this executor holds for computed tensors.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
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
        let buf = match self.inputs[id] {
            Some((b, true)) => b,
            _ => {
                let b = self.backend.alloc(want)?;
                self.inputs[id] = Some((b, true));
                b
            }
        };
        self.backend.upload(buf, &t.bytes)
    }

    /// Uses a buffer that already lives on the device (weights, a KV cache from an earlier
    /// step) as a named input. The caller keeps owning it and must keep it alive while this
    /// executor runs; a buffer too small is reported by the first launch that reads it.
    pub fn bind(&mut self, name: &str, buf: BufferId) -> Result<()> {
        let id = self.input_id(name)?;
        if let Some((old, true)) = self.inputs[id] {
            self.backend.free(old);
        }
        self.inputs[id] = Some((buf, false));
        Ok(())
    }

    /// Names of the inputs not yet set or bound.
    pub fn unset_inputs(&self) -> Vec<&str> {
        self.graph
            .nodes()
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Input { name } if self.inputs[i].is_none() => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn buf(&self, node: usize) -> Result<BufferId> {
        let r = self.plan.root[node];
        match (&self.graph.nodes()[r].op, self.plan.slot[r]) {
            (Op::Input { name }, _) => {
                self.inputs[r].map(|b| b.0).ok_or_else(|| Error::Graph(format!("input `{name}` was never set")))
            }
            (_, Some(s)) => Ok(self.slots[s]),
            (op, None) => Err(Error::Graph(format!("node {r} ({}) has no buffer", op.name()))),
        }
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
            match self.side[i] {
                Some(s) => {
                    let side = self.buf(s.0)?;
                    if self.poison {
                        self.backend.poison(side)?;
                    }
                    self.backend.launch_with_side(k, &ins, out, side)?
                }
                None => self.backend.launch(k, &ins, out)?,
            }
        }
        Ok(())
    }

    /// The compiled node of a caller's node id.
    fn compiled(&self, id: NodeId) -> Result<NodeId> {
        self.map
            .get(id.0)
            .ok_or_else(|| Error::Graph(format!("unknown node {}", id.0)))?
            .ok_or_else(|| Error::Graph(format!("node {} was fused into a larger op: keep it to read it", id.0)))
    }

    fn readable(&self, id: NodeId) -> Result<&crate::graph::Node> {
        let node = self.graph.nodes().get(id.0).ok_or_else(|| Error::Graph(format!("unknown node {}", id.0)))?;
        if !self.plan.kept[id.0] && !matches!(node.op, Op::Input { .. }) {
            return Err(Error::Graph(format!(
                "node {} ({}) does not survive the run: mark it as a graph output to read it",
                id.0,
                node.op.name()
            )));
        }
        Ok(node)
    }

    /// Waits for queued work and reads one surviving tensor back.
    pub fn read(&self, id: NodeId) -> Result<HostTensor> {
        let id = self.compiled(id)?;
        let desc = self.readable(id)?.desc.clone();
        let mut bytes = vec![0; desc.bytes()];
        self.backend.download(self.buf(id.0)?, &mut bytes)?;
        HostTensor::from_bytes(desc, bytes)
    }

    /// Hands a surviving computed tensor's buffer to the caller (e.g. a KV cache for the next
    /// step's graph): the executor stops owning it. The buffer may be larger than the tensor.
    pub fn take(&mut self, id: NodeId) -> Result<BufferId> {
        let id = self.compiled(id)?;
        let node = self.readable(id)?;
        let r = self.plan.root[id.0];
        let slot = self.plan.slot[r].filter(|s| self.slot_owned[*s]).ok_or_else(|| {
            Error::Graph(format!("node {} ({}) is not a computed tensor this executor owns", id.0, node.op.name()))
        })?;
        self.slot_owned[slot] = false;
        Ok(self.slots[slot])
    }
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        for (b, owned) in self.slots.iter().zip(&self.slot_owned) {
            if *owned {
                self.backend.free(*b);
            }
        }
        for (b, owned) in self.inputs.iter().flatten() {
            if *owned {
                self.backend.free(*b);
            }
        }
    }
}
