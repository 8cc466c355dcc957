//! `eesmm bench onnx`: latency of the exported graph (fp32 and fp16) in ONNX Runtime vs the burn
//! forward on the same random weights and inputs, in one process.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use super::OnnxModel;
use crate::backend::Cpu;
use crate::model::{Swin, SwinConfig};
use crate::onnx::{default_card, encode, ModelCard, Outputs, Precision};
use crate::timing::median_seconds;

/// Median forward latency of one batch, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub batch: usize,
    pub ort_ms: f64,
    pub burn_ms: f64,
}

/// A random N(0, 1) batch for `model`, `[batch, in_chans, S, S]`.
fn random_images(model: &Swin<Cpu>, batch: usize) -> Tensor<Cpu, 4> {
    let config = model.config();
    let shape = [batch, config.in_chans, config.img_size, config.img_size];
    Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// Median seconds of ORT running `images` after `warmup` untimed runs.
fn ort_seconds(
    onnx: &mut OnnxModel,
    images: &Tensor<Cpu, 4>,
    warmup: usize,
    iters: usize,
) -> Result<f64> {
    let batch = images.dims()[0];
    let pixels = images.to_data().to_vec::<f32>().expect("float32");
    for _ in 0..warmup {
        onnx.run(&pixels, batch)?;
    }
    let mut failure = None;
    let seconds = median_seconds(0, iters, || {
        if let Err(e) = onnx.run(&pixels, batch) {
            failure = Some(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(seconds),
    }
}

/// Median seconds of burn's forward on `images`.
fn burn_seconds(model: &Swin<Cpu>, images: &Tensor<Cpu, 4>, warmup: usize, iters: usize) -> f64 {
    median_seconds(warmup, iters, || {
        let _ = model.forward(images.clone()).into_data();
    })
}

/// Times ORT (`onnx`) and burn (`model`) on the same random batch.
pub fn latency(
    onnx: &mut OnnxModel,
    model: &Swin<Cpu>,
    batch: usize,
    warmup: usize,
    iters: usize,
) -> Result<Latency> {
    let images = random_images(model, batch);
    Ok(Latency {
        batch,
        ort_ms: ort_seconds(onnx, &images, warmup, iters)? * 1e3,
        burn_ms: burn_seconds(model, &images, warmup, iters) * 1e3,
    })
}

#[derive(Debug, Serialize)]
struct Row {
    model: String,
    precision: Precision,
    /// Size of the exported file.
    onnx_mb: f64,
    #[serde(flatten)]
    latency: Latency,
}

/// What `eesmm bench onnx` measures.
#[derive(Debug, Clone)]
pub struct OnnxBenchOptions {
    /// Model presets (random weights); empty: swin-micro-32 and swin-t.
    pub model: Vec<PathBuf>,
    pub batch: Vec<usize>,
    /// Timed iterations (the median is reported) after `warmup` untimed ones.
    pub iters: usize,
    pub warmup: usize,
    /// One JSON object per case instead of a table.
    pub json: bool,
}

/// The exports `bench onnx` compares: the same weights in each precision.
const PRECISIONS: [Precision; 2] = [Precision::Fp32, Precision::Fp16];

/// `eesmm bench onnx`: per model and batch, burn's forward and ORT on the fp32 and the fp16
/// export of the same random weights, with the files' sizes.
pub fn run(args: &OnnxBenchOptions) -> Result<()> {
    let models: Vec<PathBuf> = if args.model.is_empty() {
        vec![
            "models/swin-micro-32.yaml".into(),
            "models/swin-t.yaml".into(),
        ]
    } else {
        args.model.clone()
    };
    if !args.json {
        println!(
            "{:<20} {:>9} {:>9} {:>6} {:>12} {:>12} {:>8}",
            "model", "precision", "ONNX MB", "batch", "ORT ms", "burn ms", "speedup"
        );
    }
    for path in &models {
        let config = SwinConfig {
            num_classes: 0,
            ..SwinConfig::load(path)?
        };
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let model = config.init::<Cpu>(&Default::default());
        let mut exports = Vec::new();
        for precision in PRECISIONS {
            let card = ModelCard {
                precision,
                ..default_card(&config, Outputs::default(), 0)
            };
            let bytes = encode(&model, Outputs::default(), &card)?;
            let megabytes = bytes.len() as f64 / 1e6;
            exports.push((precision, megabytes, OnnxModel::from_bytes(&bytes)?));
        }
        for &batch in &args.batch {
            let images = random_images(&model, batch);
            let burn_ms = burn_seconds(&model, &images, args.warmup, args.iters) * 1e3;
            for (precision, onnx_mb, onnx) in &mut exports {
                let ort_ms = ort_seconds(onnx, &images, args.warmup, args.iters)? * 1e3;
                let row = Row {
                    model: name.to_string(),
                    precision: *precision,
                    onnx_mb: *onnx_mb,
                    latency: Latency {
                        batch,
                        ort_ms,
                        burn_ms,
                    },
                };
                print_row(&row, args.json)?;
            }
        }
    }
    Ok(())
}

fn print_row(row: &Row, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(row)?);
    } else {
        let l = &row.latency;
        println!(
            "{:<20} {:>9} {:>9.1} {:>6} {:>12.2} {:>12.2} {:>7.1}x",
            row.model,
            row.precision,
            row.onnx_mb,
            l.batch,
            l.ort_ms,
            l.burn_ms,
            l.burn_ms / l.ort_ms
        );
    }
    Ok(())
}
