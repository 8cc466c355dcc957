//! The model card stored in an exported model's `metadata_props`: everything `eesmm infer` (or
//! any other runtime) needs to preprocess images and name the outputs, plus where the weights
//! came from. Each field is one key; lists and the model config are JSON strings.

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Precision;
use crate::data::preprocess::{ImageFormat, Interpolation, Resize};
use crate::data::{Normalization, IMAGENET_NORMALIZATION};
use crate::limits;
use crate::model::SwinConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelCard {
    /// Input side in pixels (H = W); the graph's H and W are fixed to it.
    pub image_size: usize,
    /// 3 (RGB) or 1 (grayscale).
    pub in_chans: usize,
    /// Resize the shorter side to this (with `interpolation`), then center-crop `image_size`.
    pub resize_shorter_side: usize,
    pub interpolation: String,
    /// Per channel, applied to pixels scaled to [0, 1]: `(x - mean) / std`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// One per logit; empty for an encoder-only export.
    pub class_names: Vec<String>,
    /// Graph output names.
    pub outputs: Vec<String>,
    /// Weights and compute of the graph (inputs and outputs are float32 in both).
    pub precision: Precision,
    pub model_config: SwinConfig,
    /// File name and SHA-256 of the checkpoint the weights were read from.
    pub source_checkpoint: String,
    pub source_checkpoint_sha256: String,
    pub eesmm_version: String,
}

/// Mean and std for `in_chans` channels: ImageNet's per channel for RGB, their averages
/// (timm's grayscale convention) for one channel.
pub fn default_normalization(in_chans: usize) -> (Vec<f32>, Vec<f32>) {
    let avg = |v: [f32; 3]| v.iter().sum::<f32>() / 3.0;
    let (mean, std) = IMAGENET_NORMALIZATION;
    if in_chans == 3 {
        (mean.to_vec(), std.to_vec())
    } else {
        (vec![avg(mean); in_chans], vec![avg(std); in_chans])
    }
}

impl ModelCard {
    /// How an image file is brought to the input size ([`crate::data::preprocess`]).
    pub fn resize(&self) -> Result<Resize> {
        Ok(Resize {
            shorter_side: self.resize_shorter_side,
            crop: self.image_size,
            interpolation: Interpolation::parse(&self.interpolation)
                .context("metadata `interpolation`")?,
        })
    }

    /// Size, channels and normalisation of the input.
    pub fn image_format(&self) -> ImageFormat {
        ImageFormat {
            size: self.image_size,
            channels: self.in_chans,
            normalization: Normalization {
                mean: self.mean.clone(),
                std: self.std.clone(),
            },
        }
    }

    /// One image file as input of this model, `[in_chans, S, S]`.
    pub fn load_image(&self, path: &std::path::Path) -> Result<Vec<f32>> {
        crate::data::preprocess::load_input(path, &self.resize()?, &self.image_format())
    }

    pub fn to_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("image_size", self.image_size.to_string()),
            ("in_chans", self.in_chans.to_string()),
            (
                "input_layout",
                "NCHW float32, RGB order, (pixel/255 - mean) / std".into(),
            ),
            ("resize_shorter_side", self.resize_shorter_side.to_string()),
            ("crop", format!("center {0}x{0}", self.image_size)),
            ("interpolation", self.interpolation.clone()),
            ("mean", json(&self.mean)),
            ("std", json(&self.std)),
            ("class_names", json(&self.class_names)),
            ("outputs", json(&self.outputs)),
            ("precision", self.precision.to_string()),
            ("model_config", json(&self.model_config)),
            ("source_checkpoint", self.source_checkpoint.clone()),
            (
                "source_checkpoint_sha256",
                self.source_checkpoint_sha256.clone(),
            ),
            ("eesmm_version", self.eesmm_version.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads the card back from `metadata_props`; errors name the missing or malformed key.
    pub fn from_metadata(props: &HashMap<String, String>) -> Result<Self> {
        fn get<T: DeserializeOwned>(props: &HashMap<String, String>, key: &str) -> Result<T> {
            let text = props.get(key).with_context(|| {
                format!("the model has no `{key}` in its metadata (not exported by eesmm?)")
            })?;
            serde_json::from_str(text).with_context(|| format!("metadata `{key}`: {text:?}"))
        }
        let text = |key: &str| -> Result<String> {
            props
                .get(key)
                .cloned()
                .with_context(|| format!("the model has no `{key}` in its metadata"))
        };
        let card = Self {
            image_size: get(props, "image_size")?,
            in_chans: get(props, "in_chans")?,
            resize_shorter_side: get(props, "resize_shorter_side")?,
            interpolation: text("interpolation")?,
            mean: get(props, "mean")?,
            std: get(props, "std")?,
            class_names: get(props, "class_names")?,
            outputs: get(props, "outputs")?,
            precision: precision(props)?,
            model_config: get(props, "model_config")?,
            source_checkpoint: text("source_checkpoint")?,
            source_checkpoint_sha256: text("source_checkpoint_sha256")?,
            eesmm_version: text("eesmm_version")?,
        };
        card.validate()?;
        Ok(card)
    }

    /// Values an edited card could hold that would make preprocessing divide by zero, allocate
    /// without bound or disagree with the graph; errors name the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        self.model_config
            .validate()
            .map_err(|e| anyhow::anyhow!("metadata `model_config`: {e}"))?;
        let side = self.image_size as u64;
        ensure!(
            side > 0 && side * side <= limits::MAX_RESIZED_PIXELS,
            "metadata `image_size`: {side} is not in [1, {}]",
            limits::MAX_RESIZED_PIXELS.isqrt()
        );
        ensure!(
            self.model_config.img_size == self.image_size
                && self.model_config.in_chans == self.in_chans,
            "metadata `image_size`/`in_chans`: {} px, {} channels, but `model_config` says {} px, {} channels",
            self.image_size,
            self.in_chans,
            self.model_config.img_size,
            self.model_config.in_chans
        );
        ensure!(
            matches!(self.in_chans, 1 | 3),
            "metadata `in_chans`: {} is not 1 (grayscale) or 3 (RGB)",
            self.in_chans
        );
        ensure!(
            self.resize_shorter_side >= self.image_size
                && self.resize_shorter_side as u64 <= limits::MAX_RESIZED_PIXELS,
            "metadata `resize_shorter_side`: {} is not in [image_size {}, {}]",
            self.resize_shorter_side,
            self.image_size,
            limits::MAX_RESIZED_PIXELS
        );
        for (key, values) in [("mean", &self.mean), ("std", &self.std)] {
            ensure!(
                values.len() == self.in_chans && values.iter().all(|v| v.is_finite()),
                "metadata `{key}`: {values:?} is not {} finite values (one per channel)",
                self.in_chans
            );
        }
        ensure!(
            self.std.iter().all(|&v| v > 0.0),
            "metadata `std`: {:?} must be positive (pixels are divided by it)",
            self.std
        );
        Ok(())
    }
}

