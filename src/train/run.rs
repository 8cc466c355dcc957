//! The one training runner. A [`Task`] says what is trained (the model, its optimizer, how a
//! micro-batch is drawn, its loss, what happens at the end of an epoch); [`run`] does the rest
//! for every task alike: the plan in steps, resume, one replica per device, batches prepared
//! ahead, the loop with its checkpoints and `metrics.jsonl`, the EMA of the weights and
//! `loss.png`, and the run directory's lock (one process at a time trains in it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;

use super::checkpoint;
use super::config::TrainConfig;
use super::ema::Ema;
use super::fit::{self, Hooks, Plan, Replica, StepLoss};
use super::nodes;
use super::optim::{GroupedAdamW, OptimizerConfig};
use super::replicas::Rank;
use super::report::{plot_metrics, MetricsLog, Panel, StepRecord};
use crate::data::loader::{EpochSlices, Prefetcher};
use crate::lock::RunLock;

/// Draws the micro-batches of one replica on a loader thread: micro-batch `micro` (counted from
/// the start of training) is a function of the seed and `micro` alone, so a resumed run sees the
/// batches an uninterrupted one would.
pub trait BatchSampler: Clone + Send + 'static {
    /// A micro-batch on the host.
    type Batch: Send + 'static;
    fn prepare(&mut self, micro: usize) -> Result<Self::Batch>;
}

/// The loss of a micro-batch, computed on every replica's thread.
pub trait Objective<B: AutodiffBackend, M, T>: Clone + Send + 'static {
    fn loss(&self, model: &M, batch: T, device: &B::Device) -> StepLoss<B>;
}

/// The size and place of a run, as a task's stage gives them.
pub struct RunSpec<'a> {
    pub run_dir: &'a Path,
    pub train: &'a TrainConfig,
    pub optimizer: &'a OptimizerConfig,
    pub seed: u64,
    /// Images in the training set.
    pub images: usize,
    /// Dataset images in one sample of a micro-batch (2 for an EESMM pair).
    pub images_per_sample: usize,
    /// The decay of an exponential moving average of the weights, if one is kept.
    pub ema: Option<f64>,
    /// The stage as run, written to `stage.json`.
    pub stage: serde_json::Value,
    /// The title of `loss.png`.
    pub title: String,
}

/// The weights a model evaluates with, off the autodiff graph.
pub type Weights<B, M> = <M as AutodiffModule<B>>::InnerModule;

/// What a training run trains.
pub trait Task<B: AutodiffBackend> {
    type Model: AutodiffModule<B> + ModuleSnapshot<B> + 'static;
    type Sampler: BatchSampler;
    type Objective: Objective<B, Self::Model, <Self::Sampler as BatchSampler>::Batch>;

    fn spec(&self) -> Result<RunSpec<'_>>;
    /// The model before training (before any checkpoint is restored).
    fn initial_model(&self, device: &B::Device) -> Result<Self::Model>;
    fn optimizer(&self, model: &Self::Model) -> GroupedAdamW<B, Self::Model>;
    /// The sampler of replica `rank`, taking its images from `slices`.
    fn sampler(&mut self, slices: EpochSlices, rank: Rank) -> Result<Self::Sampler>;
    fn objective(&self) -> Self::Objective;
    /// At the end of every epoch, with the weights to judge (the EMA's, if kept): previews,
    /// evaluation, more records in `metrics`.
    fn end_of_epoch(
        &mut self,
        weights: &Weights<B, Self::Model>,
        epoch: usize,
        step: usize,
        metrics: &MetricsLog,
    ) -> Result<()>;
}

/// What a run ends with.
pub struct Trained<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub ema: Option<Weights<B, M>>,
}

