//! The stage kinds a pipeline can name, one file per kind: each implements the runner's
//! [`Stage`](crate::pipeline::Stage) for its schema and calls its engine (`pretrain`, `finetune`,
//! `evaluate`, `onnx`, `runtime`) with that engine's options. [`kinds`] is the registry the
//! composition root hands to the runner.

pub mod evaluate;
pub mod export;
pub mod finetune;
pub mod infer;
pub mod pretrain;
pub mod verify;

use std::path::PathBuf;

use crate::evaluate::EvalConfig;
use crate::finetune::FinetuneConfig;
use crate::pipeline::{Input, Kind};
use crate::pretrain::PretrainConfig;
pub use evaluate::{KnnStage, LinearProbeStage};
pub use export::ExportStage;
pub use infer::InferStage;
pub use verify::VerifyStage;

/// Every stage kind a pipeline can name. To add one, implement
/// [`Stage`](crate::pipeline::Stage) for its schema in a file here and add a line.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind::of::<PretrainConfig>("pretrain"),
        Kind::of::<FinetuneConfig>("finetune"),
        Kind::of::<EvalConfig>("eval"),
        Kind::of::<LinearProbeStage>("linear_probe"),
        Kind::of::<KnnStage>("knn"),
        Kind::of::<ExportStage>("export"),
        Kind::of::<VerifyStage>("verify"),
        Kind::of::<InferStage>("infer"),
    ]
}

/// The `images` list as inputs (`images[0]`, ...).
pub fn images(paths: &[PathBuf]) -> impl Iterator<Item = Input> + '_ {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| Input::new(format!("images[{i}]"), p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::find_kind;

    #[test]
    fn kinds_list_the_keys_of_their_structs() {
        let kinds = kinds();
        let pretrain = find_kind(&kinds, "pretrain").unwrap();
        assert_eq!(
            pretrain.keys,
            [
                "model",
                "device",
                "seed",
                "out_dir",
                "data",
                "objective",
                "optimizer",
                "train"
            ]
        );
        assert!(find_kind(&kinds, "export")
            .unwrap()
            .keys
            .contains(&"weights"));
        assert!(find_kind(&kinds, "nope").is_none());
    }
}
