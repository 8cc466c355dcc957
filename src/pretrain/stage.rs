//! The `pretrain` stage: its YAML schema and validation.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::objective::ObjectiveConfig;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::model::SwinConfig;
use crate::train::config::{default_device, parse_device, TrainConfig};
use crate::train::optim::OptimizerConfig;

/// A pretraining stage, as `eesmm pretrain --config` reads it (and `eesmm run` will).
/// Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainStage {
    /// Model preset (YAML with timm SwinTransformer keys).
    pub model: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Seeds initialisation, data order, masks, augmentations and drop path.
    #[serde(default)]
    pub seed: u64,
    /// The run directory: checkpoints, metrics, plots and the final encoder.
    pub out_dir: PathBuf,
    pub data: DataConfig,
    pub objective: ObjectiveConfig,
    pub optimizer: OptimizerConfig,
    pub train: TrainConfig,
}

impl PretrainStage {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let stage: Self =
            crate::yaml::from_str(&text).with_context(|| path.display().to_string())?;
        stage
            .validate()
            .with_context(|| path.display().to_string())?;
        Ok(stage)
    }

    pub fn model_config(&self) -> Result<SwinConfig> {
        SwinConfig::load(&self.model).context("model")
    }

    pub fn device(&self) -> Result<DeviceSpec> {
        parse_device(&self.device)
    }

    pub fn validate(&self) -> Result<()> {
        let model = self.model_config()?;
        self.objective.validate(&model)?;
        self.device()?;
        self.train.validate()?;
        ensure!(
            self.optimizer.layer_decay.is_none(),
            "optimizer.layer_decay: is for fine-tuning; pretraining trains every layer at one rate"
        );
        ensure!(
            self.optimizer.base_lr > 0.0,
            "optimizer.base_lr: must be positive"
        );
        ensure!(
            self.data.root.exists(),
            "data.root: {} does not exist",
            self.data.root.display()
        );
        Ok(())
    }
}
