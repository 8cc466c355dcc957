//! The pretraining objectives on one batch: EESMM (two masked images superimposed, encoded once,
//! split back apart) and the SimMIM baseline (one masked image per forward), sharing the encoder,
//! the decoder and the masks.
//!
//! Conventions (docs/pretraining.md): masks are 1 where masked. The mixed input is
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
use super::losses::{assign_pit, masked_loss, per_image, separation};
pub use super::losses::{Assignment, LossKind};
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

impl ObjectiveKind {
    /// The method's name as papers write it.
    pub fn name(self) -> &'static str {
        match self {
            ObjectiveKind::Eesmm => "EESMM",
            ObjectiveKind::Simmim => "SimMIM",
        }
    }
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

/// How the two cell masks of a pair are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaskPairing {
    /// M1 and M2 drawn independently (the paper).
    Independent,
    /// `M2 = 1 − M1` (MixMIM): every cell shows exactly one image; the decoder is told which.
    /// The default: it separates the two reconstructions best (docs/pretraining.md).
    #[default]
    Complementary,
}

/// A mixing weight: one value, or a range `[low, high]` drawn from per pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a number or a range [low, high]")]
pub enum MixWeight {
    Fixed(f32),
    Range([f32; 2]),
}

impl Default for MixWeight {
    fn default() -> Self {
        MixWeight::Fixed(0.5)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    /// Weight of the first image's masked reconstruction loss, ≥ 0. Required (all three are 1.0 when
    /// `weights` is absent).
    pub first: f32,
    /// Weight of the second image's masked reconstruction loss, ≥ 0. Required (all three are 1.0 when
    /// `weights` is absent).
    pub second: f32,
    /// Weight of the mixture's reconstruction loss, ≥ 0. Required (all three are 1.0 when
    /// `weights` is absent).
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
    /// `eesmm` (two masked images superimposed, one encoder pass) or `simmim` (one masked
    /// image per pass). Default: `eesmm`.
    #[serde(default)]
    pub kind: ObjectiveKind,
    /// Side of a mask cell in pixels; a multiple of the model's patch size dividing img_size.
    /// Required.
    pub mask_patch_size: usize,
    /// Share of the mask cells masked, in (0, 1). Default: 0.6.
    #[serde(default = "default_ratio")]
    pub mask_ratio: f64,
    /// EESMM: λ1, a number > 0, or `[low, high]` within (0, 1) drawn uniformly per pair (then
    /// λ2 = 1 − λ1 unless given). Default: 0.5.
    #[serde(default)]
    pub lambda1: MixWeight,
    /// EESMM: λ2, a number > 0. Default: none (0.5, or 1 − λ1 when λ1 is drawn).
    #[serde(default)]
    pub lambda2: Option<f32>,
    /// EESMM: `independent` masks (the paper) or `complementary` ones (every cell shows exactly
    /// one image). Default: `complementary`.
    #[serde(default)]
    pub masks: MaskPairing,
    /// EESMM: which head answers for which image: `fixed`, or `pit` (the better assignment per
    /// pair). Default: `pit`.
    #[serde(default)]
    pub assignment: Assignment,
    /// EESMM: `split` (the head predicts both images) or `subtract` (the paper's eq. 4–6: the
    /// head predicts the mixture). Default: `split`.
    #[serde(default)]
    pub decomposition: Decomposition,
    /// The reconstruction loss on masked pixels: `l1` or `l2`. Default: `l1`.
    #[serde(default)]
    pub loss: LossKind,
    /// EESMM: weights of the three loss terms. Default: 1.0 each.
    #[serde(default)]
    pub weights: LossWeights,
    /// EESMM: the geometric transforms of the two images before they are mixed. Default: on
    /// (see its keys).
    #[serde(default)]
    pub augment: MixAugment,
    /// The decoder: SimMIM's linear head (`{kind: linear}`), or transformer blocks before it
    /// (`{kind: transformer, width, depth, heads}`, heads dividing width). Default:
    /// `{kind: linear}`.
    #[serde(default)]
    pub decoder: DecoderConfig,
    /// EESMM: add a learned "only image 1 / only image 2 is visible here" vector to the patch
    /// embeddings (not in the paper). Default: false.
    #[serde(default)]
    pub visibility_tokens: bool,
}

fn default_ratio() -> f64 {
    0.6
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
        self.validate_mixing()?;
        if self.kind == ObjectiveKind::Eesmm {
            self.weights.validate()?;
        }
        anyhow::ensure!(
            self.assignment == Assignment::Fixed || self.decomposition == Decomposition::Split,
            "objective.assignment: pit needs decomposition: split (with subtract both \
             reconstructions come from one prediction)"
        );
        self.augment.validate()?;
        if let DecoderConfig::Transformer { width, heads, .. } = self.decoder {
            anyhow::ensure!(
                heads > 0 && width > 0 && width.is_multiple_of(heads),
                "objective.decoder: {heads} heads do not divide the width {width} (both must be at least 1)"
            );
        }
        Ok(())
    }

