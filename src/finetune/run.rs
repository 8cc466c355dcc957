//! The fine-tuning run: augmented batches prepared ahead, soft-target cross-entropy, AdamW with
//! layer-wise LR decay, optional EMA, evaluation after every epoch, and the final classifier.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::{json, Map};

use super::augment::{random_erase, FinetuneAugment};
use super::config::FinetuneConfig;
use crate::data::loader::{to_tensor_data, CropAugment, EpochSlices, ImageFormat, Prefetcher};
use crate::data::preprocess::Resize;
use crate::data::Dataset;
use crate::evaluate::classify_dataset;
use crate::evaluate::ClassificationReport;
use crate::kernels::{SwinOps, TrainBackend};
use crate::model::saved::SavedModel;
use crate::model::weights::{load_weights, read_timm_checkpoint};
use crate::model::{Swin, SwinConfig};
use crate::train::checkpoint;
use crate::train::fit::{self, step_seed};
use crate::train::optim::GroupedAdamW;
use crate::train::replicas::Rank;
use crate::train::report::{plot_losses, MetricsLog};
use crate::with_backend;

/// Runs a fine-tuning stage (resuming from `resume` or the run's latest checkpoint) and
/// returns the final evaluation, if the stage has `eval_data`.
pub fn run(
    stage: &FinetuneConfig,
    resume: Option<PathBuf>,
) -> Result<Option<ClassificationReport>> {
    with_backend!(each stage.devices()?, |B, devices| train::<B>(
        stage, resume, &devices
    ))
}

/// A fine-tuning micro-batch on the host: images `[B, C, S, S]` and soft targets `[B, K]`.
struct HostBatch {
    images: Vec<f32>,
    targets: Vec<f32>,
    batch: usize,
}

/// Draws micro-batches: epoch order, crop + flip, RandAugment, erasing, Mixup/CutMix.
#[derive(Clone)]
struct Sampler {
    dataset: Arc<Dataset>,
    format: ImageFormat,
    crop: Option<CropAugment>,
    augment: FinetuneAugment,
    /// Images per micro-batch, over all replicas.
    batch: usize,
    seed: u64,
    slices: EpochSlices,
    /// This replica's share of each micro-batch.
    rank: Rank,
}

