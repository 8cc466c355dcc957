//! `eesmm bench onnx`: latency of the exported graph in ONNX Runtime vs the burn forward on the
//! same random weights and inputs, in one process.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use super::OnnxModel;
use crate::backend::Cpu;
use crate::model::{Swin, SwinConfig};
use crate::onnx::{default_card, encode, Outputs};
use crate::timing::median_seconds;

/// Median forward latency of one batch, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub batch: usize,
    pub ort_ms: f64,
    pub burn_ms: f64,
}

/// Times ORT (`onnx`) and burn (`model`) on the same random batch.
pub fn latency(
    onnx: &mut OnnxModel,
    model: &Swin<Cpu>,
    batch: usize,
    warmup: usize,
    iters: usize,
) -> Result<Latency> {
    let device = Default::default();
    let config = model.config();
    let shape = [batch, config.in_chans, config.img_size, config.img_size];
    let images = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let pixels = images.to_data().to_vec::<f32>().expect("float32");
    for _ in 0..warmup {
        onnx.run(&pixels, batch)?;
    }
    let mut failure = None;
    let ort = median_seconds(0, iters, || {
        if let Err(e) = onnx.run(&pixels, batch) {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let burn = median_seconds(warmup, iters, || {
        let _ = model.forward(images.clone()).into_data();
    });
    Ok(Latency {
        batch,
        ort_ms: ort * 1e3,
        burn_ms: burn * 1e3,
    })
}

#[derive(Debug, Serialize)]
struct Row {
    model: String,
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

/// `eesmm bench onnx`: ORT and burn latency per model and batch.
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
            "{:<20} {:>6} {:>12} {:>12} {:>8}",
            "model", "batch", "ORT ms", "burn ms", "speedup"
        );
    }
    for path in &models {
        let config = SwinConfig {
            num_classes: 0,
            ..SwinConfig::load(path)?
        };
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let model = config.init::<Cpu>(&Default::default());
        let card = default_card(&config, Outputs::default(), 0);
        let mut onnx = OnnxModel::from_bytes(&encode(&model, Outputs::default(), &card)?)?;
        for &batch in &args.batch {
            let latency = latency(&mut onnx, &model, batch, args.warmup, args.iters)?;
            if args.json {
                let row = Row {
                    model: name.to_string(),
                    latency,
                };
                println!("{}", serde_json::to_string(&row)?);
            } else {
                println!(
                    "{:<20} {:>6} {:>12.2} {:>12.2} {:>7.1}x",
                    name,
                    batch,
                    latency.ort_ms,
                    latency.burn_ms,
                    latency.burn_ms / latency.ort_ms
                );
            }
        }
    }
    Ok(())
}