/// Whether this process writes a run's outputs: node 0 (every process of a one-node run).
pub fn writes_outputs() -> bool {
    nodes::current().rank == 0
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Trained<B, M> {
    /// The weights to ship: the EMA's if one was kept, else the model's.
    pub fn weights(self) -> Weights<B, M> {
        self.ema.unwrap_or_else(|| self.model.valid())
    }
}

/// Trains `task` on `devices` from `resume`, or else the run's latest checkpoint.
pub fn run<B, T>(
    task: &mut T,
    resume: Option<PathBuf>,
    devices: &[B::Device],
) -> Result<Trained<B, T::Model>>
where
    B: AutodiffBackend,
    T: Task<B>,
{
    let device = devices.first().context("no device to train on")?;
    let spec = task.spec()?;
    let ranks = nodes::current().ranks(devices.len());
    // Node 0 alone writes in the run directory (the other nodes read its checkpoints).
    let writer = ranks[0].is_main();
    let _lock = writer.then(|| RunLock::acquire(spec.run_dir)).transpose()?;
    if writer {
        checkpoint::remove_stale_temporaries(spec.run_dir)?;
    }
    let mut plan = Plan::new(
        spec.run_dir,
        spec.train,
        spec.seed,
        spec.images,
        spec.images_per_sample,
    )?;
    let schedule = plan.schedule(spec.optimizer);
    let accumulation = spec.train.accumulation;
    let slices = EpochSlices::new(
        spec.images,
        spec.seed,
        spec.train.batch_size * spec.images_per_sample,
        plan.steps_per_epoch * accumulation,
    );
    let (ema_decay, title, stage) = (spec.ema, spec.title, spec.stage);

    // One replica per device, all starting from the weights initialised on the first.
    B::seed(device, plan.seed);
    let initial = task.initial_model(device)?;
    let start = restore(
        &plan.run_dir,
        resume,
        plan.total_steps(),
        initial,
        |m| task.optimizer(m),
        devices,
    )?;
    plan.start = start.step;
    let ema = match ema_decay {
        Some(decay) => Some(restore_ema(decay, &start, device)?),
        None => None,
    };
    let micro_steps = plan.start * accumulation..plan.total_steps() * accumulation;
    let replicas = start.replicas.into_iter().zip(devices).zip(ranks);
    let replicas = replicas
        .map(|(((model, optimizer), device), rank)| {
            let mut sampler = task.sampler(slices.clone(), rank)?;
            let batches =
                Prefetcher::new(micro_steps.clone(), 3, move |micro| sampler.prepare(micro));
            Ok(Replica {
                device: device.clone(),
                model,
                optimizer,
                batches,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if writer {
        crate::fsutil::write_atomic(
            &plan.run_dir.join("stage.json"),
            &serde_json::to_vec_pretty(&stage)?,
        )?;
    }

    let objective = task.objective();
    let mut hooks = RunHooks {
        task,
        ema,
        run_dir: plan.run_dir.clone(),
        steps_per_epoch: plan.steps_per_epoch,
        title,
        loss_keys: Vec::new(),
        monitor_keys: Vec::new(),
    };
    let model = fit::fit(
        &plan,
        replicas,
        &schedule,
        move |model: &T::Model, batch, device: &B::Device| objective.loss(model, batch, device),
        &mut hooks,
    )?;
    Ok(Trained {
        model,
        ema: hooks.ema.map(|ema| ema.weights),
    })
}

/// The EMA weights of the checkpoint training starts from, or the starting weights themselves.
fn restore_ema<B, M>(
    decay: f64,
    start: &Start<B, M>,
    device: &B::Device,
) -> Result<Ema<Weights<B, M>>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let weights = start.replicas[0].0.valid();
    let weights = match &start.checkpoint {
        Some(path) => weights
            .load_file(path.join("ema"), &checkpoint::recorder(), device)
            .with_context(|| format!("{}: no usable EMA weights", path.display()))?,
        None => weights,
    };
    Ok(Ema { weights, decay })
}

/// Rank 0's hooks of a run: the EMA, `loss.png`, then the task's own end of epoch.
struct RunHooks<'t, B: AutodiffBackend, T: Task<B>> {
    task: &'t mut T,
    ema: Option<Ema<Weights<B, T::Model>>>,
    run_dir: PathBuf,
    steps_per_epoch: usize,
    title: String,
    /// The loss names of the steps (`loss` and the task's terms), and their monitors' names.
    loss_keys: Vec<&'static str>,
    monitor_keys: Vec<&'static str>,
}

impl<B: AutodiffBackend, T: Task<B>> Hooks<T::Model> for RunHooks<'_, B, T> {
    fn after_step(&mut self, model: &T::Model, record: &StepRecord) -> Result<()> {
        if self.loss_keys.is_empty() {
            self.loss_keys = record.losses.keys().copied().collect();
            self.monitor_keys = record.monitors.keys().copied().collect();
        }
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema.update(&model.valid()));
        }
        Ok(())
    }

    fn save_extra(&self, checkpoint: &Path) -> Result<()> {
        if let Some(ema) = &self.ema {
            ema.weights
                .clone()
                .save_file(checkpoint.join("ema"), &checkpoint::recorder())?;
        }
        Ok(())
    }

    fn end_of_epoch(&mut self, model: &T::Model, epoch: usize, metrics: &MetricsLog) -> Result<()> {
        let weights = match &self.ema {
            Some(ema) => ema.weights.clone(),
            None => model.valid(),
        };
        let step = epoch * self.steps_per_epoch;
        self.task.end_of_epoch(&weights, epoch, step, metrics)?;
        let panels = [
            Panel {
                keys: &self.loss_keys,
                y_label: "loss",
            },
            Panel {
                keys: &self.monitor_keys,
                y_label: "separation (1 = none)",
            },
        ];
        plot_metrics(
            &self.run_dir.join("loss.png"),
            &metrics.records()?,
            &panels,
            &self.title,
        )
    }
}