    /// λ1 and λ2 positive and finite; a drawn λ1 a range within (0, 1) (within (0, 1) also when
    /// λ2 = 1 − λ1 follows it).
    fn validate_mixing(&self) -> anyhow::Result<()> {
        let positive = |w: f32| w.is_finite() && w > 0.0;
        match self.lambda1 {
            MixWeight::Fixed(w) => anyhow::ensure!(
                positive(w),
                "objective.lambda1: {w} is not a finite weight > 0"
            ),
            MixWeight::Range([low, high]) => anyhow::ensure!(
                positive(low) && low <= high && high < 1.0,
                "objective.lambda1: [{low}, {high}] is not a range 0 < low ≤ high < 1"
            ),
        }
        if let Some(w) = self.lambda2 {
            anyhow::ensure!(
                positive(w),
                "objective.lambda2: {w} is not a finite weight > 0"
            );
        }
        Ok(())
    }

    /// λ1 of one pair (drawn from `rng` only when it is a range).
    pub fn draw_lambda1(&self, rng: &mut impl rand::Rng) -> f32 {
        match self.lambda1 {
            MixWeight::Fixed(w) => w,
            MixWeight::Range([low, high]) => rng.random_range(low..=high),
        }
    }

    /// λ2 for a pair whose λ1 is `lambda1`.
    pub fn lambda2_for(&self, lambda1: f32) -> f32 {
        match (self.lambda2, self.lambda1) {
            (Some(w), _) => w,
            (None, MixWeight::Fixed(_)) => 0.5,
            (None, MixWeight::Range(_)) => 1.0 - lambda1,
        }
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
    /// `[2, C_f]`: with complementary masks, added to the decoder's input tokens in proportion
    /// to how much of each token shows image 1 (row 0) and image 2 (row 1).
    pub decoder_ownership: Option<Param<Tensor<B, 2>>>,
}

/// Whether a pretraining parameter is exempt from weight decay: the encoder's rule
/// ([`crate::model::swin::no_weight_decay`]) and EESMM's learned ownership tokens.
pub fn no_weight_decay(path: &str) -> bool {
    let name = path.rsplit('.').next().unwrap_or(path);
    matches!(name, "only_first" | "only_second" | "decoder_ownership")
        || crate::model::swin::no_weight_decay(path)
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
        let token = |rows: usize, width: usize| {
            Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([rows, width], device)
        };
        let complementary =
            objective.kind == ObjectiveKind::Eesmm && objective.masks == MaskPairing::Complementary;
        Self {
            encoder: model.init(device).with_mask_token(device),
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
            decoder_ownership: complementary.then(|| token(2, model.num_features())),
        }
    }
}

impl<B: Backend> PretrainModel<B> {
    /// Encoder features `[B, h, w, C_f]` → predicted pixels `[B, channels, S, S]`. `ownership`:
    /// `[B, h, w, 2]`, the share of each token showing image 1 and image 2 (complementary masks).
    pub fn decode(&self, features: Tensor<B, 4>, ownership: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let features = match (&self.decoder_ownership, ownership) {
            (Some(rows), Some(share)) => {
                let [b, h, w, _] = share.dims();
                let c = rows.dims()[1];
                let added = share.reshape([b * h * w, 2]).matmul(rows.val()); // [B·h·w, C_f]
                features + added.reshape([b, h, w, c])
            }
            _ => features,
        };
        let tokens = match &self.decoder_body {
            Some(body) => body.forward(features),
            None => features,
        };
        self.decoder.forward(tokens)
    }
}