impl Sampler {
    /// This replica's rows of micro-batch `micro`. Each image's augmentation is drawn from its
    /// position in the whole micro-batch; Mixup/CutMix mixes within the replica's rows, as
    /// timm does on each GPU.
    fn prepare(&mut self, micro: usize) -> Result<HostBatch> {
        let rows = self.rank.rows(self.batch);
        let indices = self.slices.indices(micro)[rows.clone()].to_vec();
        let base = step_seed(self.seed ^ 0xF17E, micro);
        let (c, s) = (self.format.channels, self.format.size);
        let images: Vec<Vec<f32>> = indices
            .par_iter()
            .enumerate()
            .map(|(k, &i)| {
                let mut rng = StdRng::seed_from_u64(
                    base ^ ((rows.start + k) as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
                );
                let mut image = self.dataset.image(i)?.into_owned();
                if let Some(crop) = &self.crop {
                    image = crop.apply(&mut rng, &image);
                }
                if let Some(rand_augment) = &self.augment.rand_augment {
                    image = rand_augment.apply(&mut rng, &image);
                }
                let mut pixels = to_tensor_data(&image, &self.format);
                random_erase(&mut rng, &mut pixels, c, s, self.augment.random_erasing);
                Ok(pixels)
            })
            .collect::<Result<_>>()?;
        let mut images = images.concat();
        let labels: Vec<usize> = indices.iter().map(|&i| self.dataset.labels[i]).collect();
        let mut rng = StdRng::seed_from_u64(self.rank.seed(base));
        let classes = self.dataset.class_names.len();
        let targets = self
            .augment
            .mix_batch(&mut rng, &mut images, &labels, classes, c, s);
        Ok(HostBatch {
            images,
            targets,
            batch: rows.len(),
        })
    }
}

/// Cross-entropy against soft targets: `mean_b −Σ_k t_bk · log softmax(z_b)_k`.
fn soft_cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// The classifier to train: the preset with a `classes`-way head, encoder weights from `init`
/// (its head, decoder and mask token are not used), or timm's initialisation.
fn initial_model<B: Backend>(
    config: &SwinConfig,
    init: Option<&Path>,
    device: &B::Device,
) -> Result<Swin<B>> {
    let model = config.init::<B>(device);
    let Some(path) = init else {
        return Ok(model);
    };
    let (mut dict, notes) = read_timm_checkpoint(path, config)?;
    dict.retain(|k, _| !k.starts_with("head."));
    let (model, report) =
        load_weights(model, dict, notes).with_context(|| format!("init: {}", path.display()))?;
    tracing::info!(
        "init: {} tensors from {}; new: {}",
        report.applied,
        path.display(),
        report.kept_initial.join(", ")
    );
    Ok(model)
}

fn train<B: TrainBackend>(
    stage: &FinetuneConfig,
    resume: Option<PathBuf>,
    devices: &[B::Device],
) -> Result<Option<ClassificationReport>> {
    let device = &devices[0];
    let run_dir = stage.out_dir.clone();
    crate::fsutil::create_dir(&run_dir)?;
    let preset = stage.model_config(1)?;
    let dataset = Arc::new(stage.data.load(Resize::timm_eval(preset.img_size))?);
    let classes = dataset.class_names.len();
    ensure!(classes > 1, "data: needs labels of at least two classes");
    let config = stage.model_config(classes)?;
    let eval_set = match &stage.eval_data {
        Some(data) => {
            let set = data
                .load(Resize::timm_eval(config.img_size))
                .context("eval_data")?;
            ensure!(
                set.class_names == dataset.class_names,
                "eval_data: its classes differ from data's"
            );
            Some(Arc::new(set))
        }
        None => None,
    };
    let format = ImageFormat {
        size: config.img_size,
        channels: config.in_chans,
        normalization: dataset.normalization.for_channels(config.in_chans),
    };
    let (batch, accumulation) = (stage.train.batch_size, stage.train.accumulation);
    let mut plan = fit::Plan::new(&run_dir, &stage.train, stage.seed, dataset.len(), 1)?;
    let (steps_per_epoch, total_steps) = (plan.steps_per_epoch, plan.total_steps());
    let schedule = plan.schedule(&stage.optimizer);
    let sampler = Sampler {
        dataset: dataset.clone(),
        format: format.clone(),
        crop: stage.data.augment.clone(),
        augment: stage.augment.clone(),
        batch,
        seed: stage.seed,
        slices: EpochSlices::new(
            dataset.len(),
            stage.seed,
            batch,
            steps_per_epoch * accumulation,
        ),
        rank: Rank::SINGLE,
    };

    // One replica per device, all starting from the weights initialised on the first.
    B::seed(device, stage.seed);
    let initial = initial_model::<B>(&config, stage.init.as_deref(), device)?;
    let decay = stage.optimizer.layer_decay.unwrap_or(1.0);
    let top = config.depths.iter().sum::<usize>() + 1;
    let make_optimizer = |m: &Swin<B>| {
        GroupedAdamW::new(&stage.optimizer, m, crate::model::swin::no_weight_decay)
            .with_lr_scales(|path| decay.powi((top - config.layer_id(path)) as i32))
    };
    let start = fit::resume(
        &run_dir,
        resume,
        total_steps,
        initial,
        make_optimizer,
        devices,
    )?;
    plan.start = start.step;
    let micro_steps = start.step * accumulation..total_steps * accumulation;
    let checkpoint = start.checkpoint.clone();
    let replicas = start.into_replicas(devices, |rank| {
        let mut sampler = Sampler {
            rank,
            ..sampler.clone()
        };
        Prefetcher::new(micro_steps.clone(), 3, move |micro| sampler.prepare(micro))
    });
    let ema = match (stage.ema, &checkpoint) {
        (None, _) => None,
        (Some(_), Some(path)) => Some(replicas[0].model.valid().load_file(
            path.join("ema"),
            &checkpoint::recorder(),
            device,
        )?),
        (Some(_), None) => Some(replicas[0].model.valid()),
    };
    crate::fsutil::write_atomic(
        &run_dir.join("stage.json"),
        &serde_json::to_vec_pretty(stage)?,
    )?;

    let mut hooks = FinetuneHooks {
        run_dir: &run_dir,
        ema: ema.map(|weights| (weights, stage.ema.unwrap_or(0.0))),
        eval_set: eval_set.as_ref(),
        format: &format,
        steps_per_epoch,
        device,
        last_report: None,
    };
    let (c, s) = (format.channels, format.size);
    let model = fit::fit(
        &plan,
        replicas,
        &schedule,
        move |model: &Swin<B>, host: HostBatch, device: &B::Device| {
            let images = Tensor::<B, 4>::from_data(
                TensorData::new(host.images, [host.batch, c, s, s]),
                device,
            );
            let targets = Tensor::<B, 2>::from_data(
                TensorData::new(host.targets, [host.batch, classes]),
                device,
            );
            let logits = model.logits(images);
            fit::StepLoss {
                total: soft_cross_entropy(logits, targets),
                terms: Vec::new(),
            }
        },
        &mut hooks,
    )?;
    let last_report = hooks.last_report.take();
    let final_model = match hooks.ema.take() {
        Some((ema, _)) => ema,
        None => model.valid(),
    };
    SavedModel::new(
        config.clone(),
        format.normalization.clone(),
        dataset.class_names.clone(),
        dataset.resize(config.img_size),
    )
    .save(&final_model, &run_dir.join("classifier.safetensors"))?;
    // A run that resumed after its last epoch has no report in memory: evaluate once more.
    let report = match (last_report, &eval_set) {
        (Some(report), _) => Some(report),
        (None, Some(set)) => Some(evaluate(&final_model, set, &format, device)?),
        (None, None) => None,
    };
    if let Some(report) = &report {
        crate::fsutil::write_atomic(
            &run_dir.join("eval.json"),
            &serde_json::to_vec_pretty(report)?,
        )?;
        report.plot_confusion(&run_dir.join("eval_confusion.png"), "fine-tuned")?;
    }
    Ok(report)
}

fn evaluate<B: SwinOps>(
    model: &Swin<B>,
    set: &Arc<Dataset>,
    format: &ImageFormat,
    device: &B::Device,
) -> Result<ClassificationReport> {
    classify_dataset(model, set, format, 256, device)
}

/// EMA updates, EMA checkpoints, and at every epoch end: evaluation and the plots.
struct FinetuneHooks<'a, B: TrainBackend> {
    run_dir: &'a Path,
    /// The averaged weights and their decay.
    ema: Option<(Swin<B::InnerBackend>, f64)>,
    eval_set: Option<&'a Arc<Dataset>>,
    format: &'a ImageFormat,
    steps_per_epoch: usize,
    device: &'a B::Device,
    last_report: Option<ClassificationReport>,
}

