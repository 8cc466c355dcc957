//! The pretraining objectives on one batch: EESMM (two masked images superimposed, encoded once,
//! split back apart) and the SimMIM baseline (one masked image per forward), sharing the encoder,
//! the decoder and the masks.
//!
//! Conventions (README, "Pretraining"): masks are 1 where masked. The mixed input is
//! `λ1·T1⊙(1−M1) + λ2·T2⊙(1−M2)`, where T1 = A(I1) and T2 = B(I2) are the images after their
//! geometric transforms (masks are drawn on the transformed images, so they stay on the encoder's
//! patch grid). The encoder's mask token replaces the patches where *both* images are masked —
//! there the mixed input holds nothing; elsewhere it sees the mixed pixels. With
//! `visibility_tokens`, a learned vector per image is added where only that image is visible, so
//! the encoder can tell the two components apart (the plain mix is symmetric in them).

use burn::module::{Initializer, Param};
use burn::prelude::*;

use serde::{Deserialize, Serialize};

use super::decoder::{DecoderConfig, LinearDecoder, TransformerBody};
use super::mix::MixAugment;
use crate::kernels::SwinOps;
use crate::model::{Swin, SwinConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    #[default]
    Eesmm,
    Simmim,
}

/// How the decoder's output becomes the two reconstructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decomposition {
    /// The head predicts both images (2·C channels); `Î_mix = λ1·Î1 + λ2·Î2`.
    #[default]
    Split,
    /// The paper's eq. 4–6: the head predicts the mixture `Î_c`; `Î1 = (Î_c − λ2·T2)/λ1` and
    /// `Î2 = (Î_c − λ1·T1)/λ2` (with λ1 = λ2 = 1 exactly `Î_c − I2`, `Î_c − I1`). All three loss
    /// terms are then residuals of the one prediction `Î_c − (λ1·T1 + λ2·T2)`.
    Subtract,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    #[default]
    L1,
    L2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    pub first: f32,
    pub second: f32,
    pub mix: f32,
}

impl LossWeights {
    /// Each weight finite and ≥ 0, and one of them positive: all 0 leaves nothing to learn.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, w) in [
            ("first", self.first),
            ("second", self.second),
            ("mix", self.mix),
        ] {
            anyhow::ensure!(
                w.is_finite() && w >= 0.0,
                "objective.weights.{key}: {w} is not a finite weight ≥ 0"
            );
        }
        anyhow::ensure!(
            self.first + self.second + self.mix > 0.0,
            "objective.weights: all three are 0, so the loss is 0 (at least one must be > 0)"
        );
        Ok(())
    }
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            first: 1.0,
            second: 1.0,
            mix: 1.0,
        }
    }
}

/// `objective:` in a pretraining stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    #[serde(default)]
    pub kind: ObjectiveKind,
    /// Side of a mask cell in pixels; a multiple of the model's patch size dividing img_size.
    pub mask_patch_size: usize,
    #[serde(default = "default_ratio")]
    pub mask_ratio: f64,
    #[serde(default = "default_lambda")]
    pub lambda1: f32,
    #[serde(default = "default_lambda")]
    pub lambda2: f32,
    #[serde(default)]
    pub decomposition: Decomposition,
    #[serde(default)]
    pub loss: LossKind,
    #[serde(default)]
    pub weights: LossWeights,
    #[serde(default)]
    pub augment: MixAugment,
    /// The decoder: SimMIM's linear head, optionally after transformer blocks.
    #[serde(default)]
    pub decoder: DecoderConfig,
    /// EESMM: add a learned "only image 1 / only image 2 is visible here" vector to the patch
    /// embeddings (not in the paper; see README).
    #[serde(default)]
    pub visibility_tokens: bool,
}

fn default_ratio() -> f64 {
    0.6
}
fn default_lambda() -> f32 {
    0.5
}

