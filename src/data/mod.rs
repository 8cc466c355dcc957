//! Datasets as sources of decoded images, and the loader that turns them into batches.
//!
//! Every reader yields 8-bit HWC images of a fixed channel count plus an optional label, so the
//! loader (resize, channel conversion, normalisation, augmentation) is written once.

pub mod cifar;
pub mod fashion_mnist;
pub mod loader;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One decoded image: `height x width x channels` bytes, row-major, channels last.
#[derive(Debug, Clone, PartialEq)]
pub struct RawImage {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// A dataset held in memory (Fashion-MNIST and CIFAR are small enough).
#[derive(Debug, Clone)]
pub struct InMemoryDataset {
    pub images: Vec<RawImage>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Per-channel mean and std of the pixels scaled to [0, 1], used for normalisation.
    pub normalization: Normalization,
}

impl InMemoryDataset {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The first `limit` images (all when `None`).
    pub fn truncated(mut self, limit: Option<usize>) -> Self {
        if let Some(limit) = limit {
            self.images.truncate(limit);
            self.labels.truncate(limit);
        }
        self
    }
}

/// Mean and std per channel of pixels in [0, 1]; stored with every model trained on the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Adapts a per-channel normalisation to `channels` (gray → RGB repeats, RGB → gray averages).
    pub fn for_channels(&self, channels: usize) -> Self {
        let average = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        match (self.mean.len(), channels) {
            (a, b) if a == b => self.clone(),
            (1, n) => Self {
                mean: vec![self.mean[0]; n],
                std: vec![self.std[0]; n],
            },
            (_, 1) => Self {
                mean: vec![average(&self.mean)],
                std: vec![average(&self.std)],
            },
            _ => self.clone(),
        }
    }
}

/// Which dataset a stage reads, as written in a stage YAML (`data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Folder holding the dataset's files.
    pub root: PathBuf,
    #[serde(default)]
    pub split: Split,
    /// Use only the first N images (quick runs and tests).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    FashionMnist,
    Cifar10,
    Cifar100,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    #[default]
    Train,
    Test,
}

impl DataConfig {
    pub fn load(&self) -> anyhow::Result<InMemoryDataset> {
        let dataset = match self.dataset {
            DatasetKind::FashionMnist => fashion_mnist::load(&self.root, self.split)?,
            DatasetKind::Cifar10 => cifar::load_cifar10(&self.root, self.split)?,
            DatasetKind::Cifar100 => cifar::load_cifar100(&self.root, self.split)?,
        };
        Ok(dataset.truncated(self.limit))
    }
}
