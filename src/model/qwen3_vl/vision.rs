//! The vision tower: patch embedding (the Conv3d as a matmul over flattened patches), the
//! learned position table interpolated to each grid, 2-D rotary attention within each frame,
//! pre-LayerNorm blocks, the 2x2 patch merger, and the DeepStack mergers.

use super::graph::{Ctx, Pixels};
use super::positions::{patch_rows_cols, pos_embed_taps, vision_mask, Grid};
use super::text::linear;
use crate::graph::rope::RopeTable;
use crate::graph::{NodeId, RopeStyle, UnaryOp};
use crate::{Error, Result};

/// Runs the tower over every image of the request; returns the merged features
/// `[image tokens, out_hidden]` and the DeepStack features.
pub(crate) fn tower(c: &mut Ctx, images: &[Pixels]) -> Result<(NodeId, Vec<NodeId>)> {
    c.g.set_scope("vision");
    let v = c.m.config.vision.clone();
    let (hv, merge) = (v.hidden_size, v.spatial_merge_size);
    let patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
    let grids: Vec<Grid> = images.iter().map(|p| p.grid_thw).collect();
    let mut data = Vec::new();
    for (i, p) in images.iter().enumerate() {
        let [t, h, w] = p.grid_thw;
        if t == 0 || h == 0 || w == 0 || h % merge != 0 || w % merge != 0 || p.data.len() != t * h * w * patch {
            return Err(Error::Input(format!(
                "image {i}: grid {t}x{h}x{w} with {} values does not fit patches of {patch} values merged {merge}x{merge}",
                p.data.len()
            )));
        }
        data.extend_from_slice(&p.data);
    }
    let n = data.len() / patch;
    let x = c.f32s("pixels", [n, patch], &data)?;

    // Conv3d with stride = kernel is a matmul over (channel, t, y, x)-flattened patches.
    let w = c.w(&c.m.vname("patch_embed.proj.weight"))?;
    let w = c.g.reshape(w, [hv, patch])?;
    let mut h = c.g.linear(x, w)?;
    let b = c.w(&c.m.vname("patch_embed.proj.bias"))?;
    h = c.g.add(h, b)?;

    let side = (v.num_position_embeddings as f64).sqrt() as usize;
    let table = c.w(&c.m.vname("pos_embed.weight"))?;
    let rc = patch_rows_cols(&grids, merge);
    for (k, (idx, wt)) in pos_embed_taps(&grids, &rc, side).into_iter().enumerate() {
        let idx = c.i32s(&format!("vision.tap{k}.idx"), [n], &idx)?;
        let wt = c.f32s(&format!("vision.tap{k}.w"), [n, 1], &wt)?;
        let e = c.gather_f32(table, idx)?;
        let e = c.g.mul(e, wt)?;
        h = c.g.add(h, e)?;
    }

    let hd = hv / v.num_heads;
    let rope = RopeTable::vision_2d(hd, c.m.config.vision_rope_theta);
    let (cos, sin) = rope.cos_sin(&rc)?;
    let cos = c.f32s("vision.cos", [n, rope.pairs()], &cos)?;
    let sin = c.f32s("vision.sin", [n, rope.pairs()], &sin)?;
    let mask = match vision_mask(&grids) {
        Some((m, v)) => Some(c.f32s("vision.mask", [m, m], &v)?),
        None => None,
    };

    let mut deepstack = Vec::new();
    for blk in 0..v.depth {
        c.g.set_scope(&format!("vision.block.{blk}"));
        let p = c.m.vname(&format!("blocks.{blk}."));
        let n1 = layer_norm(c, h, &format!("{p}norm1"))?;
        let qkv = linear(c, n1, &format!("{p}attn.qkv"), true)?;
        let qkv = c.g.reshape(qkv, [n, 3, v.num_heads, hd])?;
        let part = |c: &mut Ctx, j: usize, rotate: bool| -> Result<NodeId> {
            let y = c.g.slice(qkv, 1, j, 1)?;
            let mut y = c.g.reshape(y, [n, v.num_heads, hd])?;
            if rotate {
                y = c.g.rope(y, cos, sin, RopeStyle::Half)?;
            }
            c.g.permute(y, &[1, 0, 2])
        };
        let (q, k, vv) = (part(c, 0, true)?, part(c, 1, true)?, part(c, 2, false)?);
        let o = c.g.attention(q, k, vv, mask, (hd as f32).powf(-0.5))?;
        let o = c.g.permute(o, &[1, 0, 2])?;
        let o = c.g.reshape(o, [n, hv])?;
        let o = linear(c, o, &format!("{p}attn.proj"), true)?;
        h = c.g.add(h, o)?;
        let n2 = layer_norm(c, h, &format!("{p}norm2"))?;
        let f = linear(c, n2, &format!("{p}mlp.linear_fc1"), true)?;
        let f = c.g.unary(f, activation(&v.hidden_act)?)?;
        let f = linear(c, f, &format!("{p}mlp.linear_fc2"), true)?;
        h = c.g.add(h, f)?;
        if let Some(j) = v.deepstack_visual_indexes.iter().position(|&d| d == blk) {
            c.g.set_scope("vision.deepstack");
            deepstack.push(merger(c, h, &c.m.vname(&format!("deepstack_merger_list.{j}.")), true, n)?);
        }
    }
    c.g.set_scope("vision.merger");
    let out = merger(c, h, &c.m.vname("merger."), false, n)?;
    c.g.set_scope("");
    Ok((out, deepstack))
}

fn activation(name: &str) -> Result<UnaryOp> {
    match name {
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(UnaryOp::Gelu),
        "gelu" => Ok(UnaryOp::GeluErf),
        "silu" | "swish" => Ok(UnaryOp::Silu),
        other => Err(Error::Model(format!("vision_config.hidden_act `{other}` is not supported"))),
    }
}

fn layer_norm(c: &mut Ctx, x: NodeId, name: &str) -> Result<NodeId> {
    let w = c.w(&format!("{name}.weight"))?;
    let b = c.w(&format!("{name}.bias"))?;
    c.g.layer_norm(x, w, b, 1e-6)
}

/// The 2x2 merger: LayerNorm (before or, for DeepStack, after grouping 4 patches), then
/// Linear -> GELU (exact) -> Linear.
fn merger(c: &mut Ctx, x: NodeId, p: &str, postshuffle: bool, n: usize) -> Result<NodeId> {
    let v = &c.m.config.vision;
    let groups = n / (v.spatial_merge_size * v.spatial_merge_size);
    let wide = v.hidden_size * v.spatial_merge_size * v.spatial_merge_size;
    let x = if postshuffle {
        let x = c.g.reshape(x, [groups, wide])?;
        layer_norm(c, x, &format!("{p}norm"))?
    } else {
        let x = layer_norm(c, x, &format!("{p}norm"))?;
        c.g.reshape(x, [groups, wide])?
    };
    let y = linear(c, x, &format!("{p}linear_fc1"), true)?;
    let y = c.g.unary(y, UnaryOp::GeluErf)?;
    linear(c, y, &format!("{p}linear_fc2"), true)
}