impl ObjectiveConfig {
    pub fn validate(&self, model: &SwinConfig) -> anyhow::Result<()> {
        let (m, p) = (self.mask_patch_size, model.patch_size);
        anyhow::ensure!(
            m > 0 && m.is_multiple_of(p) && model.img_size.is_multiple_of(m),
            "objective.mask_patch_size: {m} must be a multiple of the model's patch_size {p} and divide img_size {}",
            model.img_size
        );
        anyhow::ensure!(
            self.mask_ratio > 0.0 && self.mask_ratio < 1.0,
            "objective.mask_ratio: {} is not in (0, 1): the loss is taken on masked cells only",
            self.mask_ratio
        );
        anyhow::ensure!(
            self.lambda1 > 0.0 && self.lambda2 > 0.0,
            "objective.lambda1/lambda2: must be positive"
        );
        if self.kind == ObjectiveKind::Eesmm {
            self.weights.validate()?;
        }
        self.augment.validate()?;
        if let DecoderConfig::Transformer { width, heads, .. } = self.decoder {
            anyhow::ensure!(
                heads > 0 && width > 0 && width.is_multiple_of(heads),
                "objective.decoder: {heads} heads do not divide the width {width} (both must be at least 1)"
            );
        }
        Ok(())
    }

    /// Images consumed by one encoder pass.
    pub fn images_per_sample(&self) -> usize {
        match self.kind {
            ObjectiveKind::Eesmm => 2,
            ObjectiveKind::Simmim => 1,
        }
    }

    /// Channels the decoder predicts.
    pub fn decoder_channels(&self, in_chans: usize) -> usize {
        match (self.kind, self.decomposition) {
            (ObjectiveKind::Eesmm, Decomposition::Split) => 2 * in_chans,
            _ => in_chans,
        }
    }
}

/// Encoder + decoder, the module that pretraining optimises.
#[derive(Module, Debug)]
pub struct PretrainModel<B: Backend> {
    pub encoder: Swin<B>,
    /// Transformer blocks before the head (`decoder: {kind: transformer}`).
    pub decoder_body: Option<TransformerBody<B>>,
    pub decoder: LinearDecoder<B>,
    /// `[1, 1, 1, D]` each: added where only the first / only the second image is visible
    /// (used with `visibility_tokens`).
    pub only_first: Param<Tensor<B, 4>>,
    pub only_second: Param<Tensor<B, 4>>,
}

/// Whether a pretraining parameter is exempt from weight decay: the encoder's rule
/// ([`crate::model::swin::no_weight_decay`]) and EESMM's two learned ownership tokens.
pub fn no_weight_decay(path: &str) -> bool {
    let name = path.rsplit('.').next().unwrap_or(path);
    matches!(name, "only_first" | "only_second") || crate::model::swin::no_weight_decay(path)
}

impl<B: Backend> PretrainModel<B> {
    pub fn new(model: &SwinConfig, objective: &ObjectiveConfig, device: &B::Device) -> Self {
        let tokens = (model.img_size / model.total_stride()).pow(2);
        let (decoder_body, head_input) = match objective.decoder {
            DecoderConfig::Linear => (None, model.num_features()),
            DecoderConfig::Transformer {
                width,
                depth,
                heads,
            } => (
                Some(TransformerBody::new(
                    model.num_features(),
                    tokens,
                    width,
                    depth,
                    heads,
                    device,
                )),
                width,
            ),
        };
        Self {
            encoder: model.init(device),
            decoder_body,
            decoder: LinearDecoder::new(
                head_input,
                model.total_stride(),
                objective.decoder_channels(model.in_chans),
                device,
            ),
            only_first: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, 1, 1, model.embed_dim], device),
            only_second: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, 1, 1, model.embed_dim], device),
        }
    }
}

impl<B: Backend> PretrainModel<B> {
    /// Encoder features `[B, h, w, C_f]` → predicted pixels `[B, channels, S, S]`.
    pub fn decode(&self, features: Tensor<B, 4>) -> Tensor<B, 4> {
        let tokens = match &self.decoder_body {
            Some(body) => body.forward(features),
            None => features,
        };
        self.decoder.forward(tokens)
    }
}

