//! The `pretrain` stage: its YAML schema and validation.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::objective::ObjectiveConfig;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::model::SwinConfig;
use crate::train::optim::OptimizerConfig;

/// A pretraining stage, as `eesmm pretrain --config` reads it (and `eesmm run` will).
/// Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainStage {
    /// Model preset (YAML with timm SwinTransformer keys).
    pub model: PathBuf,
    pub data: DataConfig,
    pub objective: ObjectiveConfig,
    pub optimizer: OptimizerConfig,
    pub train: TrainConfig,
}

/// `train:` — how long, how big, where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Encoder inputs per micro-batch (an EESMM input holds two images).
    pub batch_size: usize,
    #[serde(default = "one")]
    pub accumulation: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: String,
    pub run_dir: PathBuf,
    /// Write a checkpoint every N optimizer steps (and at the end of every epoch).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    #[serde(default = "default_log_every")]
    pub log_every: usize,
}

fn one() -> usize {
    1
}
fn default_device() -> String {
    "cpu".into()
}
fn default_checkpoint_every() -> usize {
    500
}
fn default_keep() -> usize {
    2
}
fn default_log_every() -> usize {
    10
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
        self.train
            .device
            .parse()
            .map_err(|e| anyhow::anyhow!("train.device: {e}"))
    }

    pub fn validate(&self) -> Result<()> {
        let model = self.model_config()?;
        self.objective.validate(&model)?;
        self.device()?;
        ensure!(self.train.epochs > 0, "train.epochs: must be at least 1");
        ensure!(
            self.train.batch_size > 0,
            "train.batch_size: must be at least 1"
        );
        ensure!(
            self.train.accumulation > 0,
            "train.accumulation: must be at least 1"
        );
        ensure!(
            self.train.checkpoint_every > 0,
            "train.checkpoint_every: must be at least 1"
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
