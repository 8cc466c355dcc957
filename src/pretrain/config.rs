//! What a pretraining run is given (the `pretrain` stage's YAML schema, `eesmm pretrain --config`), and
//! its validation.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::objective::ObjectiveConfig;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::model::SwinConfig;
use crate::train::config::{default_device, parse_training_devices, TrainConfig};
use crate::train::optim::OptimizerConfig;

/// A pretraining stage, as `eesmm pretrain --config` and `eesmm run` read it.
/// Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Model preset (YAML with timm SwinTransformer keys, see "Model presets"). Required.
    pub model: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu`; a comma-separated list (`cuda:0,cuda:1`) trains
    /// data-parallel. Default: `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Seeds initialisation, data order, masks, augmentations and drop path. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// The run directory: checkpoints, metrics, plots and the final encoder. Required (in a
    /// pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
    /// The images to pretrain on (labels, if any, are not used). Required.
    pub data: DataConfig,
    /// The pretraining objective: EESMM or SimMIM, masks, mixing, losses, decoder. Required.
    pub objective: ObjectiveConfig,
    /// AdamW and its learning-rate schedule. Required.
    pub optimizer: OptimizerConfig,
    /// Epochs, batch size and checkpoint cadence. Required.
    pub train: TrainConfig,
}

impl PretrainConfig {
    pub fn model_config(&self) -> Result<SwinConfig> {
        SwinConfig::load(&self.model).context("model")
    }

    /// The devices to train on: one, or several for data-parallel training.
    pub fn devices(&self) -> Result<Vec<DeviceSpec>> {
        parse_training_devices(&self.device, &self.train)
    }

    /// The settings, without looking for the data (in a pipeline an earlier stage may write it).
    pub fn validate_settings(&self) -> Result<()> {
        let model = self.model_config()?;
        self.objective.validate(&model)?;
        self.data.validate("data")?;
        self.devices()?;
        self.train.validate()?;
        ensure!(
            self.optimizer.layer_decay.is_none(),
            "optimizer.layer_decay: is for fine-tuning; pretraining trains every layer at one rate"
        );
        self.optimizer.validate()
    }
}