/// One batch on the device. `first`/`second`: `[B, C, S, S]` transformed images (T1, T2);
/// masks: `[B, g, g]` cells (1 = masked). SimMIM uses only the first image and mask.
#[derive(Debug, Clone)]
pub struct DeviceBatch<B: Backend> {
    pub first: Tensor<B, 4>,
    pub mask1: Tensor<B, 3>,
    pub second: Option<(Tensor<B, 4>, Tensor<B, 3>)>,
}

/// The loss and its terms (scalars, `[1]`), plus what the reconstruction grid shows.
pub struct Output<B: Backend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
    /// `[B, C, S, S]` each: the encoder input, the mixed (or single) reconstruction, Î1, Î2.
    pub input: Tensor<B, 4>,
    pub reconstruction: Tensor<B, 4>,
    pub first: Tensor<B, 4>,
    pub second: Option<Tensor<B, 4>>,
}

/// `[B, g, g]` → `[B, g·f, g·f]`, each cell repeated `f x f`.
fn repeat_cells<B: Backend>(cells: Tensor<B, 3>, factor: usize) -> Tensor<B, 3> {
    let [b, g, _] = cells.dims();
    cells
        .reshape([b, g, 1, g, 1])
        .repeat_dim(2, factor)
        .repeat_dim(4, factor)
        .reshape([b, g * factor, g * factor])
}

/// Mean reconstruction error over masked pixels: `Σ M·err / (ΣM · C)`.
fn masked_loss<B: Backend>(
    pred: Tensor<B, 4>,
    target: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    kind: LossKind,
) -> Tensor<B, 1> {
    let channels = pred.dims()[1] as f64;
    let diff = pred - target;
    let err = match kind {
        LossKind::L1 => diff.abs(),
        LossKind::L2 => diff.powi_scalar(2),
    };
    let masked = (err * mask.clone()).sum();
    masked / (mask.sum().mul_scalar(channels).add_scalar(1e-5))
}

