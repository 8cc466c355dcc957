//! AdamW with the parameter groups of timm/SimMIM (no weight decay on norms, biases,
//! relative-position-bias tables and the mask token), a cosine schedule with linear warm-up,
//! and global-norm gradient clipping (PyTorch's `clip_grad_norm_`).
//!
//! burn 0.21's AdamW applies one weight decay to every parameter it steps, so each group has its
//! own AdamW and gets only its own gradients.

use burn::module::{AutodiffModule, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

/// `optimizer:` in a training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Learning rate for an effective batch of 512 images; scaled linearly (SimMIM).
    pub base_lr: f64,
    #[serde(default = "default_warmup_lr")]
    pub warmup_lr: f64,
    #[serde(default = "default_min_lr")]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global gradient-norm limit; none when absent.
    #[serde(default)]
    pub clip_grad: Option<f64>,
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

/// A parameter's gradient, whatever its rank.
enum Grad<B: Backend> {
    R1(Tensor<B, 1>),
    R2(Tensor<B, 2>),
    R3(Tensor<B, 3>),
    R4(Tensor<B, 4>),
}

impl<B: Backend> Grad<B> {
    fn take(grads: &mut GradientsParams, id: ParamId, rank: usize) -> Option<Self> {
        match rank {
            1 => grads.remove(id).map(Self::R1),
            2 => grads.remove(id).map(Self::R2),
            3 => grads.remove(id).map(Self::R3),
            4 => grads.remove(id).map(Self::R4),
            _ => None,
        }
    }

    fn squared_norm(&self) -> Tensor<B, 1> {
        match self {
            Self::R1(g) => g.clone().powi_scalar(2).sum(),
            Self::R2(g) => g.clone().powi_scalar(2).sum(),
            Self::R3(g) => g.clone().powi_scalar(2).sum(),
            Self::R4(g) => g.clone().powi_scalar(2).sum(),
        }
    }

    fn scaled_into(self, grads: &mut GradientsParams, id: ParamId, scale: f64) {
        match self {
            Self::R1(g) => grads.register(id, g.mul_scalar(scale)),
            Self::R2(g) => grads.register(id, g.mul_scalar(scale)),
            Self::R3(g) => grads.register(id, g.mul_scalar(scale)),
            Self::R4(g) => grads.register(id, g.mul_scalar(scale)),
        }
    }
}

/// Whether a parameter path is exempt from weight decay (timm's `no_weight_decay` rules).
pub fn is_no_decay(path: &str) -> bool {
    let name = path.rsplit('.').next().unwrap_or(path);
    matches!(
        name,
        "bias" | "beta" | "gamma" | "relative_position_bias_table" | "mask_token"
    )
}

/// Two AdamWs over one module: with and without weight decay.
pub struct GroupedAdamW<B: AutodiffBackend, M: AutodiffModule<B>> {
    decay: OptimizerAdaptor<AdamW, M, B>,
    no_decay: OptimizerAdaptor<AdamW, M, B>,
    /// Every parameter: id, rank, and whether it is in the no-decay group.
    params: Vec<(ParamId, usize, bool)>,
    clip_grad: Option<f64>,
}

/// What one optimizer step reports.
pub struct StepStats {
    /// Global gradient norm before clipping (0 when clipping is off: it is not computed).
    pub grad_norm: f64,
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + ModuleSnapshot<B>> GroupedAdamW<B, M> {
    pub fn new(config: &OptimizerConfig, module: &M) -> Self {
        let adamw = |weight_decay: f64| {
            AdamWConfig::new()
                .with_beta_1(config.betas[0] as f32)
                .with_beta_2(config.betas[1] as f32)
                .with_epsilon(config.eps as f32)
                .with_weight_decay(weight_decay as f32)
                .init()
        };
        let params = module
            .collect(None, None, false)
            .into_iter()
            .map(|s| {
                (
                    s.tensor_id.expect("parameters have ids"),
                    s.shape.num_dims(),
                    is_no_decay(&s.full_path()),
                )
            })
            .collect();
        Self {
            decay: adamw(config.weight_decay),
            no_decay: adamw(0.0),
            params,
            clip_grad: config.clip_grad,
        }
    }

    /// Clips the global gradient norm, then steps each group with its own gradients.
    pub fn step(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> (M, StepStats) {
        let taken: Vec<(ParamId, bool, Grad<B::InnerBackend>)> = self
            .params
            .iter()
            .filter_map(|&(id, rank, no_decay)| {
                Grad::take(&mut grads, id, rank).map(|g| (id, no_decay, g))
            })
            .collect();
        let (scale, grad_norm) = match self.clip_grad {
            Some(max_norm) => {
                let squares: Vec<Tensor<B::InnerBackend, 1>> =
                    taken.iter().map(|(_, _, g)| g.squared_norm()).collect();
                let norm = Tensor::cat(squares, 0)
                    .sum()
                    .sqrt()
                    .into_scalar()
                    .elem::<f64>();
                ((max_norm / (norm + 1e-6)).min(1.0), norm)
            }
            None => (1.0, 0.0),
        };
        let (mut decay, mut no_decay) = (GradientsParams::new(), GradientsParams::new());
        for (id, exempt, grad) in taken {
            grad.scaled_into(if exempt { &mut no_decay } else { &mut decay }, id, scale);
        }
        let module = self.decay.step(lr, module, decay);
        let module = self.no_decay.step(lr, module, no_decay);
        (module, StepStats { grad_norm })
    }

    /// Saves both groups' moments (`<stem>.decay.mpk`, `<stem>.no_decay.mpk`).
    pub fn save(&self, stem: &std::path::Path) -> anyhow::Result<()> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        recorder.record(self.decay.to_record(), stem.with_extension("decay"))?;
        recorder.record(self.no_decay.to_record(), stem.with_extension("no_decay"))?;
        Ok(())
    }

    pub fn load(mut self, stem: &std::path::Path, device: &B::Device) -> anyhow::Result<Self> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        self.decay = self
            .decay
            .load_record(recorder.load(stem.with_extension("decay"), device)?);
        self.no_decay = self
            .no_decay
            .load_record(recorder.load(stem.with_extension("no_decay"), device)?);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let schedule = CosineSchedule::new(&config, 1024, 10, 110); // lr scaled ×2
        assert_eq!(schedule.warmup_steps, 10);
        assert!((schedule.at(0) - 0.0).abs() < 1e-12);
        assert!((schedule.at(5) - 1e-3).abs() < 1e-12);
        assert!((schedule.at(10) - 2e-3).abs() < 1e-12);
        assert!((schedule.at(60) - (2e-5 + 0.5 * (2e-3 - 2e-5))).abs() < 1e-12);
        assert!((schedule.at(110) - 2e-5).abs() < 1e-12);
    }

    #[test]
    fn norms_biases_tables_and_mask_token_are_not_decayed() {
        assert!(is_no_decay("encoder.layers.0.blocks.1.norm1.gamma"));
        assert!(is_no_decay("encoder.layers.0.blocks.1.attn.qkv.bias"));
        assert!(is_no_decay(
            "encoder.layers.0.blocks.1.attn.relative_position_bias_table"
        ));
        assert!(is_no_decay("encoder.mask_token"));
        assert!(!is_no_decay("encoder.layers.0.blocks.1.attn.qkv.weight"));
        assert!(!is_no_decay("decoder.proj.weight"));
    }
}
