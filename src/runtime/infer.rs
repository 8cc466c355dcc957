//! `eesmm infer`: classify images (top-k labels with probabilities) or embed them with an
//! exported model. Unreadable images (including ones past the size bounds of `crate::limits`)
//! are reported by name and skipped, the others are still classified or embedded; the command
//! fails at the end if any were skipped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{OnnxModel, Output};
use crate::data::preprocess;

#[derive(Debug, Serialize)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub prob: f32,
}

/// Softmax of `logits`, and the `k` most probable classes, most probable first.
pub fn top_k(logits: &[f32], k: usize, names: &[String]) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            label: names
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("class_{index}")),
            index,
            prob: exp[index] / sum,
        })
        .collect()
}

/// Every output of the model on one image file.
pub fn run_file(model: &mut OnnxModel, file: &Path) -> Result<Vec<Output>> {
    let image = model.card.load_image(file)?;
    model.run(&image, 1)
}

/// The `k` most probable classes of one image file.
pub fn classify(model: &mut OnnxModel, file: &Path, k: usize) -> Result<Vec<Prediction>> {
    let outputs = run_file(model, file)?;
    let logits = outputs
        .iter()
        .find(|o| o.name == "logits")
        .context("the model has no `logits` output (exported without a head)")?;
    Ok(top_k(&logits.data, k, &model.card.class_names))
}

/// What `eesmm infer` does.
#[derive(Debug, Clone, PartialEq)]
pub struct InferOptions {
    /// Image files or folders (every file in a folder).
    pub images: Vec<PathBuf>,
    /// The exported .onnx file.
    pub model: PathBuf,
    /// Classes printed per image.
    pub topk: usize,
    /// One JSON object per line and image: {file, topk: [{label, index, prob}]}.
    pub json: bool,
    /// Write the pooled embeddings [N, C] of the readable images here instead of classifying.
    pub features: Option<PathBuf>,
}

/// `eesmm infer`: prints the top-k classes of every image, or writes their embeddings.
pub fn run(args: &InferOptions) -> Result<()> {
    let mut model = OnnxModel::load(&args.model)?;
    if args.features.is_none() && !model.has_output("logits") {
        bail!(
            "{}: has no classifier (exported without --head); use --features out.npy to embed",
            args.model.display()
        );
    }
    let files = preprocess::expand_inputs(&args.images)?;
    if files.is_empty() {
        bail!(
            "no image files in {}",
            args.images
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut failed = 0;
    let mut embeddings: Vec<f32> = Vec::new();
    let mut width = 0;
    let mut rows = 0;
    for file in &files {
        if args.features.is_none() {
            match classify(&mut model, file, args.topk) {
                Ok(topk) => print_predictions(file, &topk, args.json),
                Err(error) => {
                    failed += 1;
                    report_failure(file, &format!("{error:#}"), args.json);
                }
            }
            continue;
        }
        let outputs = match run_file(&mut model, file) {
            Ok(outputs) => outputs,
            Err(error) => {
                failed += 1;
                report_failure(file, &format!("{error:#}"), args.json);
                continue;
            }
        };
        let pooled = outputs
            .iter()
            .find(|o| o.name == "pooled")
            .with_context(|| format!("{}: has no `pooled` output", args.model.display()))?;
        width = pooled.data.len();
        embeddings.extend_from_slice(&pooled.data);
        if args.json {
            let line = serde_json::json!({ "file": json_path(file), "row": rows });
            println!("{line}");
        } else {
            println!("{}: row {rows}", file.display());
        }
        rows += 1;
    }
    if let Some(path) = &args.features {
        crate::npy::write(path, &[rows, width], &embeddings)?;
        if !args.json {
            println!("wrote {} [{rows}, {width}]", path.display());
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", files.len());
    }
    Ok(())
}

/// A file name as JSON text: JSON strings are UTF-8, so other bytes of a name become U+FFFD (the
/// name is otherwise kept, where serialising the path itself would fail).
pub fn json_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// One line of `--json` output (and of the infer stage's predictions): `{file, topk}`.
pub fn prediction_line(file: &Path, topk: &[Prediction]) -> serde_json::Value {
    serde_json::json!({ "file": json_path(file), "topk": topk })
}

fn print_predictions(file: &Path, topk: &[Prediction], json: bool) {
    if json {
        println!("{}", prediction_line(file, topk));
    } else {
        println!("{}", file.display());
        for p in topk {
            println!("  {:>7.4}  {} ({})", p.prob, p.label, p.index);
        }
    }
}

fn report_failure(file: &Path, error: &str, json: bool) {
    eprintln!("{}: {error}", file.display());
    if json {
        println!(
            "{}",
            serde_json::json!({ "file": json_path(file), "error": error })
        );
    }
}
