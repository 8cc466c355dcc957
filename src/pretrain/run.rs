//! The pretraining run: batches prepared ahead on a background thread, one optimizer step per
//! `accumulation` micro-batches, checkpoints, metrics, plots, and the final encoder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use super::config::PretrainConfig;
use super::mask::random_mask;
use super::mix::warp;
use super::objective::{
    no_weight_decay, DeviceBatch, ObjectiveConfig, ObjectiveKind, PretrainModel,
};
use crate::data::loader::{host_batch, images_tensor, CropAugment, EpochSlices, ImageFormat};
use crate::data::preprocess::Resize;
use crate::data::Dataset;
use crate::kernels::TrainBackend;
use crate::model::saved::SavedModel;
use crate::model::SwinConfig;
use crate::train::fit::{step_seed, StepLoss};
use crate::train::optim::GroupedAdamW;
use crate::train::replicas::Rank;
use crate::train::report::{image_grid, MetricsLog};
use crate::train::run::{self as runner, BatchSampler, Objective, RunSpec, Task, Weights};
use crate::with_backend;

/// Runs a pretraining stage, resuming from `resume` or else from the run's latest checkpoint.
pub fn run(stage: &PretrainConfig, resume: Option<PathBuf>) -> Result<PathBuf> {
    with_backend!(each stage.devices()?, |B, devices| train::<B>(
        stage, resume, &devices
    ))
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
#[derive(Clone)]
struct Sampler {
    dataset: Arc<Dataset>,
    format: ImageFormat,
    crop: Option<CropAugment>,
    objective: ObjectiveConfig,
    /// Encoder inputs per micro-batch, over all replicas.
    batch: usize,
    seed: u64,
    slices: EpochSlices,
    /// This replica's share of each micro-batch.
    rank: Rank,
}

impl BatchSampler for Sampler {
    type Batch = HostPairs;

    /// This replica's rows of micro-batch `micro` (counted from the start of training): their
    /// images, transforms and masks, drawn as for the whole micro-batch.
    fn prepare(&mut self, micro: usize) -> Result<HostPairs> {
        let per_sample = self.objective.images_per_sample();
        let rows = self.rank.rows(self.batch);
        let first = rows.start * per_sample;
        let indices = self.slices.indices(micro)[first..rows.end * per_sample].to_vec();
        let crop = self
            .crop
            .as_ref()
            .map(|augment| (augment, step_seed(self.seed ^ 0xC809, micro)));
        let images = host_batch(&self.dataset, &indices, first, &self.format, crop)?.images;
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
            .skip(rows.start)
            .take(rows.len())
            .collect();
        let batch = rows.len();
        let (c, s) = (self.format.channels, self.format.size);
        let image = |i: usize| &images[i * plane..(i + 1) * plane];
        Ok(match self.objective.kind {
            ObjectiveKind::Simmim => HostPairs {
                first: images.clone(),
                mask1: draws.iter().flat_map(|(_, m)| m[0].clone()).collect(),
                second: None,
                batch,
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
                    batch,
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
        let b = self.batch;
        let images = |v: Vec<f32>| images_tensor::<B>(v, format, device);
        let masks =
            |v: Vec<f32>| Tensor::<B, 3>::from_data(TensorData::new(v, [b, grid, grid]), device);
        DeviceBatch {
            first: images(self.first),
            mask1: masks(self.mask1),
            second: self.second.map(|(t2, m2)| (images(t2), masks(m2))),
        }
    }
}

fn train<B: TrainBackend>(
    stage: &PretrainConfig,
    resume: Option<PathBuf>,
    devices: &[B::Device],
) -> Result<PathBuf> {
    let config = stage.model_config()?;
    let dataset = Arc::new(stage.data.load(Resize::timm_eval(config.img_size))?);
    let format = ImageFormat {
        size: config.img_size,
        channels: config.in_chans,
        normalization: dataset.normalization.for_channels(config.in_chans),
    };
    let mut task = PretrainTask::<B> {
        stage,
        config: config.clone(),
        dataset: dataset.clone(),
        format: format.clone(),
        preview: None,
        device: devices[0].clone(),
    };
    let trained = runner::run(&mut task, resume, devices)?;
    let resize = dataset.resize(config.img_size);
    save_encoder::<B>(&stage.out_dir, &trained.model, &config, &format, resize)?;
    Ok(stage.out_dir.clone())
}

/// Pretraining as a training task: the encoder and decoder of the objective, masked pairs (or
/// single images) as micro-batches, and a reconstruction grid of a fixed batch per epoch.
struct PretrainTask<'a, B: TrainBackend> {
    stage: &'a PretrainConfig,
    config: SwinConfig,
    dataset: Arc<Dataset>,
    format: ImageFormat,
    /// The fixed batch of the reconstruction grids (the first micro-batch), drawn once.
    preview: Option<HostPairs>,
    device: B::Device,
}

impl<B: TrainBackend> Task<B> for PretrainTask<'_, B> {
    type Model = PretrainModel<B>;
    type Sampler = Sampler;
    type Objective = PairLoss;

    fn spec(&self) -> Result<RunSpec<'_>> {
        Ok(RunSpec {
            run_dir: &self.stage.out_dir,
            train: &self.stage.train,
            optimizer: &self.stage.optimizer,
            seed: self.stage.seed,
            images: self.dataset.len(),
            images_per_sample: self.stage.objective.images_per_sample(),
            ema: None,
            stage: serde_json::to_value(self.stage)?,
            title: format!("{:?} pretraining", self.stage.objective.kind),
        })
    }

    fn initial_model(&self, device: &B::Device) -> Result<PretrainModel<B>> {
        Ok(PretrainModel::new(
            &self.config,
            &self.stage.objective,
            device,
        ))
    }

    fn optimizer(&self, model: &PretrainModel<B>) -> GroupedAdamW<B, PretrainModel<B>> {
        GroupedAdamW::new(&self.stage.optimizer, model, no_weight_decay)
    }

    /// Also draws the preview batch, the first micro-batch of training, once.
    fn sampler(&mut self, slices: EpochSlices, rank: Rank) -> Result<Sampler> {
        let sampler = Sampler {
            dataset: self.dataset.clone(),
            format: self.format.clone(),
            crop: self.stage.data.augment.clone(),
            objective: self.stage.objective.clone(),
            batch: self.stage.train.batch_size,
            seed: self.stage.seed,
            slices,
            rank,
        };
        if self.preview.is_none() {
            let mut whole_batch = Sampler {
                rank: Rank::SINGLE,
                ..sampler.clone()
            };
            self.preview = Some(whole_batch.prepare(0)?);
        }
        Ok(sampler)
    }

    fn objective(&self) -> PairLoss {
        PairLoss {
            objective: self.stage.objective.clone(),
            format: self.format.clone(),
            grid: self.config.img_size / self.stage.objective.mask_patch_size,
        }
    }

    /// `recon_epochNNN.png` of a fixed batch.
    fn end_of_epoch(
        &mut self,
        weights: &Weights<B, PretrainModel<B>>,
        epoch: usize,
        _step: usize,
        _metrics: &MetricsLog,
    ) -> Result<()> {
        let preview = self.preview.as_ref().context("no preview batch drawn")?;
        let path = self
            .stage
            .out_dir
            .join(format!("recon_epoch{epoch:03}.png"));
        write_preview::<B>(&path, weights, &self.objective(), preview, &self.device)
    }
}

/// The pretraining loss of a micro-batch, on any replica.
#[derive(Clone)]
struct PairLoss {
    objective: ObjectiveConfig,
    format: ImageFormat,
    /// Mask cells per side.
    grid: usize,
}

impl<B: TrainBackend> Objective<B, PretrainModel<B>, HostPairs> for PairLoss {
    fn loss(&self, model: &PretrainModel<B>, host: HostPairs, device: &B::Device) -> StepLoss<B> {
        let batch = host.into_device(&self.format, self.grid, device);
        let output = self.objective.forward(model, batch);
        StepLoss {
            total: output.total,
            terms: output.terms,
        }
    }
}

/// The reconstruction grid of a fixed batch. Per row, EESMM: I1, I2 (as they entered the mix),
/// their masked versions, the encoder input, its reconstruction, then Î1 and Î2 pasted into
/// their images' masked cells (visible cells show the image, as in MAE's and SimMIM's figures:
/// only masked cells are trained). SimMIM: image, masked image, reconstruction pasted the same way.
fn write_preview<B: TrainBackend>(
    path: &Path,
    weights: &PretrainModel<B::InnerBackend>,
    loss: &PairLoss,
    preview: &HostPairs,
    device: &B::Device,
) -> Result<()> {
    let (objective, format, grid) = (&loss.objective, &loss.format, loss.grid);
    let batch = preview
        .clone()
        .into_device::<B::InnerBackend>(format, grid, device);
    let out = objective.forward(weights, batch);
    let rows = preview.batch.min(4);
    let (size, plane) = (format.size, format.channels * format.size * format.size);
    let to_rows = |images: &[f32]| -> Vec<Vec<f32>> {
        images
            .chunks(plane)
            .take(rows)
            .map(<[f32]>::to_vec)
            .collect()
    };
    let predicted = |t: Tensor<B::InnerBackend, 4>| -> Vec<Vec<f32>> {
        to_rows(&t.into_data().convert::<f32>().to_vec::<f32>().expect("f32"))
    };
    // `images` where their cell is visible; where it is masked, `fill` (0, the mean, if none).
    let paste = |images: &[f32], cells: &[f32], fill: Option<&[Vec<f32>]>| -> Vec<Vec<f32>> {
        (0..rows)
            .map(|i| {
                (0..plane)
                    .map(|p| {
                        let (y, x) = ((p % (size * size)) / size, p % size);
                        let m = objective.mask_patch_size;
                        match cells[i * grid * grid + (y / m) * grid + x / m] == 1.0 {
                            true => fill.map_or(0.0, |f| f[i][p]),
                            false => images[i * plane + p],
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let (first, mask1) = (&preview.first, &preview.mask1);
    let columns = match (&preview.second, out.second) {
        (Some((second, mask2)), Some(second_out)) => vec![
            to_rows(first),
            to_rows(second),
            paste(first, mask1, None),
            paste(second, mask2, None),
            predicted(out.input),
            predicted(out.reconstruction),
            paste(first, mask1, Some(&predicted(out.first))),
            paste(second, mask2, Some(&predicted(second_out))),
        ],
        _ => vec![
            to_rows(first),
            paste(first, mask1, None),
            paste(first, mask1, Some(&predicted(out.reconstruction))),
        ],
    };
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
/// `encoder.json` (model config, input normalisation and resize).
fn save_encoder<B: TrainBackend>(
    run_dir: &Path,
    model: &PretrainModel<B>,
    config: &SwinConfig,
    format: &ImageFormat,
    resize: Resize,
) -> Result<()> {
    let encoder = model.encoder.valid();
    encoder.clone().save_file(
        run_dir.join("encoder"),
        &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
    )?;
    SavedModel::new(
        config.clone(),
        format.normalization.clone(),
        Vec::new(),
        resize,
    )
    .save(&encoder, &run_dir.join("encoder.safetensors"))
}
