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
        let saved: Self = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not an eesmm model description", path.display()))?;
        saved
            .validate()
            .with_context(|| format!("{}: not a usable eesmm model description", path.display()))?;
        Ok(Some(saved))
    }

    /// An edited sidecar must still describe a network that builds and a normalisation that
    /// divides by positive values; errors name the key.
    fn validate(&self) -> Result<()> {
        self.model
            .validate()
            .map_err(|e| anyhow::anyhow!("model.{e}"))?;
        let Normalization { mean, std } = &self.normalization;
        anyhow::ensure!(
            !mean.is_empty()
                && mean.len() == std.len()
                && mean.iter().chain(std).all(|v| v.is_finite())
                && std.iter().all(|&v| v > 0.0),
            "normalization: mean {mean:?} and std {std:?} must be finite, one per channel, std > 0"
        );
        if let Some(resize) = &self.resize {
            anyhow::ensure!(
                resize.crop > 0 && resize.shorter_side >= resize.crop,
                "resize: shorter_side {} and crop {} must satisfy 0 < crop <= shorter_side",
                resize.shorter_side,
                resize.crop
            );
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An edited sidecar is refused naming the key, before anything builds from it.
    #[test]
    fn edited_sidecars_are_refused_naming_the_key() {
        let dir = std::env::temp_dir().join(format!("eesmm-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let weights = dir.join("m.safetensors");
        let config = SwinConfig::load(Path::new("models/swin-micro-28.yaml")).unwrap();
        let normalization = Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        };
        let saved = SavedModel::new(config, normalization, vec![], Resize::native(28));
        let write = |value: &serde_json::Value| {
            std::fs::write(sidecar_path(&weights), value.to_string()).unwrap();
        };
        let good = serde_json::to_value(&saved).unwrap();
        write(&good);
        assert_eq!(SavedModel::read_beside(&weights).unwrap(), Some(saved));
        for (pointer, value, expected) in [
            (
                "/model/num_heads",
                serde_json::json!([5, 6]),
                "model.num_heads: stage 0: 5 heads do not divide the width 48",
            ),
            (
                "/normalization/std",
                serde_json::json!([]),
                "normalization: mean [0.5] and std [] must be finite",
            ),
            (
                "/resize/crop",
                serde_json::json!(0),
                "resize: shorter_side 28 and crop 0 must satisfy",
            ),
        ] {
            let mut edited = good.clone();
            *edited.pointer_mut(pointer).unwrap() = value;
            write(&edited);
            let message = format!("{:#}", SavedModel::read_beside(&weights).unwrap_err());
            assert!(
                message.contains("m.json: not a usable eesmm model description: ")
                    && message.contains(expected),
                "{message}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
