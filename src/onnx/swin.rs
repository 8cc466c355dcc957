//! Lowers a loaded [`Swin`] to an ONNX graph by walking the same modules and stage geometry the
//! burn forward uses (`model/swin.rs`). Batch is the only dynamic dimension (`-1` in every
//! Reshape); H and W are fixed because the shift mask and window reshapes depend on them.
//!
//! Inside a block the windows stay 5-D, `[B, nW, ...]`, so the per-block attention bias (the
//! relative-position bias plus, for shifted blocks, the shift mask) is one constant
//! `[nW, heads, N, N]` (or `[heads, N, N]`) added by broadcasting. The cyclic shift is Slice +
//! Concat (ONNX has no Roll), GELU is the exact erf form, and the attention scale is folded into
//! the query weights (q, k and v are three MatMuls).

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::graph::{Attr, Dim, GraphBuilder};
use super::proto::ModelProto;
use super::Precision;
use crate::model::swin::{PatchEmbed, PatchMerging, SwinBlock};
use crate::model::Swin;

/// The epsilon of every LayerNorm in the model (`layer_norm` in `model/swin.rs`, timm's 1e-5).
const LAYER_NORM_EPS: f32 = 1e-5;

/// Which tensors the exported graph returns, besides `pooled` `[batch, C_f]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs {
    /// `logits` `[batch, classes]` (the model must have a head).
    pub logits: bool,
    /// `features` `[batch, H_f, W_f, C_f]`, the final normed feature map (NHWC).
    pub feature_map: bool,
}

fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let dims = tensor.dims().to_vec();
    let data = tensor.into_data().convert::<f32>().to_vec::<f32>();
    (dims, data.expect("float32 data"))
}

/// Adds a parameter tensor as an initializer called `name`.
fn weight<B: Backend, const D: usize>(g: &mut GraphBuilder, name: &str, t: Tensor<B, D>) -> String {
    let (dims, data) = values(t);
    g.weight(name, &dims, &data)
}

