//! The Swin Transformer encoder: configuration, network, checkpoint import
//! (`weights.rs`, its `.pth` pickle bounded by `pickle_scan.rs`, and `load.rs` for a model with
//! its weights) and a summary.

pub mod config;
pub mod info;
pub mod load;
pub mod pickle_scan;
pub mod saved;
pub mod swin;
pub mod weights;

pub use config::SwinConfig;
pub use load::{architecture, load_model};
pub use swin::Swin;
