//! The optimisation loop shared by pretraining and fine-tuning: micro-batches from a prefetcher,
//! gradient accumulation, one AdamW step per optimizer step, the progress bar, `metrics.jsonl`,
//! checkpoints, the NaN stop and an end-of-epoch hook (plots, previews, evaluation).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde_json::{json, Map};

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::optim::{CosineSchedule, GroupedAdamW, OptimizerConfig};
use super::report::{progress_bar, MetricsLog};

/// The loss of one micro-batch: the weighted total (what is differentiated) and its named terms.
pub struct StepLoss<B: Backend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
}

/// Where a run is and how it is laid out in steps.
pub struct Plan<'a> {
    pub run_dir: &'a Path,
    pub train: &'a TrainConfig,
    pub seed: u64,
    pub steps_per_epoch: usize,
    /// Images per optimizer step (both images of an EESMM pair count), for images/s.
    pub images_per_step: usize,
    /// The optimizer step to start from (0, or a checkpoint's step).
    pub start: usize,
}

impl<'a> Plan<'a> {
    /// The plan of a fresh run over `images` dataset images, each micro-batch sample holding
    /// `images_per_sample` of them (2 for an EESMM pair); an error if one step needs more images
    /// than there are.
    pub fn new(
        run_dir: &'a Path,
        train: &'a TrainConfig,
        seed: u64,
        images: usize,
        images_per_sample: usize,
    ) -> Result<Self> {
        let images_per_step = train.batch_size * images_per_sample * train.accumulation;
        let steps_per_epoch = images / images_per_step;
        anyhow::ensure!(
            steps_per_epoch > 0,
            "data: {images} images is less than one optimizer step ({images_per_step} images)"
        );
        Ok(Self {
            run_dir,
            train,
            seed,
            steps_per_epoch,
            images_per_step,
            start: 0,
        })
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.train.epochs
    }

    /// The learning-rate schedule, scaled by the encoder inputs per optimizer step.
    pub fn schedule(&self, optimizer: &OptimizerConfig) -> CosineSchedule {
        CosineSchedule::new(
            optimizer,
            self.train.batch_size * self.train.accumulation,
            self.steps_per_epoch,
            self.total_steps(),
        )
    }
}

/// Seed of everything random at one (micro-)step: data order aside, this is the whole RNG state.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (step as u64)
            .wrapping_add(1)
            .wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// What the loop calls besides the loss: after every optimizer step (e.g. an EMA update), when
/// a checkpoint is written (extra files in its folder), and at the end of every epoch.
pub trait Hooks<M> {
    fn after_step(&mut self, _model: &M) -> Result<()> {
        Ok(())
    }
    fn save_extra(&self, _checkpoint: &Path) -> Result<()> {
        Ok(())
    }
    fn end_of_epoch(&mut self, model: &M, epoch: usize, metrics: &MetricsLog) -> Result<()>;
}

