//! Swin Transformer v1 (Liu et al. 2021), laid out as timm's `swin_transformer.py`:
//! PatchEmbed → stages of [PatchMerging] + SwinBlocks (W-MSA / SW-MSA) → LayerNorm → average pool
//! → optional linear head. Field names equal timm 1.0's state-dict keys, so checkpoints map
//! one to one (see `weights.rs`). Feature maps are NHWC, `[B, H, W, C]`, as in timm.

use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::config::{StageGeometry, SwinConfig};
use crate::kernels::{self, gelu, layer_norm as norm, SwinOps, LAYER_NORM_EPS};

/// timm's weight init: truncated normal, std 0.02 (the truncation at ±2 is 100 std away).
fn trunc_normal() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(trunc_normal())
        .init(device)
}

fn layer_norm<B: Backend>(dim: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim)
        .with_epsilon(LAYER_NORM_EPS)
        .init(device)
}

/// Stochastic depth: while training (autodiff enabled), drop the whole residual branch of a
/// sample with probability `prob` and scale the kept ones by `1 / (1 - prob)`.
pub fn drop_path<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    if prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = 1.0 - prob;
    let mut shape = [1; D];
    shape[0] = x.dims()[0];
    let mask = Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), &x.device());
    x * mask.div_scalar(keep)
}

/// Conv patchify followed by LayerNorm: `[B, C_in, H, W]` → `[B, H/p, W/p, D]`.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    pub proj: Conv2d<B>,
    pub norm: LayerNorm<B>,
}

impl<B: Backend> PatchEmbed<B> {
    fn new(config: &SwinConfig, device: &B::Device) -> Self {
        let p = config.patch_size;
        Self {
            proj: Conv2dConfig::new([config.in_chans, config.embed_dim], [p, p])
                .with_stride([p, p])
                .init(device),
            norm: layer_norm(config.embed_dim, device),
        }
    }
}

impl<B: SwinOps> PatchEmbed<B> {
    /// The convolution (kernel = stride = p) is a Linear on each image's p × p patches, run by the
    /// fused Linear: burn-ndarray's direct convolution and its backward ran on one core and took
    /// 4–5 % of a pretraining step.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = images.dims();
        let [d, _, p, _] = self.proj.weight.dims();
        let patches = images
            .reshape([b, c, h / p, p, w / p, p])
            .permute([0, 2, 4, 1, 3, 5]) // [B, H/p, W/p, C, p, p]
            .reshape([b, h / p, w / p, c * p * p]);
        let weight = self.proj.weight.val().reshape([d, c * p * p]).transpose(); // [C·p·p, D]
        let bias = self.proj.bias.as_ref().map(|bias| bias.val());
        let x = kernels::affine(patches, weight, bias); // [B, H/p, W/p, D]
        norm(&self.norm, x)
    }
}

/// For every pair of tokens (i, j) in a `ws x ws` window, the row of the bias table that holds
/// their relative offset: `(dy + ws - 1) * (2ws - 1) + (dx + ws - 1)`. Shape `[ws², ws²]`,
/// flattened row-major.
pub fn relative_position_index(ws: usize) -> Vec<i64> {
    let n = ws * ws;
    let span = 2 * ws as i64 - 1;
    let mut index = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let dy = (i / ws) as i64 - (j / ws) as i64 + ws as i64 - 1;
            let dx = (i % ws) as i64 - (j % ws) as i64 + ws as i64 - 1;
            index.push(dy * span + dx);
        }
    }
    index
}

/// The shifted-window attention mask of one stage, `[nW, ws², ws²]` flattened: 0 between tokens
/// of the same image region, -100 between tokens that the cyclic shift brought together.
pub fn shift_attention_mask(resolution: usize, ws: usize, shift: usize) -> Vec<f32> {
    // Label each pixel of the (unshifted) grid with its region: 3 bands per axis.
    let band = |p: usize| {
        if p < resolution - ws {
            0
        } else if p < resolution - shift {
            1
        } else {
            2
        }
    };
    let per_side = resolution / ws;
    let n = ws * ws;
    let mut mask = Vec::with_capacity(per_side * per_side * n * n);
    for wy in 0..per_side {
        for wx in 0..per_side {
            let region = |t: usize| {
                let (y, x) = (wy * ws + t / ws, wx * ws + t % ws);
                band(y) * 3 + band(x)
            };
            for i in 0..n {
                for j in 0..n {
                    mask.push(if region(i) == region(j) { 0.0 } else { -100.0 });
                }
            }
        }
    }
    mask
}

