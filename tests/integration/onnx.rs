//! ONNX export: the graph's structure, and its outputs in ONNX Runtime against burn and timm.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Distribution;
use eesmm::model::load_model;
use eesmm::npy;
use eesmm::onnx::proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension::Value, type_proto, ModelProto,
};
use eesmm::onnx::{default_card, encode, ModelCard, Outputs, Precision};
use eesmm::runtime::verify::{burn_outputs, compare};
use eesmm::runtime::{OnnxModel, Output};
use prost::Message;

use super::common::*;

const ALL: Outputs = Outputs {
    logits: true,
    feature_map: true,
};

fn output<'a>(outputs: &'a [Output], name: &str) -> &'a Output {
    outputs.iter().find(|o| o.name == name).unwrap()
}

/// swin-micro-32 with timm's random init and a 10-class head, exported with every output.
fn random_micro() -> (eesmm::model::Swin<B>, eesmm::model::SwinConfig, Vec<u8>) {
    let config = eesmm::model::SwinConfig {
        num_classes: 10,
        ..preset("swin-micro-32.yaml")
    };
    let model = config.init::<B>(&Default::default());
    let card = default_card(&config, ALL, 10);
    let bytes = encode(&model, ALL, &card).unwrap();
    (model, config, bytes)
}

#[test]
fn random_micro_model_in_ort_matches_burn_at_two_batch_sizes() {
    let (model, config, bytes) = random_micro();
    let mut onnx = OnnxModel::from_bytes(&bytes).unwrap();
    for batch in [1, 3] {
        let shape = [batch, 3, config.img_size, config.img_size];
        let images =
            Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default());
        let pixels = images.to_data().to_vec::<f32>().unwrap();
        let ort = onnx.run(&pixels, batch).unwrap();
        assert_eq!(output(&ort, "pooled").shape, [batch, 192]);
        assert_eq!(output(&ort, "logits").shape, [batch, 10]);
        assert_eq!(output(&ort, "features").shape, [batch, 4, 4, 192]);
        let comparisons = compare("random", &ort, &burn_outputs(&model, images)).unwrap();
        assert_eq!(comparisons.len(), 3);
        for c in comparisons {
            // Measured 1e-6 .. 4e-6.
            assert!(c.max_abs < 1e-4, "batch {batch}: {c:?}");
        }
    }
}

#[test]
fn timm_fixture_export_in_ort_gives_timms_logits_and_features() {
    let config = fixture_model();
    let weights = fixture("cls10.safetensors");
    let (model, _) = load_model::<B>(config.clone(), &weights, true, &Default::default()).unwrap();
    let card = default_card(&config, ALL, 10);
    let mut onnx = OnnxModel::from_bytes(&encode(&model, ALL, &card).unwrap()).unwrap();
    let input = npy::read(&fixture("input.npy")).unwrap();
    let ort = onnx.run(&input.data, input.shape[0]).unwrap();
    let logits = output(&ort, "logits");
    let expected = npy::read(&fixture("expected_logits.npy")).unwrap();
    assert_eq!(logits.shape, expected.shape);
    let logit_error = max_diff(&logits.data, &expected.data);
    assert!(
        logit_error < 1e-4,
        "logits differ from timm by {logit_error}"
    );
    let pooled = npy::read(&fixture("expected_pooled.npy")).unwrap();
    let pooled_error = max_diff(&output(&ort, "pooled").data, &pooled.data);
    assert!(
        pooled_error < 1e-4,
        "pooled differs from timm by {pooled_error}"
    );
    let features = npy::read(&fixture("expected_features.npy")).unwrap();
    let feature_error = max_diff(&output(&ort, "features").data, &features.data);
    assert!(
        feature_error < 1e-4,
        "features differ from timm by {feature_error}"
    );
}

/// What the graph is made of: opset 17 / IR 8, a dynamic batch and fixed H/W on every input
/// and output, no Roll (Slice + Concat instead), one attention-bias constant per block with
/// the shift mask folded in where the block is shifted, exact-erf GELU.
#[test]
fn graph_is_opset_17_with_dynamic_batch_and_one_bias_constant_per_block() {
    let (_, _, bytes) = random_micro();
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(model.ir_version, Some(8));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].version, Some(17));
    let graph = model.graph.unwrap();
    let dims = |v: &eesmm::onnx::proto::ValueInfoProto| -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
            panic!("not a tensor")
        };
        let shape = t
            .shape
            .as_ref()
            .expect("every input and output has a shape");
        shape
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Value::DimValue(n) => n.to_string(),
                Value::DimParam(p) => p.clone(),
            })
            .collect()
    };
    assert_eq!(dims(&graph.input[0]), ["batch", "3", "32", "32"]);
    let outputs: Vec<(String, Vec<String>)> = graph
        .output
        .iter()
        .map(|o| (o.name.clone().unwrap(), dims(o)))
        .collect();
    assert_eq!(
        outputs,
        [
            ("pooled".to_string(), vec!["batch", "192"]),
            ("logits".to_string(), vec!["batch", "10"]),
            ("features".to_string(), vec!["batch", "4", "4", "192"]),
        ]
        .map(|(n, d)| (n, d.into_iter().map(String::from).collect::<Vec<_>>()))
    );
    let count = |op: &str| {
        graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some(op))
            .count()
    };
    assert_eq!(count("Roll"), 0);
    // Shifted blocks: layers.{0,1}.blocks.1, each Slice+Concat on H and W before and after.
    assert_eq!(count("Concat"), 2 * 2 * 2);
    assert_eq!(count("Erf"), 6);
    assert_eq!(count("LayerNormalization"), 6 * 2 + 2 + 1 + 1);
    let bias_dims: Vec<Vec<i64>> = graph
        .initializer
        .iter()
        .filter(|t| t.name.as_deref().unwrap().ends_with("bias_and_mask"))
        .map(|t| t.dims.clone())
        .collect();
    // [nW, heads, N, N] for shifted blocks (16 windows in stage 0, 4 in stage 1), [1, ...] else.
    assert_eq!(
        bias_dims,
        [
            vec![1, 3, 16, 16],
            vec![16, 3, 16, 16],
            vec![1, 6, 16, 16],
            vec![4, 6, 16, 16],
            vec![1, 12, 16, 16],
            vec![1, 12, 16, 16],
        ]
    );
    // Per block: 2 for the window partition, 3 for q/k/v heads, 1 merging heads, 2 for the
    // window reverse; 2 per PatchMerging. All of them keep the batch dynamic (-1).
    assert_eq!(count("Reshape"), 6 * 8 + 2 * 2);
    // q, k, v are separate MatMuls: no Gather/Split on a packed qkv tensor.
    assert_eq!(count("Gather") + count("Split"), 0);
    assert_eq!(count("MatMul"), 6 * (3 + 2 + 1 + 2) + 2 + 1);
}