impl<B: TrainBackend> fit::Hooks<Swin<B>> for FinetuneHooks<'_, B> {
    fn after_step(&mut self, model: &Swin<B>) -> Result<()> {
        if let Some((ema, decay)) = self.ema.take() {
            self.ema = Some((blend_into(ema, &model.valid(), decay), decay));
        }
        Ok(())
    }

    fn save_extra(&self, checkpoint: &Path) -> Result<()> {
        if let Some((ema, _)) = &self.ema {
            ema.clone()
                .save_file(checkpoint.join("ema"), &checkpoint::recorder())?;
        }
        Ok(())
    }

    fn end_of_epoch(&mut self, model: &Swin<B>, epoch: usize, metrics: &MetricsLog) -> Result<()> {
        let Some(set) = self.eval_set else {
            return plot_losses(
                &self.run_dir.join("loss.png"),
                &metrics.records()?,
                &["loss"],
                "fine-tuning",
            );
        };
        let weights = match &self.ema {
            Some((ema, _)) => ema.clone(),
            None => model.valid(),
        };
        let report = evaluate(&weights, set, self.format, self.device)?;
        let mut record = Map::new();
        record.insert("step".into(), json!(epoch * self.steps_per_epoch));
        record.insert("epoch".into(), json!(epoch));
        record.insert("eval_top1".into(), json!(report.top1));
        record.insert("eval_top5".into(), json!(report.top5));
        metrics.append(&record)?;
        println!(
            "epoch {epoch}: eval top-1 {:.2} %, top-5 {:.2} %",
            100.0 * report.top1,
            100.0 * report.top5
        );
        let records = metrics.records()?;
        plot_losses(
            &self.run_dir.join("loss.png"),
            &records,
            &["loss"],
            "fine-tuning",
        )?;
        plot_losses(
            &self.run_dir.join("accuracy.png"),
            &records,
            &["eval_top1"],
            "held-out top-1",
        )?;
        self.last_report = Some(report);
        Ok(())
    }
}

/// Each parameter's flattened value by id.
struct CollectParams<B: Backend>(HashMap<ParamId, Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for CollectParams<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([n]));
    }
}

/// `θ_ema ← decay·θ_ema + (1 − decay)·θ` for every parameter the two share.
struct Blend<B: Backend> {
    current: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.current.remove(&id) {
            Some(now) => {
                let shape = tensor.shape();
                tensor.mul_scalar(self.decay) + now.reshape(shape).mul_scalar(1.0 - self.decay)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

fn blend_into<B: Backend>(ema: Swin<B>, model: &Swin<B>, decay: f64) -> Swin<B> {
    let mut collect = CollectParams(HashMap::new());
    model.visit(&mut collect);
    ema.map(&mut Blend {
        current: collect.0,
        decay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_moves_towards_the_model() {
        type B = crate::backend::Cpu;
        let device = Default::default();
        let config =
            crate::model::SwinConfig::load(Path::new("models/swin-micro-28.yaml")).unwrap();
        let model = config.init::<B>(&device);
        let blended = blend_into(model.clone(), &model, 0.9);
        let (a, b) = (
            blended.norm.gamma.val().into_data(),
            model.norm.gamma.val().into_data(),
        );
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::default());
        // 0.9·θ + 0.1·(θ + 1) = θ + 0.1
        let shifted = model.clone().map(&mut Blend {
            current: {
                let mut c = CollectParams(HashMap::new());
                model.visit(&mut c);
                c.0.into_iter()
                    .map(|(id, t)| (id, t.add_scalar(1.0)))
                    .collect()
            },
            decay: 0.0,
        });
        let moved = blend_into(model.clone(), &shifted, 0.9);
        let diff: f32 = (moved.norm.gamma.val() - model.norm.gamma.val())
            .mean()
            .into_scalar();
        assert!((diff - 0.1).abs() < 1e-5, "{diff}");
    }
}
