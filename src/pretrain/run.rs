//! The pretraining run: batches prepared ahead on a background thread, one optimizer step per
//! `accumulation` micro-batches, checkpoints, metrics, plots, and the final encoder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::mask::random_mask;
use super::mix::warp;
use super::objective::{DeviceBatch, ObjectiveConfig, ObjectiveKind, PretrainModel};
use super::stage::PretrainStage;
use crate::data::loader::{epoch_order, host_batch, CropAugment, ImageFormat, Prefetcher};
use crate::data::Dataset;
use crate::model::SwinConfig;
use crate::train::checkpoint::{self, TrainState};
use crate::train::optim::{CosineSchedule, GroupedAdamW};
use crate::train::report::{image_grid, plot_losses, progress_bar, MetricsLog};
use crate::with_backend;

/// Runs a pretraining stage, resuming from `resume` or else from the run's latest checkpoint.
pub fn run(stage: &PretrainStage, resume: Option<PathBuf>) -> Result<PathBuf> {
    with_backend!(stage.device()?, |B, device| train::<B>(
        stage, resume, &device
    ))
}

/// Seed of everything random at one (micro-)step: data order aside, this is the whole RNG state.
fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (step as u64)
            .wrapping_add(1)
            .wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// A micro-batch on the host: images `[B, C, S, S]` and cell masks `[B, g, g]`.
#[derive(Clone)]
struct HostPairs {
    first: Vec<f32>,
    mask1: Vec<f32>,
    second: Option<(Vec<f32>, Vec<f32>)>,
    batch: usize,
}

/// Everything a micro-batch needs, shared with the loader thread.
struct Sampler {
    dataset: Arc<Dataset>,
    format: ImageFormat,
    crop: Option<CropAugment>,
    objective: ObjectiveConfig,
    batch: usize,
    seed: u64,
    micro_per_epoch: usize,
    /// The current epoch and its order, drawn once per epoch.
    order: (usize, Vec<usize>),
}

impl Sampler {
    /// Micro-batch `micro` (counted from the start of training): its images, transforms and masks.
    fn prepare(&mut self, micro: usize) -> Result<HostPairs> {
        let per_sample = self.objective.images_per_sample();
        let (epoch, position) = (micro / self.micro_per_epoch, micro % self.micro_per_epoch);
        if self.order.0 != epoch || self.order.1.is_empty() {
            self.order = (epoch, epoch_order(self.dataset.len(), self.seed, epoch));
        }
        let take = self.batch * per_sample;
        let indices = &self.order.1[position * take..(position + 1) * take];
        let crop = self
            .crop
            .as_ref()
            .map(|augment| (augment, step_seed(self.seed ^ 0xC809, micro)));
        let images = host_batch(&self.dataset, indices, &self.format, crop)?.images;
        let plane = self.format.channels * self.format.size * self.format.size;
        let grid = self.format.size / self.objective.mask_patch_size;
        let mut rng = StdRng::seed_from_u64(step_seed(self.seed, micro));
        let draws: Vec<_> = (0..self.batch)
            .map(|_| {
                let warps = self.objective.augment.sample(&mut rng, self.format.size);
                let masks = (0..per_sample)
                    .map(|_| random_mask(&mut rng, grid, self.objective.mask_ratio))
                    .collect::<Vec<_>>();
                (warps, masks)
            })
            .collect();
        let (c, s) = (self.format.channels, self.format.size);
        let image = |i: usize| &images[i * plane..(i + 1) * plane];
        Ok(match self.objective.kind {
            ObjectiveKind::Simmim => HostPairs {
                first: images.clone(),
                mask1: draws.iter().flat_map(|(_, m)| m[0].clone()).collect(),
                second: None,
                batch: self.batch,
            },
            ObjectiveKind::Eesmm => {
                // Pair i is (image 2i, image 2i+1): T1 = A(I1), T2 = B(I2).
                let warped: Vec<(Vec<f32>, Vec<f32>)> = draws
                    .par_iter()
                    .enumerate()
                    .map(|(i, ((a, b), _))| {
                        (warp(image(2 * i), c, s, a), warp(image(2 * i + 1), c, s, b))
                    })
                    .collect();
                HostPairs {
                    first: warped
                        .iter()
                        .flat_map(|(t1, _)| t1.iter().copied())
                        .collect(),
                    mask1: draws.iter().flat_map(|(_, m)| m[0].clone()).collect(),
                    second: Some((
                        warped
                            .iter()
                            .flat_map(|(_, t2)| t2.iter().copied())
                            .collect(),
                        draws.iter().flat_map(|(_, m)| m[1].clone()).collect(),
                    )),
                    batch: self.batch,
                }
            }
        })
    }
}

impl HostPairs {
    fn into_device<B: Backend>(
        self,
        format: &ImageFormat,
        grid: usize,
        device: &B::Device,
    ) -> DeviceBatch<B> {
        let (b, c, s) = (self.batch, format.channels, format.size);
        let images =
            |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [b, c, s, s]), device);
        let masks =
            |v: Vec<f32>| Tensor::<B, 3>::from_data(TensorData::new(v, [b, grid, grid]), device);
        DeviceBatch {
            first: images(self.first),
            mask1: masks(self.mask1),
            second: self.second.map(|(t2, m2)| (images(t2), masks(m2))),
        }
    }
}

