//! Judging a frozen encoder without fine-tuning it: a linear classifier trained on its pooled
//! features (linear probe) and a weighted k-nearest-neighbour vote (k-NN, as in DINO).

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use super::metrics::ClassificationReport;
use crate::data::loader::epoch_order;
use crate::kernels::TrainBackend;
use crate::train::optim::{CosineSchedule, GroupedAdamW, OptimizerConfig};

/// Pooled features of a labelled set: `rows` is `[N, dim]` flattened.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub rows: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<usize>,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.rows.clone(), [self.len(), self.dim]),
            device,
        )
    }
}

/// `linear_probe:` settings: AdamW on standardised features, cosine schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// Passes over the training features. Default: 50.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// AdamW's peak learning rate (cosine schedule). Default: 1e-3.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// AdamW's weight decay. Default: 0.0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Features per step. Default: 256.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_epochs() -> usize {
    50
}
fn default_lr() -> f64 {
    1e-3
}
fn default_batch() -> usize {
    256
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            lr: default_lr(),
            weight_decay: 0.0,
            batch_size: default_batch(),
        }
    }
}

/// Per-dimension mean and std of the training features (the parameter-free BatchNorm that
/// MAE puts before its probe head).
fn standardizer(train: &FeatureSet) -> (Vec<f32>, Vec<f32>) {
    let n = train.len().max(1) as f32;
    let mut mean = vec![0.0f32; train.dim];
    for row in train.rows.chunks(train.dim) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
    }
    let mut std = vec![0.0f32; train.dim];
    for row in train.rows.chunks(train.dim) {
        for ((s, v), m) in std.iter_mut().zip(row).zip(&mean) {
            *s += (v - m).powi(2) / n;
        }
    }
    (mean, std.into_iter().map(|v| v.sqrt() + 1e-6).collect())
}

fn standardized(set: &FeatureSet, (mean, std): &(Vec<f32>, Vec<f32>)) -> FeatureSet {
    let rows = set
        .rows
        .chunks(set.dim)
        .flat_map(|row| row.iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s))
        .collect();
    FeatureSet {
        rows,
        ..set.clone()
    }
}

/// Trains a linear classifier on `train`'s features and reports it on `test`'s.
pub fn linear_probe<B: TrainBackend>(
    train: &FeatureSet,
    test: &FeatureSet,
    class_names: &[String],
    config: &LinearProbeConfig,
    seed: u64,
    device: &B::Device,
) -> Result<ClassificationReport> {
    let classes = class_names.len();
    let stats = standardizer(train);
    let (train, test) = (standardized(train, &stats), standardized(test, &stats));
    B::seed(device, seed);
    let mut head: Linear<B> = LinearConfig::new(train.dim, classes).init(device);
    let optimizer_config = OptimizerConfig {
        base_lr: config.lr,
        warmup_lr: 0.0,
        min_lr: 0.0,
        warmup_epochs: 0.0,
        weight_decay: config.weight_decay,
        betas: [0.9, 0.999],
        eps: 1e-8,
        clip_grad: None,
        layer_decay: None,
    };
    let mut optimizer = GroupedAdamW::new(
        &optimizer_config,
        &head,
        crate::model::swin::no_weight_decay,
    );
    let batch = config.batch_size.min(train.len()).max(1);
    let steps_per_epoch = train.len() / batch;
    // The learning rate is per batch as given (no /512 scaling: a probe is not a SimMIM run).
    let schedule = CosineSchedule::new(
        &optimizer_config,
        512,
        steps_per_epoch,
        steps_per_epoch * config.epochs,
    );
    let features = train.tensor::<B>(device);
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            train.labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            [train.len()],
        ),
        device,
    );
    for epoch in 0..config.epochs {
        let order = epoch_order(train.len(), seed, epoch);
        for step in 0..steps_per_epoch {
            let indices: Vec<i64> = order[step * batch..(step + 1) * batch]
                .iter()
                .map(|&i| i as i64)
                .collect();
            let index = Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [batch]), device);
            let x = features.clone().select(0, index.clone()); // [b, D]
            let y = labels.clone().select(0, index); // [b]
            let logits = head.forward(x); // [b, K]
            let loss = log_softmax(logits, 1)
                .gather(1, y.unsqueeze_dim(1))
                .mean()
                .neg();
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            (head, _) = optimizer.step(schedule.at(epoch * steps_per_epoch + step), head, grads);
        }
    }
    let head = head.valid();
    let logits = head.forward(test.tensor::<B::InnerBackend>(device));
    let logits: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32");
    Ok(ClassificationReport::from_logits(
        &logits,
        &test.labels,
        class_names,
    ))
}

