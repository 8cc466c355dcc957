//! The `pretrain` stage kind: [`PretrainConfig`] is its schema; running it is
//! [`crate::pretrain::run::run`].

use std::path::Path;

use anyhow::{Context, Result};

use crate::pipeline::{Input, Metric, Outputs, Stage, StageResult};
use crate::pretrain::PretrainConfig;

impl Stage for PretrainConfig {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![
            ("encoder", self.out_dir.join("encoder.safetensors")),
            ("dir", self.out_dir.clone()),
        ]
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::new("model", &self.model),
            Input::new("data.root", &self.data.root),
        ]
    }

    fn validate(&self) -> Result<()> {
        self.validate_settings()
    }

    fn run(&self, resume: bool) -> Result<StageResult> {
        if !crate::train::run::writes_outputs() {
            // Another node of a multi-node run: node 0 keeps the run directory.
            crate::pretrain::run::run(self, None)?;
            return Ok(StageResult::default());
        }
        crate::train::checkpoint::discard_unless_resuming(&self.out_dir, resume)?;
        crate::pretrain::run::run(self, None)?;
        Ok(StageResult {
            metric: Some(Metric::value("loss", final_loss(&self.out_dir)?)),
            artifacts: vec![
                self.out_dir.join("encoder.safetensors"),
                self.out_dir.join("metrics.jsonl"),
                self.out_dir.join("loss.png"),
            ],
        })
    }
}

/// The loss of the last step logged in `<out_dir>/metrics.jsonl` (epoch lines, such as EESMM's
/// separation figures, come after it).
fn final_loss(out_dir: &Path) -> Result<f64> {
    let path = out_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|record| record["loss"].as_f64())
        .with_context(|| format!("{}: no line with a `loss`", path.display()))
}
