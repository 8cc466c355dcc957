//! Fine-tuning: a classifier (encoder + average pool + linear head) trained on labelled data
//! with the paper's recipe — layer-wise LR decay, drop path, RandAugment, random erasing, Mixup,
//! CutMix, label smoothing and an optional EMA of the weights.

pub mod augment;
pub mod config;
pub mod run;

pub use config::FinetuneConfig;
