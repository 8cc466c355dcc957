//! `eesmm run PIPELINE.yaml`: the stages of an experiment (pretrain, export, verify, ...) in one
//! YAML file, run in order with each stage's outputs feeding the next, re-run only when their
//! configuration or inputs change.
//!
//! The flow, one file per step:
//! - `tree.rs`: the YAML file as nodes that keep their line and column;
//! - `overrides.rs`: `EESMM_<NAME>` variables and `--set` arguments, applied to the tree;
//! - `defaults.rs`: `defaults:` merged into each stage;
//! - `references.rs`: `${vars.NAME}` and `${stage.output}` substituted;
//! - `stage.rs`: the [`Stage`] trait each kind implements (the kinds are in `crate::stages`);
//! - `resolve.rs`: all of the above into a checked [`Pipeline`], or every error with its position
//!   (`diagnostics.rs`);
//! - `record.rs`: `.eesmm/<stage>.done.json`, what makes a stage up to date;
//! - `run.rs`: running the stages; `summary.rs`: the table and `summary.{json,md}`.

pub mod defaults;
pub mod diagnostics;
pub mod overrides;
pub mod record;
pub mod references;
pub mod resolve;
pub mod run;
pub mod stage;
pub mod summary;
pub mod tree;

pub use resolve::{Pipeline, PlannedStage};
pub use run::{run, RunOptions};
pub use stage::{
    find_kind, read_stage_file, Input, Kind, Metric, Outputs, Stage, StageResult, Unit,
};
