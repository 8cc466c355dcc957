//! Pretraining: masks, the EESMM superposition, the objectives, and the training run behind
//! `eesmm pretrain`.

pub mod mask;
pub mod mix;
pub mod objective;
pub mod run;
pub mod stage;

pub use stage::PretrainStage;
