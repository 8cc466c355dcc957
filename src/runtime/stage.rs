//! The `verify` and `infer` stages of a pipeline: `eesmm verify` and `eesmm infer` with their
//! arguments as YAML keys, writing their reports into the stage's folder.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::{infer, preprocess, verify, OnnxModel};
use crate::cli::VerifyArgs;
use crate::model::SwinConfig;
use crate::pipeline::{Input, Outputs, Stage, StageResult};

/// ONNX Runtime against burn on random inputs (and `images`); fails above `tol`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyStage {
    /// The exported .onnx file.
    pub onnx: PathBuf,
    /// The weights it was exported from.
    pub weights: PathBuf,
    /// Model preset (default: the config in the model card).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Real images (files or folders) to compare on, besides random inputs.
    #[serde(default)]
    pub images: Vec<PathBuf>,
    /// Largest allowed absolute difference on any output.
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Random inputs, and the larger batch of the latency measurement.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Timed runs per latency (the median is reported).
    #[serde(default = "default_iters")]
    pub iters: usize,
    pub out_dir: PathBuf,
}

fn default_tol() -> f64 {
    1e-4
}

fn default_batch() -> usize {
    8
}

fn default_iters() -> usize {
    3
}

impl VerifyStage {
    fn report_path(&self) -> PathBuf {
        self.out_dir.join("verify.json")
    }
}

impl Stage for VerifyStage {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("report", self.report_path())]
    }

    fn inputs(&self) -> Vec<Input> {
        let mut inputs = vec![
            Input::new("onnx", &self.onnx),
            Input::new("weights", &self.weights),
        ];
        inputs.extend(self.model.iter().map(|p| Input::new("model", p)));
        inputs.extend(images(&self.images));
        inputs
    }

    fn validate(&self) -> Result<()> {
        if let Some(model) = &self.model {
            SwinConfig::load(model).context("model")?;
        }
        ensure!(self.tol >= 0.0, "tol: must not be negative");
        ensure!(self.batch > 0, "batch: must be at least 1");
        ensure!(self.iters > 0, "iters: must be at least 1");
        Ok(())
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        let report = verify::check(&VerifyArgs {
            onnx: self.onnx.clone(),
            weights: self.weights.clone(),
            model: self.model.clone(),
            images: self.images.clone(),
            tol: self.tol as f32,
            batch: self.batch,
            iters: self.iters,
            json: false,
        })?;
        verify::print_report(&report);
        create_dir(&self.out_dir)?;
        let path = self.report_path();
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&report)?)?;
        verify::ensure_passed(&report)?;
        Ok(StageResult {
            metric: Some(("max_abs".into(), report.worst() as f64)),
            artifacts: vec![path],
        })
    }
}

/// Top-k classes of every image, one JSON line per image in `<out_dir>/predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferStage {
    /// The exported .onnx file (with a classifier head). Named `onnx`, not `model`, so that a
    /// pipeline's `defaults: {model: preset.yaml}` never lands here.
    pub onnx: PathBuf,
    /// Image files or folders (every file in a folder).
    pub images: Vec<PathBuf>,
    /// Classes kept per image.
    #[serde(default = "default_topk")]
    pub topk: usize,
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
            lines.push_str(&serde_json::json!({ "file": file, "topk": topk }).to_string());
            lines.push('\n');
        }
        create_dir(&self.out_dir)?;
        let path = self.predictions_path();
        crate::fsutil::write_atomic(&path, lines.as_bytes())?;
        Ok(StageResult {
            metric: Some(("images".into(), files.len() as f64)),
            artifacts: vec![path],
        })
    }
}

fn images(paths: &[PathBuf]) -> impl Iterator<Item = Input> + '_ {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| Input::new(format!("images[{i}]"), p))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))
}