fn train<B: AutodiffBackend>(
    stage: &PretrainStage,
    resume: Option<PathBuf>,
    device: &B::Device,
) -> Result<PathBuf> {
    let config = stage.model_config()?;
    let objective = stage.objective.clone();
    let run_dir = stage.out_dir.clone();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("{}: cannot create", run_dir.display()))?;
    let dataset = Arc::new(stage.data.load(config.img_size)?);
    let format = ImageFormat {
        size: config.img_size,
        channels: config.in_chans,
        normalization: dataset.normalization.for_channels(config.in_chans),
    };
    let (batch, accumulation) = (stage.train.batch_size, stage.train.accumulation);
    let per_step_images = batch * objective.images_per_sample() * accumulation;
    let steps_per_epoch = dataset.len() / per_step_images;
    ensure!(
        steps_per_epoch > 0,
        "data: {} images is less than one optimizer step ({per_step_images} images)",
        dataset.len()
    );
    let total_steps = steps_per_epoch * stage.train.epochs;
    let schedule = CosineSchedule::new(
        &stage.optimizer,
        batch * accumulation,
        steps_per_epoch,
        total_steps,
    );

    B::seed(device, stage.seed);
    let mut model = PretrainModel::<B>::new(&config, &objective, device);
    let mut start = 0;
    let resume_from = resume.or_else(|| checkpoint::latest(&run_dir));
    if let Some(path) = &resume_from {
        let state;
        (model, state) = checkpoint::load(path, model, device)?;
        ensure!(
            state.total_steps == total_steps,
            "{}: made for {} steps, this configuration has {total_steps}",
            path.display(),
            state.total_steps
        );
        tracing::info!("resuming from {} (step {})", path.display(), state.step);
        start = state.step;
    }
    let mut optimizer = GroupedAdamW::new(&stage.optimizer, &model);
    if let Some(path) = &resume_from {
        optimizer = checkpoint::load_optimizer(path, optimizer, device)?;
    }
    write_json(&run_dir.join("stage.json"), &serde_json::to_value(stage)?)?;
    let metrics = MetricsLog::open(&run_dir, start)?;

    let grid = config.img_size / objective.mask_patch_size;
    let mut sampler = Sampler {
        dataset: dataset.clone(),
        format: format.clone(),
        crop: stage.data.augment.clone(),
        objective: objective.clone(),
        batch,
        seed: stage.seed,
        micro_per_epoch: steps_per_epoch * accumulation,
        order: (0, Vec::new()),
    };
    let preview = sampler.prepare(0)?;
    let mut batches = Prefetcher::new(
        start * accumulation..total_steps * accumulation,
        3,
        move |micro| sampler.prepare(micro),
    );

    let bar = progress_bar(total_steps, start);
    let started = Instant::now();
    let mut last_checkpoint = checkpoint::latest(&run_dir);
    for step in start..total_steps {
        let step_started = Instant::now();
        B::seed(device, step_seed(stage.seed, step));
        let mut accumulator = GradientsAccumulator::<PretrainModel<B>>::new();
        let mut terms: Vec<(&'static str, f64)> = Vec::new();
        for _ in 0..accumulation {
            let host = batches.next().context("the data loader stopped early")??;
            let output =
                objective.forward(&model, &config, host.into_device(&format, grid, device));
            let loss = output.total.clone().into_scalar().elem::<f64>();
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss} at step {step}: stopping. The last good checkpoint is {} — \
                     lower optimizer.base_lr or set optimizer.clip_grad, then re-run to resume from it",
                    last_checkpoint.as_ref().map_or("none (no checkpoint yet)".into(), |p| p.display().to_string())
                );
            }
            accumulate_terms(&mut terms, &output.terms, loss, accumulation);
            let grads = output.total.div_scalar(accumulation as f64).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let lr = schedule.at(step);
        let stats;
        (model, stats) = optimizer.step(lr, model, accumulator.grads());
        let done = step + 1;
        let images_per_s = per_step_images as f64 / step_started.elapsed().as_secs_f64();
        bar.set_position(done as u64);
        bar.set_prefix(format!(
            "epoch {}/{}",
            step / steps_per_epoch + 1,
            stage.train.epochs
        ));
        bar.set_message(format!(
            "{} lr {lr:.2e} {images_per_s:.0} img/s",
            terms
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if done % stage.train.log_every == 0 || done == total_steps {
            let mut record = Map::new();
            record.insert("step".into(), json!(done));
            record.insert("epoch".into(), json!(done as f64 / steps_per_epoch as f64));
            for (k, v) in &terms {
                record.insert(k.to_string(), json!(v));
            }
            record.insert("lr".into(), json!(lr));
            record.insert("grad_norm".into(), json!(stats.grad_norm));
            record.insert("images_per_s".into(), json!(images_per_s));
            record.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
            metrics.append(&record)?;
        }
        let epoch_end = done % steps_per_epoch == 0;
        if done % stage.train.checkpoint_every == 0 || epoch_end {
            let state = TrainState {
                step: done,
                total_steps,
            };
            last_checkpoint = Some(checkpoint::save(
                &run_dir,
                &model,
                &optimizer,
                &state,
                stage.train.keep_checkpoints,
            )?);
        }
        if epoch_end {
            let epoch = done / steps_per_epoch;
            let keys: Vec<&str> = std::iter::once("loss")
                .chain(terms.iter().map(|(k, _)| *k).filter(|k| *k != "loss"))
                .collect();
            plot_losses(
                &run_dir.join("loss.png"),
                &metrics.records()?,
                &keys,
                &format!("{:?} pretraining", objective.kind),
            )?;
            write_preview::<B>(
                &run_dir.join(format!("recon_epoch{epoch:03}.png")),
                &model,
                &config,
                &objective,
                &preview,
                &format,
                device,
            )?;
        }
    }
    bar.finish();
    save_encoder::<B>(&run_dir, &model, &config, &format)?;
    Ok(run_dir)
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

fn write_json(path: &Path, value: &Value) -> Result<()> {
    crate::fsutil::write_atomic(path, &serde_json::to_vec_pretty(value)?)
}

/// The reconstruction grid of a fixed batch: per row I1, I2 (as they entered the mix), their
/// masked versions, the encoder input, its reconstruction, Î1, Î2 (SimMIM: image, masked image,
/// reconstruction).
fn write_preview<B: AutodiffBackend>(
    path: &Path,
    model: &PretrainModel<B>,
    config: &SwinConfig,
    objective: &ObjectiveConfig,
    preview: &HostPairs,
    format: &ImageFormat,
    device: &B::Device,
) -> Result<()> {
    let grid = config.img_size / objective.mask_patch_size;
    let batch = preview
        .clone()
        .into_device::<B::InnerBackend>(format, grid, device);
    let out = objective.forward(&model.valid(), config, batch);
    let rows = preview.batch.min(4);
    let plane = format.channels * format.size * format.size;
    let split = |t: Tensor<B::InnerBackend, 4>| -> Vec<Vec<f32>> {
        let data: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32");
        data.chunks(plane).take(rows).map(<[f32]>::to_vec).collect()
    };
    let masked = |images: &[f32], cells: &[f32]| -> Vec<Vec<f32>> {
        (0..rows)
            .map(|i| {
                let cell = |p: usize| {
                    let (y, x) = (
                        (p % (format.size * format.size)) / format.size,
                        p % format.size,
                    );
                    cells[i * grid * grid
                        + (y / objective.mask_patch_size) * grid
                        + x / objective.mask_patch_size]
                };
                (0..plane)
                    .map(|p| images[i * plane + p] * (1.0 - cell(p)))
                    .collect()
            })
            .collect()
    };
    let originals1: Vec<Vec<f32>> = preview
        .first
        .chunks(plane)
        .take(rows)
        .map(<[f32]>::to_vec)
        .collect();
    let mut columns = vec![originals1, masked(&preview.first, &preview.mask1)];
    if let Some((second, mask2)) = &preview.second {
        columns.insert(
            1,
            second
                .chunks(plane)
                .take(rows)
                .map(<[f32]>::to_vec)
                .collect(),
        );
        columns.push(masked(second, mask2));
        columns.push(split(out.input));
    }
    columns.push(split(out.reconstruction));
    if let Some(second) = out.second {
        columns.push(split(out.first));
        columns.push(split(second));
    }
    let table: Vec<Vec<Vec<f32>>> = (0..rows)
        .map(|r| columns.iter().map(|c| c[r].clone()).collect())
        .collect();
    image_grid(
        path,
        &table,
        format.channels,
        format.size,
        &format.normalization,
    )
}

/// The final encoder: burn record (`encoder.mpk`), timm-layout safetensors
/// (`encoder.safetensors`, loadable by timm's SwinTransformer with num_classes=0) and
/// `encoder.json` (model config and input normalisation).
fn save_encoder<B: AutodiffBackend>(
    run_dir: &Path,
    model: &PretrainModel<B>,
    config: &SwinConfig,
    format: &ImageFormat,
) -> Result<()> {
    let encoder = model.encoder.valid();
    encoder.clone().save_file(
        run_dir.join("encoder"),
        &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
    )?;
    let snapshots = encoder.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = snapshots
        .into_iter()
        .filter(|s| s.full_path() != "mask_token")
        .map(|s| {
            let data = s
                .to_data()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .convert::<f32>();
            let shape = data.shape.to_vec();
            Ok((s.full_path(), shape, data.as_bytes().to_vec()))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            Ok((
                k.clone(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytes,
                )?,
            ))
        })
        .collect::<Result<_>>()?;
    crate::fsutil::write_atomic(
        &run_dir.join("encoder.safetensors"),
        &safetensors::serialize(views, None)?,
    )?;
    write_json(
        &run_dir.join("encoder.json"),
        &json!({ "model": config, "normalization": format.normalization, "eesmm_version": env!("CARGO_PKG_VERSION") }),
    )
}
