//! What a run did, per stage: printed as a table and written as `<run_dir>/summary.json` and
//! `<run_dir>/summary.md`, also when a stage failed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::stage::{Metric, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ran,
    /// Up to date: its record matched its configuration and inputs.
    Skipped,
    Failed,
    /// Stopped by Ctrl-C or SIGTERM (a training stage checkpoints first).
    Interrupted,
    /// Not selected (`--only`, `--from`), or after a failed or interrupted stage.
    NotRun,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
            Status::NotRun => "not run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: String,
    pub kind: String,
    pub status: Status,
    /// Key metric: of this run, or of the recorded run for a skipped stage.
    pub metric: Option<Metric>,
    /// Seconds this stage ran in this invocation.
    pub wall_s: Option<f64>,
    pub artifacts: Vec<PathBuf>,
    /// Why it ran, or why it failed.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pipeline: String,
    /// `completed`, `failed` (a stage failed) or `interrupted` (Ctrl-C, SIGTERM).
    pub status: &'static str,
    pub file: PathBuf,
    pub run_dir: PathBuf,
    pub stages: Vec<StageSummary>,
}

impl Summary {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 6]> = self.stages.iter().map(row).collect();
        let header = ["stage", "kind", "status", "metric", "wall", "artifacts"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for cells in &rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.len());
            }
        }
        std::iter::once(&header)
            .chain(&rows)
            .map(|cells| {
                let line: Vec<String> = cells
                    .iter()
                    .zip(widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                format!("{}\n", line.join("  ").trim_end())
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let mut text = format!(
            "# Pipeline `{}`: {}\n\nFile `{}`, run directory `{}`.\n\n\
             | stage | kind | status | metric | wall | artifacts |\n|---|---|---|---|---|---|\n",
            self.pipeline,
            self.status,
            self.file.display(),
            self.run_dir.display()
        );
        for cells in self.stages.iter().map(row) {
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        let notes: Vec<String> = self
            .stages
            .iter()
            .filter(|s| matches!(s.status, Status::Failed | Status::Interrupted))
            .filter_map(|s| {
                s.note
                    .as_ref()
                    .map(|n| format!("- `{}` {}: {n}\n", s.name, s.status.label()))
            })
            .collect();
        if !notes.is_empty() {
            text.push('\n');
            text.extend(notes);
        }
        text
    }

    /// Writes `summary.json` and `summary.md` into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        crate::fsutil::create_dir(run_dir)?;
        crate::fsutil::write_atomic(
            &run_dir.join("summary.json"),
            &serde_json::to_vec_pretty(self)?,
        )?;
        crate::fsutil::write_atomic(&run_dir.join("summary.md"), self.markdown().as_bytes())
    }
}

/// A metric as people read it: `top-1 87.30 %`, `images 10`, or four significant digits (in
/// scientific notation when small, as errors are, or large).
fn shown(metric: &Metric) -> String {
    let (name, value) = (&metric.name, metric.value);
    match metric.unit {
        Unit::Percent => format!("{name} {:.2} %", 100.0 * value),
        Unit::Count => format!("{name} {value:.0}"),
        Unit::Value if value != 0.0 && !(1e-3..1e5).contains(&value.abs()) => {
            format!("{name} {value:.3e}")
        }
        Unit::Value => format!("{name} {value:.4}"),
    }
}

fn row(stage: &StageSummary) -> [String; 6] {
    let metric = stage.metric.as_ref().map_or("-".into(), shown);
    let wall = stage.wall_s.map_or("-".into(), |s| format!("{s:.1}s"));
    let artifacts = if stage.artifacts.is_empty() {
        "-".into()
    } else {
        stage
            .artifacts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        stage.name.clone(),
        stage.kind.clone(),
        stage.status.label().into(),
        metric,
        wall,
        artifacts,
    ]
}