/// One batch on the device. `first`: `[B, C, S, S]` transformed images (T1); `mask1`: `[B, g, g]`
/// cells (1 = masked). SimMIM uses only these.
#[derive(Debug, Clone)]
pub struct DeviceBatch<B: Backend> {
    pub first: Tensor<B, 4>,
    pub mask1: Tensor<B, 3>,
    pub second: Option<SecondImage<B>>,
}

/// EESMM's second image of each pair and the pair's mixing weights.
#[derive(Debug, Clone)]
pub struct SecondImage<B: Backend> {
    /// `[B, C, S, S]`: T2.
    pub image: Tensor<B, 4>,
    /// `[B, g, g]`
    pub mask: Tensor<B, 3>,
    /// `[B]` each: λ1 and λ2 of every pair.
    pub lambda1: Tensor<B, 1>,
    pub lambda2: Tensor<B, 1>,
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
    /// EESMM: the separation figures of Î1 and Î2 (`[1]` each; 1 = none, see [`separation`]).
    pub separation: Option<[Tensor<B, 1>; 2]>,
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

/// The share of each final token that shows image 1 and image 2: `[B, h, w, 2]`, from the
/// patch-level masks `[B, H/p, W/p]` (1 = masked) averaged over each token's patches.
fn ownership<B: Backend>(
    masked1: Tensor<B, 3>,
    masked2: Tensor<B, 3>,
    stride: usize,
) -> Tensor<B, 4> {
    let shown = |masked: Tensor<B, 3>| {
        let visible = (masked.neg() + 1.0).unsqueeze_dim::<4>(1); // [B, 1, H/p, W/p]
        burn::tensor::module::avg_pool2d(
            visible,
            [stride, stride],
            [stride, stride],
            [0, 0],
            true,
            false,
        )
    };
    Tensor::cat(vec![shown(masked1), shown(masked2)], 1).permute([0, 2, 3, 1])
}

impl ObjectiveConfig {
    pub fn forward<B: SwinOps>(
        &self,
        model: &PretrainModel<B>,
        batch: DeviceBatch<B>,
    ) -> Output<B> {
        match batch.second.clone() {
            None => self.simmim(model, batch),
            Some(second) => self.eesmm(model, batch.first, batch.mask1, second),
        }
    }

    /// `[B, g, g]` cells → `[B, 1, S, S]` pixels.
    fn pixels<B: Backend>(&self, cells: Tensor<B, 3>) -> Tensor<B, 4> {
        repeat_cells(cells, self.mask_patch_size).unsqueeze_dim::<4>(1)
    }

    /// SimMIM: the whole image in, mask tokens on masked patches, predict the image.
    fn simmim<B: SwinOps>(&self, model: &PretrainModel<B>, batch: DeviceBatch<B>) -> Output<B> {
        let token_factor = self.mask_patch_size / model.encoder.config().patch_size;
        let tokens = repeat_cells(batch.mask1.clone(), token_factor);
        let features = model
            .encoder
            .forward_features(batch.first.clone(), Some(tokens));
        let recon = model.decode(features, None);
        let mask = self.pixels(batch.mask1);
        let loss = masked_loss(recon.clone(), batch.first.clone(), mask, self.loss);
        Output {
            total: loss.clone(),
            terms: vec![("first", loss)],
            input: batch.first,
            reconstruction: recon.clone(),
            first: recon,
            second: None,
            separation: None,
        }
    }

