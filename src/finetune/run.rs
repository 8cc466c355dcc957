//! The fine-tuning run: augmented batches prepared ahead, soft-target cross-entropy, AdamW with
//! layer-wise LR decay, optional EMA, evaluation after every epoch, and the final classifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use super::augment::{random_erase, FinetuneAugment};
use super::config::FinetuneConfig;
use crate::backend::{initialised_on_cpu, Cpu};
use crate::data::loader::{
    image_rng, images_tensor, to_tensor_data, CropAugment, EpochSlices, ImageFormat,
};
use crate::data::preprocess::Resize;
use crate::data::Dataset;
use crate::evaluate::classify_dataset;
use crate::evaluate::ClassificationReport;
use crate::kernels::{SwinOps, TrainBackend};
use crate::model::saved::SavedModel;
use crate::model::swin::no_weight_decay;
use crate::model::weights::{load_weights, read_timm_checkpoint};
use crate::model::{Swin, SwinConfig};
use crate::train::fit::{step_seed, StepLoss};
use crate::train::optim::GroupedAdamW;
use crate::train::replicas::Rank;
use crate::train::report::{plot_metrics, MetricsLog, Panel};
use crate::train::run::{self as runner, BatchSampler, Objective, RunSpec, Task, Weights};
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
struct TargetBatch {
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

impl BatchSampler for Sampler {
    type Batch = TargetBatch;