/// Multi-head self-attention inside a window, with the learned relative-position bias.
#[derive(Module, Debug)]
pub struct WindowAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    /// `[(2ws-1)², heads]`
    pub relative_position_bias_table: Param<Tensor<B, 2>>,
    /// `[ws² * ws²]`, a constant (not saved; rebuilt from the window size).
    relative_position_index: Tensor<B, 1, Int>,
    num_heads: usize,
    window_area: usize,
}

impl<B: Backend> WindowAttention<B> {
    fn new(dim: usize, num_heads: usize, ws: usize, qkv_bias: bool, device: &B::Device) -> Self {
        let table_rows = (2 * ws - 1) * (2 * ws - 1);
        Self {
            qkv: linear(dim, 3 * dim, qkv_bias, device),
            proj: linear(dim, dim, true, device),
            relative_position_bias_table: trunc_normal().init([table_rows, num_heads], device),
            relative_position_index: Tensor::from_data(
                TensorData::new(relative_position_index(ws), [ws.pow(4)]),
                device,
            ),
            num_heads,
            window_area: ws * ws,
        }
    }

    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `[heads, N, N]`: the bias each head adds to its attention logits.
    pub fn relative_position_bias(&self) -> Tensor<B, 3> {
        let n = self.window_area;
        self.relative_position_bias_table
            .val()
            .select(0, self.relative_position_index.clone()) // [N*N, heads]
            .reshape([n, n, self.num_heads])
            .permute([2, 0, 1])
    }
}

impl<B: SwinOps> WindowAttention<B> {
    /// `windows: [B*nW, N, C]`, `mask: [nW, N, N]` → `[B*nW, N, C]`.
    pub fn forward(&self, windows: Tensor<B, 3>, mask: Option<&Tensor<B, 3>>) -> Tensor<B, 3> {
        let qkv = kernels::linear(&self.qkv, windows); // [B*nW, N, 3C]
        let bias = self.relative_position_bias(); // [heads, N, N]
        let out = kernels::window_attention(qkv, bias, mask, self.num_heads); // [B*nW, N, C]
        kernels::linear(&self.proj, out)
    }
}

/// Two-layer MLP with exact (erf) GELU.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: SwinOps> Mlp<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        kernels::linear(&self.fc2, gelu(kernels::linear(&self.fc1, x)))
    }
}

/// One Swin block: (shifted) window attention and an MLP, each pre-normed and residual.
#[derive(Module, Debug)]
pub struct SwinBlock<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn: WindowAttention<B>,
    pub norm2: LayerNorm<B>,
    pub mlp: Mlp<B>,
    /// `[nW, N, N]` for shifted blocks, a constant.
    attn_mask: Option<Tensor<B, 3>>,
    window: usize,
    shift: usize,
    drop_path: f64,
}

impl<B: Backend> SwinBlock<B> {
    fn new(
        stage: &StageGeometry,
        shifted: bool,
        drop_path: f64,
        config: &SwinConfig,
        device: &B::Device,
    ) -> Self {
        let dim = stage.dim;
        let shift = if shifted { stage.shift } else { 0 };
        let (ws, res) = (stage.window, stage.resolution);
        let attn_mask = (shift > 0).then(|| {
            let nw = (res / ws).pow(2);
            let n = ws * ws;
            Tensor::from_data(
                TensorData::new(shift_attention_mask(res, ws, shift), [nw, n, n]),
                device,
            )
        });
        let hidden = (dim as f64 * config.mlp_ratio) as usize;
        Self {
            norm1: layer_norm(dim, device),
            attn: WindowAttention::new(dim, stage.num_heads, ws, config.qkv_bias, device),
            norm2: layer_norm(dim, device),
            mlp: Mlp {
                fc1: linear(dim, hidden, true, device),
                fc2: linear(hidden, dim, true, device),
            },
            attn_mask,
            window: ws,
            shift,
            drop_path,
        }
    }

    /// Window side.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Cyclic shift before the attention (0 for regular windows).
    pub fn shift(&self) -> usize {
        self.shift
    }

    /// `[nW, N, N]` shifted-window mask, for shifted blocks.
    pub fn attn_mask(&self) -> Option<&Tensor<B, 3>> {
        self.attn_mask.as_ref()
    }
}

