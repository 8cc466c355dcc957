//! What `eval`, `linear_probe` and `knn` are given (their stages' YAML schemas) and what they run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::features::map_dataset;
use super::metrics::ClassificationReport;
use super::probe::{knn, linear_probe, FeatureSet, KnnConfig, LinearProbeConfig};
use crate::data::loader::ImageFormat;
use crate::data::preprocess::Resize;
use crate::data::{DataConfig, Dataset};
use crate::kernels::SwinOps;
use crate::model::load_model;
use crate::model::saved::SavedModel;
use crate::model::{architecture, Swin, SwinConfig};
use crate::train::config::{default_device, parse_device};
use crate::with_backend;

fn default_batch() -> usize {
    128
}

/// `eval`: top-1/top-5, per-class accuracy and the confusion matrix of a trained classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Model preset. Default: none (the architecture in the weights' `.json` sidecar).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// A classifier: `classifier.safetensors` of a fine-tuning run, or any timm checkpoint
    /// with a head. Required.
    pub weights: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu`. Default: `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Where `eval.json` and `eval_confusion.png` go. Required (in a pipeline:
    /// `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
    /// The labelled images to evaluate on. Required.
    pub data: DataConfig,
    /// Images per forward pass. Default: 128.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// `linear_probe` and `knn`: a frozen encoder's pooled features, judged on labelled data.
/// The two kinds share this schema; each reads its own section (`probe:` or `knn:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Model preset. Default: none (the architecture in the weights' `.json` sidecar).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Encoder weights. Default: none (a randomly initialised encoder, the baseline; then
    /// `model` is required).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu`. Default: `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Seeds the random encoder (without `weights`) and the probe's training. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// Where the report goes. Required (in a pipeline: `<run_dir>/<stage name>`).
    pub out_dir: PathBuf,
    /// Labelled images the probe is trained on (the k-NN's bank). Required.
    pub train_data: DataConfig,
    /// Labelled images the probe is scored on (the k-NN's queries). Required.
    pub test_data: DataConfig,
    /// Images per forward pass while extracting features. Default: 128.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// The linear probe's training (`linear_probe` stages). Default: none (its keys' defaults).
    #[serde(default)]
    pub probe: Option<LinearProbeConfig>,
    /// The k-NN vote (`knn` stages). Default: none (its keys' defaults).
    #[serde(default)]
    pub knn: Option<KnnConfig>,
    /// What is judged: the encoder's pooled features (`encoder`), or the input pixels themselves
    /// (`pixels`: the raw-pixel baselines, a logistic regression and a k-NN on pixels; `model`
    /// gives the size). Default: `encoder`.
    #[serde(default)]
    pub features: FeatureSource,
}

/// `features:` of a probe: `encoder` (default) or `pixels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    #[default]
    Encoder,
    Pixels,
}

impl ProbeConfig {
    /// Checks the settings, not that the files exist.
    pub fn validate(&self) -> Result<()> {
        parse_device(&self.device)?;
        ensure!(
            self.weights.is_some() || self.model.is_some(),
            "model: needed when there are no weights"
        );
        ensure!(
            self.features == FeatureSource::Encoder || self.weights.is_none(),
            "weights: features: pixels judges the input pixels, so no weights are read (remove one of the two)"
        );
        if let Some(model) = &self.model {
            SwinConfig::load(model).context("model")?;
        }
        ensure!(self.batch_size > 0, "batch_size: must be at least 1");
        if let Some(knn) = &self.knn {
            ensure!(knn.k > 0, "knn.k: must be at least 1");
            ensure!(knn.temperature > 0.0, "knn.temperature: must be positive");
        }
        if let Some(probe) = &self.probe {
            ensure!(probe.epochs > 0, "probe.epochs: must be at least 1");
            ensure!(probe.batch_size > 0, "probe.batch_size: must be at least 1");
        }
        Ok(())
    }
}