impl ObjectiveConfig {
    pub fn forward<B: SwinOps>(
        &self,
        model: &PretrainModel<B>,
        batch: DeviceBatch<B>,
    ) -> Output<B> {
        let config = model.encoder.config();
        let pixel_factor = self.mask_patch_size;
        let token_factor = self.mask_patch_size / config.patch_size;
        let pixels = |cells: Tensor<B, 3>| repeat_cells(cells, pixel_factor).unsqueeze_dim::<4>(1); // [B, 1, S, S]
        let c = config.in_chans;
        match batch.second {
            None => {
                // SimMIM: the whole image in, mask tokens on masked patches, predict the image.
                let tokens = repeat_cells(batch.mask1.clone(), token_factor);
                let features = model
                    .encoder
                    .forward_features(batch.first.clone(), Some(tokens));
                let recon = model.decode(features);
                let loss = masked_loss(
                    recon.clone(),
                    batch.first.clone(),
                    pixels(batch.mask1),
                    self.loss,
                );
                Output {
                    total: loss.clone(),
                    terms: vec![("first", loss)],
                    input: batch.first,
                    reconstruction: recon.clone(),
                    first: recon,
                    second: None,
                }
            }
            Some((second, mask2)) => {
                let (l1, l2) = (self.lambda1, self.lambda2);
                let (m1, m2) = (pixels(batch.mask1.clone()), pixels(mask2.clone()));
                let t1 = batch.first;
                let mixed = t1.clone() * (m1.clone().neg() + 1.0) * l1
                    + second.clone() * (m2.clone().neg() + 1.0) * l2;
                let (t1_masked, t2_masked) = (
                    repeat_cells(batch.mask1, token_factor),
                    repeat_cells(mask2, token_factor),
                ); // [B, H/p, W/p]
                let both = t1_masked.clone() * t2_masked.clone();
                let mut embedded = model.encoder.embed(mixed.clone(), Some(both.clone()));
                if self.visibility_tokens {
                    // 1 where only the first (resp. second) image is visible.
                    let only_first = (t2_masked - both.clone()).unsqueeze_dim::<4>(3);
                    let only_second = (t1_masked - both).unsqueeze_dim::<4>(3);
                    embedded = embedded
                        + only_first * model.only_first.val()
                        + only_second * model.only_second.val();
                }
                let features = model.encoder.encode(embedded);
                let out = model.decode(features);
                let target_mix = t1.clone() * l1 + second.clone() * l2;
                let (r1, r2, rmix) = match self.decomposition {
                    Decomposition::Split => {
                        let r1 = out.clone().narrow(1, 0, c);
                        let r2 = out.narrow(1, c, c);
                        let rmix = r1.clone() * l1 + r2.clone() * l2;
                        (r1, r2, rmix)
                    }
                    Decomposition::Subtract => {
                        let r1 = (out.clone() - second.clone() * l2) / l1;
                        let r2 = (out.clone() - t1.clone() * l1) / l2;
                        (r1, r2, out)
                    }
                };
                let union = m1.clone().max_pair(m2.clone());
                let loss1 = masked_loss(r1.clone(), t1, m1, self.loss);
                let loss2 = masked_loss(r2.clone(), second, m2, self.loss);
                let loss_mix = masked_loss(rmix.clone(), target_mix, union, self.loss);
                let w = &self.weights;
                let total =
                    loss1.clone() * w.first + loss2.clone() * w.second + loss_mix.clone() * w.mix;
                Output {
                    total,
                    terms: vec![("first", loss1), ("second", loss2), ("mix", loss_mix)],
                    input: mixed,
                    reconstruction: rmix,
                    first: r1,
                    second: Some(r2),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::Cpu;

    /// The encoder's exemptions hold under `encoder.`, the ownership tokens are exempt too, and
    /// the decoder's weights are decayed.
    #[test]
    fn encoder_norms_and_ownership_tokens_are_not_decayed() {
        assert!(no_weight_decay("encoder.layers.0.blocks.1.norm1.gamma"));
        assert!(no_weight_decay("encoder.mask_token"));
        assert!(no_weight_decay("only_first") && no_weight_decay("only_second"));
        assert!(!no_weight_decay(
            "encoder.layers.0.blocks.1.attn.qkv.weight"
        ));
        assert!(!no_weight_decay("decoder.proj.weight"));
    }

    fn objective(decomposition: Decomposition) -> ObjectiveConfig {
        ObjectiveConfig {
            kind: ObjectiveKind::Eesmm,
            mask_patch_size: 4,
            mask_ratio: 0.5,
            lambda1: 0.5,
            lambda2: 0.5,
            decomposition,
            loss: LossKind::L1,
            weights: LossWeights::default(),
            augment: MixAugment::off(),
            decoder: DecoderConfig::Linear,
            visibility_tokens: true,
        }
    }

    /// No masked cells means no loss: a mask ratio of 0 (or 1) is refused with the range.
    #[test]
    fn mask_ratio_must_leave_masked_and_visible_cells() {
        let model = SwinConfig::from_yaml(
            "img_size: 8\npatch_size: 2\nembed_dim: 12\ndepths: [1]\nnum_heads: [3]\nwindow_size: 2\n",
        )
        .unwrap();
        for ratio in [0.0, 1.0, -0.1] {
            let config = ObjectiveConfig {
                mask_ratio: ratio,
                ..objective(Decomposition::Subtract)
            };
            let message = config.validate(&model).unwrap_err().to_string();
            assert!(
                message.contains("objective.mask_ratio: ") && message.contains("is not in (0, 1)"),
                "{message}"
            );
        }
        assert!(objective(Decomposition::Subtract).validate(&model).is_ok());
    }

    /// Settings that would train nothing or panic later are refused with the allowed range.
    #[test]
    fn silent_objective_settings_are_refused() {
        let model = SwinConfig::from_yaml(
            "img_size: 8\npatch_size: 2\nembed_dim: 12\ndepths: [1]\nnum_heads: [3]\nwindow_size: 2\n",
        )
        .unwrap();
        let error_of = |config: ObjectiveConfig| config.validate(&model).unwrap_err().to_string();
        let zero = LossWeights {
            first: 0.0,
            second: 0.0,
            mix: 0.0,
        };
        assert_eq!(
            error_of(ObjectiveConfig {
                weights: zero.clone(),
                ..objective(Decomposition::Split)
            }),
            "objective.weights: all three are 0, so the loss is 0 (at least one must be > 0)"
        );
        assert_eq!(
            error_of(ObjectiveConfig {
                weights: LossWeights {
                    mix: -1.0,
                    ..LossWeights::default()
                },
                ..objective(Decomposition::Split)
            }),
            "objective.weights.mix: -1 is not a finite weight ≥ 0"
        );
        assert_eq!(
            error_of(ObjectiveConfig {
                augment: MixAugment {
                    max_scale: 0.5,
                    ..MixAugment::default()
                },
                ..objective(Decomposition::Split)
            }),
            "objective.augment.max_scale: 0.5 is not a finite zoom ≥ 1 (1 turns it off)"
        );
        assert_eq!(
            error_of(ObjectiveConfig {
                decoder: DecoderConfig::Transformer {
                    width: 50,
                    depth: 1,
                    heads: 16
                },
                ..objective(Decomposition::Split)
            }),
            "objective.decoder: 16 heads do not divide the width 50 (both must be at least 1)"
        );
        // SimMIM has one loss term: its weights are not read.
        let simmim = ObjectiveConfig {
            kind: ObjectiveKind::Simmim,
            weights: zero,
            ..objective(Decomposition::Split)
        };
        assert!(simmim.validate(&model).is_ok());
    }

    #[test]
    fn repeat_cells_expands_each_cell() {
        let cells = Tensor::<B, 3>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [1, 2, 2]),
            &Default::default(),
        );
        let out: Vec<f32> = repeat_cells(cells, 2).into_data().to_vec().unwrap();
        assert_eq!(
            out,
            vec![1., 1., 0., 0., 1., 1., 0., 0., 0., 0., 1., 1., 0., 0., 1., 1.]
        );
    }

    #[test]
    fn masked_loss_averages_over_masked_pixels_and_channels() {
        let device = Default::default();
        let pred = Tensor::<B, 4>::zeros([1, 2, 2, 2], &device);
        let target = Tensor::<B, 4>::ones([1, 2, 2, 2], &device) * 3.0;
        let mask = Tensor::<B, 4>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [1, 1, 2, 2]),
            &device,
        );
        let l1 =
            masked_loss(pred.clone(), target.clone(), mask.clone(), LossKind::L1).into_scalar();
        let l2 = masked_loss(pred, target, mask, LossKind::L2).into_scalar();
        assert!(
            (l1 - 3.0).abs() < 1e-4 && (l2 - 9.0).abs() < 1e-3,
            "{l1} {l2}"
        );
    }

