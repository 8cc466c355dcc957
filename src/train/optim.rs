//! AdamW with the parameter groups of timm/SimMIM (no weight decay on norms, biases,
//! relative-position-bias tables and the mask token), a cosine schedule with linear warm-up,
//! and global-norm gradient clipping (PyTorch's `clip_grad_norm_`).
//!

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;

use anyhow::Context;
use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use burn_store::ModuleSnapshot;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

/// `optimizer:` in a training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate for an effective batch of 512 images, scaled linearly to the real
    /// one (SimMIM); > 0. Required.
    pub base_lr: f64,
    /// Learning rate at the start of the warm-up (per 512 images, scaled like `base_lr`), in
    /// [0, base_lr]. Default: 5e-7.
    #[serde(default = "default_warmup_lr")]
    pub warmup_lr: f64,
    /// Learning rate at the end of the cosine decay (per 512 images, scaled like `base_lr`), in
    /// [0, base_lr]. Default: 5e-6.
    #[serde(default = "default_min_lr")]
    pub min_lr: f64,
    /// Epochs of linear warm-up from `warmup_lr` to the peak, ≥ 0 (fractions allowed).
    /// Default: 0.0.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// AdamW's decoupled weight decay, ≥ 0 (not on biases, norms, bias tables or tokens).
    /// Default: 0.05.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// AdamW's β1 and β2, each in [0, 1). Default: [0.9, 0.999].
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW's ε, > 0. Default: 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global gradient-norm limit, > 0 (`grad_norm` in `metrics.jsonl` is the norm before it,
    /// logged with or without clipping). Default: none (no clipping).
    #[serde(default)]
    pub clip_grad: Option<f64>,
    /// Fine-tuning only: layer-wise LR decay (BEiT/SimMIM), in (0, 1]: a parameter `k` layers
    /// below the head gets `layer_decay^k` of the learning rate. Default: none (every layer
    /// at the full rate).
    #[serde(default)]
    pub layer_decay: Option<f64>,
}

impl OptimizerConfig {
    /// Every value in the range that trains as documented (docs/config.md), naming the key:
    /// a rate that is negative, infinite or NaN, a minimum above the peak, a β outside [0, 1)
    /// or a clip limit ≤ 0 would train wrongly without a word.
    pub fn validate(&self) -> anyhow::Result<()> {
        let key = |name: &str| format!("optimizer.{name}");
        let finite_at_least = |name: &str, value: f64, low: f64| {
            anyhow::ensure!(
                value.is_finite() && value >= low,
                "{}: {value} is not a finite number ≥ {low}",
                key(name)
            );
            Ok(())
        };
        anyhow::ensure!(
            self.base_lr.is_finite() && self.base_lr > 0.0,
            "optimizer.base_lr: {} is not a finite learning rate > 0",
            self.base_lr
        );
        finite_at_least("warmup_lr", self.warmup_lr, 0.0)?;
        finite_at_least("min_lr", self.min_lr, 0.0)?;
        anyhow::ensure!(
            self.min_lr <= self.base_lr && self.warmup_lr <= self.base_lr,
            "optimizer.min_lr, warmup_lr: {} and {} must not exceed base_lr {} (the schedule \
             warms up to base_lr and decays to min_lr)",
            self.min_lr,
            self.warmup_lr,
            self.base_lr
        );
        finite_at_least("warmup_epochs", self.warmup_epochs, 0.0)?;
        finite_at_least("weight_decay", self.weight_decay, 0.0)?;
        for (i, beta) in self.betas.into_iter().enumerate() {
            anyhow::ensure!(
                (0.0..1.0).contains(&beta),
                "optimizer.betas[{i}]: {beta} is not in [0, 1)"
            );
        }
        anyhow::ensure!(
            self.eps.is_finite() && self.eps > 0.0,
            "optimizer.eps: {} is not a finite number > 0",
            self.eps
        );
        if let Some(clip) = self.clip_grad {
            anyhow::ensure!(
                clip.is_finite() && clip > 0.0,
                "optimizer.clip_grad: {clip} is not a finite norm > 0 (leave it out for no clipping)"
            );
        }
        if let Some(decay) = self.layer_decay {
            anyhow::ensure!(
                decay > 0.0 && decay <= 1.0,
                "optimizer.layer_decay: {decay} is not in (0, 1]"
            );
        }
        Ok(())
    }
}

