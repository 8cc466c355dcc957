//! The training machinery shared by pretraining and fine-tuning.

pub mod checkpoint;
pub mod config;
pub mod fit;
pub mod optim;
pub mod replicas;
pub mod report;