    /// With `subtract`, a perfect mixture prediction reconstructs both images exactly.
    #[test]
    fn subtract_decomposition_recovers_both_images_from_the_mixture() {
        let device = Default::default();
        let config = SwinConfig::from_yaml(
            "img_size: 8\npatch_size: 2\nin_chans: 1\nembed_dim: 12\ndepths: [1, 1]\nnum_heads: [3, 3]\nwindow_size: 2\n",
        )
        .unwrap();
        let objective = objective(Decomposition::Subtract);
        let model = PretrainModel::<B>::new(&config, &objective, &device);
        let t1 = Tensor::<B, 4>::random([2, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let t2 = Tensor::<B, 4>::random([2, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let mask = Tensor::<B, 3>::ones([2, 2, 2], &device);
        let out = objective.forward(
            &model,
            DeviceBatch {
                first: t1.clone(),
                mask1: mask.clone(),
                second: Some((t2.clone(), mask)),
            },
        );
        // Î1 − T1 = (Î_c − 0.5·T1 − 0.5·T2) / 0.5 = Î2 − T2: one residual behind all terms.
        let r1 = out.first - t1;
        let r2 = out.second.unwrap() - t2;
        let diff: f32 = (r1 - r2).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
        assert_eq!(out.terms.len(), 3);
    }
}
