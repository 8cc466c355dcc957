//! `eesmm bench`: throughput measured in one process, so that ratios compare like with like.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use serde::Serialize;

use crate::cli::{BenchCommand, EncoderBenchArgs};
use crate::model::SwinConfig;
use crate::with_backend;

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Encoder(args) => encoder(&args),
        BenchCommand::Onnx(args) => crate::runtime::bench::run(&args),
    }
}

/// One row of `eesmm bench encoder`.
#[derive(Debug, Serialize)]
pub struct EncoderThroughput {
    pub model: String,
    pub backend: String,
    pub batch: usize,
    pub forward_images_per_s: f64,
    pub forward_backward_images_per_s: f64,
}

fn encoder(args: &EncoderBenchArgs) -> Result<()> {
    let cases: Vec<(PathBuf, usize)> = match &args.model {
        Some(model) => vec![(model.clone(), args.batch)],
        None => vec![
            ("models/swin-micro-32.yaml".into(), 32),
            ("models/swin-t.yaml".into(), 8),
        ],
    };
    if !args.json {
        println!(
            "{:<20} {:<10} {:>6} {:>14} {:>16}",
            "model", "backend", "batch", "fwd img/s", "fwd+bwd img/s"
        );
    }
    for (path, batch) in cases {
        let config = SwinConfig::load(&path)?;
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let row = with_backend!(args.device, |B, device| Ok::<_, anyhow::Error>(
            measure::<B>(&config, batch, args, &device)
        ))?;
        for mut row in std::iter::once(row).chain(flex_row(&config, batch, args)) {
            row.model = name.clone();
            if args.json {
                println!("{}", serde_json::to_string(&row)?);
            } else {
                println!(
                    "{:<20} {:<10} {:>6} {:>14.1} {:>16.1}",
                    row.model,
                    row.backend,
                    row.batch,
                    row.forward_images_per_s,
                    row.forward_backward_images_per_s
                );
            }
        }
    }
    Ok(())
}

/// The same case on the Flex backend, when built with the `flex` feature and run on CPU.
#[cfg(feature = "flex")]
fn flex_row(
    config: &SwinConfig,
    batch: usize,
    args: &EncoderBenchArgs,
) -> Option<EncoderThroughput> {
    type Flex = burn::backend::Autodiff<crate::backend::CpuFlex>;
    (args.device == crate::backend::DeviceSpec::Cpu)
        .then(|| measure::<Flex>(config, batch, args, &Default::default()))
}

#[cfg(not(feature = "flex"))]
fn flex_row(_: &SwinConfig, _: usize, _: &EncoderBenchArgs) -> Option<EncoderThroughput> {
    None
}

/// Median wall time of `iters` runs of `step`, after `warmup` untimed ones.
pub fn median_seconds(warmup: usize, iters: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn measure<B: AutodiffBackend>(
    config: &SwinConfig,
    batch: usize,
    args: &EncoderBenchArgs,
    device: &B::Device,
) -> EncoderThroughput {
    let shape = [batch, config.in_chans, config.img_size, config.img_size];
    let model = config.init::<B>(device);
    let inference = config.init::<B::InnerBackend>(device);
    let images = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let forward = median_seconds(args.warmup, args.iters, || {
        let pooled = inference.forward(images.clone().inner());
        let _ = pooled.sum().into_scalar(); // waits for the device
    });
    let forward_backward = median_seconds(args.warmup, args.iters, || {
        let loss = model.forward(images.clone()).sum();
        let grads = loss.backward();
        let _ = model.norm.gamma.grad(&grads).map(|g| g.sum().into_scalar());
    });
    EncoderThroughput {
        model: String::new(),
        backend: B::name(device),
        batch,
        forward_images_per_s: batch as f64 / forward,
        forward_backward_images_per_s: batch as f64 / forward_backward,
    }
}
