//! The optimisation loop shared by pretraining and fine-tuning: micro-batches from a prefetcher,
//! gradient accumulation, one AdamW step per optimizer step, the progress bar, `metrics.jsonl`,
//! checkpoints, the NaN stop and an end-of-epoch hook (plots, previews, evaluation).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use indicatif::ProgressBar;

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::nodes;
use super::optim::{CosineSchedule, GroupedAdamW, OptimizerConfig};
use super::replicas::{Collective, Failure, NodeFailed, Rank, StoppedByPeer};
use super::report::{progress_bar, MetricsLog, StepRecord};
use crate::interrupt::{self, Interrupted};

/// The loss of one micro-batch: the weighted total (what is differentiated), its named terms,
/// and named figures logged alongside but not trained on (monitors, e.g. EESMM's separation).
pub struct StepLoss<B: Backend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
    pub monitors: Vec<(&'static str, Tensor<B, 1>)>,
}

/// A step's logged means: `loss` and the terms, then the monitors.
#[derive(Default)]
struct Logged {
    terms: Vec<(&'static str, f64)>,
    monitors: Vec<(&'static str, f64)>,
}

/// Where a run is and how it is laid out in steps.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_dir: PathBuf,
    pub train: TrainConfig,
    pub seed: u64,
    pub steps_per_epoch: usize,
    /// Images per optimizer step over all replicas (both images of an EESMM pair count), for
    /// images/s.
    pub images_per_step: usize,
    /// The optimizer step to start from (0, or a checkpoint's step).
    pub start: usize,
}

impl Plan {
    /// The plan of a fresh run over `images` dataset images, each micro-batch sample holding
    /// `images_per_sample` of them (2 for an EESMM pair); an error if one step needs more images
    /// than there are.
    pub fn new(
        run_dir: &Path,
        train: &TrainConfig,
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
            run_dir: run_dir.to_path_buf(),
            train: train.clone(),
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

/// What the loop calls besides the loss: after every optimizer step (with its record, logged
/// or not), when a checkpoint is written (extra files in its folder), and at the end of every
/// epoch. Only the main replica (rank 0) calls them.
pub trait Hooks<M> {
    fn after_step(&mut self, model: &M, record: &StepRecord) -> Result<()>;
    fn save_extra(&self, checkpoint: &Path) -> Result<()>;
    fn end_of_epoch(&mut self, model: &M, epoch: usize, metrics: &MetricsLog) -> Result<()>;
}

/// The hooks of the other replicas: none.
struct NoHooks;

impl<M> Hooks<M> for NoHooks {
    fn after_step(&mut self, _: &M, _: &StepRecord) -> Result<()> {
        Ok(())
    }
    fn save_extra(&self, _: &Path) -> Result<()> {
        Ok(())
    }
    fn end_of_epoch(&mut self, _: &M, _: usize, _: &MetricsLog) -> Result<()> {
        Ok(())
    }
}

/// What one replica trains, on its device: the model, its optimizer and its share of every
/// micro-batch. A single-device run has one replica.
pub struct Replica<B: AutodiffBackend, M, I> {
    pub device: B::Device,
    pub model: M,
    pub optimizer: GroupedAdamW<B, M>,
    pub batches: I,
}

/// Trains from `plan.start` to the last step, one replica per device (this node's first on this
/// thread, the others on their own), and returns the first's model. With several replicas (on
/// this node or over several, see [`super::nodes`]) the gradients of every step are averaged
/// over them (see [`super::replicas`]).
pub fn fit<B, M, T, I, L>(
    plan: &Plan,
    replicas: Vec<Replica<B, M, I>>,
    schedule: &CosineSchedule,
    loss_of: L,
    hooks: &mut impl Hooks<M>,
) -> Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B> + 'static,
    I: Iterator<Item = Result<T>> + Send + 'static,
    L: Fn(&M, T, &B::Device) -> StepLoss<B> + Clone + Send + 'static,
{
    let ranks = nodes::current().ranks(replicas.len());
    if ranks[0].count > 1 {
        Collective::<B>::reset();
    }
    let mut replicas = replicas.into_iter().zip(ranks);
    let (main, rank) = replicas.next().context("no device to train on")?;
    let others: Vec<_> = replicas
        .map(|(replica, rank)| {
            let (plan, schedule, loss_of) = (plan.clone(), *schedule, loss_of.clone());
            std::thread::spawn(move || {
                fit_replica(&plan, rank, replica, &schedule, &loss_of, &mut NoHooks).map(drop)
            })
        })
        .collect();
    match fit_replica(plan, rank, main, schedule, &loss_of, hooks) {
        Ok(model) => join(others).map(|()| model),
        // Every replica has stopped at the same step; the cause is the failed replica's error.
        Err(error) if error.is::<StoppedByPeer>() => Err(join(others).err().unwrap_or(error)),
        // This replica's own failure is returned at once: another replica may be waiting for it.
        Err(error) => Err(error),
    }
}

/// Waits for the other replicas; the first error that is not a [`StoppedByPeer`].
fn join(replicas: Vec<std::thread::JoinHandle<Result<()>>>) -> Result<()> {
    let mut cause = Ok(());
    for handle in replicas {
        match handle.join() {
            Ok(Err(error)) if !error.is::<StoppedByPeer>() && cause.is_ok() => cause = Err(error),
            Ok(_) => {}
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    cause
}

/// The loop of one replica.
fn fit_replica<B, M, T>(
    plan: &Plan,
    rank: Rank,
    replica: Replica<B, M, impl Iterator<Item = Result<T>>>,
    schedule: &CosineSchedule,
    loss_of: &impl Fn(&M, T, &B::Device) -> StepLoss<B>,
    hooks: &mut impl Hooks<M>,
) -> Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let Replica {
        device,
        mut model,
        mut optimizer,
        mut batches,
    } = replica;
    let collective = Collective::<B>::join(rank, device.clone())?;
    check_same_start(&collective, rank, plan.start, &model)?;
    let total_steps = plan.total_steps();
    let accumulation = plan.train.accumulation;
    let metrics = match rank.is_main() {
        true => Some(MetricsLog::open(&plan.run_dir, plan.start)?),
        false => None,
    };
    let bar = match rank.is_main() {
        true => progress_bar(total_steps, plan.start),
        false => ProgressBar::hidden(),
    };
    let started = Instant::now();
    let mut last_checkpoint: Option<PathBuf> = checkpoint::latest(&plan.run_dir);
    for step in plan.start..total_steps {
        let step_started = Instant::now();
        B::seed(&device, step_seed(rank.seed(plan.seed), step));
        // A stop request (Ctrl-C, SIGTERM) is agreed on like a failure, at a step boundary.
        let local = match interrupt::requested() {
            true => Err(Interrupted(None).into()),
            false => local_gradients(&model, &mut batches, accumulation, loss_of, &device),
        };
        let cause = local.as_ref().err().map(|e| format!("{e:#}"));
        if let Some(failure) = collective.agree(step, cause.as_deref())? {
            bar.abandon();
            if interrupt::requested() && rank.is_main() {
                return Err(interrupted(plan, step, &model, &optimizer, hooks)?);
            }
            return Err(local
                .err()
                .unwrap_or_else(|| stopped_by(rank, failure, step)));
        }
        let (grads, local_means) = local?;
        let split = local_means.terms.len();
        let (names, values): (Vec<&'static str>, Vec<f64>) = local_means
            .terms
            .into_iter()
            .chain(local_means.monitors)
            .unzip();
        let mut terms: Vec<(&'static str, f64)> = names
            .into_iter()
            .zip(collective.mean(step, &values)?)
            .collect();
        let monitors = terms.split_off(split);
        if let Some((_, loss)) = terms.iter().find(|(_, v)| !v.is_finite()) {
            bar.abandon();
            bail!(
                "the loss became {loss} at step {step}: stopping. The last good checkpoint is {} — \
                 lower optimizer.base_lr or set optimizer.clip_grad, then re-run to resume from it",
                last_checkpoint
                    .as_ref()
                    .map_or("none (no checkpoint yet)".into(), |p| p.display().to_string())
            );
        }
        let grads = collective.mean_gradients(step, &model, grads)?;
        let lr = schedule.at(step);
        let stats;
        (model, stats) = optimizer.step(lr, model, grads);
        let Some(metrics) = &metrics else {
            continue;
        };
        // Rank 0's bookkeeping; a failure here is announced at the next step's agreement.
        let done = step + 1;
        let bookkeeping = (|| -> Result<()> {
            let images_per_s = plan.images_per_step as f64 / step_started.elapsed().as_secs_f64();
            let record = StepRecord {
                step: done,
                epoch: done as f64 / plan.steps_per_epoch as f64,
                losses: terms.iter().copied().collect(),
                monitors: monitors.iter().copied().collect(),
                lr,
                grad_norm: stats.grad_norm,
                images_per_s,
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            hooks.after_step(&model, &record)?;
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
                    .chain(&monitors)
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            if done % plan.train.log_every == 0 || done == total_steps {
                metrics.append(&record)?;
            }
            let epoch_end = done % plan.steps_per_epoch == 0;
            if epoch_end {
                bar.suspend(|| hooks.end_of_epoch(&model, done / plan.steps_per_epoch, metrics))?;
            }
            if done % plan.train.checkpoint_every == 0 || epoch_end {
                last_checkpoint = Some(save(plan, done, &model, &optimizer, hooks)?);
            }
            Ok(())
        })();
        if let Err(error) = bookkeeping {
            bar.abandon();
            if done < total_steps {
                collective.agree(done, Some(&format!("{error:#}")))?;
            }
            return Err(error);
        }
    }
    bar.finish();
    collective.leave()?;
    Ok(model)
}

/// Refuses to train when the replicas start from different steps or weights: a node that does
/// not see node 0's checkpoints or inputs (they must be on a filesystem every node shares, docs/multi-node.md).
fn check_same_start<B: AutodiffBackend, M: AutodiffModule<B>>(
    collective: &Collective<B>,
    rank: Rank,
    start: usize,
    model: &M,
) -> Result<()> {
    let own = [start as f32, weights_fingerprint(model)];
    let all = collective.gather("comparing where the replicas start", &own)?;
    let Some((index, other)) = all
        .iter()
        .enumerate()
        .find(|(_, v)| v[0] as f32 != own[0] || v[1] as f32 != own[1])
    else {
        return Ok(());
    };
    let nodes = nodes::current();
    let node = nodes.node_of(Rank {
        index,
        count: rank.count,
    });
    let what = match other[0] as f32 == own[0] {
        true => format!("at step {start} from other weights than node {node}"),
        false => format!("at step {start}, node {node} at step {}", other[0]),
    };
    bail!(
        "node {}: starts {what}: every node reads node 0's checkpoints and the stage's inputs, \
         so they must be on a filesystem all nodes share (docs/multi-node.md)",
        nodes.rank
    )
}

/// A figure of a model's weights that equal weights share exactly: the sum over parameters of
/// (position + 1) × the sum of its values.
fn weights_fingerprint<B: Backend, M: Module<B>>(model: &M) -> f32 {
    struct Sum(usize, f64);
    impl<B: Backend> ModuleVisitor<B> for Sum {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 += 1;
            let total = param.val().sum().into_scalar().elem::<f64>();
            self.1 += self.0 as f64 * total;
        }
    }
    let mut sum = Sum(0, 0.0);
    model.visit(&mut sum);
    sum.1 as f32
}

/// The error of a replica stopped at `step` by `failure`, another replica's: the failed replica
/// reports its own cause on its node; the replicas of other nodes report it from the agreement.
fn stopped_by(rank: Rank, failure: Failure, step: usize) -> anyhow::Error {
    let nodes = nodes::current();
    let node = nodes.node_of(failure.rank);
    match node == nodes.node_of(rank) {
        true => StoppedByPeer { step }.into(),
        false => NodeFailed {
            step,
            node,
            cause: failure.cause,
        }
        .into(),
    }
}

/// Writes the checkpoint of `step` done steps (rank 0).
fn save<B, M>(
    plan: &Plan,
    step: usize,
    model: &M,
    optimizer: &GroupedAdamW<B, M>,
    hooks: &impl Hooks<M>,
) -> Result<PathBuf>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let state = TrainState {
        step,
        total_steps: plan.total_steps(),
        parameters: Some(checkpoint::parameter_digest(model)),
    };
    let keep = plan.train.keep_checkpoints;
    checkpoint::save(&plan.run_dir, model, optimizer, &state, keep, |dir| {
        hooks.save_extra(dir)
    })
}

/// The error of a run stopped by a signal before `step`, after checkpointing the steps done
/// (unless the newest checkpoint already holds them).
fn interrupted<B, M>(
    plan: &Plan,
    step: usize,
    model: &M,
    optimizer: &GroupedAdamW<B, M>,
    hooks: &impl Hooks<M>,
) -> Result<anyhow::Error>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let saved =
        checkpoint::latest(&plan.run_dir).filter(|p| p.ends_with(format!("step_{step:08}")));
    let checkpoint = match (saved, step) {
        (Some(path), _) => Some(path),
        (None, 0) => None,
        (None, _) => Some(save(plan, step, model, optimizer, hooks)?),
    };
    let at = match checkpoint {
        Some(path) => format!(
            "after step {step}; checkpoint {}: run the same command to resume",
            path.display()
        ),
        None => "before the first step".into(),
    };
    Ok(Interrupted(Some(at)).into())
}

/// This replica's gradients of one optimizer step (the mean over `accumulation` micro-batches)
/// and the means of the loss, its terms and the monitors.
fn local_gradients<B, M, T>(
    model: &M,
    batches: &mut impl Iterator<Item = Result<T>>,
    accumulation: usize,
    loss_of: &impl Fn(&M, T, &B::Device) -> StepLoss<B>,
    device: &B::Device,
) -> Result<(GradientsParams, Logged)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut means = Logged::default();
    for _ in 0..accumulation {
        let batch = batches.next().context("the data loader stopped early")??;
        let output = loss_of(model, batch, device);
        let loss = ("loss", output.total.clone());
        accumulate(
            &mut means.terms,
            [loss].iter().chain(&output.terms),
            accumulation,
        );
        accumulate(&mut means.monitors, &output.monitors, accumulation);
        let grads = output.total.div_scalar(accumulation as f64).backward();
        accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    Ok((accumulator.grads(), means))
}

/// Running means of named scalars over the `n` micro-batches of a step.
fn accumulate<'a, B: Backend>(
    means: &mut Vec<(&'static str, f64)>,
    new: impl IntoIterator<Item = &'a (&'static str, Tensor<B, 1>)>,
    n: usize,
) {
    let values = new
        .into_iter()
        .map(|(k, t)| (*k, t.clone().into_scalar().elem::<f64>()));
    for (k, v) in values {
        match means.iter_mut().find(|(name, _)| *name == k) {
            Some((_, sum)) => *sum += v / n as f64,
            None => means.push((k, v / n as f64)),
        }
    }
}