/// The sidecar of `weights`, if there are weights and they have one.
fn sidecar(weights: Option<&Path>) -> Result<Option<SavedModel>> {
    Ok(match weights {
        Some(w) => SavedModel::read_beside(w)?,
        None => None,
    })
}

/// How image files are resized for the model: as in its training (the sidecar's), else timm's
/// evaluation resize. The same resize goes into its ONNX model card, so `eesmm infer` matches.
fn resize_for(config: &SwinConfig, saved: Option<&SavedModel>) -> Resize {
    saved.map_or_else(
        || Resize::timm_eval(config.img_size),
        |s| s.resize_at(config.img_size),
    )
}

/// How images enter the model: the sidecar's normalisation if the weights have one (what the
/// model was trained with), else the dataset's.
fn input_format(config: &SwinConfig, saved: Option<&SavedModel>, dataset: &Dataset) -> ImageFormat {
    let normalization = saved.map_or(&dataset.normalization, |s| &s.normalization);
    ImageFormat {
        size: config.img_size,
        channels: config.in_chans,
        normalization: normalization.for_channels(config.in_chans),
    }
}

fn write_report(
    out_dir: &Path,
    name: &str,
    report: &ClassificationReport,
    title: &str,
) -> Result<()> {
    crate::fsutil::create_dir(out_dir)?;
    crate::fsutil::write_atomic(
        &out_dir.join(format!("{name}.json")),
        &serde_json::to_vec_pretty(report)?,
    )?;
    report.plot_confusion(&out_dir.join(format!("{name}_confusion.png")), title)
}

impl EvalConfig {
    /// Checks the settings, not that the files exist.
    pub fn validate(&self) -> Result<()> {
        parse_device(&self.device)?;
        if let Some(model) = &self.model {
            SwinConfig::load(model).context("model")?;
        }
        ensure!(self.batch_size > 0, "batch_size: must be at least 1");
        Ok(())
    }

    /// Writes `eval.json` and `eval_confusion.png`; returns the report.
    pub fn run_eval(&self) -> Result<ClassificationReport> {
        with_backend!(parse_device(&self.device)?, |B, device| {
            self.evaluate::<<B as AutodiffBackend>::InnerBackend>(&device)
        })
    }

    fn evaluate<B: SwinOps>(&self, device: &B::Device) -> Result<ClassificationReport> {
        let saved = sidecar(Some(&self.weights))?;
        let config = architecture(self.model.as_deref(), Some(&self.weights), saved.as_ref())?;
        let (model, _) = load_model::<B>(config.clone(), &self.weights, true, device)?;
        let dataset = Arc::new(self.data.load(resize_for(&config, saved.as_ref()))?);
        let format = input_format(&config, saved.as_ref(), &dataset);
        let report = classify_dataset(&model, &dataset, &format, self.batch_size, device)?;
        write_report(&self.out_dir, "eval", &report, "eval")?;
        Ok(report)
    }
}

/// Logits of every image of `dataset` and the report they give.
pub fn classify_dataset<B: SwinOps>(
    model: &Swin<B>,
    dataset: &Arc<Dataset>,
    format: &ImageFormat,
    batch: usize,
    device: &B::Device,
) -> Result<ClassificationReport> {
    let classes = model
        .head
        .as_ref()
        .map(|h| h.fc.weight.dims()[1])
        .context("the model has no classifier head")?;
    ensure!(
        classes == dataset.class_names.len(),
        "the classifier has {classes} outputs but the data has {} classes",
        dataset.class_names.len()
    );
    let (logits, _) = map_dataset(dataset, format, batch, device, "evaluating", |x| {
        model.logits(x)
    })?;
    Ok(ClassificationReport::from_logits(
        &logits,
        &dataset.labels,
        &dataset.class_names,
    ))
}

