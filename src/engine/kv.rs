//! The paged KV cache: per decoder layer a key pool and a value pool of `blocks x block_size`
//! slots on the device, and the free list of blocks that sequences borrow.

use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{DType, Op, TensorDesc};
use crate::{Error, Result};

/// Fixed-size blocks of cache slots, lent to sequences.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    total: usize,
    free: Vec<u32>,
}

impl BlockPool {
    /// `total` blocks of `block_size` slots, all free.
    pub fn new(total: usize, block_size: usize) -> Self {
        // Lowest numbers are handed out first.
        BlockPool { block_size, total, free: (0..total as u32).rev().collect() }
    }
    /// Slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }
    /// Blocks in all.
    pub fn total(&self) -> usize {
        self.total
    }
    /// Blocks not lent.
    pub fn free(&self) -> usize {
        self.free.len()
    }
    /// Blocks needed to hold `tokens` slots.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }
    /// Lends `n` blocks, or None (nothing lent) when fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        Some(self.free.split_off(self.free.len() - n).into_iter().rev().collect())
    }
    /// Returns blocks.
    pub fn give_back(&mut self, blocks: &mut Vec<u32>) {
        self.free.extend(blocks.drain(..).rev());
    }
}

/// The device pools of every layer.
pub struct KvPools<'b> {
    backend: &'b dyn Backend,
    /// Per layer, (keys, values) `[slots, kv_heads, head_dim]` f32.
    pub layers: Vec<(BufferId, BufferId)>,
    desc: TensorDesc,
}

impl<'b> KvPools<'b> {
    /// Allocates `layers` pairs of pools of `slots` rows of `kv_heads x head_dim`.
    pub fn new(
        backend: &'b dyn Backend,
        layers: usize,
        slots: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let desc = TensorDesc::new(DType::F32, [slots, kv_heads, head_dim]);
        let mut pools = KvPools { backend, layers: Vec::with_capacity(layers), desc };
        for _ in 0..layers {
            let k = backend.alloc(&pools.desc)?;
            let v = backend.alloc(&pools.desc).inspect_err(|_| backend.free(k))?;
            pools.layers.push((k, v));
        }
        Ok(pools)
    }

    /// Bytes of one layer's pair of pools.
    pub fn layer_bytes(&self) -> usize {
        2 * self.desc.bytes()
    }

    /// Writes new rows `[n, kv_heads, head_dim]` (buffer `rows`) at `slots` (an i32 buffer of
    /// n indices) of the given pool, in place.
    pub fn write(&self, pool: BufferId, rows: BufferId, n: usize, slots: BufferId) -> Result<()> {
        let mut dims = self.desc.shape.0.clone();
        let total = dims[0];
        dims[0] = n;
        let k = Kernel {
            op: Op::WriteRows { rows: total },
            inputs: vec![TensorDesc::new(DType::F32, dims), TensorDesc::new(DType::I32, [n])],
            output: self.desc.clone(),
        };
        if n == 0 {
            return Err(Error::Input("no rows to write".into()));
        }
        self.backend.launch(&k, &[rows, slots], pool)
    }
}

impl Drop for KvPools<'_> {
    fn drop(&mut self) {
        for (k, v) in self.layers.drain(..) {
            self.backend.free(k);
            self.backend.free(v);
        }
    }
}