    /// This replica's rows of micro-batch `micro`. Each image's augmentation is drawn from its
    /// position in the whole micro-batch; Mixup/CutMix mixes within the replica's rows, as
    /// timm does on each GPU.
    fn prepare(&mut self, micro: usize) -> Result<TargetBatch> {
        let rows = self.rank.rows(self.batch);
        let indices = self.slices.indices(micro)[rows.clone()].to_vec();
        let base = step_seed(self.seed ^ 0xF17E, micro);
        let (c, s) = (self.format.channels, self.format.size);
        let images: Vec<Vec<f32>> = indices
            .par_iter()
            .enumerate()
            .map(|(k, &i)| {
                let mut rng = image_rng(base, rows.start + k);
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
        Ok(TargetBatch {
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
    seed: u64,
    device: &B::Device,
) -> Result<Swin<B>> {
    let model = initialised_on_cpu(seed, |host| config.init::<Cpu>(host), config.init(device))?;
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
    let mut task = FinetuneTask::<B> {
        stage,
        config: config.clone(),
        dataset: dataset.clone(),
        eval_set,
        format: format.clone(),
        device: devices[0].clone(),
        last_report: None,
    };
    let final_model = runner::run(&mut task, resume, devices)?.weights();
    if !runner::writes_outputs() {
        return Ok(None);
    }
    SavedModel::new(
        config.clone(),
        format.normalization.clone(),
        dataset.class_names.clone(),
        dataset.resize(config.img_size),
    )
    .save(&final_model, &stage.out_dir.join("classifier.safetensors"))?;
    // A run that resumed after its last epoch has no report in memory: evaluate once more.
    let report = match (task.last_report.take(), &task.eval_set) {
        (Some(report), _) => Some(report),
        (None, Some(set)) => Some(evaluate(&final_model, set, &format, &devices[0])?),
        (None, None) => None,
    };
    if let Some(report) = &report {
        crate::fsutil::write_atomic(
            &stage.out_dir.join("eval.json"),
            &serde_json::to_vec_pretty(report)?,
        )?;
        report.plot_confusion(&stage.out_dir.join("eval_confusion.png"), "fine-tuned")?;
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

/// Fine-tuning as a training task: a classifier from `init`, augmented labelled batches, soft-
/// target cross-entropy, layer-wise LR decay, and an evaluation after every epoch.
struct FinetuneTask<'a, B: TrainBackend> {
    stage: &'a FinetuneConfig,
    config: SwinConfig,
    dataset: Arc<Dataset>,
    eval_set: Option<Arc<Dataset>>,
    format: ImageFormat,
    device: B::Device,
    last_report: Option<ClassificationReport>,
}

impl<B: TrainBackend> Task<B> for FinetuneTask<'_, B> {
    type Model = Swin<B>;
    type Sampler = Sampler;
    type Objective = SoftTargetLoss;

    fn spec(&self) -> Result<RunSpec<'_>> {
        Ok(RunSpec {
            run_dir: &self.stage.out_dir,
            train: &self.stage.train,
            optimizer: &self.stage.optimizer,
            seed: self.stage.seed,
            images: self.dataset.len(),
            images_per_sample: 1,
            ema: self.stage.ema,
            stage: serde_json::to_value(self.stage)?,
            title: "fine-tuning".into(),
        })
    }

    fn initial_model(&self, device: &B::Device) -> Result<Swin<B>> {
        initial_model(
            &self.config,
            self.stage.init.as_deref(),
            self.stage.seed,
            device,
        )
    }

    /// AdamW with the learning rate of layer `i` scaled by `layer_decay^(top − i)`.
    fn optimizer(&self, model: &Swin<B>) -> GroupedAdamW<B, Swin<B>> {
        let decay = self.stage.optimizer.layer_decay.unwrap_or(1.0);
        let top = self.config.depths.iter().sum::<usize>() + 1;
        GroupedAdamW::new(&self.stage.optimizer, model, no_weight_decay)
            .with_lr_scales(|path| decay.powi((top - self.config.layer_id(path)) as i32))
    }

    fn sampler(&mut self, slices: EpochSlices, rank: Rank) -> Result<Sampler> {
        Ok(Sampler {
            dataset: self.dataset.clone(),
            format: self.format.clone(),
            crop: self.stage.data.augment.clone(),
            augment: self.stage.augment.clone(),
            batch: self.stage.train.batch_size,
            seed: self.stage.seed,
            slices,
            rank,
        })
    }

    fn objective(&self) -> SoftTargetLoss {
        SoftTargetLoss {
            format: self.format.clone(),
            classes: self.dataset.class_names.len(),
        }
    }

    /// Evaluation on `eval_data` (if any) every `eval_every` epochs and after the last: a record
    /// in `metrics.jsonl` and `accuracy.png`.
    fn end_of_epoch(
        &mut self,
        weights: &Weights<B, Swin<B>>,
        epoch: usize,
        step: usize,
        metrics: &MetricsLog,
    ) -> Result<()> {
        let Some(set) = &self.eval_set else {
            return Ok(());
        };
        if !epoch.is_multiple_of(self.stage.eval_every) && epoch != self.stage.train.epochs {
            return Ok(());
        }
        let report = evaluate(weights, set, &self.format, &self.device)?;
        metrics.append(&EvalRecord {
            step,
            epoch,
            eval_top1: report.top1,
            eval_top5: report.top5,
        })?;
        println!(
            "epoch {epoch}: eval top-1 {:.2} %, top-5 {:.2} %",
            100.0 * report.top1,
            100.0 * report.top5
        );
        plot_metrics(
            &self.stage.out_dir.join("accuracy.png"),
            &metrics.records()?,
            &[Panel {
                keys: &["eval_top1"],
                y_label: "top-1",
            }],
            "held-out top-1",
        )?;
        self.last_report = Some(report);
        Ok(())
    }
}

/// An evaluation line of `metrics.jsonl`, after an epoch.
#[derive(serde::Serialize)]
struct EvalRecord {
    step: usize,
    epoch: usize,
    eval_top1: f64,
    eval_top5: f64,
}

/// Soft-target cross-entropy of a micro-batch, on any replica.
#[derive(Clone)]
struct SoftTargetLoss {
    format: ImageFormat,
    classes: usize,
}

impl<B: TrainBackend> Objective<B, Swin<B>, TargetBatch> for SoftTargetLoss {
    fn loss(&self, model: &Swin<B>, host: TargetBatch, device: &B::Device) -> StepLoss<B> {
        let images = images_tensor(host.images, &self.format, device);
        let targets = Tensor::<B, 2>::from_data(
            TensorData::new(host.targets, [host.batch, self.classes]),
            device,
        );
        StepLoss {
            monitors: Vec::new(),
            total: soft_cross_entropy(model.logits(images), targets),
            terms: Vec::new(),
        }
    }
}