/// Trains `model` from `plan.start` to the last step and returns it.
#[allow(clippy::too_many_arguments)]
pub fn fit<B, M, T>(
    plan: &Plan,
    mut model: M,
    optimizer: &mut GroupedAdamW<B, M>,
    schedule: &CosineSchedule,
    mut batches: impl Iterator<Item = Result<T>>,
    loss_of: impl Fn(&M, T) -> StepLoss<B>,
    hooks: &mut impl Hooks<M>,
    device: &B::Device,
) -> Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let total_steps = plan.total_steps();
    let accumulation = plan.train.accumulation;
    let metrics = MetricsLog::open(plan.run_dir, plan.start)?;
    let bar = progress_bar(total_steps, plan.start);
    let started = Instant::now();
    let mut last_checkpoint: Option<PathBuf> = checkpoint::latest(plan.run_dir);
    for step in plan.start..total_steps {
        let step_started = Instant::now();
        B::seed(device, step_seed(plan.seed, step));
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut terms: Vec<(&'static str, f64)> = Vec::new();
        for _ in 0..accumulation {
            let batch = batches.next().context("the data loader stopped early")??;
            let output = loss_of(&model, batch);
            let loss = output.total.clone().into_scalar().elem::<f64>();
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss} at step {step}: stopping. The last good checkpoint is {} — \
                     lower optimizer.base_lr or set optimizer.clip_grad, then re-run to resume from it",
                    last_checkpoint
                        .as_ref()
                        .map_or("none (no checkpoint yet)".into(), |p| p.display().to_string())
                );
            }
            accumulate_terms(&mut terms, &output.terms, loss, accumulation);
            let grads = output.total.div_scalar(accumulation as f64).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let lr = schedule.at(step);
        let stats;
        (model, stats) = optimizer.step(lr, model, accumulator.grads());
        hooks.after_step(&model)?;
        let done = step + 1;
        let images_per_s = plan.images_per_step as f64 / step_started.elapsed().as_secs_f64();
        bar.set_position(done as u64);
        bar.set_prefix(format!(
            "epoch {}/{}",
            step / plan.steps_per_epoch + 1,
            plan.train.epochs
        ));
        bar.set_message(format!(
            "{} lr {lr:.2e} {images_per_s:.0} img/s",
            terms
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if done % plan.train.log_every == 0 || done == total_steps {
            let mut record = Map::new();
            record.insert("step".into(), json!(done));
            record.insert(
                "epoch".into(),
                json!(done as f64 / plan.steps_per_epoch as f64),
            );
            for (k, v) in &terms {
                record.insert(k.to_string(), json!(v));
            }
            record.insert("lr".into(), json!(lr));
            record.insert("grad_norm".into(), json!(stats.grad_norm));
            record.insert("images_per_s".into(), json!(images_per_s));
            record.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
            metrics.append(&record)?;
        }
        let epoch_end = done % plan.steps_per_epoch == 0;
        if epoch_end {
            bar.suspend(|| hooks.end_of_epoch(&model, done / plan.steps_per_epoch, &metrics))?;
        }
        if done % plan.train.checkpoint_every == 0 || epoch_end {
            let state = TrainState {
                step: done,
                total_steps,
            };
            last_checkpoint = Some(checkpoint::save(
                plan.run_dir,
                &model,
                optimizer,
                &state,
                plan.train.keep_checkpoints,
                |dir| hooks.save_extra(dir),
            )?);
        }
    }
    bar.finish();
    Ok(model)
}

/// Running means over the micro-batches of a step: `loss` (the weighted total) and each term.
fn accumulate_terms<B: Backend>(
    terms: &mut Vec<(&'static str, f64)>,
    new: &[(&'static str, Tensor<B, 1>)],
    loss: f64,
    n: usize,
) {
    let values = std::iter::once(("loss", loss)).chain(
        new.iter()
            .map(|(k, t)| (*k, t.clone().into_scalar().elem::<f64>())),
    );
    for (k, v) in values {
        match terms.iter_mut().find(|(name, _)| *name == k) {
            Some((_, sum)) => *sum += v / n as f64,
            None => terms.push((k, v / n as f64)),
        }
    }
}

/// Where training starts: the model and optimizer to continue, the step, and the checkpoint
/// they came from (none for a fresh run).
pub struct Start<B: AutodiffBackend, M> {
    pub model: M,
    pub optimizer: GroupedAdamW<B, M>,
    pub step: usize,
    pub checkpoint: Option<PathBuf>,
}

/// Restores the model (and then the optimizer) from `resume`, or the run's latest checkpoint.
/// A checkpoint made for another number of steps is an error.
pub fn resume<B, M>(
    run_dir: &Path,
    resume: Option<PathBuf>,
    total_steps: usize,
    model: M,
    make_optimizer: impl FnOnce(&M) -> GroupedAdamW<B, M>,
    device: &B::Device,
) -> Result<Start<B, M>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let Some(path) = resume.or_else(|| checkpoint::latest(run_dir)) else {
        let optimizer = make_optimizer(&model);
        return Ok(Start {
            model,
            optimizer,
            step: 0,
            checkpoint: None,
        });
    };
    let (model, state) = checkpoint::load(&path, model, device)?;
    anyhow::ensure!(
        state.total_steps == total_steps,
        "{}: made for {} steps, this configuration has {total_steps}",
        path.display(),
        state.total_steps
    );
    tracing::info!("resuming from {} (step {})", path.display(), state.step);
    let optimizer = checkpoint::load_optimizer(&path, make_optimizer(&model), device)?;
    Ok(Start {
        model,
        optimizer,
        step: state.step,
        checkpoint: Some(path),
    })
}
