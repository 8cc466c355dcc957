//! Checkpoints: `run_dir/checkpoints/step_NNNNNNNN/` with the module, both optimizer groups and
//! `state.json`. Each is written into a temporary folder and renamed into place, so a killed run
//! never leaves a half-written checkpoint; only the last `keep` are kept.
//!
//! Nothing else needs saving to resume exactly: data order, masks, augmentations and drop-path
//! draws are all seeded from `(seed, step)`, so the step counter is the whole training state.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

use super::optim::GroupedAdamW;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(checkpoints_dir(run_dir))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.join("state.json").exists()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step_"))
        })
        .collect();
    found.sort();
    found.pop()
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// Writes a checkpoint for `state.step` and prunes all but the newest `keep`.
pub fn save<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>>(
    run_dir: &Path,
    module: &M,
    optimizer: &GroupedAdamW<B, M>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    let final_path = dir.join(format!("step_{:08}", state.step));
    let tmp = dir.join(format!(".step_{:08}.tmp{}", state.step, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    module.clone().save_file(tmp.join("model"), &recorder())?;
    optimizer.save(&tmp.join("optimizer"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(state)?)?;
    let _ = std::fs::remove_dir_all(&final_path);
    std::fs::rename(&tmp, &final_path)
        .with_context(|| format!("{}: cannot write", final_path.display()))?;
    prune(&dir, keep)?;
    Ok(final_path)
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step_"))
        })
        .collect();
    all.sort();
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}

/// Restores the module, the optimizer and the state from a checkpoint folder.
pub fn load<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>>(
    path: &Path,
    module: M,
    optimizer: GroupedAdamW<B, M>,
    device: &B::Device,
) -> Result<(M, GroupedAdamW<B, M>, TrainState)> {
    let context = || format!("{}: not a usable checkpoint", path.display());
    let state: TrainState =
        serde_json::from_slice(&std::fs::read(path.join("state.json")).with_context(context)?)
            .with_context(context)?;
    let module = module
        .load_file(path.join("model"), &recorder(), device)
        .with_context(context)?;
    let optimizer = optimizer
        .load(&path.join("optimizer"), device)
        .with_context(context)?;
    Ok((module, optimizer, state))
}
