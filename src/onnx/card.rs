//! The model card stored in an exported model's `metadata_props`: everything `eesmm infer` (or
//! any other runtime) needs to preprocess images and name the outputs, plus where the weights
//! came from. Each field is one key; lists and the model config are JSON strings.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::SwinConfig;

/// ImageNet channel statistics, timm's defaults for Swin.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's Swin evaluation crop: resize the shorter side to `img_size / 0.9`, center crop.
pub const CROP_PCT: f64 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelCard {
    /// Input side in pixels (H = W); the graph's H and W are fixed to it.
    pub image_size: usize,
    /// 3 (RGB) or 1 (grayscale).
    pub in_chans: usize,
    /// Resize the shorter side to this (bicubic), then center-crop `image_size`.
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
    if in_chans == 3 {
        (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
    } else {
        (
            vec![avg(IMAGENET_MEAN); in_chans],
            vec![avg(IMAGENET_STD); in_chans],
        )
    }
}

/// Shorter side before the center crop, `floor(img_size / CROP_PCT)` as timm computes it.
pub fn resize_for(image_size: usize) -> usize {
    (image_size as f64 / CROP_PCT).floor() as usize
}

impl ModelCard {
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
