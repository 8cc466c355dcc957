//! Running a checked pipeline: each selected stage in file order, skipping those that are up to
//! date, stopping at the first failure or at Ctrl-C / SIGTERM, then the summary. The run
//! directory is locked while it runs.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::record::{self, Done, Fingerprint};
use super::resolve::{Pipeline, PlannedStage};
use super::summary::{StageSummary, Status, Summary};
use crate::interrupt::{self, Interrupted};
use crate::lock::RunLock;

/// The flags of `eesmm run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run this stage and those after it; the earlier ones must be up to date.
    pub from: Option<String>,
    /// Run only this stage; the files it reads from earlier stages must exist.
    pub only: Option<String>,
    /// Run the selected stages even when their records say they are up to date.
    pub force: bool,
    /// Print the resolved plan; run and write nothing.
    pub dry_run: bool,
}

/// Whether a stage must run, and why.
enum Decision {
    UpToDate(Done),
    Run {
        reason: String,
        fingerprint: Fingerprint,
    },
}

pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<()> {
    let selected = selection(pipeline, options)?;
    if options.dry_run {
        print_plan(pipeline, &selected, options.force);
        return Ok(());
    }
    check_prerequisites(pipeline, options, &selected)?;
    if crate::train::nodes::current().is_multi() {
        let stage = multi_node_stage(pipeline, options, &selected)?;
        if !crate::train::run::writes_outputs() {
            return train_with_node_0(&pipeline.run_dir, stage, options.force);
        }
    }
    let _lock = RunLock::acquire(&pipeline.run_dir)?;
    let mut summary = Summary {
        pipeline: pipeline.name.clone(),
        status: "completed",
        file: pipeline.file.clone(),
        run_dir: pipeline.run_dir.clone(),
        stages: Vec::new(),
    };
    // The stage that failed or was interrupted; the stages after it do not run.
    let mut stopped: Option<StageSummary> = None;
    for (stage, &selected) in pipeline.stages.iter().zip(&selected) {
        let entry = if let Some(earlier) = &stopped {
            not_run(stage, &format!("`{}` stopped the run", earlier.name))
        } else if !selected {
            match decide(&pipeline.run_dir, stage, false) {
                Ok(Decision::UpToDate(done)) => skipped(stage, done),
                _ => not_run(stage, "not selected"),
            }
        } else if interrupt::requested() {
            ended(stage, Status::Interrupted, "before it started".into(), None)
        } else {
            run_stage(&pipeline.run_dir, stage, options.force)
        };
        if matches!(entry.status, Status::Failed | Status::Interrupted) {
            stopped = Some(entry.clone());
        }
        summary.stages.push(entry);
    }
    summary.status = match stopped.as_ref().map(|entry| entry.status) {
        Some(Status::Interrupted) => "interrupted",
        Some(_) => "failed",
        None => "completed",
    };
    print!("\n{}", summary.table());
    summary.write(&pipeline.run_dir)?;
    println!("summary: {}", pipeline.run_dir.join("summary.md").display());
    let Some(entry) = stopped else {
        return Ok(());
    };
    let (name, note) = (entry.name, entry.note.unwrap_or_default());
    match entry.status {
        Status::Interrupted => Err(Interrupted(Some(format!("in stage `{name}`: {note}"))).into()),
        _ => bail!("stage `{name}` failed: {note}"),
    }
}

/// The stage of a multi-node `eesmm run`: one training stage (`--only`), which every node trains;
/// node 0 runs it as a one-node run does (records, summary), the others only train.
fn multi_node_stage<'p>(
    pipeline: &'p Pipeline,
    options: &RunOptions,
    selected: &[bool],
) -> Result<&'p PlannedStage> {
    selected
        .iter()
        .position(|&s| s)
        .map(|i| &pipeline.stages[i])
        .filter(|stage| options.only.is_some() && ["pretrain", "finetune"].contains(&stage.kind))
        .context(
            "--nodes above 1: give --only STAGE, a pretrain or finetune stage, the same on every \
             node (every node trains it; run the other stages on one node)",
        )
}

