//! Checkpoint import: table resizing against PyTorch/timm, and errors that name keys.

use std::collections::BTreeMap;

use eesmm::model::load_model;
use eesmm::model::weights::{read_state_dict, TableResize};
use eesmm::npy;

use super::common::*;

/// References: `F.interpolate(mode="bicubic")` (SimMIM; scripts/fixtures/make_bicubic_fixture.py) and
/// timm 1.0.31's `resize_rel_pos_bias_table` (scripts/fixtures/make_relpos_fixture.py).
#[test]
fn bias_table_resizing_matches_pytorch_and_timm() {
    let table = npy::read(&test_data("relpos_table_w4.npy")).unwrap();
    assert_eq!(table.shape, vec![49, 3]);
    for (resize, file) in [
        (TableResize::Bicubic, "relpos_table_w4_bicubic_w"),
        (TableResize::TimmGeometric, "relpos_table_w4_to_w"),
    ] {
        for window in [7, 2] {
            let expected = npy::read(&test_data(&format!("{file}{window}.npy"))).unwrap();
            let ours = resize.apply(&table.data, 7, 3, 2 * window - 1);
            let err = max_diff(&ours, &expected.data);
            assert!(
                err < 1e-5,
                "{resize:?} to window {window}: differs by {err}"
            );
        }
    }
}

#[test]
fn missing_unexpected_and_misshapen_keys_are_named() {
    let dict = read_state_dict(&fixture("backbone.safetensors")).unwrap();
    let mut dict: BTreeMap<String, (Vec<usize>, Vec<f32>)> = dict
        .into_iter()
        .map(|(k, v)| (k, (v.shape.to_vec(), v.to_vec::<f32>().unwrap())))
        .collect();
    dict.remove("layers.1.blocks.0.mlp.fc2.bias");
    dict.insert("layers.9.extra.weight".into(), (vec![2], vec![0.0, 1.0]));
    dict.insert("norm.bias".into(), (vec![7], vec![0.0; 7]));
    let dir = TempDir::new("weights");
    let path = dir.0.join("broken.safetensors");
    write_safetensors(&path, &dict);

    let error = load_model::<B>(fixture_model(), &path, false, &Default::default()).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("broken.safetensors"), "{message}");
    assert!(
        message.contains("missing from the checkpoint: layers.1.blocks.0.mlp.fc2.bias"),
        "{message}"
    );
    assert!(
        message.contains("unexpected in the checkpoint: layers.9.extra.weight"),
        "{message}"
    );
    assert!(
        message.contains("norm.beta") || message.contains("norm.bias"),
        "{message}"
    );
    assert!(message.contains("3 problems"), "{message}");
}

/// A parameter stored as an integer tensor is named with its type (it used to be left out when
/// read and then reported as missing).
#[test]
fn a_parameter_of_the_wrong_dtype_is_named_with_its_type() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let dict = read_state_dict(&fixture("backbone.safetensors")).unwrap();
    let bytes: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = dict
        .into_iter()
        .map(|(k, v)| {
            let values = v.to_vec::<f32>().unwrap();
            let (dtype, data) = if k == "patch_embed.proj.bias" {
                let ints = values.iter().flat_map(|&x| (x as i32).to_le_bytes());
                (Dtype::I32, ints.collect())
            } else {
                (
                    Dtype::F32,
                    values.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            };
            (k, (dtype, v.shape.to_vec(), data))
        })
        .collect();
    let views: Vec<(&String, TensorView)> = bytes
        .iter()
        .map(|(k, (dtype, shape, data))| (k, TensorView::new(*dtype, shape.clone(), data).unwrap()))
        .collect();
    let dir = TempDir::new("wrong-dtype");
    let path = dir.0.join("ints.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let error = load_model::<B>(fixture_model(), &path, false, &Default::default()).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("ints.safetensors")
            && message.contains("patch_embed.proj.bias: stored as I32, not a floating-point type")
            && !message.contains("missing"),
        "{message}"
    );
}

#[test]
fn a_head_is_required_only_when_asked_for() {
    let device = Default::default();
    let backbone = fixture("backbone.safetensors");
    let error = load_model::<B>(fixture_model(), &backbone, true, &device).unwrap_err();
    assert!(format!("{error:#}").contains("has no classifier head (head.fc.weight)"));
    // A checkpoint with a head loads into the encoder alone; the head keys are reported as ignored.
    let (_, report) = load_model::<B>(
        fixture_model(),
        &fixture("cls10.safetensors"),
        false,
        &device,
    )
    .unwrap();
    assert_eq!(
        report.ignored,
        vec!["head.fc.bias".to_string(), "head.fc.weight".to_string()]
    );
}

#[test]
fn files_that_are_not_checkpoints_are_rejected_by_name() {
    let dir = TempDir::new("notckpt");
    let path = dir.0.join("weights.pth");
    std::fs::write(&path, b"this is not a checkpoint").unwrap();
    let message = format!("{:#}", read_state_dict(&path).unwrap_err());
    assert!(
        message.contains("weights.pth")
            && message.contains("neither a safetensors file nor a PyTorch checkpoint"),
        "{message}"
    );
}
