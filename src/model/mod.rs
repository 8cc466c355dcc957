//! The Swin Transformer encoder: configuration, network, checkpoint import and a summary.

pub mod config;
pub mod decoder;
pub mod info;
pub mod saved;
pub mod swin;
pub mod weights;

pub use config::SwinConfig;
pub use swin::Swin;
