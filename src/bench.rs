//! `eesmm bench`: throughput measured in one process, so that ratios compare like with like.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use crate::backend::DeviceSpec;
use crate::kernels::TrainBackend;
use crate::model::SwinConfig;
use crate::timing::median_seconds;
use crate::with_backend;

/// What `bench encoder` and `bench pretrain` measure.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// Model preset; `None`: swin-micro-32 at batch 32 and swin-t at batch 8.
    pub model: Option<PathBuf>,
    /// Batch size (with `model`); for `pretrain`, encoder inputs (an EESMM input holds two images).
    pub batch: usize,
    /// Timed iterations (optimizer steps for `pretrain`); the median is reported.
    pub iters: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    pub device: DeviceSpec,
    /// One JSON object per case instead of a table.
    pub json: bool,
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

/// `--model` at `--batch`, or the two standard cases.
fn cases(args: &ThroughputOptions) -> Vec<(PathBuf, usize)> {
    match &args.model {
        Some(model) => vec![(model.clone(), args.batch)],
        None => vec![
            ("models/swin-micro-32.yaml".into(), 32),
            ("models/swin-t.yaml".into(), 8),
        ],
    }
}

/// `eesmm bench encoder`: encoder forward and forward+backward images/s.
pub fn encoder(args: &ThroughputOptions) -> Result<()> {
    let cases = cases(args);
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
    args: &ThroughputOptions,
) -> Option<EncoderThroughput> {
    type Flex = burn::backend::Autodiff<crate::backend::CpuFlex>;
    (args.device == DeviceSpec::Cpu)
        .then(|| measure::<Flex>(config, batch, args, &Default::default()))
}

#[cfg(not(feature = "flex"))]
fn flex_row(_: &SwinConfig, _: usize, _: &ThroughputOptions) -> Option<EncoderThroughput> {
    None
}

/// Waits until `device` has run everything queued before the clock stops: on a JIT backend
/// (CUDA, wgpu) reading one value waits only for the kernels that value depends on (norm's
/// gradient is among the first of a backward pass).
fn wait_for<B: Backend>(device: &B::Device) {
    if let Err(e) = B::sync(device) {
        tracing::warn!("the device did not sync: {e:?}");
    }
}

fn measure<B: TrainBackend>(
    config: &SwinConfig,
    batch: usize,
    args: &ThroughputOptions,
    device: &B::Device,
) -> EncoderThroughput {
    let shape = [batch, config.in_chans, config.img_size, config.img_size];
    let model = config.init::<B>(device);
    let inference = config.init::<B::InnerBackend>(device);
    let images = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let forward = median_seconds(args.warmup, args.iters, || {
        let pooled = inference.forward(images.clone().inner());
        let _ = pooled.sum().into_scalar();
        wait_for::<B>(device);
    });
    let forward_backward = median_seconds(args.warmup, args.iters, || {
        let loss = model.forward(images.clone()).sum();
        let grads = loss.backward();
        let _ = model.norm.gamma.grad(&grads).map(|g| g.sum().into_scalar());
        wait_for::<B>(device);
    });
    EncoderThroughput {
        model: String::new(),
        backend: B::name(device),
        batch,
        forward_images_per_s: batch as f64 / forward,
        forward_backward_images_per_s: batch as f64 / forward_backward,
    }
}

/// One row of `eesmm bench pretrain`.
#[derive(Debug, Serialize)]
pub struct PretrainThroughput {
    pub model: String,
    pub backend: String,
    /// Encoder inputs per step.
    pub batch: usize,
    /// Images per second, counting both images of an EESMM pair.
    pub eesmm_images_per_s: f64,
    pub simmim_images_per_s: f64,
    pub ratio: f64,
    pub eesmm_peak_rss_mb: f64,
    pub simmim_peak_rss_mb: f64,
    /// The larger of the two.
    pub peak_rss_mb: f64,
}

