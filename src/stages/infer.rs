//! The `infer` stage kind: the top-k classes of every image, as `eesmm infer --json` prints them,
//! in the stage's folder.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::images;
use crate::data::preprocess;
use crate::fsutil::create_dir;
use crate::pipeline::{Input, Metric, Outputs, Stage, StageResult};
use crate::runtime::{infer, OnnxModel};

/// Top-k classes of every image, one JSON line per image in `<out_dir>/predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferStage {
    /// The exported .onnx file (with a classifier head). Named `onnx`, not `model`, so that a
    /// pipeline's `defaults: {model: preset.yaml}` never lands here. Required.
    pub onnx: PathBuf,
    /// Image files or folders (every file in a folder). Required.
    pub images: Vec<PathBuf>,
    /// Classes kept per image. Default: 5.
    #[serde(default = "default_topk")]
    pub topk: usize,
    /// Where `predictions.jsonl` goes. Required (in a pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
}

fn default_topk() -> usize {
    5
}

impl InferStage {
    fn predictions_path(&self) -> PathBuf {
        self.out_dir.join("predictions.jsonl")
    }
}

impl Stage for InferStage {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("predictions", self.predictions_path())]
    }

    fn inputs(&self) -> Vec<Input> {
        let mut inputs = vec![Input::new("onnx", &self.onnx)];
        inputs.extend(images(&self.images));
        inputs
    }

    fn validate(&self) -> Result<()> {
        ensure!(!self.images.is_empty(), "images: no image files or folders");
        ensure!(self.topk > 0, "topk: must be at least 1");
        Ok(())
    }

    /// Fails on the first unreadable image: a pipeline's outputs are all or nothing.
    fn run(&self, _resume: bool) -> Result<StageResult> {
        let mut model = OnnxModel::load(&self.onnx)?;
        let files = preprocess::expand_inputs(&self.images)?;
        let mut lines = String::new();
        for file in &files {
            let topk = infer::classify(&mut model, file, self.topk)
                .with_context(|| file.display().to_string())?;
            lines.push_str(&infer::prediction_line(file, &topk).to_string());
            lines.push('\n');
        }
        create_dir(&self.out_dir)?;
        let path = self.predictions_path();
        crate::fsutil::write_atomic(&path, lines.as_bytes())?;
        Ok(StageResult {
            metric: Some(Metric::count("images", files.len())),
            artifacts: vec![path],
        })
    }
}
