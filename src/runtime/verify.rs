//! `eesmm verify`: the exported graph in ONNX Runtime against the burn model on the same inputs
//! (random, and real images when given), with max-abs and relative errors and the latency of
//! both.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use super::bench::{latency, Latency};
use super::{OnnxModel, Output};
use crate::backend::Cpu;
use crate::data::preprocess;
use crate::model::{load_model, Swin, SwinConfig};
use crate::onnx::Precision;

/// The outputs an export can have, computed by burn: `pooled`, `logits`, `features`.
pub fn burn_outputs(model: &Swin<Cpu>, images: Tensor<Cpu, 4>) -> Vec<Output> {
    let features = model.forward_features(images, None); // [B, H_f, W_f, C_f]
    let pooled = Swin::pool(features.clone()); // [B, C_f]
    let logits = (model.num_classes() > 0).then(|| model.forward_head(pooled.clone())); // [B, classes]
    let output = |name: &str, shape: Vec<usize>, data: TensorData| Output {
        name: name.into(),
        shape,
        data: data.convert::<f32>().to_vec().expect("float32"),
    };
    let mut outputs = vec![
        output("pooled", pooled.dims().to_vec(), pooled.into_data()),
        output("features", features.dims().to_vec(), features.into_data()),
    ];
    if let Some(logits) = logits {
        outputs.push(output("logits", logits.dims().to_vec(), logits.into_data()));
    }
    outputs
}

/// One output compared on one input set.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub inputs: String,
    pub output: String,
    pub max_abs: f32,
    /// `max_abs / max |burn|`.
    pub relative: f32,
}

/// What a comparison is held to: its max-abs difference, or its relative one (max-abs / max
/// |burn|, for fp16 exports, whose error grows with the outputs' size).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToleranceKind {
    Absolute,
    Relative,
}

impl ToleranceKind {
    /// `--tol` (absolute) when given, else the default of the export's precision: 1e-4 absolute
    /// for fp32; 1e-2 relative for fp16, whose measured worst is 2.0e-3 (docs/onnx.md).
    pub fn resolve(tol: Option<f32>, precision: Precision) -> (Self, f32) {
        match (tol, precision) {
            (Some(tol), _) => (Self::Absolute, tol),
            (None, Precision::Fp32) => (Self::Absolute, 1e-4),
            (None, Precision::Fp16) => (Self::Relative, 1e-2),
        }
    }

    fn measure(self, c: &Comparison) -> f32 {
        match self {
            Self::Absolute => c.max_abs,
            Self::Relative => c.relative,
        }
    }
}

/// The whole report of `eesmm verify --json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub onnx: String,
    /// The export's weights and compute (its model card's `precision`).
    pub precision: Precision,
    pub tolerance: f32,
    pub tolerance_kind: ToleranceKind,
    pub comparisons: Vec<Comparison>,
    pub latency: Vec<Latency>,
    pub passed: bool,
}

impl Report {
    /// The largest absolute difference over every output and input set.
    pub fn worst(&self) -> f32 {
        self.worst_by(ToleranceKind::Absolute)
    }

    /// The largest difference of the kind the tolerance is on.
    fn worst_by(&self, kind: ToleranceKind) -> f32 {
        self.comparisons
            .iter()
            .map(|c| kind.measure(c))
            .fold(0.0f32, f32::max)
    }
}

/// Compares every ORT output with burn's output of the same name; a NaN or infinity in either
/// is an infinite difference, so it fails any tolerance.
pub fn compare(inputs: &str, ort: &[Output], burn: &[Output]) -> Result<Vec<Comparison>> {
    ort.iter()
        .map(|o| {
            let Some(b) = burn.iter().find(|b| b.name == o.name) else {
                bail!("the burn model has no output `{}`", o.name);
            };
            if o.shape != b.shape {
                bail!("`{}`: ORT shape {:?}, burn {:?}", o.name, o.shape, b.shape);
            }
            let d = crate::compare::difference(&o.data, &b.data);
            Ok(Comparison {
                inputs: inputs.into(),
                output: o.name.clone(),
                max_abs: d.max_abs,
                relative: d.relative,
            })
        })
        .collect()
}