/// A node other than 0 of a multi-node `eesmm run`: trains `stage` with node 0 unless its record
/// says it is up to date, and writes nothing.
fn train_with_node_0(run_dir: &Path, stage: &PlannedStage, force: bool) -> Result<()> {
    match decide(run_dir, stage, force)? {
        Decision::UpToDate(_) => {
            println!("==> {} ({}): up to date, skipped", stage.name, stage.kind);
            Ok(())
        }
        Decision::Run {
            reason,
            fingerprint,
        } => {
            let resume = record::was_started_with(run_dir, &stage.name, &fingerprint);
            println!(
                "==> {} ({}): training with node 0 ({reason})",
                stage.name, stage.kind
            );
            stage
                .stage
                .run(resume)
                .map(drop)
                .with_context(|| format!("stage `{}`", stage.name))
        }
    }
}

/// Which stages `--from` / `--only` select (all without them).
fn selection(pipeline: &Pipeline, options: &RunOptions) -> Result<Vec<bool>> {
    let position = |flag: &str, name: &str| {
        pipeline
            .stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
                anyhow::anyhow!(
                    "{flag} {name}: no such stage in {} (stages: {})",
                    pipeline.file.display(),
                    names.join(", ")
                )
            })
    };
    let count = pipeline.stages.len();
    Ok(match (&options.from, &options.only) {
        (Some(_), Some(_)) => bail!("--from and --only cannot be combined"),
        (Some(name), None) => {
            let first = position("--from", name)?;
            (0..count).map(|i| i >= first).collect()
        }
        (None, Some(name)) => {
            let only = position("--only", name)?;
            (0..count).map(|i| i == only).collect()
        }
        (None, None) => vec![true; count],
    })
}

/// `--from`: the stages before must be up to date. `--from` and `--only`: what the first
/// selected stage reads must exist.
fn check_prerequisites(pipeline: &Pipeline, options: &RunOptions, selected: &[bool]) -> Result<()> {
    let Some(first) = selected.iter().position(|&s| s) else {
        return Ok(());
    };
    if options.from.is_some() {
        for stage in &pipeline.stages[..first] {
            let reason = match decide(&pipeline.run_dir, stage, false) {
                Ok(Decision::UpToDate(_)) => continue,
                Ok(Decision::Run { reason, .. }) => reason,
                Err(error) => format!("{error:#}"),
            };
            bail!(
                "stage `{}` (before --from {}) is not up to date: {reason}; run it first",
                stage.name,
                pipeline.stages[first].name
            );
        }
    }
    let stage = &pipeline.stages[first];
    for input in stage.stage.inputs() {
        if !input.path.exists() {
            bail!(
                "stage `{}`: {} ({}) does not exist; run the stage that writes it first",
                stage.name,
                input.key,
                input.path.display()
            );
        }
    }
    Ok(())
}

fn decide(run_dir: &Path, stage: &PlannedStage, force: bool) -> Result<Decision> {
    let fingerprint = Fingerprint::of(&stage.config, &stage.stage.inputs())?;
    let reason = match record::read_done(run_dir, &stage.name) {
        _ if force => "--force".to_string(),
        None => "no record of a finished run".into(),
        Some(done) => match fingerprint.change_from(&done.fingerprint) {
            Some(change) => change,
            None => match done.artifacts.iter().find(|a| !a.exists()) {
                Some(missing) => format!("{} is missing", missing.display()),
                None => return Ok(Decision::UpToDate(done)),
            },
        },
    };
    Ok(Decision::Run {
        reason,
        fingerprint,
    })
}

