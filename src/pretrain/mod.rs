//! Pretraining: masks, the EESMM superposition, the objectives, and the training run behind
//! `eesmm pretrain`.

pub mod config;
pub mod decoder;
pub mod losses;
pub mod mask;
pub mod mix;
pub mod objective;
pub mod run;

pub use config::PretrainConfig;