/// An fp16 export: every float initializer is FLOAT16, the file is about half the fp32 one, the
/// float32 input is cast to float16 first and every output cast back; in ONNX Runtime (whose CPU
/// EP inserts its own casts around the ops it has no float16 kernel for) it stays within fp16's
/// tolerance of burn's float32 outputs, and finite.
#[test]
fn fp16_export_has_float16_weights_float32_io_and_stays_within_its_tolerance() {
    let (model, config, fp32) = random_micro();
    let card = ModelCard {
        precision: Precision::Fp16,
        ..default_card(&config, ALL, 10)
    };
    let fp16 = encode(&model, ALL, &card).unwrap();
    let ratio = fp16.len() as f64 / fp32.len() as f64;
    assert!((0.45..0.55).contains(&ratio), "fp16 / fp32 size {ratio}");

    let graph = ModelProto::decode(fp16.as_slice()).unwrap().graph.unwrap();
    let types = |data_type: DataType| {
        graph
            .initializer
            .iter()
            .filter(|t| t.data_type == Some(data_type as i32))
            .count()
    };
    assert_eq!(types(DataType::Float), 0);
    assert!(
        types(DataType::Float16) > 50,
        "{}",
        types(DataType::Float16)
    );
    let elem_type = |v: &eesmm::onnx::proto::ValueInfoProto| match &v.r#type.as_ref().unwrap().value
    {
        Some(type_proto::Value::TensorType(t)) => t.elem_type,
        _ => None,
    };
    assert!(graph
        .input
        .iter()
        .chain(&graph.output)
        .all(|v| elem_type(v) == Some(DataType::Float as i32)));
    let first = &graph.node[0];
    assert_eq!(
        (first.op_type(), &first.input[..]),
        ("Cast", &["images".to_string()][..])
    );
    for output in ["pooled", "logits", "features"] {
        let producer = graph.node.iter().find(|n| n.output[0] == output).unwrap();
        assert_eq!(producer.op_type(), "Cast", "{output}");
    }

    let mut onnx = OnnxModel::from_bytes(&fp16).unwrap();
    assert_eq!(onnx.card.precision, Precision::Fp16);
    let batch = 3;
    let shape = [batch, 3, config.img_size, config.img_size];
    let images = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default());
    let pixels = images.to_data().to_vec::<f32>().unwrap();
    let ort = onnx.run(&pixels, batch).unwrap();
    let comparisons = compare("random", &ort, &burn_outputs(&model, images)).unwrap();
    assert_eq!(comparisons.len(), 3);
    for c in comparisons {
        eprintln!("fp16 vs burn f32: {c:?}");
        // A NaN or infinity is an infinite difference: it fails these bounds too. fp16 is held
        // to 1e-2 relative (verify's default for it); measured 6e-4 .. 8e-4.
        assert!(c.max_abs.is_finite() && c.relative < 1e-2, "{c:?}");
        // fp16 rounding shows: the fp32 export is at ~1e-6.
        assert!(c.max_abs > 1e-5, "{c:?}");
    }
}

/// The grayscale 28 px preset (window 7, clamped in its last stage): ORT matches burn, and
/// `infer` feeds it one channel (the card's grayscale mean/std) from an RGB photo.
#[test]
fn grayscale_micro_28_export_matches_burn_and_infers_from_a_photo() {
    let config = eesmm::model::SwinConfig {
        num_classes: 10,
        ..preset("swin-micro-28.yaml")
    };
    let outputs = Outputs {
        logits: true,
        feature_map: false,
    };
    let model = config.init::<B>(&Default::default());
    let card = default_card(&config, outputs, 10);
    assert_eq!((card.mean.len(), card.std.len()), (1, 1));
    let bytes = encode(&model, outputs, &card).unwrap();
    let mut onnx = OnnxModel::from_bytes(&bytes).unwrap();
    let shape = [2, 1, 28, 28];
    let images = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default());
    let ort = onnx
        .run(&images.to_data().to_vec::<f32>().unwrap(), 2)
        .unwrap();
    for c in compare("random", &ort, &burn_outputs(&model, images)).unwrap() {
        assert!(c.max_abs < 1e-4, "{c:?}");
    }

    let dir = TempDir::new("gray");
    let path = dir.0.join("gray.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos/coffee.jpg");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args([
            "infer",
            photo.to_str().unwrap(),
            "--model",
            path.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["topk"].as_array().unwrap().len(), 5);
    let pixels = card.load_image(&photo).unwrap();
    assert_eq!(pixels.len(), 28 * 28);
}