/// `eesmm bench pretrain`: EESMM vs SimMIM step images/s and peak memory.
pub fn pretrain(args: &ThroughputOptions) -> Result<()> {
    let cases = cases(args);
    for (path, batch) in cases {
        let config = SwinConfig::load(&path)?;
        let mut row = with_backend!(args.device, |B, device| Ok::<_, anyhow::Error>(
            measure_pretrain::<B>(&config, batch, args, &device)
        ))?;
        row.model = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{} {} batch {}: EESMM {:.1} img/s ({:.0} MB), SimMIM {:.1} img/s ({:.0} MB), ratio {:.2}",
                row.model,
                row.backend,
                row.batch,
                row.eesmm_images_per_s,
                row.eesmm_peak_rss_mb,
                row.simmim_images_per_s,
                row.simmim_peak_rss_mb,
                row.ratio
            );
        }
    }
    Ok(())
}

/// Peak resident memory of this process in MB since the last [`reset_peak_rss`] (Linux).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Median optimizer steps/s of both objectives on random images with real masks, mixing and
/// AdamW, converted to images/s.
fn measure_pretrain<B: TrainBackend>(
    config: &SwinConfig,
    batch: usize,
    args: &ThroughputOptions,
    device: &B::Device,
) -> PretrainThroughput {
    use crate::pretrain::objective::{
        DeviceBatch, ObjectiveConfig, ObjectiveKind, PretrainModel, SecondImage,
    };
    use crate::train::optim::{GroupedAdamW, OptimizerConfig};
    use burn::optim::GradientsParams;

    let mask_patch = config.total_stride();
    let grid = config.img_size / mask_patch;
    let run = |kind: ObjectiveKind| {
        reset_peak_rss();
        let objective: ObjectiveConfig = crate::yaml::from_str(&format!(
            "kind: {}\nmask_patch_size: {mask_patch}\n",
            if kind == ObjectiveKind::Eesmm {
                "eesmm"
            } else {
                "simmim"
            }
        ))
        .expect("valid objective");
        let optimizer_config: OptimizerConfig =
            crate::yaml::from_str("base_lr: 1.0e-4\nclip_grad: 5.0\n").expect("valid optimizer");
        let mut model = Some(PretrainModel::<B>::new(config, &objective, device));
        let mut optimizer = GroupedAdamW::new(
            &optimizer_config,
            model.as_ref().expect("model"),
            crate::pretrain::objective::no_weight_decay,
        );
        let images = |n: usize| {
            Tensor::<B, 4>::random(
                [n, config.in_chans, config.img_size, config.img_size],
                Distribution::Normal(0.0, 1.0),
                device,
            )
        };
        let masks =
            || Tensor::<B, 3>::random([batch, grid, grid], Distribution::Bernoulli(0.6), device);
        let seconds = median_seconds(args.warmup, args.iters, || {
            let batch = DeviceBatch {
                first: images(batch),
                mask1: masks(),
                second: (kind == ObjectiveKind::Eesmm).then(|| SecondImage {
                    image: images(batch),
                    mask: masks(),
                    lambda1: Tensor::full([batch], 0.5, device),
                    lambda2: Tensor::full([batch], 0.5, device),
                }),
            };
            let current = model.take().expect("model");
            let output = objective.forward(&current, batch);
            let grads = GradientsParams::from_grads(output.total.backward(), &current);
            let (next, _) = optimizer.step(1e-4, current, grads);
            let _ = next.encoder.norm.gamma.val().sum().into_scalar();
            wait_for::<B>(device);
            model = Some(next);
        });
        (batch * objective.images_per_sample()) as f64 / seconds
    };
    let eesmm = run(ObjectiveKind::Eesmm);
    let eesmm_peak = peak_rss_mb();
    let simmim = run(ObjectiveKind::Simmim);
    let simmim_peak = peak_rss_mb();
    PretrainThroughput {
        model: String::new(),
        backend: B::name(device),
        batch,
        eesmm_images_per_s: eesmm,
        simmim_images_per_s: simmim,
        ratio: eesmm / simmim,
        eesmm_peak_rss_mb: eesmm_peak,
        simmim_peak_rss_mb: simmim_peak,
        peak_rss_mb: eesmm_peak.max(simmim_peak),
    }
}