fn run_stage(run_dir: &Path, stage: &PlannedStage, force: bool) -> StageSummary {
    let (reason, fingerprint) = match decide(run_dir, stage, force) {
        Ok(Decision::UpToDate(done)) => {
            println!("==> {} ({}): up to date, skipped", stage.name, stage.kind);
            return skipped(stage, done);
        }
        Ok(Decision::Run {
            reason,
            fingerprint,
        }) => (reason, fingerprint),
        Err(error) => return ended(stage, Status::Failed, format!("{error:#}"), None),
    };
    let resume = record::was_started_with(run_dir, &stage.name, &fingerprint);
    println!(
        "==> {} ({}): running ({reason}{})",
        stage.name,
        stage.kind,
        if resume { "; resuming" } else { "" }
    );
    let started = Instant::now();
    let result = record::mark_started(run_dir, &stage.name, &fingerprint)
        .and_then(|()| stage.stage.run(resume));
    let wall_s = started.elapsed().as_secs_f64();
    let result = match result {
        Ok(result) => result,
        Err(error) if error.chain().any(|e| e.is::<Interrupted>()) => {
            return ended(
                stage,
                Status::Interrupted,
                format!("{error:#}"),
                Some(wall_s),
            )
        }
        Err(error) => return ended(stage, Status::Failed, format!("{error:#}"), Some(wall_s)),
    };
    let done = Done {
        stage: stage.name.clone(),
        kind: stage.kind.into(),
        fingerprint,
        metric: result.metric,
        artifacts: result.artifacts,
        wall_s,
    };
    if let Err(error) = record::write_done(run_dir, &done) {
        return ended(stage, Status::Failed, format!("{error:#}"), Some(wall_s));
    }
    StageSummary {
        name: stage.name.clone(),
        kind: stage.kind.into(),
        status: Status::Ran,
        metric: done.metric,
        wall_s: Some(wall_s),
        artifacts: done.artifacts,
        note: Some(reason),
    }
}

fn skipped(stage: &PlannedStage, done: Done) -> StageSummary {
    StageSummary {
        name: stage.name.clone(),
        kind: stage.kind.into(),
        status: Status::Skipped,
        metric: done.metric,
        wall_s: None,
        artifacts: done.artifacts,
        note: Some("up to date".into()),
    }
}

fn not_run(stage: &PlannedStage, why: &str) -> StageSummary {
    StageSummary {
        name: stage.name.clone(),
        kind: stage.kind.into(),
        status: Status::NotRun,
        metric: None,
        wall_s: None,
        artifacts: Vec::new(),
        note: Some(why.into()),
    }
}

/// A stage that failed or was interrupted, with why.
fn ended(stage: &PlannedStage, status: Status, note: String, wall_s: Option<f64>) -> StageSummary {
    eprintln!(
        "==> {} ({}) {}: {note}",
        stage.name,
        stage.kind,
        status.label()
    );
    StageSummary {
        name: stage.name.clone(),
        kind: stage.kind.into(),
        status,
        metric: None,
        wall_s,
        artifacts: Vec::new(),
        note: Some(note),
    }
}

/// `--dry-run`: per stage, what would happen and its resolved configuration.
fn print_plan(pipeline: &Pipeline, selected: &[bool], force: bool) {
    println!(
        "pipeline {} ({}), run_dir {}",
        pipeline.name,
        pipeline.file.display(),
        pipeline.run_dir.display()
    );
    let mut will_run: Vec<&str> = Vec::new();
    for (index, (stage, &selected)) in pipeline.stages.iter().zip(selected).enumerate() {
        let upstream_runs = stage
            .upstream
            .iter()
            .find(|u| will_run.contains(&u.as_str()));
        let status = match (selected, upstream_runs) {
            (false, _) => "not run (not selected)".to_string(),
            (true, Some(upstream)) => {
                format!("would run (reads outputs of `{upstream}`, which runs first)")
            }
            (true, None) => match decide(&pipeline.run_dir, stage, force) {
                Ok(Decision::UpToDate(_)) => "skip (up to date)".into(),
                Ok(Decision::Run { reason, .. }) => format!("would run ({reason})"),
                Err(error) => format!("would run ({error:#})"),
            },
        };
        if status.starts_with("would run") {
            will_run.push(&stage.name);
        }
        println!(
            "\nstages[{index}] {} ({}): {status}",
            stage.name, stage.kind
        );
        println!("  out_dir: {}", stage.stage.out_dir().display());
        let yaml = serde_saphyr::to_string(&stage.config).unwrap_or_else(|e| format!("{e}\n"));
        println!("  config:");
        for line in yaml.lines() {
            println!("    {line}");
        }
    }
}
