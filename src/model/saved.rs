//! A trained model on disk: timm-layout safetensors (what PyTorch users load, and what eesmm
//! loads back) plus a JSON sidecar with what the weights alone do not say — the architecture,
//! the input normalisation and the class names.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use super::{Swin, SwinConfig};
use crate::data::preprocess::Resize;
use crate::data::Normalization;

/// `<name>.json` next to `<name>.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    pub model: SwinConfig,
    pub normalization: Normalization,
    /// Empty for an encoder without a head.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// How image files were brought to the input size in training and evaluation (absent in
    /// sidecars older than this field: then timm's evaluation resize is assumed).
    #[serde(default)]
    pub resize: Option<Resize>,
    pub eesmm_version: String,
}

/// The sidecar path of a weights file: same stem, `.json`.
pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

impl SavedModel {
    pub fn new(
        model: SwinConfig,
        normalization: Normalization,
        class_names: Vec<String>,
        resize: Resize,
    ) -> Self {
        Self {
            model,
            normalization,
            class_names,
            resize: Some(resize),
            eesmm_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// How image files are resized for a `image_size` px model: as this model was trained and
    /// evaluated, else (an older sidecar, or another resolution) timm's evaluation resize.
    pub fn resize_at(&self, image_size: usize) -> Resize {
        self.resize
            .filter(|r| r.crop == image_size)
            .unwrap_or_else(|| Resize::timm_eval(image_size))
    }

    /// The sidecar of `weights`, if it has one.
    pub fn read_beside(weights: &Path) -> Result<Option<Self>> {
        let path = sidecar_path(weights);
        if !path.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let saved = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not an eesmm model description", path.display()))?;
        Ok(Some(saved))
    }

    /// Writes `weights` (timm keys; the mask token left out) and its sidecar, each atomically.
    pub fn save<B: Backend>(&self, model: &Swin<B>, weights: &Path) -> Result<()> {
        crate::fsutil::write_atomic(weights, &timm_safetensors(model)?)?;
        crate::fsutil::write_atomic(&sidecar_path(weights), &serde_json::to_vec_pretty(self)?)
    }
}

/// The model as safetensors bytes with timm 1.0's keys: `timm.create_model(...)` loads them.
fn timm_safetensors<B: Backend>(model: &Swin<B>) -> Result<Vec<u8>> {
    let snapshots = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = snapshots
        .into_iter()
        .filter(|s| s.full_path() != "mask_token")
        .map(|s| {
            let data = s
                .to_data()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .convert::<f32>();
            let shape = data.shape.to_vec();
            Ok((s.full_path(), shape, data.as_bytes().to_vec()))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            Ok((
                k.clone(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytes,
                )?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(safetensors::serialize(views, None)?)
}