/// One row of `eesmm bench gemm`: a Linear layer's three products at one shape.
#[derive(Debug, Serialize)]
pub struct GemmThroughput {
    /// `stage{i}.{qkv|proj|fc1|fc2} {forward|input_grad|weight_grad}`.
    pub product: String,
    /// `[m, k] · [k, n]`.
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// GFLOP/s of `kernels::gemm` (what the CPU backend runs) and of matrixmultiply alone.
    pub eesmm_gflops: f64,
    pub matrixmultiply_gflops: f64,
}

/// `eesmm bench gemm`: the matrix products of every Linear layer of a model's blocks at a batch
/// (forward `x · W + b`, input gradient `dy · Wᵀ`, weight gradient `xᵀ · dy`), in GFLOP/s,
/// through `kernels::gemm` and through matrixmultiply. `scripts/bench/torch_gemm_bench.py` times the
/// same shapes in PyTorch.
pub fn gemm(args: &ThroughputOptions) -> Result<()> {
    use crate::kernels::gemm::{self, Matrix};
    anyhow::ensure!(
        args.device == DeviceSpec::Cpu,
        "bench gemm times the CPU kernels: --device must be cpu, not {:?}",
        args.device
    );
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| "models/swin-micro-28.yaml".into());
    let config = SwinConfig::load(&path)?;
    // Deterministic values of a size that keeps products far from overflow and denormals.
    let filled = |len: usize, step: f32| -> Vec<f32> {
        (0..len).map(|j| ((j % 97) as f32 - 48.0) * step).collect()
    };
    let mut rows = Vec::new();
    for (i, stage) in config.stages().iter().enumerate() {
        let tokens = args.batch * stage.resolution * stage.resolution;
        let (dim, hidden) = (stage.dim, (stage.dim as f64 * config.mlp_ratio) as usize);
        for (layer, d_in, d_out) in [
            ("qkv", dim, 3 * dim),
            ("proj", dim, dim),
            ("fc1", dim, hidden),
            ("fc2", hidden, dim),
        ] {
            let (x, w, d_y) = (
                filled(tokens * d_in, 0.01),
                filled(d_in * d_out, 0.001),
                filled(tokens * d_out, 0.01),
            );
            let bias = vec![0.5; d_out];
            let (x, w, d_y) = (
                Matrix::new(&x, tokens, d_in),
                Matrix::new(&w, d_in, d_out),
                Matrix::new(&d_y, tokens, d_out),
            );
            // (name, a, b, bias, whether the inner dimension is the tokens)
            let cases = [
                ("forward", x, w, Some(bias.as_slice()), false),
                ("input_grad", d_y, w.t(), None, false),
                ("weight_grad", x.t(), d_y, None, true),
            ];
            for (name, a, b, bias, summed) in cases {
                let seconds = |product: &dyn Fn() -> Vec<f32>| {
                    median_seconds(args.warmup, args.iters, || {
                        std::hint::black_box(product());
                    })
                };
                let ours = seconds(&|| match summed {
                    true => gemm::product_summed(a, b),
                    false => gemm::product(a, b, bias),
                });
                let theirs = seconds(&|| gemm::matrixmultiply_product(a, b, bias));
                let gflop = 2.0 * (a.rows * a.cols * b.cols) as f64 / 1e9;
                rows.push(GemmThroughput {
                    product: format!("stage{i}.{layer} {name}"),
                    m: a.rows,
                    k: a.cols,
                    n: b.cols,
                    eesmm_gflops: gflop / ours,
                    matrixmultiply_gflops: gflop / theirs,
                });
            }
        }
    }
    for row in rows {
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{:<26} [{:>6} x {:>6}] · [{:>6} x {:>5}]  eesmm {:>6.1} GFLOP/s  matrixmultiply {:>6.1}",
                row.product, row.m, row.k, row.k, row.n, row.eesmm_gflops, row.matrixmultiply_gflops
            );
        }
    }
    Ok(())
}
