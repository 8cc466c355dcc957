//! The exponential moving average of a model's weights (timm's `ModelEmaV2`):
//! `θ_ema ← decay·θ_ema + (1 − decay)·θ` after every optimizer step.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// The averaged weights and their decay.
pub struct Ema<M> {
    pub weights: M,
    pub decay: f64,
}

impl<M> Ema<M> {
    /// One step towards `model`.
    pub fn update<B: Backend>(self, model: &M) -> Self
    where
        M: Module<B>,
    {
        Self {
            weights: blend_into(self.weights, model, self.decay),
            decay: self.decay,
        }
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

fn blend_into<B: Backend, M: Module<B>>(ema: M, model: &M, decay: f64) -> M {
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
            crate::model::SwinConfig::load(std::path::Path::new("models/swin-micro-28.yaml"))
                .unwrap();
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
