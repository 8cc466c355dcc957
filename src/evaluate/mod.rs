//! Measuring models: classifier accuracy (`eval`), and pretrained encoders judged without
//! fine-tuning (`linear_probe`, `knn`).

pub mod features;
pub mod label_efficiency;
pub mod metrics;
pub mod probe;
pub mod run;

pub use metrics::ClassificationReport;
pub use run::{classify_dataset, EvalConfig, ProbeConfig};
