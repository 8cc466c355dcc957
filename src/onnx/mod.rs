//! ONNX export: burn cannot write ONNX, so the graph is built here from the model's modules
//! (`swin.rs`) with a small builder (`graph.rs`) over prost types generated from the vendored
//! `onnx.proto` (`proto.rs`, by `tools/onnx-codegen`), and a model card (`card.rs`).

pub mod card;
pub mod graph;
pub mod precision;
#[allow(clippy::all, clippy::pedantic, rustdoc::all, missing_docs)]
pub mod proto;
pub mod swin;

use std::path::PathBuf;

use anyhow::{ensure, Result};
use burn::prelude::*;
use prost::Message;

use crate::backend::Cpu;
use crate::data::preprocess::Resize;
use crate::hash::sha256_file;
use crate::model::saved::SavedModel;
use crate::model::{architecture, load_model, Swin, SwinConfig};
pub use card::ModelCard;
pub use precision::Precision;
pub use swin::Outputs;

/// The serialized ONNX model of `model` in the card's precision, with `card` in its metadata.
pub fn encode<B: Backend>(model: &Swin<B>, outputs: Outputs, card: &ModelCard) -> Result<Vec<u8>> {
    let graph = swin::lower(model, outputs, card.precision, card.to_metadata())?;
    Ok(graph.encode_to_vec())
}

/// The graph outputs an export with `outputs` has, in order.
pub fn output_names(outputs: Outputs) -> Vec<String> {
    let mut names = vec!["pooled".to_string()];
    if outputs.logits {
        names.push("logits".into());
    }
    if outputs.feature_map {
        names.push("features".into());
    }
    names
}

/// A card for `config` with the default preprocessing (ImageNet mean/std, timm's 0.9 crop).
pub fn default_card(config: &SwinConfig, outputs: Outputs, classes: usize) -> ModelCard {
    let (mean, std) = card::default_normalization(config.in_chans);
    let resize = Resize::timm_eval(config.img_size);
    ModelCard {
        image_size: config.img_size,
        in_chans: config.in_chans,
        resize_shorter_side: resize.shorter_side,
        interpolation: resize.interpolation.name().into(),
        mean,
        std,
        class_names: (0..classes).map(|i| format!("class_{i}")).collect(),
        outputs: output_names(outputs),
        precision: Precision::Fp32,
        model_config: SwinConfig {
            num_classes: classes,
            drop_path_rate: 0.0,
            ..config.clone()
        },
        source_checkpoint: String::new(),
        source_checkpoint_sha256: String::new(),
        eesmm_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// What to export (`eesmm export`'s flags, the `export` stage's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Model preset (YAML); absent: the architecture in the weights' sidecar.
    pub model: Option<PathBuf>,
    /// Weights: an eesmm checkpoint, timm safetensors or PyTorch .pth/.pt (timm or Microsoft).
    pub weights: PathBuf,
    /// The .onnx file to write.
    pub out: PathBuf,
    /// Export the classifier (adds the `logits` output; the weights must have a head).
    pub head: bool,
    /// Also output the final feature map `features` [batch, H/s, W/s, C] (NHWC).
    pub feature_map: bool,
    /// Class names for the model card, one per line (default: the weights' sidecar's, else
    /// class_0, class_1, ...).
    pub labels: Option<PathBuf>,
    /// Normalisation mean and std per channel for the model card (default: the sidecar's, else
    /// ImageNet's).
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    /// Weights and compute in float32, or float16 (inputs and outputs stay float32).
    pub precision: Precision,
}

/// Writes the ONNX file of `args` and prints what it holds.
pub fn export(args: &ExportOptions) -> Result<()> {
    // A model trained by eesmm carries its architecture, normalisation, resize and class names
    // in a sidecar.
    let saved = SavedModel::read_beside(&args.weights)?;
    let config = architecture(args.model.as_deref(), Some(&args.weights), saved.as_ref())?;
    let device = Default::default();
    let (model, _) = load_model::<Cpu>(config.clone(), &args.weights, args.head, &device)?;
    let classes = model.num_classes();
    let outputs = Outputs {
        logits: args.head,
        feature_map: args.feature_map,
    };
    let mut card = default_card(&config, outputs, classes);
    card.precision = args.precision;
    if let Some(saved) = saved {
        let resize = saved.resize_at(config.img_size);
        card.resize_shorter_side = resize.shorter_side;
        card.interpolation = resize.interpolation.name().into();
        card.mean = saved.normalization.mean;
        card.std = saved.normalization.std;
        if args.head && saved.class_names.len() == classes {
            card.class_names = saved.class_names;
        }
    }
    if let Some(path) = &args.labels {
        card.class_names = crate::data::read_class_names(path)?;
        ensure!(
            card.class_names.len() == classes,
            "{}: {} names for a head of {classes} classes{}",
            path.display(),
            card.class_names.len(),
            if args.head { "" } else { " (add --head)" }
        );
    }
    for (name, given, value) in [
        ("--mean", &args.mean, &mut card.mean),
        ("--std", &args.std, &mut card.std),
    ] {
        if let Some(given) = given {
            ensure!(
                given.len() == config.in_chans,
                "{name}: {} values for {} input channels",
                given.len(),
                config.in_chans
            );
            ensure!(
                given.iter().all(|v| v.is_finite())
                    && (name != "--std" || given.iter().all(|&v| v > 0.0)),
                "{name}: {given:?} must be finite{}",
                if name == "--std" {
                    " and positive (pixels are divided by it)"
                } else {
                    ""
                }
            );
            *value = given.clone();
        }
    }
    card.source_checkpoint = args
        .weights
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    card.source_checkpoint_sha256 = sha256_file(&args.weights)?;
    let bytes = encode(&model, outputs, &card)?;
    crate::fsutil::write_atomic(&args.out, &bytes)?;
    println!(
        "wrote {} ({:.1} MB, {}): input images [batch, {}, {s}, {s}], outputs {} (float32)",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        card.precision,
        config.in_chans,
        card.outputs.join(", "),
        s = config.img_size
    );
    Ok(())
}