fn default_warmup_lr() -> f64 {
    5e-7
}
fn default_min_lr() -> f64 {
    5e-6
}
fn default_weight_decay() -> f64 {
    0.05
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

/// Learning rate at a step: linear warm-up from `warmup_lr` to `lr`, then a cosine to `min_lr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    pub lr: f64,
    pub warmup_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl CosineSchedule {
    /// The schedule of `config` for `total_steps` optimizer steps of `effective_batch` images,
    /// with every rate scaled by `effective_batch / 512` as SimMIM does.
    pub fn new(
        config: &OptimizerConfig,
        effective_batch: usize,
        steps_per_epoch: usize,
        total_steps: usize,
    ) -> Self {
        let scale = effective_batch as f64 / 512.0;
        Self {
            lr: config.base_lr * scale,
            warmup_lr: config.warmup_lr * scale,
            min_lr: config.min_lr * scale,
            warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as usize,
            total_steps,
        }
    }

    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.warmup_lr
                + (self.lr - self.warmup_lr) * step as f64 / self.warmup_steps as f64;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// One trainable parameter as the optimizer sees it.
#[derive(Debug, Clone)]
struct ParamInfo {
    id: ParamId,
    path: String,
    rank: usize,
    weight_decay: f64,
    /// Multiplies the scheduled learning rate (layer-wise decay when fine-tuning; else 1).
    lr_scale: f64,
}

/// Adam moments of one parameter, flattened: `(step count, m, v)`.
type Moments<B> = (usize, Tensor<B, 1>, Tensor<B, 1>);

/// AdamW (decoupled weight decay, PyTorch's update rule) with per-parameter weight decay and
/// global-norm clipping. burn 0.21's AdamW has one weight decay for every parameter, and its
/// saved moments did not survive a file round trip here (resumed runs diverged), so the
/// moments are kept by parameter path and saved as safetensors.
pub struct GroupedAdamW<B: AutodiffBackend, M> {
    params: Vec<ParamInfo>,
    moments: HashMap<ParamId, Moments<B::InnerBackend>>,
    betas: [f64; 2],
    eps: f64,
    clip_grad: Option<f64>,
    module: PhantomData<M>,
}

/// What one optimizer step reports.
pub struct StepStats {
    /// Global gradient norm before clipping (with or without clipping).
    pub grad_norm: f64,
}

/// Takes one parameter's gradient out of `grads`, flattened to `[numel]`.
fn take_flat<B: Backend>(
    grads: &mut GradientsParams,
    id: ParamId,
    rank: usize,
) -> Option<Tensor<B, 1>> {
    fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
        let n = t.shape().num_elements();
        t.reshape([n])
    }
    match rank {
        1 => grads.remove::<B, 1>(id),
        2 => grads.remove::<B, 2>(id).map(flat),
        3 => grads.remove::<B, 3>(id).map(flat),
        4 => grads.remove::<B, 4>(id).map(flat),
        _ => None,
    }
}

/// Applies `θ ← θ·keep − Δ` (keep = 1 − lr·wd) to every parameter that has an update.
struct ApplyUpdates<B: Backend> {
    updates: HashMap<ParamId, (f64, Tensor<B, 1>)>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ApplyUpdates<B::InnerBackend> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((keep, delta)) = self.updates.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let updated = tensor.inner().mul_scalar(keep) - delta.reshape(shape);
        Param::from_mapped_value(id, Tensor::from_inner(updated).require_grad(), mapper)
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>> GroupedAdamW<B, M> {
    /// The optimizer of `module`'s parameters; those whose path `no_weight_decay` accepts (the
    /// model's own rule, e.g. [`crate::model::swin::no_weight_decay`]) are not decayed.
    pub fn new(config: &OptimizerConfig, module: &M, no_weight_decay: fn(&str) -> bool) -> Self {
        let params = module
            .collect(None, None, false)
            .into_iter()
            .map(|s| {
                let path = s.full_path();
                let weight_decay = if no_weight_decay(&path) {
                    0.0
                } else {
                    config.weight_decay
                };
                ParamInfo {
                    id: s.tensor_id.expect("parameters have ids"),
                    rank: s.shape.num_dims(),
                    path,
                    weight_decay,
                    lr_scale: 1.0,
                }
            })
            .collect();
        Self {
            params,
            moments: HashMap::new(),
            betas: config.betas,
            eps: config.eps,
            clip_grad: config.clip_grad,
            module: PhantomData,
        }
    }

    /// Scales each parameter's learning rate by `scale(path)` (layer-wise LR decay).
    pub fn with_lr_scales(mut self, scale: impl Fn(&str) -> f64) -> Self {
        for param in &mut self.params {
            param.lr_scale = scale(&param.path);
        }
        self
    }

    /// Clips the global gradient norm, updates the moments and applies one AdamW step.
    pub fn step(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> (M, StepStats) {
        let taken: Vec<(usize, Tensor<B::InnerBackend, 1>)> = self
            .params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                take_flat::<B::InnerBackend>(&mut grads, p.id, p.rank).map(|g| (i, g))
            })
            .collect();
        let grad_norm = match taken.is_empty() {
            true => 0.0,
            false => {
                let squares = taken
                    .iter()
                    .map(|(_, g)| g.clone().powi_scalar(2).sum())
                    .collect();
                Tensor::cat(squares, 0)
                    .sum()
                    .sqrt()
                    .into_scalar()
                    .elem::<f64>()
            }
        };
        let scale = match self.clip_grad {
            Some(max_norm) => (max_norm / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        let [b1, b2] = self.betas;
        let mut updates = HashMap::new();
        for (i, grad) in taken {
            let param = &self.params[i];
            let grad = grad.mul_scalar(scale);
            let (time, m, v) = match self.moments.remove(&param.id) {
                Some((t, m, v)) => (
                    t + 1,
                    m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1),
                    v.mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2),
                ),
                None => (
                    1,
                    grad.clone().mul_scalar(1.0 - b1),
                    grad.powi_scalar(2).mul_scalar(1.0 - b2),
                ),
            };
            let m_hat = m.clone().div_scalar(1.0 - b1.powi(time as i32));
            let v_hat = v.clone().div_scalar(1.0 - b2.powi(time as i32));
            let lr = lr * param.lr_scale;
            let delta = (m_hat / v_hat.sqrt().add_scalar(self.eps)).mul_scalar(lr);
            updates.insert(param.id, (1.0 - lr * param.weight_decay, delta));
            self.moments.insert(param.id, (time, m, v));
        }
        let module = module.map(&mut ApplyUpdates::<B::InnerBackend> { updates });
        (module, StepStats { grad_norm })
    }

    /// Saves the moments as safetensors (`<path>.exp_avg`, `<path>.exp_avg_sq`; step counts in
    /// the metadata), keyed by parameter path so they survive new parameter ids.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut host: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut steps = HashMap::new();
        for param in &self.params {
            if let Some((time, m, v)) = self.moments.get(&param.id) {
                for (suffix, t) in [("exp_avg", m), ("exp_avg_sq", v)] {
                    let data = t.clone().into_data().convert::<f32>();
                    host.push((
                        format!("{}.{suffix}", param.path),
                        data.shape.to_vec(),
                        data.as_bytes().to_vec(),
                    ));
                }
                steps.insert(param.path.clone(), time.to_string());
            }
        }
        let views = host
            .iter()
            .map(|(k, shape, bytes)| {
                Ok((
                    k.clone(),
                    TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        crate::fsutil::write_atomic(path, &safetensors::serialize(views, Some(steps))?)
    }

    pub fn load(mut self, path: &Path, device: &B::Device) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes)?;
        let steps = metadata.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(&bytes)?;
        let read = |key: &str| -> anyhow::Result<Tensor<B::InnerBackend, 1>> {
            let view = file
                .tensor(key)
                .with_context(|| format!("{}: no {key}", path.display()))?;
            let data =
                TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), DType::F32);
            Ok(Tensor::from_data(data, device))
        };
        for param in &self.params {
            if let Some(time) = steps.get(&param.path) {
                let m = read(&format!("{}.exp_avg", param.path))?;
                let v = read(&format!("{}.exp_avg_sq", param.path))?;
                self.moments.insert(param.id, (time.parse()?, m, v));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that used to train wrongly without a word (a negative clip flips the gradient, a
    /// minimum above the peak makes the rate climb) or fail only at step 1–2 are refused when
    /// the configuration is read, naming the key and the range.
    #[test]
    fn values_that_would_train_wrongly_are_refused_with_their_range() {
        let read = |extra: &str| {
            crate::yaml::from_str::<OptimizerConfig>(&format!("{{base_lr: 1.0e-2{extra}}}"))
                .unwrap()
                .validate()
                .map_err(|e| e.to_string())
        };
        assert_eq!(read(""), Ok(()));
        assert_eq!(read(", clip_grad: 5.0, min_lr: 1.0e-5"), Ok(()));
        for (extra, expected) in [
            (
                ", clip_grad: -1",
                "optimizer.clip_grad: -1 is not a finite norm > 0",
            ),
            (
                ", clip_grad: 0",
                "optimizer.clip_grad: 0 is not a finite norm > 0",
            ),
            (
                ", min_lr: 10",
                "optimizer.min_lr, warmup_lr: 10 and 0.0000005 must not exceed base_lr 0.01",
            ),
            (
                ", weight_decay: .nan",
                "optimizer.weight_decay: NaN is not a finite number ≥ 0",
            ),
            (
                ", betas: [1.5, -1]",
                "optimizer.betas[0]: 1.5 is not in [0, 1)",
            ),
            (
                ", betas: [0.9, -1]",
                "optimizer.betas[1]: -1 is not in [0, 1)",
            ),
            (", eps: 0", "optimizer.eps: 0 is not a finite number > 0"),
            (
                ", warmup_epochs: -1",
                "optimizer.warmup_epochs: -1 is not a finite number ≥ 0",
            ),
            (
                ", layer_decay: 1.5",
                "optimizer.layer_decay: 1.5 is not in (0, 1]",
            ),
        ] {
            let error = read(extra).unwrap_err();
            assert!(error.starts_with(expected), "{extra}: {error}");
        }
        let infinite = crate::yaml::from_str::<OptimizerConfig>("{base_lr: .inf}").unwrap();
        assert_eq!(
            infinite.validate().unwrap_err().to_string(),
            "optimizer.base_lr: inf is not a finite learning rate > 0"
        );
    }

    #[test]
    fn schedule_warms_up_then_follows_a_cosine() {
        let config = OptimizerConfig {
            base_lr: 1e-3,
            warmup_lr: 0.0,
            min_lr: 1e-5,
            warmup_epochs: 1.0,
            weight_decay: 0.05,
            betas: [0.9, 0.999],
            eps: 1e-8,
            clip_grad: None,
            layer_decay: None,
        };
        let schedule = CosineSchedule::new(&config, 1024, 10, 110); // lr scaled ×2
        assert_eq!(schedule.warmup_steps, 10);
        assert!((schedule.at(0) - 0.0).abs() < 1e-12);
        assert!((schedule.at(5) - 1e-3).abs() < 1e-12);
        assert!((schedule.at(10) - 2e-3).abs() < 1e-12);
        assert!((schedule.at(60) - (2e-5 + 0.5 * (2e-3 - 2e-5))).abs() < 1e-12);
        assert!((schedule.at(110) - 2e-5).abs() < 1e-12);
    }

    /// First AdamW step: m̂ = g and v̂ = g², so each weight moves by lr·g/(|g| + eps) after the
    /// decoupled decay θ·(1 − lr·wd); biases are not decayed.
    #[test]
    fn first_step_follows_pytorchs_adamw() {
        type B = burn::backend::Autodiff<crate::backend::Cpu>;
        let device = Default::default();
        let model = burn::nn::LinearConfig::new(3, 2).init::<B>(&device);
        let (w0, b0) = (
            model.weight.val().into_data(),
            model.bias.as_ref().unwrap().val().into_data(),
        );
        let config: OptimizerConfig =
            crate::yaml::from_str("base_lr: 1.0\nweight_decay: 0.05\n").unwrap();
        let mut optimizer = GroupedAdamW::new(&config, &model, crate::model::swin::no_weight_decay);
        let loss = model
            .forward(Tensor::<B, 4>::ones([1, 1, 1, 3], &device).mul_scalar(2.0))
            .sum(); // dL/dw = 2, dL/db = 1
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (model, _) = optimizer.step(0.1, model, grads);
        let w1: Vec<f32> = model.weight.val().into_data().to_vec().unwrap();
        let b1: Vec<f32> = model
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec()
            .unwrap();
        for (a, b) in w0.to_vec::<f32>().unwrap().iter().zip(&w1) {
            assert!(
                (a * (1.0 - 0.1 * 0.05) - 0.1 - b).abs() < 1e-6,
                "{a} -> {b}"
            );
        }
        for (a, b) in b0.to_vec::<f32>().unwrap().iter().zip(&b1) {
            assert!((a - 0.1 - b).abs() < 1e-6, "{a} -> {b}");
        }
    }
}
