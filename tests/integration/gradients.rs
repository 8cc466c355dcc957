//! One training step's parameter gradients against timm's for the same weights and input
//! (`tests/fixtures/timm-grad`, made by `scripts/fixtures/make_grad_fixture.py`): the backward passes of
//! the fused CPU kernels (window attention, LayerNorm, GELU) are checked against PyTorch autograd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use eesmm::model::load_model;
use eesmm::model::SwinConfig;

use super::common::*;

type Train = Autodiff<B>;

fn grad_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/timm-grad")
        .join(name)
}

/// Replaces every parameter by its gradient (zeros where it has none).
struct IntoGradients {
    grads: GradientsParams,
}

impl ModuleMapper<B> for IntoGradients {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, _) = param.consume();
        let grad = self
            .grads
            .remove::<B, D>(id)
            .unwrap_or_else(|| value.zeros_like());
        Param::initialized(id, grad)
    }
}

/// The gradient of every weight, by timm key.
fn gradients_by_timm_key(model: &eesmm::model::Swin<B>) -> BTreeMap<String, Vec<f32>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|s| {
            let data = s.to_data().unwrap().convert::<f32>();
            (s.full_path(), data.to_vec::<f32>().unwrap())
        })
        .collect()
}

#[test]
fn one_training_step_gradients_match_timm() {
    let device = Default::default();
    let config = SwinConfig::load(&grad_fixture("model.yaml")).unwrap();
    let (model, _) =
        load_model::<Train>(config, &grad_fixture("weights.safetensors"), true, &device).unwrap();
    let images = Tensor::<Train, 4>::from_inner(read_tensor(&grad_fixture("input.npy")));
    let labels = eesmm::npy::read(&grad_fixture("labels.npy")).unwrap();
    let labels: Vec<i64> = labels.data.iter().map(|&l| l as i64).collect();
    let labels = Tensor::<Train, 1, Int>::from_data(TensorData::new(labels, [4]), &device);

    let logits = model.logits(images);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, labels);
    let expected_loss = eesmm::npy::read(&grad_fixture("loss.npy")).unwrap().data[0];
    let loss_value = loss.clone().into_scalar();
    assert!(
        (loss_value - expected_loss).abs() < 1e-5,
        "loss {loss_value} vs timm's {expected_loss}"
    );

    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let ours = gradients_by_timm_key(&model.valid().map(&mut IntoGradients { grads }));
    let reference =
        eesmm::model::weights::read_state_dict(&grad_fixture("grads.safetensors")).unwrap();
    let largest = reference
        .values()
        .flat_map(|d| d.to_vec::<f32>().unwrap())
        .fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(
        largest.is_finite() && largest > 0.1,
        "largest |g| {largest}"
    );
    let mut worst = (0.0f32, String::new());
    for (key, expected) in &reference {
        let expected = expected.to_vec::<f32>().unwrap();
        let got = ours
            .get(key)
            .unwrap_or_else(|| panic!("no gradient for {key}"));
        assert_eq!(got.len(), expected.len(), "{key}");
        for (g, e) in got.iter().zip(&expected) {
            let diff = (g - e).abs();
            assert!(diff.is_finite(), "{key}: {g} vs {e}");
            if diff > worst.0 {
                worst = (diff, key.clone());
            }
        }
    }
    println!(
        "largest gradient difference {:.3e} ({}), {:.3e} of the largest gradient {largest:.3}",
        worst.0,
        worst.1,
        worst.0 / largest
    );
    assert_eq!(reference.len(), 63, "every timm parameter has a reference");
    assert!(
        worst.0 <= 1e-4 * largest,
        "{} differs by {} (largest gradient {largest})",
        worst.1,
        worst.0
    );
}
