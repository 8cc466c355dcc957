//! What a fine-tuning run is given (the `finetune` stage's YAML schema, `eesmm finetune --config`),
//! and its validation.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::augment::FinetuneAugment;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::model::SwinConfig;
use crate::train::config::{default_device, parse_training_devices, TrainConfig};
use crate::train::optim::OptimizerConfig;

fn default_eval_every() -> usize {
    1
}

/// A fine-tuning stage: encoder + average pool + linear head, trained on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Model preset (YAML with timm SwinTransformer keys); `num_classes` comes from the data.
    /// Required.
    pub model: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu`; a comma-separated list (`cuda:0,cuda:1`) trains
    /// data-parallel. Default: `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Seeds the head's initialisation, data order, augmentations and drop path. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// The run directory: checkpoints, metrics, plots and the final classifier. Required (in a
    /// pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
    /// Encoder weights to start from: an eesmm `encoder.safetensors`, timm safetensors or a
    /// PyTorch .pth/.pt (timm or Microsoft layout; window sizes are interpolated). Any head or
    /// decoder in the file is ignored. Default: none (from scratch).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Training images (`data.augment` is the random resized crop + flip). Required.
    pub data: DataConfig,
    /// Held-out images, evaluated after every `eval_every` epochs and after the last.
    /// Default: none (no evaluation).
    #[serde(default)]
    pub eval_data: Option<DataConfig>,
    /// Epochs between evaluations on `eval_data`; at least 1 (long runs on few labels skip
    /// some). Default: 1.
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// Stochastic depth of the last block, in [0, 1). Default: none (the preset's).
    #[serde(default)]
    pub drop_path_rate: Option<f64>,
    /// RandAugment, random erasing, Mixup/CutMix and label smoothing. Default: all off.
    #[serde(default)]
    pub augment: FinetuneAugment,
    /// Exponential moving average of the weights with this decay, in [0, 1) (e.g. 0.999); the
    /// EMA weights are then the ones evaluated and saved. Default: none (no EMA).
    #[serde(default)]
    pub ema: Option<f64>,
    /// AdamW, its learning-rate schedule and layer-wise decay. Required.
    pub optimizer: OptimizerConfig,
    /// Epochs, batch size and checkpoint cadence. Required.
    pub train: TrainConfig,
}

impl FinetuneConfig {
    /// The preset with the stage's drop-path rate and `classes` outputs.
    pub fn model_config(&self, classes: usize) -> Result<SwinConfig> {
        let mut config = SwinConfig::load(&self.model).context("model")?;
        if let Some(rate) = self.drop_path_rate {
            config.drop_path_rate = rate;
        }
        config.num_classes = classes;
        Ok(config)
    }

    /// The devices to train on: one, or several for data-parallel training.
    pub fn devices(&self) -> Result<Vec<DeviceSpec>> {
        parse_training_devices(&self.device, &self.train)
    }

    /// The settings, without looking for files (in a pipeline an earlier stage may write them).
    pub fn validate_settings(&self) -> Result<()> {
        self.model_config(1)?;
        ensure!(
            self.eval_every > 0,
            "eval_every: 0 epochs between evaluations (at least 1)"
        );
        self.data.validate("data")?;
        if let Some(eval_data) = &self.eval_data {
            eval_data.validate("eval_data")?;
        }
        self.devices()?;
        self.train.validate()?;
        self.optimizer.validate()?;
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
        for (key, alpha) in [("augment.mixup", a.mixup), ("augment.cutmix", a.cutmix)] {
            ensure!(
                alpha.is_finite() && alpha >= 0.0,
                "{key}: {alpha} is not a finite value ≥ 0 (0 turns it off)"
            );
        }
        if let Some(rand_augment) = &a.rand_augment {
            let (ops, magnitude) = (rand_augment.num_ops, rand_augment.magnitude);
            ensure!(
                ops <= 16,
                "augment.rand_augment.num_ops: {ops} is not in [0, 16] (timm uses 2)"
            );
            ensure!(
                (0.0..=10.0).contains(&magnitude),
                "augment.rand_augment.magnitude: {magnitude} is not in [0, 10] (timm's scale)"
            );
        }
        Ok(())
    }
}
