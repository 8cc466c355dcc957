//! Checkpoints: `run_dir/checkpoints/step_NNNNNNNN/` with the module, the optimizer moments,
//! `state.json` and any extra files of the stage (the EMA weights). Each is written into a
//! temporary folder, its files and the folder fsynced, renamed into place and the parent
//! fsynced, so a killed run or a power cut never leaves a half-written checkpoint under a final
//! name; only the last `keep` are kept. Temporary folders a killed run left behind are removed
//! when the next run starts.
//!
//! Nothing else needs saving to resume exactly: data order, masks, augmentations and drop-path
//! draws are all seeded from `(seed, step)`, so the step counter is the whole training state.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::*;
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
    /// [`parameter_digest`] of the model saved (absent in checkpoints of eesmm ≤ 0.1 sessions
    /// before it was added), so a checkpoint of another model is refused before loading.
    #[serde(default)]
    pub parameters: Option<String>,
}

/// SHA-256 of the shapes of a module's parameters in visiting order: two models share it exactly
/// when one's checkpoint loads into the other.
pub fn parameter_digest<B: Backend, M: Module<B>>(module: &M) -> String {
    struct Shapes(String);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0
                .push_str(&format!("{:?};", param.shape().dims::<D>()));
        }
    }
    let mut shapes = Shapes(String::new());
    module.visit(&mut shapes);
    crate::hash::sha256_hex(shapes.0.as_bytes())
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// For a pipeline stage that is not resuming: checkpoints in its run directory were made with
/// another configuration, and training would wrongly continue from them, so they go.
pub fn discard_unless_resuming(run_dir: &Path, resume: bool) -> Result<()> {
    let dir = checkpoints_dir(run_dir);
    if !resume && dir.exists() {
        tracing::info!("removing stale checkpoints in {}", dir.display());
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    Ok(())
}

/// The complete checkpoints of a run, newest first.
pub fn newest_first(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(run_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.join("state.json").exists()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step_"))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    newest_first(run_dir).into_iter().next()
}

/// Removes the temporary folders (`.step_*.tmp<pid>`) of checkpoints a killed run was writing.
/// Call it only while holding the run's lock: no other process writes there then.
pub fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(run_dir)) else {
        return Ok(());
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with(".step_") && n.contains(".tmp")) {
            tracing::info!("removing {}, left by a killed run", path.display());
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

/// The burn record format of checkpoints (and of other modules saved beside them).
pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// Writes a checkpoint for `state.step` and prunes all but the newest `keep`.
pub fn save<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>>(
    run_dir: &Path,
    module: &M,
    optimizer: &GroupedAdamW<B, M>,
    state: &TrainState,
    keep: usize,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    let final_path = dir.join(format!("step_{:08}", state.step));
    let tmp = dir.join(format!(".step_{:08}.tmp{}", state.step, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::fsutil::create_dir(&tmp)?;
    module.clone().save_file(tmp.join("model"), &recorder())?;
    optimizer.save(&tmp.join("optimizer.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(state)?)?;
    extra(&tmp)?;
    sync_folder(&tmp).with_context(|| format!("{}: cannot sync", tmp.display()))?;
    let _ = std::fs::remove_dir_all(&final_path);
    std::fs::rename(&tmp, &final_path)
        .with_context(|| format!("{}: cannot write", final_path.display()))?;
    crate::fsutil::sync_dir(&dir).with_context(|| format!("{}: cannot sync", dir.display()))?;
    prune(&dir, keep)?;
    Ok(final_path)
}

/// fsyncs every file of `dir` (not recursive: checkpoints are flat), then `dir` itself.
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    crate::fsutil::sync_dir(dir)
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

/// Restores the module and the state from a checkpoint folder. Parameter ids come back with
/// the weights, so build the optimizer from the returned module, then [`load_optimizer`].
pub fn load<B: AutodiffBackend, M: AutodiffModule<B>>(
    path: &Path,
    module: M,
    device: &B::Device,
) -> Result<(M, TrainState)> {
    let context = || format!("{}: not a usable checkpoint", path.display());
    let state: TrainState =
        serde_json::from_slice(&std::fs::read(path.join("state.json")).with_context(context)?)
            .with_context(context)?;
    if let Some(saved) = &state.parameters {
        anyhow::ensure!(
            *saved == parameter_digest(&module),
            "{}: made for another model (its parameter shapes differ from this stage's model)",
            path.display()
        );
    }
    let module = module
        .load_file(path.join("model"), &recorder(), device)
        .with_context(context)?;
    Ok((module, state))
}

/// Restores both optimizer groups' moments from a checkpoint folder.
pub fn load_optimizer<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>>(
    path: &Path,
    optimizer: GroupedAdamW<B, M>,
    device: &B::Device,
) -> Result<GroupedAdamW<B, M>> {
    optimizer
        .load(&path.join("optimizer.safetensors"), device)
        .with_context(|| format!("{}: not a usable checkpoint", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::OptimizerConfig;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;

    type B = burn::backend::Autodiff<crate::backend::Cpu>;

    fn config() -> OptimizerConfig {
        crate::yaml::from_str("base_lr: 1.0e-2\nclip_grad: 1.0\n").unwrap()
    }

    fn step(model: Linear<B>, optimizer: &mut GroupedAdamW<B, Linear<B>>) -> Linear<B> {
        let x = Tensor::<B, 4>::ones([2, 1, 1, 3], &Default::default());
        let loss = model.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optimizer.step(1e-2, model, grads).0
    }

    /// Two steps straight vs one step, save, load into fresh objects, one step: same weights.
    #[test]
    fn optimizer_state_survives_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("eesmm-ckpt-{}", std::process::id()));
        let device = Default::default();
        let model = LinearConfig::new(3, 4).init::<B>(&device);
        let mut optimizer =
            GroupedAdamW::new(&config(), &model, crate::model::swin::no_weight_decay);
        let once = step(model, &mut optimizer);
        let state = TrainState {
            step: 1,
            total_steps: 2,
            parameters: Some(parameter_digest(&once)),
        };
        let path = save(&dir, &once, &optimizer, &state, 1, |_| Ok(())).unwrap();
        let straight = step(once, &mut optimizer);

        let (loaded, restored_state) =
            load(&path, LinearConfig::new(3, 4).init::<B>(&device), &device).unwrap();
        assert_eq!(restored_state, state);
        let optimizer = GroupedAdamW::new(&config(), &loaded, crate::model::swin::no_weight_decay);
        let mut optimizer = load_optimizer(&path, optimizer, &device).unwrap();
        let resumed = step(loaded, &mut optimizer);
        let (a, b) = (
            straight.weight.val().into_data(),
            resumed.weight.val().into_data(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(a, b);
    }
}
