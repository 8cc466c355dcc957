//! `train:` — the part of a training stage (pretrain, finetune) that says how long and how big.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Encoder inputs per micro-batch (an EESMM input holds two images).
    pub batch_size: usize,
    #[serde(default = "one")]
    pub accumulation: usize,
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
fn default_checkpoint_every() -> usize {
    500
}
fn default_keep() -> usize {
    2
}
fn default_log_every() -> usize {
    10
}

/// The default of every stage's `device:`.
pub fn default_device() -> String {
    "cpu".into()
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs > 0, "train.epochs: must be at least 1");
        ensure!(self.batch_size > 0, "train.batch_size: must be at least 1");
        ensure!(
            self.accumulation > 0,
            "train.accumulation: must be at least 1"
        );
        ensure!(
            self.checkpoint_every > 0,
            "train.checkpoint_every: must be at least 1"
        );
        ensure!(self.log_every > 0, "train.log_every: must be at least 1");
        Ok(())
    }
}

/// Parses the `device:` of a stage that runs on one device (`cpu`, `cuda`, `cuda:N`).
pub fn parse_device(device: &str) -> Result<crate::backend::DeviceSpec> {
    ensure!(
        !device.contains(','),
        "device: '{device}' is a list; data-parallel devices are for pretrain and finetune stages"
    );
    device.parse().map_err(|e| anyhow::anyhow!("device: {e}"))
}

/// Parses the `device:` of a training stage: one device, or several for data-parallel training,
/// which split every micro-batch of `train.batch_size` evenly.
pub fn parse_training_devices(
    device: &str,
    train: &TrainConfig,
) -> Result<Vec<crate::backend::DeviceSpec>> {
    let devices =
        crate::backend::parse_devices(device).map_err(|e| anyhow::anyhow!("device: {e}"))?;
    ensure!(
        train.batch_size.is_multiple_of(devices.len()),
        "train.batch_size: {} does not split evenly over the {} devices of device: {device}",
        train.batch_size,
        devices.len()
    );
    Ok(devices)
}
