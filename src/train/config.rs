//! `train:` — the part of a training stage (pretrain, finetune) that says how long and how big.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the data, in [1, 2^20]. Required.
    pub epochs: usize,
    /// Encoder inputs per micro-batch (an EESMM input holds two images), in [1, 2^20]; split
    /// evenly over the devices. Required.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation), in [1, 2^16]. Default: 1.
    #[serde(default = "one")]
    pub accumulation: usize,
    /// Write a checkpoint every N optimizer steps (and at the end of every epoch), ≥ 1.
    /// Default: 500.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Newest checkpoints kept; older ones are removed. Default: 2.
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Optimizer steps between progress lines and `metrics.jsonl` rows, ≥ 1. Default: 10.
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
        let in_range = |key: &str, value: usize, max: usize| {
            ensure!(
                (1..=max).contains(&value),
                "train.{key}: {value} is not in [1, {max}]"
            );
            Ok(())
        };
        in_range("epochs", self.epochs, MAX_EPOCHS)?;
        in_range("batch_size", self.batch_size, MAX_BATCH)?;
        in_range("accumulation", self.accumulation, MAX_ACCUMULATION)?;
        in_range("checkpoint_every", self.checkpoint_every, usize::MAX)?;
        in_range("log_every", self.log_every, usize::MAX)?;
        Ok(())
    }
}

/// Bounds of `train:` that keep every step count and images-per-step product far from overflow
/// (a negative number read into an unsigned field by a shell substitution wraps to ~1.8e19).
const MAX_EPOCHS: usize = 1 << 20;
const MAX_BATCH: usize = 1 << 20;
const MAX_ACCUMULATION: usize = 1 << 16;

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
    let nodes = super::nodes::current().count;
    let replicas = devices.len() * nodes;
    match nodes {
        1 => ensure!(
            train.batch_size.is_multiple_of(replicas),
            "train.batch_size: {} does not split evenly over the {} devices of device: {device}",
            train.batch_size,
            devices.len()
        ),
        _ => ensure!(
            train.batch_size.is_multiple_of(replicas),
            "train.batch_size: {} does not split evenly over the {replicas} devices of {nodes} \
             nodes (--nodes) with device: {device} each",
            train.batch_size,
        ),
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_or_zero_batch_size_is_refused_with_its_range() {
        let train = |text: &str| {
            crate::yaml::from_str::<TrainConfig>(text)
                .unwrap()
                .validate()
        };
        assert!(train("epochs: 1\nbatch_size: 32\n").is_ok());
        let wrapped = train("epochs: 1\nbatch_size: 18446744073709551614\n").unwrap_err();
        assert_eq!(
            wrapped.to_string(),
            "train.batch_size: 18446744073709551614 is not in [1, 1048576]"
        );
        let zero = train("epochs: 0\nbatch_size: 32\n").unwrap_err();
        assert_eq!(zero.to_string(), "train.epochs: 0 is not in [1, 1048576]");
    }
}