    /// EESMM: `λ1·T1⊙(1−M1) + λ2·T2⊙(1−M2)` encoded once, decoded into Î1 and Î2.
    fn eesmm<B: SwinOps>(
        &self,
        model: &PretrainModel<B>,
        t1: Tensor<B, 4>,
        mask1: Tensor<B, 3>,
        second: SecondImage<B>,
    ) -> Output<B> {
        let config = model.encoder.config();
        let c = config.in_chans;
        let token_factor = self.mask_patch_size / config.patch_size;
        let SecondImage {
            image: t2,
            mask: mask2,
            lambda1,
            lambda2,
        } = second;
        let (l1, l2) = (per_image(lambda1), per_image(lambda2)); // [B, 1, 1, 1]
        let (m1, m2) = (self.pixels(mask1.clone()), self.pixels(mask2.clone()));
        let mixed = t1.clone() * (m1.clone().neg() + 1.0) * l1.clone()
            + t2.clone() * (m2.clone().neg() + 1.0) * l2.clone();
        let (t1_masked, t2_masked) = (
            repeat_cells(mask1, token_factor),
            repeat_cells(mask2, token_factor),
        ); // [B, H/p, W/p]
        let both = t1_masked.clone() * t2_masked.clone();
        let mut embedded = model.encoder.embed(mixed.clone(), Some(both.clone()));
        if self.visibility_tokens {
            // 1 where only the first (resp. second) image is visible.
            let only_first = (t2_masked.clone() - both.clone()).unsqueeze_dim::<4>(3);
            let only_second = (t1_masked.clone() - both).unsqueeze_dim::<4>(3);
            embedded = embedded
                + only_first * model.only_first.val()
                + only_second * model.only_second.val();
        }
        let features = model.encoder.encode(embedded);
        let shares = (self.masks == MaskPairing::Complementary).then(|| {
            let stride = config.total_stride() / config.patch_size;
            ownership(t1_masked, t2_masked, stride)
        });
        let out = model.decode(features, shares);
        let target_mix = t1.clone() * l1.clone() + t2.clone() * l2.clone();
        let (r1, r2, rmix) = match self.decomposition {
            Decomposition::Split => {
                let heads = (out.clone().narrow(1, 0, c), out.narrow(1, c, c));
                let (r1, r2) = match self.assignment {
                    Assignment::Fixed => heads,
                    Assignment::Pit => assign_pit(heads, (&t1, &m1), (&t2, &m2), self.loss),
                };
                let rmix = r1.clone() * l1 + r2.clone() * l2;
                (r1, r2, rmix)
            }
            Decomposition::Subtract => {
                let r1 = (out.clone() - t2.clone() * l2.clone()) / l1.clone();
                let r2 = (out.clone() - t1.clone() * l1) / l2;
                (r1, r2, out)
            }
        };
        let separation = [
            separation(r1.clone(), t1.clone(), t2.clone(), m1.clone(), self.loss),
            separation(r2.clone(), t2.clone(), t1.clone(), m2.clone(), self.loss),
        ];
        let union = m1.clone().max_pair(m2.clone());
        let loss1 = masked_loss(r1.clone(), t1, m1, self.loss);
        let loss2 = masked_loss(r2.clone(), t2, m2, self.loss);
        let loss_mix = masked_loss(rmix.clone(), target_mix, union, self.loss);
        let w = &self.weights;
        let total = loss1.clone() * w.first + loss2.clone() * w.second + loss_mix.clone() * w.mix;
        Output {
            total,
            terms: vec![("first", loss1), ("second", loss2), ("mix", loss_mix)],
            input: mixed,
            reconstruction: rmix,
            first: r1,
            second: Some(r2),
            separation: Some(separation),
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
            lambda1: MixWeight::Fixed(0.5),
            lambda2: None,
            masks: MaskPairing::Independent,
            assignment: Assignment::Fixed,
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
        let out = objective.forward(&model, pair_batch(t1.clone(), t2.clone(), mask, 0.5));
        // Î1 − T1 = (Î_c − 0.5·T1 − 0.5·T2) / 0.5 = Î2 − T2: one residual behind all terms.
        let r1 = out.first - t1;
        let r2 = out.second.unwrap() - t2;
        let diff: f32 = (r1 - r2).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
        assert_eq!(out.terms.len(), 3);
    }

    /// A pair batch with equal masks for both images and one λ1 for every pair (λ2 = 1 − λ1).
    fn pair_batch(
        t1: Tensor<B, 4>,
        t2: Tensor<B, 4>,
        mask: Tensor<B, 3>,
        lambda1: f32,
    ) -> DeviceBatch<B> {
        let b = t1.dims()[0];
        let device = t1.device();
        DeviceBatch {
            first: t1,
            mask1: mask.clone(),
            second: Some(SecondImage {
                image: t2,
                mask,
                lambda1: Tensor::full([b], lambda1, &device),
                lambda2: Tensor::full([b], 1.0 - lambda1, &device),
            }),
        }
    }

    /// Every option together (drawn λ, complementary masks, PIT, visibility tokens): the
    /// shapes of the outputs, finite losses, separation figures, and the decoder's ownership rows.
    #[test]
    fn symmetry_breaking_options_run_together() {
        let device = Default::default();
        let config = SwinConfig::from_yaml(
            "img_size: 8\npatch_size: 2\nin_chans: 1\nembed_dim: 12\ndepths: [1, 1]\nnum_heads: [3, 3]\nwindow_size: 2\n",
        )
        .unwrap();
        let objective = ObjectiveConfig {
            lambda1: MixWeight::Range([0.1, 0.4]),
            masks: MaskPairing::Complementary,
            assignment: Assignment::Pit,
            ..objective(Decomposition::Split)
        };
        objective.validate(&config).unwrap();
        let model = PretrainModel::<B>::new(&config, &objective, &device);
        assert_eq!(model.decoder_ownership.as_ref().unwrap().dims(), [2, 24]);
        let t1 = Tensor::<B, 4>::random([3, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let t2 = Tensor::<B, 4>::random([3, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let mask1 = Tensor::<B, 3>::from_data(
            TensorData::new([1.0f32, 0.0, 0.0, 1.0].repeat(3), [3, 2, 2]),
            &device,
        );
        let mut batch = pair_batch(t1, t2, mask1.clone(), 0.3);
        batch.second.as_mut().unwrap().mask = mask1.neg() + 1.0;
        let out = objective.forward(&model, batch);
        assert_eq!(out.first.dims(), [3, 1, 8, 8]);
        assert_eq!(out.second.as_ref().unwrap().dims(), [3, 1, 8, 8]);
        assert_eq!(out.input.dims(), [3, 1, 8, 8]);
        for (name, term) in &out.terms {
            let value = term.clone().into_scalar();
            assert!(value.is_finite() && value > 0.0, "{name}: {value}");
        }
        for figure in out.separation.unwrap() {
            let value = figure.into_scalar();
            assert!(value.is_finite() && value > 0.0, "{value}");
        }
    }

    /// λ1 drawn from a range stays in it and λ2 follows as 1 − λ1; bad ranges are refused.
    #[test]
    fn drawn_mixing_weights_stay_in_their_range() {
        use rand::SeedableRng;
        let model = SwinConfig::from_yaml(
            "img_size: 8\npatch_size: 2\nembed_dim: 12\ndepths: [1]\nnum_heads: [3]\nwindow_size: 2\n",
        )
        .unwrap();
        let drawn: ObjectiveConfig =
            crate::yaml::from_str("mask_patch_size: 4\nlambda1: [0.1, 0.4]\n").unwrap();
        drawn.validate(&model).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let l1 = drawn.draw_lambda1(&mut rng);
            assert!((0.1..=0.4).contains(&l1));
            assert_eq!(drawn.lambda2_for(l1), 1.0 - l1);
        }
        let fixed: ObjectiveConfig = crate::yaml::from_str("mask_patch_size: 4\n").unwrap();
        assert_eq!(fixed.lambda2_for(fixed.draw_lambda1(&mut rng)), 0.5);
        for bad in ["[0.4, 0.1]", "[0.0, 0.5]", "[0.5, 1.0]"] {
            let config: ObjectiveConfig =
                crate::yaml::from_str(&format!("mask_patch_size: 4\nlambda1: {bad}\n")).unwrap();
            let message = config.validate(&model).unwrap_err().to_string();
            assert!(
                message.contains("is not a range 0 < low ≤ high < 1"),
                "{message}"
            );
        }
        let wrong = crate::yaml::from_str::<ObjectiveConfig>("mask_patch_size: 4\nlambda1: high\n");
        assert!(format!("{:#}", wrong.unwrap_err()).contains("a number or a range [low, high]"));
        let pit_subtract: ObjectiveConfig =
            crate::yaml::from_str("mask_patch_size: 4\nassignment: pit\ndecomposition: subtract\n")
                .unwrap();
        assert!(pit_subtract
            .validate(&model)
            .unwrap_err()
            .to_string()
            .contains("pit needs decomposition: split"));
    }
}
