//! Runs the burn-onnx import of eesmm's swin-micro-32 export (timm fixture weights, with head)
//! on the fixture input and compares with timm's pooled features and logits.

use std::path::Path;

use burn::backend::NdArray;
use burn::prelude::*;
use eesmm::npy;

#[allow(dead_code)] // generated code: `Model::from_bytes` is unused here
mod model {
    include!(concat!(env!("OUT_DIR"), "/model/swin-micro-32.rs"));
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn main() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/timm-swin-tiny");
    let device = Default::default();
    let model = model::Model::<NdArray>::default();
    let input = npy::read(&fixtures.join("input.npy")).unwrap();
    let shape: [usize; 4] = input.shape.clone().try_into().unwrap();
    let images = Tensor::<NdArray, 4>::from_data(TensorData::new(input.data, shape), &device);
    let (pooled, logits) = model.forward(images);
    let mut worst = 0.0f32;
    for (name, tensor) in [("pooled", pooled), ("logits", logits)] {
        let actual: Vec<f32> = tensor.into_data().to_vec().unwrap();
        let expected = npy::read(&fixtures.join(format!("expected_{name}.npy"))).unwrap();
        let error = max_abs(&actual, &expected.data);
        println!("burn-onnx import of the export vs timm, {name}: max abs {error:.3e}");
        worst = worst.max(error);
    }
    assert!(
        worst < 1e-4,
        "the imported model differs from timm by {worst}"
    );
    println!("ok");
}