/// What `eesmm verify` compares (its flags, the `verify` stage's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// The exported .onnx file.
    pub onnx: PathBuf,
    /// The weights it was exported from.
    pub weights: PathBuf,
    /// Model preset (default: the config in the model card).
    pub model: Option<PathBuf>,
    /// Real images (files or folders) to compare on, besides random inputs.
    pub images: Vec<PathBuf>,
    /// Largest allowed absolute difference on any output; `None`: the default of the model
    /// card's precision ([`ToleranceKind::resolve`]).
    pub tol: Option<f32>,
    /// Random inputs, and the larger batch of the latency measurement.
    pub batch: usize,
    /// Timed runs per latency (the median is reported).
    pub iters: usize,
}

/// Prints the comparison of `eesmm verify` (as one JSON report with `json`); fails above the
/// tolerance.
pub fn run(args: &VerifyOptions, json: bool) -> Result<()> {
    let report = check(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    ensure_passed(&report)
}

/// An error when ONNX Runtime and burn differ by more than the tolerance.
pub fn ensure_passed(report: &Report) -> Result<()> {
    if !report.passed {
        let kind = match report.tolerance_kind {
            ToleranceKind::Absolute => "",
            ToleranceKind::Relative => " relative to max |burn|",
        };
        bail!(
            "ONNX Runtime and burn differ by {:.3e}{kind}, above the tolerance {:.1e}",
            report.worst_by(report.tolerance_kind),
            report.tolerance
        );
    }
    Ok(())
}

/// Runs the exported model and the burn model on the same inputs and compares every output.
pub fn check(args: &VerifyOptions) -> Result<Report> {
    let mut onnx = OnnxModel::load(&args.onnx)?;
    let config = match &args.model {
        Some(path) => SwinConfig::load(path)?,
        None => onnx.card.model_config.clone(),
    };
    let device = Default::default();
    let with_head = onnx.has_output("logits");
    let (model, _) = load_model::<Cpu>(config.clone(), &args.weights, with_head, &device)?;
    let side = config.img_size;

    let mut sets: Vec<(String, usize, Vec<f32>)> = Vec::new();
    Cpu::seed(&device, 0);
    let shape = [args.batch, config.in_chans, side, side];
    let random = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let random = random.into_data().to_vec::<f32>().expect("float32");
    sets.push((format!("random N(0,1) x{}", args.batch), args.batch, random));
    let files = preprocess::expand_inputs(&args.images)?;
    if !files.is_empty() {
        let mut pixels = Vec::new();
        for file in &files {
            let image = onnx
                .card
                .load_image(file)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
            pixels.extend(image);
        }
        sets.push((format!("{} images", files.len()), files.len(), pixels));
    }

    let mut comparisons = Vec::new();
    for (name, batch, pixels) in &sets {
        let ort = onnx.run(pixels, *batch)?;
        let images = Tensor::from_data(
            TensorData::new(pixels.clone(), [*batch, config.in_chans, side, side]),
            &device,
        );
        comparisons.extend(compare(name, &ort, &burn_outputs(&model, images))?);
    }
    let mut batches = vec![1, args.batch];
    batches.dedup();
    let latency = batches
        .into_iter()
        .map(|batch| latency(&mut onnx, &model, batch, 1, args.iters))
        .collect::<Result<Vec<_>>>()?;
    let precision = onnx.card.precision;
    let (tolerance_kind, tolerance) = ToleranceKind::resolve(args.tol, precision);
    // A NaN difference fails too: NaN <= x is false.
    let passed = comparisons
        .iter()
        .all(|c| tolerance_kind.measure(c) <= tolerance);
    Ok(Report {
        onnx: args.onnx.display().to_string(),
        precision,
        tolerance,
        tolerance_kind,
        comparisons,
        latency,
        passed,
    })
}

pub fn print_report(report: &Report) {
    println!(
        "{} ({}): ONNX Runtime vs burn float32",
        report.onnx, report.precision
    );
    println!(
        "{:<24} {:<9} {:>11} {:>11}",
        "inputs", "output", "max abs", "relative"
    );
    for c in &report.comparisons {
        println!(
            "{:<24} {:<9} {:>11.3e} {:>11.3e}",
            c.inputs, c.output, c.max_abs, c.relative
        );
    }
    println!("{:>6} {:>12} {:>12}", "batch", "ORT ms", "burn ms");
    for l in &report.latency {
        println!("{:>6} {:>12.2} {:>12.2}", l.batch, l.ort_ms, l.burn_ms);
    }
    let verdict = if report.passed { "ok" } else { "FAILED" };
    let kind = match report.tolerance_kind {
        ToleranceKind::Absolute => "max abs",
        ToleranceKind::Relative => "relative",
    };
    println!("{verdict}: tolerance {:.1e} ({kind})", report.tolerance);
}