/// `knn:` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnConfig {
    /// Nearest neighbours (by cosine similarity) that vote. Default: 20.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Votes are weighted `exp(cosine / temperature)`, > 0. Default: 0.07.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_k() -> usize {
    20
}
fn default_temperature() -> f64 {
    0.07
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: default_k(),
            temperature: default_temperature(),
        }
    }
}

fn l2_normalized<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12); // [N, 1]
    x / norm
}

/// Classifies each test feature by the cosine-weighted vote of its `k` nearest training
/// features; the votes are the report's scores (so top-5 ranks classes by vote).
pub fn knn<B: Backend>(
    train: &FeatureSet,
    test: &FeatureSet,
    class_names: &[String],
    config: &KnnConfig,
    device: &B::Device,
) -> ClassificationReport {
    let classes = class_names.len();
    let k = config.k.min(train.len());
    let bank = l2_normalized(train.tensor::<B>(device)).transpose(); // [D, N_train]
    let queries = l2_normalized(test.tensor::<B>(device)); // [N_test, D]
    let mut votes = vec![0.0f32; test.len() * classes];
    let chunk = 512;
    for start in (0..test.len()).step_by(chunk) {
        let end = (start + chunk).min(test.len());
        let similarity = queries.clone().slice(start..end).matmul(bank.clone()); // [c, N_train]
        let (values, indices) = similarity.topk_with_indices(k, 1); // [c, k]
        let values: Vec<f32> = values.into_data().convert::<f32>().to_vec().expect("f32");
        let indices: Vec<i64> = indices.into_data().convert::<i64>().to_vec().expect("i64");
        for (row, (sims, neighbours)) in values.chunks(k).zip(indices.chunks(k)).enumerate() {
            for (&s, &j) in sims.iter().zip(neighbours) {
                let label = train.labels[j as usize];
                votes[(start + row) * classes + label] +=
                    (s as f64 / config.temperature).exp() as f32;
            }
        }
    }
    ClassificationReport::from_logits(&votes, &test.labels, class_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Autodiff<crate::backend::Cpu>;

    /// Two Gaussian blobs in 4-D around ±e0: both methods separate them.
    fn blobs(n: usize, seed: u64) -> FeatureSet {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rows = Vec::new();
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        for &label in &labels {
            let centre = if label == 0 { 1.0 } else { -1.0 };
            rows.push(centre + rng.random_range(-0.5..0.5));
            for _ in 0..3 {
                rows.push(rng.random_range(-1.0..1.0));
            }
        }
        FeatureSet {
            rows,
            dim: 4,
            labels,
        }
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn the_linear_probe_separates_blobs() {
        let config = LinearProbeConfig {
            epochs: 20,
            lr: 1e-2,
            batch_size: 32,
            ..Default::default()
        };
        let report = linear_probe::<B>(
            &blobs(256, 0),
            &blobs(128, 1),
            &names(),
            &config,
            0,
            &Default::default(),
        )
        .unwrap();
        assert!(report.top1 > 0.97, "{}", report.top1);
    }

    #[test]
    fn knn_votes_by_nearest_neighbours() {
        let report = knn::<crate::backend::Cpu>(
            &blobs(256, 0),
            &blobs(128, 1),
            &names(),
            &KnnConfig {
                k: 5,
                temperature: 0.07,
            },
            &Default::default(),
        );
        assert!(report.top1 > 0.9, "{}", report.top1);
        assert_eq!(report.images, 128);
    }
}