impl<B: SwinOps> SwinBlock<B> {
    /// `[B, H, W, C]` → `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, h, w, _] = x.dims();
        let y = norm(&self.norm1, x.clone());
        let windows = kernels::window_partition(y, self.window, self.shift); // [B*nW, ws², C]
        let windows = self.attn.forward(windows, self.attn_mask.as_ref());
        let y = kernels::window_merge(windows, self.window, self.shift, h, w); // [B, H, W, C]
        let x = x + drop_path(y, self.drop_path);
        let y = self.mlp.forward(norm(&self.norm2, x.clone()));
        x + drop_path(y, self.drop_path)
    }
}

/// 2x2 neighbourhood → one token: `[B, H, W, C]` → `[B, H/2, W/2, 2C]`. The four neighbours are
/// concatenated in timm's order (0,0), (1,0), (0,1), (1,1), i.e. row offset fastest.
#[derive(Module, Debug)]
pub struct PatchMerging<B: Backend> {
    pub norm: LayerNorm<B>,
    pub reduction: Linear<B>,
}

impl<B: SwinOps> PatchMerging<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, w, c] = x.dims();
        let x = x
            .reshape([b, h / 2, 2, w / 2, 2, c])
            .permute([0, 1, 3, 4, 2, 5]) // [B, H/2, W/2, dx, dy, C]
            .reshape([b, h / 2, w / 2, 4 * c]);
        kernels::linear(&self.reduction, norm(&self.norm, x))
    }
}

/// One resolution level: optional PatchMerging at its start (timm ≥ 0.9 layout), then blocks
/// alternating regular and shifted windows.
#[derive(Module, Debug)]
pub struct SwinStage<B: Backend> {
    pub downsample: Option<PatchMerging<B>>,
    pub blocks: Vec<SwinBlock<B>>,
}

impl<B: SwinOps> SwinStage<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = match &self.downsample {
            Some(merge) => merge.forward(x),
            None => x,
        };
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }
}

/// Whether a parameter (by its path) is exempt from weight decay: timm's `no_weight_decay` set
/// for Swin (biases, norms, relative-position tables, the mask token).
pub fn no_weight_decay(path: &str) -> bool {
    let name = path.rsplit('.').next().unwrap_or(path);
    matches!(
        name,
        "bias" | "beta" | "gamma" | "relative_position_bias_table" | "mask_token"
    )
}

/// timm's `ClassifierHead` (average pooling is done by [`Swin::forward_features`]'s callers:
/// [`Swin::forward`] and [`Swin::pool`]).
#[derive(Module, Debug)]
pub struct ClassifierHead<B: Backend> {
    pub fc: Linear<B>,
}

/// The Swin encoder (timm's `SwinTransformer`), with an optional classifier head and, only while
/// it pretrains, SimMIM's mask token.
#[derive(Module, Debug)]
pub struct Swin<B: Backend> {
    pub patch_embed: PatchEmbed<B>,
    /// `[1, 1, D]`: replaces the embedding of masked patches (SimMIM's
    /// `SwinTransformerForSimMIM`). Only a pretraining encoder has one
    /// ([`Swin::with_mask_token`]); it is never saved with the weights.
    pub mask_token: Option<Param<Tensor<B, 3>>>,
    pub layers: Vec<SwinStage<B>>,
    pub norm: LayerNorm<B>,
    pub head: Option<ClassifierHead<B>>,
    /// The configuration it was built from (not saved with the weights).
    #[module(skip)]
    pub config: SwinConfig,
}

impl SwinConfig {
    /// Builds the network with timm's initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Swin<B> {
        let rates = self.drop_path_rates();
        let layers = self
            .stages()
            .iter()
            .enumerate()
            .map(|(i, stage)| SwinStage {
                downsample: (i > 0).then(|| PatchMerging {
                    norm: layer_norm(2 * stage.dim, device),
                    reduction: linear(2 * stage.dim, stage.dim, false, device),
                }),
                blocks: (0..stage.depth)
                    .map(|j| SwinBlock::new(stage, j % 2 == 1, rates[i][j], self, device))
                    .collect(),
            })
            .collect();
        Swin {
            patch_embed: PatchEmbed::new(self, device),
            mask_token: None,
            layers,
            norm: layer_norm(self.num_features(), device),
            head: (self.num_classes > 0).then(|| ClassifierHead {
                fc: linear(self.num_features(), self.num_classes, true, device),
            }),
            config: self.clone(),
        }
    }
}

impl<B: Backend> Swin<B> {
    /// The architecture (what [`SwinConfig::init`] was given).
    pub fn config(&self) -> &SwinConfig {
        &self.config
    }

