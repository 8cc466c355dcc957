//! The `verify` stage kind: `eesmm verify` with its flags as YAML keys, writing its report into
//! the stage's folder.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::images;
use crate::fsutil::create_dir;
use crate::model::SwinConfig;
use crate::pipeline::{Input, Metric, Outputs, Stage, StageResult};
use crate::runtime::verify::{self, VerifyOptions};

/// ONNX Runtime against burn on random inputs (and `images`); fails above `tol`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyStage {
    /// The exported .onnx file. Required.
    pub onnx: PathBuf,
    /// The weights it was exported from. Required.
    pub weights: PathBuf,
    /// Model preset. Default: none (the config in the model card).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Real images (files or folders) to compare on, besides random inputs. Default: [].
    #[serde(default)]
    pub images: Vec<PathBuf>,
    /// Largest allowed absolute difference on any output. Default: none (1e-4; for an fp16
    /// export 1e-2 relative to the largest burn output).
    #[serde(default)]
    pub tol: Option<f64>,
    /// Random inputs, and the larger batch of the latency measurement. Default: 8.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Timed runs per latency (the median is reported). Default: 3.
    #[serde(default = "default_iters")]
    pub iters: usize,
    /// Where `verify.json` goes. Required (in a pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
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
        ensure!(
            self.tol.is_none_or(|tol| tol >= 0.0),
            "tol: must not be negative"
        );
        ensure!(self.batch > 0, "batch: must be at least 1");
        ensure!(self.iters > 0, "iters: must be at least 1");
        Ok(())
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        let report = verify::check(&VerifyOptions {
            onnx: self.onnx.clone(),
            weights: self.weights.clone(),
            model: self.model.clone(),
            images: self.images.clone(),
            tol: self.tol.map(|tol| tol as f32),
            batch: self.batch,
            iters: self.iters,
        })?;
        verify::print_report(&report);
        create_dir(&self.out_dir)?;
        let path = self.report_path();
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&report)?)?;
        verify::ensure_passed(&report)?;
        Ok(StageResult {
            metric: Some(Metric::value("max_abs", report.worst() as f64)),
            artifacts: vec![path],
        })
    }
}