fn ints(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

/// `x` reshaped to `[-1, dims...]` (the batch stays dynamic).
fn reshape(g: &mut GraphBuilder, scope: &str, x: &str, dims: &[usize]) -> String {
    let shape = g.ints(&[&[-1], &ints(dims)[..]].concat());
    g.node(scope, "Reshape", &[x, &shape], vec![])
}

fn transpose(g: &mut GraphBuilder, scope: &str, x: &str, perm: &[i64]) -> String {
    g.node(
        scope,
        "Transpose",
        &[x],
        vec![("perm", Attr::Ints(perm.to_vec()))],
    )
}

/// `x @ W + b` over the last axis; burn stores `W` as `[in, out]`, ONNX MatMul's layout.
fn linear<B: Backend>(g: &mut GraphBuilder, scope: &str, layer: &Linear<B>, x: &str) -> String {
    let w = weight(g, &format!("{scope}.weight"), layer.weight.val());
    let y = g.node(scope, "MatMul", &[x, &w], vec![]);
    match &layer.bias {
        Some(bias) => {
            let b = weight(g, &format!("{scope}.bias"), bias.val());
            g.node(scope, "Add", &[&y, &b], vec![])
        }
        None => y,
    }
}

fn layer_norm<B: Backend>(g: &mut GraphBuilder, scope: &str, ln: &LayerNorm<B>, x: &str) -> String {
    let gamma = weight(g, &format!("{scope}.weight"), ln.gamma.val());
    let mut inputs = vec![x.to_string(), gamma];
    if let Some(beta) = &ln.beta {
        inputs.push(weight(g, &format!("{scope}.bias"), beta.val()));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        ("axis", Attr::Int(-1)),
        ("epsilon", Attr::Float(LAYER_NORM_EPS)),
    ];
    g.node(scope, "LayerNormalization", &inputs, attrs)
}

/// Exact GELU, `x * 0.5 * (1 + erf(x / √2))`, the pattern ONNX Runtime fuses into one Gelu.
fn gelu(g: &mut GraphBuilder, scope: &str, x: &str) -> String {
    let (sqrt2, one, half) = (
        g.scalar(std::f32::consts::SQRT_2),
        g.scalar(1.0),
        g.scalar(0.5),
    );
    let y = g.node(scope, "Div", &[x, &sqrt2], vec![]);
    let y = g.node(scope, "Erf", &[&y], vec![]);
    let y = g.node(scope, "Add", &[&y, &one], vec![]);
    let y = g.node(scope, "Mul", &[x, &y], vec![]);
    g.node(scope, "Mul", &[&y, &half], vec![])
}

/// `torch.roll(x, (shift, shift), dims=(1, 2))` on `[B, H, W, C]` with H = W = `size`, as one
/// Slice + Concat per axis, like `model::swin::cyclic_shift`.
fn cyclic_shift(g: &mut GraphBuilder, scope: &str, x: &str, shift: i64, size: usize) -> String {
    let k = shift.rem_euclid(size as i64);
    if k == 0 {
        return x.to_string();
    }
    let size = size as i64;
    let mut y = x.to_string();
    for axis in [1, 2] {
        let axes = g.ints(&[axis]);
        let (head_start, head_end) = (g.ints(&[size - k]), g.ints(&[size]));
        let (tail_start, tail_end) = (g.ints(&[0]), g.ints(&[size - k]));
        let head = g.node(scope, "Slice", &[&y, &head_start, &head_end, &axes], vec![]);
        let tail = g.node(scope, "Slice", &[&y, &tail_start, &tail_end, &axes], vec![]);
        y = g.node(
            scope,
            "Concat",
            &[&head, &tail],
            vec![("axis", Attr::Int(axis))],
        );
    }
    y
}

/// `[B, 3, H, W]` → `[B, H/p, W/p, D]`: Conv (k = s = p), to NHWC, LayerNorm.
fn patch_embed<B: Backend>(g: &mut GraphBuilder, pe: &PatchEmbed<B>, images: &str) -> String {
    let scope = "patch_embed.proj";
    let w = weight(g, &format!("{scope}.weight"), pe.proj.weight.val());
    let mut inputs = vec![images.to_string(), w];
    if let Some(bias) = &pe.proj.bias {
        inputs.push(weight(g, &format!("{scope}.bias"), bias.val()));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        ("kernel_shape", Attr::Ints(ints(&pe.proj.kernel_size))),
        ("strides", Attr::Ints(ints(&pe.proj.stride))),
    ];
    let x = g.node(scope, "Conv", &inputs, attrs); // [B, D, H/p, W/p]
    let x = transpose(g, scope, &x, &[0, 2, 3, 1]); // [B, H/p, W/p, D]
    layer_norm(g, "patch_embed.norm", &pe.norm, &x)
}

/// `[B, r, r, C]` → `[B, r/2, r/2, 2C]` (timm's neighbour order: row offset fastest).
fn patch_merging<B: Backend>(
    g: &mut GraphBuilder,
    scope: &str,
    pm: &PatchMerging<B>,
    x: &str,
    r: usize,
    c: usize,
) -> String {
    let x = reshape(g, scope, x, &[r / 2, 2, r / 2, 2, c]);
    let x = transpose(g, scope, &x, &[0, 1, 3, 4, 2, 5]); // [B, r/2, r/2, dx, dy, C]
    let x = reshape(g, scope, &x, &[r / 2, r / 2, 4 * c]);
    let x = layer_norm(g, &format!("{scope}.norm"), &pm.norm, &x);
    linear(g, &format!("{scope}.reduction"), &pm.reduction, &x)
}

/// One Swin block on `[B, r, r, C]`.
fn block<B: Backend>(
    g: &mut GraphBuilder,
    scope: &str,
    blk: &SwinBlock<B>,
    x: &str,
    r: usize,
    c: usize,
) -> String {
    let (ws, shift) = (blk.window(), blk.shift() as i64);
    let (nw, n) = ((r / ws).pow(2), ws * ws);

    let y = layer_norm(g, &format!("{scope}.norm1"), &blk.norm1, x);
    let y = cyclic_shift(g, scope, &y, -shift, r);
    // Window partition: [B, r, r, C] → [B, nW, N, C].
    let y = reshape(g, scope, &y, &[r / ws, ws, r / ws, ws, c]);
    let y = transpose(g, scope, &y, &[0, 1, 3, 2, 4, 5]); // [B, r/ws, r/ws, ws, ws, C]
    let y = reshape(g, scope, &y, &[nw, n, c]);

    let attn = attention(g, &format!("{scope}.attn"), blk, &y, [nw, n, c]); // [B, nW, N, C]

    // Window reverse: [B, nW, N, C] → [B, r, r, C].
    let y = reshape(g, scope, &attn, &[r / ws, r / ws, ws, ws, c]);
    let y = transpose(g, scope, &y, &[0, 1, 3, 2, 4, 5]); // [B, r/ws, ws, r/ws, ws, C]
    let y = reshape(g, scope, &y, &[r, r, c]);
    let y = cyclic_shift(g, scope, &y, shift, r);
    let x = g.node(scope, "Add", &[x, &y], vec![]);

    let y = layer_norm(g, &format!("{scope}.norm2"), &blk.norm2, &x);
    let y = linear(g, &format!("{scope}.mlp.fc1"), &blk.mlp.fc1, &y);
    let y = gelu(g, &format!("{scope}.mlp.act"), &y);
    let y = linear(g, &format!("{scope}.mlp.fc2"), &blk.mlp.fc2, &y);
    g.node(scope, "Add", &[&x, &y], vec![])
}

/// Window attention on `[B, nW, N, C]` → `[B, nW, N, C]`.
fn attention<B: Backend>(
    g: &mut GraphBuilder,
    scope: &str,
    blk: &SwinBlock<B>,
    windows: &str,
    [nw, n, c]: [usize; 3],
) -> String {
    let attn = &blk.attn;
    let heads = attn.num_heads();
    let hd = c / heads;

    // q, k, v as three MatMuls with the columns of qkv's W [C, 3C] and b [3C]; q pre-scaled by
    // hd^-0.5. Each [B, nW, N, C] → [B, nW, N, heads, hd], then per-head layout.
    let scale = (hd as f32).powf(-0.5);
    let mut project = |i: usize, name: &str, perm: &[i64]| {
        let factor = if i == 0 { scale } else { 1.0 };
        let w = attn.qkv.weight.val().narrow(1, i * c, c).mul_scalar(factor);
        let w = weight(g, &format!("{scope}.qkv.weight.{name}"), w);
        let mut y = g.node(scope, "MatMul", &[windows, &w], vec![]);
        if let Some(bias) = &attn.qkv.bias {
            let b = bias.val().narrow(0, i * c, c).mul_scalar(factor);
            let b = weight(g, &format!("{scope}.qkv.bias.{name}"), b);
            y = g.node(scope, "Add", &[&y, &b], vec![]);
        }
        let y = reshape(g, scope, &y, &[nw, n, heads, hd]);
        transpose(g, scope, &y, perm)
    };
    let q = project(0, "q", &[0, 1, 3, 2, 4]); // [B, nW, heads, N, hd]
    let kt = project(1, "k", &[0, 1, 3, 4, 2]); // [B, nW, heads, hd, N]
    let v = project(2, "v", &[0, 1, 3, 2, 4]); // [B, nW, heads, N, hd]
    let logits = g.node(scope, "MatMul", &[&q, &kt], vec![]); // [B, nW, heads, N, N]

    // Relative-position bias [heads, N, N], plus the shift mask [nW, 1, N, N] when shifted.
    let bias = attn.relative_position_bias();
    let bias = match blk.attn_mask() {
        Some(mask) => bias.unsqueeze_dim::<4>(0) + mask.clone().unsqueeze_dim::<4>(1),
        None => bias.unsqueeze_dim::<4>(0),
    }; // [nW or 1, heads, N, N]
    let bias = weight(g, &format!("{scope}.bias_and_mask"), bias);
    let logits = g.node(scope, "Add", &[&logits, &bias], vec![]);
    let probs = g.node(scope, "Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
    let out = g.node(scope, "MatMul", &[&probs, &v], vec![]); // [B, nW, heads, N, hd]
    let out = transpose(g, scope, &out, &[0, 1, 3, 2, 4]); // [B, nW, N, heads, hd]
    let out = reshape(g, scope, &out, &[nw, n, c]);
    linear(g, &format!("{scope}.proj"), &attn.proj, &out)
}

/// The ONNX model of `model`: input `images` `[batch, in_chans, H, W]`,
/// outputs `pooled` and, as asked, `logits` / `features` (all float32), with weights and compute
/// in `precision`; `metadata` goes to `metadata_props`.
pub fn lower<B: Backend>(
    model: &Swin<B>,
    outputs: Outputs,
    precision: Precision,
    metadata: Vec<(String, String)>,
) -> anyhow::Result<ModelProto> {
    let config = model.config();
    anyhow::ensure!(
        !outputs.logits || model.head.is_some(),
        "the model has no classifier head to export"
    );
    let batch = Dim::Dynamic("batch");
    let side = config.img_size;
    let mut g = GraphBuilder::new(precision);
    let images = g.input(
        "images",
        &[
            batch.clone(),
            Dim::Fixed(config.in_chans),
            Dim::Fixed(side),
            Dim::Fixed(side),
        ],
    );
    let mut x = patch_embed(&mut g, &model.patch_embed, &images); // [B, g, g, D]
    for (i, (stage, geometry)) in model.layers.iter().zip(config.stages()).enumerate() {
        let (r, c) = (geometry.resolution, geometry.dim);
        if let Some(merge) = &stage.downsample {
            let scope = format!("layers.{i}.downsample");
            x = patch_merging(&mut g, &scope, merge, &x, 2 * r, c / 2);
        }
        for (j, blk) in stage.blocks.iter().enumerate() {
            x = block(&mut g, &format!("layers.{i}.blocks.{j}"), blk, &x, r, c);
        }
    }
    let last = config.stages().last().copied().expect("at least one stage");
    let (r, c) = (last.resolution, last.dim);
    let features = layer_norm(&mut g, "norm", &model.norm, &x); // [B, r, r, C_f]
    let pooled = g.node(
        "head",
        "ReduceMean",
        &[&features],
        vec![("axes", Attr::Ints(vec![1, 2])), ("keepdims", Attr::Int(0))],
    ); // [B, C_f]
    g.output(&pooled, "pooled", &[batch.clone(), Dim::Fixed(c)]);
    if outputs.logits {
        let head = model.head.as_ref().expect("checked above");
        let logits = linear(&mut g, "head.fc", &head.fc, &pooled);
        let classes = head.fc.weight.dims()[1];
        g.output(&logits, "logits", &[batch.clone(), Dim::Fixed(classes)]);
    }
    if outputs.feature_map {
        let dims = [batch, Dim::Fixed(r), Dim::Fixed(r), Dim::Fixed(c)];
        g.output(&features, "features", &dims);
    }
    g.into_model("eesmm_swin", metadata)
}