impl ProbeConfig {
    /// The pooled features of both sets, cached next to the stage's output folder (in
    /// `<out_dir>/../.features/`, keyed by the weights' content, the model and the data) so
    /// that a probe and a k-NN of the same encoder extract them once.
    fn features<B: SwinOps>(
        &self,
        device: &B::Device,
    ) -> Result<(FeatureSet, FeatureSet, Vec<String>)> {
        let saved = sidecar(self.weights.as_deref())?;
        let config = architecture(
            self.model.as_deref(),
            self.weights.as_deref(),
            saved.as_ref(),
        )?;
        let encoder = match (self.features, &self.weights) {
            (FeatureSource::Pixels, _) => None,
            (FeatureSource::Encoder, Some(weights)) => {
                Some(load_model::<B>(config.clone(), weights, false, device)?.0)
            }
            (FeatureSource::Encoder, None) => {
                B::seed(device, self.seed);
                let mut config = config.clone();
                config.num_classes = 0;
                Some(config.init::<B>(device))
            }
        };
        let weights_key = match (self.features, &self.weights) {
            (FeatureSource::Pixels, _) => "pixels".to_string(),
            (FeatureSource::Encoder, Some(w)) => crate::hash::sha256_file(w)?,
            (FeatureSource::Encoder, None) => format!("random-{}", self.seed),
        };
        let mut sets = Vec::new();
        let mut class_names = Vec::new();
        for (what, data) in [("train", &self.train_data), ("test", &self.test_data)] {
            let dataset = Arc::new(data.load(resize_for(&config, saved.as_ref()))?);
            let format = input_format(&config, saved.as_ref(), &dataset);
            let key = format!(
                "{weights_key}{}{}{:?}",
                serde_json::to_string(&config)?,
                serde_json::to_string(data)?,
                format
            );
            let digest = &crate::hash::sha256_hex(key.as_bytes())[..24];
            let cache = self
                .out_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join(".features")
                .join(format!("{digest}.npy"));
            let (rows, dim) = match crate::npy::read(&cache) {
                Ok(array) if array.shape.first() == Some(&dataset.len()) => {
                    (array.data, array.shape[1])
                }
                _ => {
                    let (rows, dim) = map_dataset(
                        &dataset,
                        &format,
                        self.batch_size,
                        device,
                        &format!("{what} features"),
                        |x| match &encoder {
                            Some(encoder) => encoder.forward(x), // [b, C_f]
                            None => {
                                let b = x.dims()[0];
                                x.reshape([b as i32, -1]) // [b, C·S·S]
                            }
                        },
                    )?;
                    if let Some(dir) = cache.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    crate::npy::write(&cache, &[dataset.len(), dim], &rows)?;
                    (rows, dim)
                }
            };
            sets.push(FeatureSet {
                dim,
                rows,
                labels: dataset.labels.clone(),
            });
            class_names = dataset.class_names.clone();
        }
        let test = sets.pop().expect("two sets");
        let train = sets.pop().expect("two sets");
        Ok((train, test, class_names))
    }
}

impl ProbeConfig {
    /// The linear probe: writes `linear_probe.json` and `linear_probe_confusion.png`.
    pub fn run_linear_probe(&self) -> Result<ClassificationReport> {
        let config = self.probe.clone().unwrap_or_default();
        with_backend!(parse_device(&self.device)?, |B, device| {
            let (train, test, names) =
                self.features::<<B as AutodiffBackend>::InnerBackend>(&device)?;
            let report = linear_probe::<B>(&train, &test, &names, &config, self.seed, &device)?;
            write_report(&self.out_dir, "linear_probe", &report, "linear probe")?;
            Ok(report)
        })
    }

    /// The k-NN vote: writes `knn.json` and `knn_confusion.png`.
    pub fn run_knn(&self) -> Result<ClassificationReport> {
        let config = self.knn.clone().unwrap_or_default();
        with_backend!(parse_device(&self.device)?, |B, device| {
            type I<B> = <B as AutodiffBackend>::InnerBackend;
            let (train, test, names) = self.features::<I<B>>(&device)?;
            let report = knn::<I<B>>(&train, &test, &names, &config, &device);
            write_report(&self.out_dir, "knn", &report, &format!("{}-NN", config.k))?;
            Ok(report)
        })
    }
}
