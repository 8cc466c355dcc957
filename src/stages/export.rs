//! The `export` stage kind: `eesmm export` with its flags as YAML keys.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::SwinConfig;
use crate::onnx::{ExportOptions, Precision};
use crate::pipeline::{Input, Outputs, Stage, StageResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportStage {
    /// Model preset (YAML). Default: none (the architecture in the weights' sidecar).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Weights: an eesmm encoder or checkpoint, timm safetensors or PyTorch .pth/.pt. Required.
    pub weights: PathBuf,
    /// Where the model goes. Required (in a pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
    /// The .onnx file to write. Default: `<out_dir>/model.onnx`.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Export the classifier (adds the `logits` output; the weights must have a head).
    /// Default: false.
    #[serde(default)]
    pub head: bool,
    /// Also output the final feature map `features` (NHWC). Default: false.
    #[serde(default)]
    pub feature_map: bool,
    /// Class names for the model card, one per line. Default: none (the sidecar's).
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// Normalisation mean per channel for the model card. Default: none (the sidecar's, else
    /// ImageNet's).
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    /// Normalisation std per channel for the model card. Default: none (the sidecar's, else
    /// ImageNet's).
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// `fp32` or `fp16`: weights and compute; inputs and outputs stay float32. Left out of the
    /// stage's record when fp32, so exports recorded before it stay up to date. Default: `fp32`.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl ExportStage {
    pub fn onnx_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.out_dir.join("model.onnx"))
    }

    fn options(&self) -> ExportOptions {
        ExportOptions {
            model: self.model.clone(),
            weights: self.weights.clone(),
            out: self.onnx_path(),
            head: self.head,
            feature_map: self.feature_map,
            labels: self.labels.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
            precision: self.precision,
        }
    }
}

impl Stage for ExportStage {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("onnx", self.onnx_path())]
    }

    fn inputs(&self) -> Vec<Input> {
        let mut inputs = vec![Input::new("weights", &self.weights)];
        inputs.extend(self.model.iter().map(|p| Input::new("model", p)));
        inputs.extend(self.labels.iter().map(|p| Input::new("labels", p)));
        inputs
    }

    fn validate(&self) -> Result<()> {
        // Without `model` the architecture is the weights' (which an earlier stage may not have
        // written yet): `export` checks mean and std against it when it runs.
        let Some(model) = &self.model else {
            return Ok(());
        };
        let config = SwinConfig::load(model).context("model")?;
        for (key, values) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(values) = values {
                anyhow::ensure!(
                    values.len() == config.in_chans,
                    "{key}: {} values for the model's {} input channels",
                    values.len(),
                    config.in_chans
                );
            }
        }
        Ok(())
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        let out = self.onnx_path();
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_dir(dir)?;
        }
        crate::onnx::export(&self.options())?;
        Ok(StageResult {
            metric: None,
            artifacts: vec![out],
        })
    }
}
