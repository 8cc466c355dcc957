//! The `finetune` stage: its YAML schema and validation.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::augment::FinetuneAugment;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::model::SwinConfig;
use crate::train::config::{default_device, parse_device, TrainConfig};
use crate::train::optim::OptimizerConfig;

/// A fine-tuning stage: encoder + average pool + linear head, trained on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneStage {
    /// Model preset (YAML with timm SwinTransformer keys); `num_classes` comes from the data.
    pub model: PathBuf,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub seed: u64,
    /// The run directory: checkpoints, metrics, plots and the final classifier.
    pub out_dir: PathBuf,
    /// Encoder weights to start from: an eesmm `encoder.safetensors`, timm safetensors or a
    /// PyTorch .pth/.pt (timm or Microsoft layout; window sizes are interpolated). Absent: from
    /// scratch. Any head or decoder in the file is ignored.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Training images (`data.augment` is the random resized crop + flip).
    pub data: DataConfig,
    /// Held-out images, evaluated after every epoch and at the end (absent: no evaluation).
    #[serde(default)]
    pub eval_data: Option<DataConfig>,
    /// Stochastic depth of the last block (overrides the preset's).
    #[serde(default)]
    pub drop_path_rate: Option<f64>,
    #[serde(default)]
    pub augment: FinetuneAugment,
    /// Exponential moving average of the weights with this decay (e.g. 0.999); the EMA weights
    /// are then the ones evaluated and saved.
    #[serde(default)]
    pub ema: Option<f64>,
    pub optimizer: OptimizerConfig,
    pub train: TrainConfig,
}

impl FinetuneStage {
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

    /// The preset with the stage's drop-path rate and `classes` outputs.
    pub fn model_config(&self, classes: usize) -> Result<SwinConfig> {
        let mut config = SwinConfig::load(&self.model).context("model")?;
        if let Some(rate) = self.drop_path_rate {
            config.drop_path_rate = rate;
        }
        config.num_classes = classes;
        Ok(config)
    }

    pub fn device(&self) -> Result<DeviceSpec> {
        parse_device(&self.device)
    }

    pub fn validate(&self) -> Result<()> {
        self.model_config(1)?;
        self.device()?;
        self.train.validate()?;
        ensure!(
            self.optimizer.base_lr > 0.0,
            "optimizer.base_lr: must be positive"
        );
        if let Some(decay) = self.optimizer.layer_decay {
            ensure!(
                decay > 0.0 && decay <= 1.0,
                "optimizer.layer_decay: {decay} is not in (0, 1]"
            );
        }
        if let Some(decay) = self.ema {
            ensure!((0.0..1.0).contains(&decay), "ema: {decay} is not in [0, 1)");
        }
        let a = &self.augment;
        for (key, p) in [
            ("augment.random_erasing", a.random_erasing),
            ("augment.mix_prob", a.mix_prob),
            ("augment.switch_prob", a.switch_prob),
            ("augment.label_smoothing", a.label_smoothing),
        ] {
            ensure!((0.0..=1.0).contains(&p), "{key}: {p} is not in [0, 1]");
        }
        ensure!(
            a.mixup >= 0.0 && a.cutmix >= 0.0,
            "augment.mixup / augment.cutmix: Beta parameters cannot be negative"
        );
        if let Some(init) = &self.init {
            ensure!(init.exists(), "init: {} does not exist", init.display());
        }
        for (key, data) in [
            ("data", Some(&self.data)),
            ("eval_data", self.eval_data.as_ref()),
        ] {
            if let Some(data) = data {
                ensure!(
                    data.root.exists(),
                    "{key}.root: {} does not exist",
                    data.root.display()
                );
            }
        }
        Ok(())
    }
}
