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
use super::mask::{complement, random_mask};
use super::mix::{warp, Affine};
use super::objective::{
    no_weight_decay, DeviceBatch, MaskPairing, ObjectiveConfig, ObjectiveKind, PretrainModel,
    SecondImage,
};
use crate::backend::{initialised_on_cpu, Cpu};
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
    second: Option<HostSecond>,
    batch: usize,
}

/// EESMM's second images `[B, C, S, S]`, their masks `[B, g, g]`, and λ1, λ2 per pair `[B]`.
#[derive(Clone)]
struct HostSecond {
    images: Vec<f32>,
    masks: Vec<f32>,
    lambda1: Vec<f32>,
    lambda2: Vec<f32>,
}

/// What is drawn for one encoder input: the warps A and B, the masks, and λ1.
struct Draw {
    warps: (Affine, Affine),
    masks: Vec<Vec<f32>>,
    lambda1: f32,
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
        let draws: Vec<Draw> = (0..self.batch)
            .map(|_| self.draw(&mut rng, grid))
            .skip(rows.start)
            .take(rows.len())
            .collect();
        let batch = rows.len();
        let (c, s) = (self.format.channels, self.format.size);
        let image = |i: usize| &images[i * plane..(i + 1) * plane];
        let masks = |k: usize| draws.iter().flat_map(|d| d.masks[k].clone()).collect();
        Ok(match self.objective.kind {
            ObjectiveKind::Simmim => HostPairs {
                first: images.clone(),
                mask1: masks(0),
                second: None,
                batch,
            },
            ObjectiveKind::Eesmm => {
                // Pair i is (image 2i, image 2i+1): T1 = A(I1), T2 = B(I2).
                let warped: Vec<(Vec<f32>, Vec<f32>)> = draws
                    .par_iter()
                    .enumerate()
                    .map(|(i, Draw { warps: (a, b), .. })| {
                        (warp(image(2 * i), c, s, a), warp(image(2 * i + 1), c, s, b))
                    })
                    .collect();
                let lambda1: Vec<f32> = draws.iter().map(|d| d.lambda1).collect();
                HostPairs {
                    first: warped.iter().flat_map(|(t1, _)| t1.clone()).collect(),
                    mask1: masks(0),
                    second: Some(HostSecond {
                        images: warped.iter().flat_map(|(_, t2)| t2.clone()).collect(),
                        masks: masks(1),
                        lambda2: lambda1
                            .iter()
                            .map(|&l| self.objective.lambda2_for(l))
                            .collect(),
                        lambda1,
                    }),
                    batch,
                }
            }
        })
    }
}

impl Sampler {
    /// One encoder input's warps, masks (one per image; the second the complement of the first
    /// with `masks: complementary`) and λ1 (drawn only when it is a range).
    fn draw(&self, rng: &mut StdRng, grid: usize) -> Draw {
        let objective = &self.objective;
        let warps = objective.augment.sample(rng, self.format.size);
        let first = random_mask(rng, grid, objective.mask_ratio);
        let masks = match (objective.images_per_sample(), objective.masks) {
            (1, _) => vec![first],
            (_, MaskPairing::Complementary) => {
                let second = complement(&first);
                vec![first, second]
            }
            (_, MaskPairing::Independent) => {
                let second = random_mask(rng, grid, objective.mask_ratio);
                vec![first, second]
            }
        };
        let lambda1 = objective.draw_lambda1(rng);
        Draw {
            warps,
            masks,
            lambda1,
        }
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
        let weights = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [b]), device);
        DeviceBatch {
            first: images(self.first),
            mask1: masks(self.mask1),
            second: self.second.map(|second| SecondImage {
                image: images(second.images),
                mask: masks(second.masks),
                lambda1: weights(second.lambda1),
                lambda2: weights(second.lambda2),
            }),
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
    if !runner::writes_outputs() {
        return Ok(stage.out_dir.clone());
    }
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
            title: format!("{} pretraining", self.stage.objective.kind.name()),
        })
    }

    fn initial_model(&self, device: &B::Device) -> Result<PretrainModel<B>> {
        let (config, objective) = (&self.config, &self.stage.objective);
        initialised_on_cpu(
            self.stage.seed,
            |host| PretrainModel::<Cpu>::new(config, objective, host),
            PretrainModel::new(config, objective, device),
        )
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

    /// `recon_epochNNN.png` of a fixed batch and, for EESMM, its separation figures in
    /// `metrics.jsonl`.
    fn end_of_epoch(
        &mut self,
        weights: &Weights<B, PretrainModel<B>>,
        epoch: usize,
        step: usize,
        metrics: &MetricsLog,
    ) -> Result<()> {
        let preview = self.preview.as_ref().context("no preview batch drawn")?;
        let path = self
            .stage
            .out_dir
            .join(format!("recon_epoch{epoch:03}.png"));
        let figures = write_preview::<B>(&path, weights, &self.objective(), preview, &self.device)?;
        if let Some([first, second]) = figures {
            metrics.append(&SeparationRecord {
                step,
                epoch,
                separation_first: first,
                separation_second: second,
            })?;
            println!("epoch {epoch}: separation Î1 {first:.2}, Î2 {second:.2} (1 = none)");
        }
        Ok(())
    }
}

/// EESMM's separation figures on the preview batch at the end of an epoch (see
/// [`super::losses::separation`]).
#[derive(serde::Serialize)]
struct SeparationRecord {
    step: usize,
    epoch: usize,
    separation_first: f64,
    separation_second: f64,
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
        let monitors = match output.separation {
            Some([first, second]) => vec![("separation", (first + second) / 2.0)],
            None => Vec::new(),
        };
        StepLoss {
            total: output.total,
            terms: output.terms,
            monitors,
        }
    }
}

/// The reconstruction grid of a fixed batch. Per row, EESMM: I1, I2 (as they entered the mix),
/// their masked versions, the encoder input, its reconstruction, then Î1 and Î2 pasted into
/// their images' masked cells (visible cells show the image, as in MAE's and SimMIM's figures:
/// only masked cells are trained). SimMIM: image, masked image, reconstruction pasted the same way.
/// Returns EESMM's separation figures of the batch (Î1, Î2), which the grid's caption shows.
fn write_preview<B: TrainBackend>(
    path: &Path,
    weights: &PretrainModel<B::InnerBackend>,
    loss: &PairLoss,
    preview: &HostPairs,
    device: &B::Device,
) -> Result<Option<[f64; 2]>> {
    let (objective, format, grid) = (&loss.objective, &loss.format, loss.grid);
    let batch = preview
        .clone()
        .into_device::<B::InnerBackend>(format, grid, device);
    let out = objective.forward(weights, batch);
    let figures = out
        .separation
        .map(|pair| pair.map(|t| t.into_scalar().elem::<f64>()));
    let caption = figures
        .map(|[first, second]| format!("separation Î1 {first:.2}, Î2 {second:.2} (1 = none)"));
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
        (
            Some(HostSecond {
                images: second,
                masks: mask2,
                ..
            }),
            Some(second_out),
        ) => vec![
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
        caption.as_deref(),
    )?;
    Ok(figures)
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
