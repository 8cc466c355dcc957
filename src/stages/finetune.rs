//! The `finetune` stage kind: [`FinetuneConfig`] is its schema; running it is
//! [`crate::finetune::run::run`].

use std::path::Path;

use anyhow::Result;

use crate::finetune::FinetuneConfig;
use crate::pipeline::{Input, Metric, Outputs, Stage, StageResult};

impl Stage for FinetuneConfig {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    fn outputs(&self) -> Outputs {
        vec![
            ("classifier", self.out_dir.join("classifier.safetensors")),
            ("eval", self.out_dir.join("eval.json")),
            ("dir", self.out_dir.clone()),
        ]
    }

    fn inputs(&self) -> Vec<Input> {
        let mut inputs = vec![
            Input::new("model", &self.model),
            Input::new("data.root", &self.data.root),
        ];
        if let Some(init) = &self.init {
            inputs.push(Input::new("init", init));
        }
        if let Some(eval) = &self.eval_data {
            inputs.push(Input::new("eval_data.root", &eval.root));
        }
        inputs
    }

    fn validate(&self) -> Result<()> {
        self.validate_settings()
    }

    fn run(&self, resume: bool) -> Result<StageResult> {
        if !crate::train::run::writes_outputs() {
            // Another node of a multi-node run: node 0 keeps the run directory.
            crate::finetune::run::run(self, None)?;
            return Ok(StageResult::default());
        }
        crate::train::checkpoint::discard_unless_resuming(&self.out_dir, resume)?;
        let report = crate::finetune::run::run(self, None)?;
        let mut artifacts = vec![
            self.out_dir.join("classifier.safetensors"),
            self.out_dir.join("classifier.json"),
            self.out_dir.join("loss.png"),
        ];
        if report.is_some() {
            artifacts.push(self.out_dir.join("eval.json"));
            artifacts.push(self.out_dir.join("eval_confusion.png"));
        }
        Ok(StageResult {
            metric: report.map(|r| Metric::percent("top-1", r.top1)),
            artifacts,
        })
    }
}
