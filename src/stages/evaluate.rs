//! The `eval`, `linear_probe` and `knn` stage kinds. [`EvalConfig`] and [`ProbeConfig`] are
//! their schemas; `linear_probe` and `knn` share one schema and differ in what they run.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::evaluate::{ClassificationReport, EvalConfig, ProbeConfig};
use crate::pipeline::{Input, Metric, Outputs, Stage, StageResult};

impl Stage for EvalConfig {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("report", self.out_dir.join("eval.json"))]
    }

    fn inputs(&self) -> Vec<Input> {
        let mut inputs = vec![
            Input::new("weights", &self.weights),
            Input::new("data.root", &self.data.root),
        ];
        inputs.extend(self.model.iter().map(|m| Input::new("model", m)));
        inputs
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        Ok(report_result(&self.out_dir, "eval", &self.run_eval()?))
    }

    fn validate(&self) -> Result<()> {
        EvalConfig::validate(self)
    }
}

/// `kind: linear_probe` — a [`ProbeConfig`] that runs its `probe:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinearProbeStage(pub ProbeConfig);

/// `kind: knn` — a [`ProbeConfig`] that runs its `knn:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KnnStage(pub ProbeConfig);

impl Stage for LinearProbeStage {
    fn out_dir(&self) -> &Path {
        &self.0.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("report", self.0.out_dir.join("linear_probe.json"))]
    }

    fn inputs(&self) -> Vec<Input> {
        probe_inputs(&self.0)
    }

    fn validate(&self) -> Result<()> {
        self.0.validate()
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        Ok(report_result(
            &self.0.out_dir,
            "linear_probe",
            &self.0.run_linear_probe()?,
        ))
    }
}

impl Stage for KnnStage {
    fn out_dir(&self) -> &Path {
        &self.0.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![("report", self.0.out_dir.join("knn.json"))]
    }

    fn inputs(&self) -> Vec<Input> {
        probe_inputs(&self.0)
    }

    fn validate(&self) -> Result<()> {
        self.0.validate()
    }

    fn run(&self, _resume: bool) -> Result<StageResult> {
        Ok(report_result(&self.0.out_dir, "knn", &self.0.run_knn()?))
    }
}

/// The files a probe reads.
fn probe_inputs(probe: &ProbeConfig) -> Vec<Input> {
    let mut inputs = vec![
        Input::new("train_data.root", &probe.train_data.root),
        Input::new("test_data.root", &probe.test_data.root),
    ];
    inputs.extend(probe.weights.iter().map(|w| Input::new("weights", w)));
    inputs.extend(probe.model.iter().map(|m| Input::new("model", m)));
    inputs
}

/// What an evaluating stage reports to the runner: top-1, and the report and confusion matrix it wrote.
fn report_result(out_dir: &Path, name: &str, report: &ClassificationReport) -> StageResult {
    StageResult {
        metric: Some(Metric::percent("top-1", report.top1)),
        artifacts: vec![
            out_dir.join(format!("{name}.json")),
            out_dir.join(format!("{name}_confusion.png")),
        ],
    }
}