/// The card's `precision`: `fp32` or `fp16`; absent in exports from before fp16, which are fp32.
fn precision(props: &HashMap<String, String>) -> Result<Precision> {
    match props.get("precision") {
        None => Ok(Precision::Fp32),
        Some(text) => text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("metadata `precision`: {e}")),
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialisable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{default_card, Outputs};

    fn micro() -> SwinConfig {
        SwinConfig::load(std::path::Path::new("models/swin-micro-28.yaml")).unwrap()
    }

    /// The card of `micro()` with `key` set to `value`, read back.
    fn read_edited(key: &str, value: &str) -> Result<ModelCard> {
        let card = default_card(&micro(), Outputs::default(), 0);
        let mut props: HashMap<String, String> = card.to_metadata().into_iter().collect();
        props.insert(key.into(), value.into());
        ModelCard::from_metadata(&props)
    }

    #[test]
    fn an_unedited_card_reads_back_the_same() {
        let card = default_card(&micro(), Outputs::default(), 0);
        let props = card.to_metadata().into_iter().collect();
        assert_eq!(ModelCard::from_metadata(&props).unwrap(), card);
    }

    /// Edited values that used to panic or allocate without bound are errors naming the key.
    #[test]
    fn edited_cards_are_refused_naming_the_key() {
        let error_of = |key, value| format!("{:#}", read_edited(key, value).unwrap_err());
        assert_eq!(
            error_of("image_size", "0"),
            "metadata `image_size`: 0 is not in [1, 2048]"
        );
        assert_eq!(
            error_of("image_size", "1000000000"),
            "metadata `image_size`: 1000000000 is not in [1, 2048]"
        );
        assert!(error_of("image_size", "56").starts_with(
            "metadata `image_size`/`in_chans`: 56 px, 1 channels, but `model_config` says 28 px"
        ));
        assert_eq!(
            error_of("std", "[-0.3]"),
            "metadata `std`: [-0.3] must be positive (pixels are divided by it)"
        );
        assert_eq!(
            error_of("std", "[0.1, 0.2]"),
            "metadata `std`: [0.1, 0.2] is not 1 finite values (one per channel)"
        );
        assert!(error_of("std", "[NaN]").starts_with("metadata `std`: \"[NaN]\""));
        assert_eq!(
            error_of("resize_shorter_side", "18446744073709551615"),
            "metadata `resize_shorter_side`: 18446744073709551615 is not in [image_size 28, 4194304]"
        );
        assert!(error_of("model_config", "{}").starts_with("metadata `model_config`: "));
        assert_eq!(
            error_of("precision", "fp8"),
            "metadata `precision`: unknown precision 'fp8': expected fp32 or fp16"
        );
    }

    #[test]
    fn a_card_without_precision_is_fp32_and_fp16_reads_back() {
        assert_eq!(
            read_edited("precision", "fp16").unwrap().precision,
            Precision::Fp16
        );
        let card = default_card(&micro(), Outputs::default(), 0);
        let mut props: HashMap<String, String> = card.to_metadata().into_iter().collect();
        props.remove("precision");
        assert_eq!(
            ModelCard::from_metadata(&props).unwrap().precision,
            Precision::Fp32
        );
    }
}
