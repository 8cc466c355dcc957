//! The model card stored in an exported model's `metadata_props`: everything `eesmm infer` (or
//! any other runtime) needs to preprocess images and name the outputs, plus where the weights
//! came from. Each field is one key; lists and the model config are JSON strings.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::data::preprocess::{ImageFormat, Interpolation, Resize};
use crate::data::{Normalization, IMAGENET_NORMALIZATION};
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
        Ok(Self {
            image_size: get(props, "image_size")?,
            in_chans: get(props, "in_chans")?,
            resize_shorter_side: get(props, "resize_shorter_side")?,
            interpolation: text("interpolation")?,
            mean: get(props, "mean")?,
            std: get(props, "std")?,
            class_names: get(props, "class_names")?,
            outputs: get(props, "outputs")?,
            model_config: get(props, "model_config")?,
            source_checkpoint: text("source_checkpoint")?,
            source_checkpoint_sha256: text("source_checkpoint_sha256")?,
            eesmm_version: text("eesmm_version")?,
        })
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialisable")
}