    /// The same network with a zero-initialised mask token, as pretraining needs it.
    pub fn with_mask_token(mut self, device: &B::Device) -> Self {
        let dim = self.config.embed_dim;
        self.mask_token = Some(Initializer::Zeros.init([1, 1, dim], device));
        self
    }

    /// Outputs of the classifier head; 0 for an encoder without one.
    pub fn num_classes(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.fc.weight.dims()[1])
    }
}

impl<B: SwinOps> Swin<B> {
    /// Patch embedding, with masked patches replaced by the mask token (a mask needs a model
    /// built [`Swin::with_mask_token`]).
    /// `images: [B, C, H, W]`, `mask: [B, H/p, W/p]` (1 = masked) → `[B, H/p, W/p, D]`.
    pub fn embed(&self, images: Tensor<B, 4>, mask: Option<Tensor<B, 3>>) -> Tensor<B, 4> {
        let x = self.patch_embed.forward(images);
        match mask {
            None => x,
            Some(mask) => {
                let w = mask.unsqueeze_dim::<4>(3); // [B, H/p, W/p, 1]
                let token = self
                    .mask_token
                    .as_ref()
                    .expect("a masked input needs a mask token");
                let token = token.val().unsqueeze_dim::<4>(0); // [1, 1, 1, D]
                x * (w.clone().neg() + 1.0) + token * w
            }
        }
    }

    /// Final normed feature map `[B, H/s, W/s, C_f]` (s = total stride).
    pub fn forward_features(
        &self,
        images: Tensor<B, 4>,
        mask: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 4> {
        self.encode(self.embed(images, mask))
    }

    /// Stages and final norm on patch embeddings: `[B, H/p, W/p, D]` → `[B, H/s, W/s, C_f]`.
    pub fn encode(&self, embedded: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self
            .layers
            .iter()
            .fold(embedded, |x, stage| stage.forward(x));
        norm(&self.norm, x)
    }

    /// Global average pool of a feature map: `[B, H, W, C]` → `[B, C]`.
    pub fn pool(features: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, h, w, c] = features.dims();
        features.reshape([b, h * w, c]).mean_dim(1).reshape([b, c])
    }

    /// Pooled features `[B, C_f]` (timm's `forward_head(forward_features(x), pre_logits=True)`).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        Self::pool(self.forward_features(images, None))
    }

    /// timm's `forward_head` on pooled features: logits `[B, classes]`, or the pooled features
    /// unchanged when the model has no head (timm's `Identity` head of `num_classes=0`).
    pub fn forward_head(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.head {
            Some(head) => head.fc.forward(pooled),
            None => pooled,
        }
    }

    /// Logits `[B, classes]` of images (timm's `forward` with a head).
    pub fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_head(self.forward(images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::Cpu;

    #[test]
    fn norms_biases_tables_and_mask_token_are_not_decayed() {
        assert!(no_weight_decay("layers.0.blocks.1.norm1.gamma"));
        assert!(no_weight_decay("layers.0.blocks.1.attn.qkv.bias"));
        assert!(no_weight_decay(
            "layers.0.blocks.1.attn.relative_position_bias_table"
        ));
        assert!(no_weight_decay("mask_token"));
        assert!(!no_weight_decay("layers.0.blocks.1.attn.qkv.weight"));
    }

    /// While training each sample's branch is either dropped or scaled by 1 / keep; in
    /// inference (no autodiff) it passes through unchanged.
    #[test]
    fn drop_path_drops_whole_samples_only_while_training() {
        type Train = burn::backend::Autodiff<B>;
        let device = Default::default();
        let x = Tensor::<Train, 4>::ones([64, 2, 2, 3], &device);
        let y: Vec<f32> = drop_path(x, 0.25).into_data().to_vec().unwrap();
        let kept = y
            .chunks(12)
            .filter(|s| s.iter().all(|&v| (v - 1.0 / 0.75).abs() < 1e-6))
            .count();
        let dropped = y.chunks(12).filter(|s| s.iter().all(|&v| v == 0.0)).count();
        assert_eq!(kept + dropped, 64);
        assert!(
            (32..=60).contains(&kept),
            "kept {kept} of 64 at keep probability 0.75"
        );
        let x = Tensor::<B, 4>::ones([4, 2, 2, 3], &device);
        assert_eq!(drop_path(x.clone(), 0.25).into_data(), x.into_data());
    }
}