/// Where training starts: per device the model and optimizer to continue, the step, and the
/// checkpoint they came from (none for a fresh run).
struct Start<B: AutodiffBackend, M> {
    replicas: Vec<(M, GroupedAdamW<B, M>)>,
    step: usize,
    checkpoint: Option<PathBuf>,
}

/// Restores the model and the optimizer from `resume`, or else from the run's newest checkpoint
/// that loads (falling back past a corrupt one, saying so), and places a copy on every device. A
/// checkpoint made for another number of steps or another model is an error; one made on another
/// number of devices is not.
fn restore<B, M>(
    run_dir: &Path,
    resume: Option<PathBuf>,
    total_steps: usize,
    model: M,
    make_optimizer: impl Fn(&M) -> GroupedAdamW<B, M>,
    devices: &[B::Device],
) -> Result<Start<B, M>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let fresh = |model: M| -> Start<B, M> {
        let replicas = on_each_device(model, devices)
            .into_iter()
            .map(|model| {
                let optimizer = make_optimizer(&model);
                (model, optimizer)
            })
            .collect();
        Start {
            replicas,
            step: 0,
            checkpoint: None,
        }
    };
    let explicit = resume.is_some();
    let candidates = match resume {
        Some(path) => vec![path],
        None => checkpoint::newest_first(run_dir),
    };
    let Some(newest) = candidates.first().cloned() else {
        return Ok(fresh(model));
    };
    let mut first_error = None;
    for path in candidates {
        match from_checkpoint(&path, total_steps, model.clone(), &make_optimizer, devices) {
            Ok(start) => {
                tracing::info!("resuming from {} (step {})", path.display(), start.step);
                return Ok(start);
            }
            Err(error) if explicit => return Err(error),
            Err(error) => {
                tracing::warn!("cannot resume from it, trying the one before: {error:#}");
                first_error.get_or_insert(error);
            }
        }
    }
    let error = first_error.context("no checkpoint tried")?;
    Err(error.context(format!(
        "no checkpoint in {} loads (the newest is {}); remove the folder to start afresh",
        checkpoint::checkpoints_dir(run_dir).display(),
        newest.display()
    )))
}

/// The model and optimizer of every device from the checkpoint at `path`.
fn from_checkpoint<B, M>(
    path: &Path,
    total_steps: usize,
    model: M,
    make_optimizer: &impl Fn(&M) -> GroupedAdamW<B, M>,
    devices: &[B::Device],
) -> Result<Start<B, M>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + ModuleSnapshot<B>,
{
    let (model, state) = checkpoint::load(path, model, &devices[0])?;
    anyhow::ensure!(
        state.total_steps == total_steps,
        "{}: made for {} steps, this configuration has {total_steps}",
        path.display(),
        state.total_steps
    );
    let replicas = on_each_device(model, devices)
        .into_iter()
        .zip(devices)
        .map(|(model, device)| {
            let optimizer = checkpoint::load_optimizer(path, make_optimizer(&model), device)?;
            Ok((model, optimizer))
        })
        .collect::<Result<_>>()?;
    Ok(Start {
        replicas,
        step: state.step,
        checkpoint: Some(path.to_path_buf()),
    })
}

/// `initial` once per device, with the same values on each. burn initialises parameters lazily
/// and a copy of a lazy parameter draws its own values, so every parameter is materialised first.
fn on_each_device<B, M>(initial: M, devices: &[B::Device]) -> Vec<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    initial.visit(&mut Materialize);
    devices.iter().map(|d| initial.clone().fork(d)).collect()
}

/// Reads every parameter once, which initialises the lazy ones.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}
