//! `eesmm infer`: classify images (top-k labels with probabilities) or embed them with an
//! exported model. Unreadable images are reported by name and skipped; the command fails at the
//! end if any were.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use super::{preprocess, OnnxModel};
use crate::cli::InferArgs;

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

pub fn run(args: &InferArgs) -> Result<()> {
    let mut model = OnnxModel::load(&args.model)?;
    if args.features.is_none() && !model.has_output("logits") {
        bail!(
            "{}: has no classifier (exported without --head); use --features out.npy to embed",
            args.model.display()
        );
    }
    let files = preprocess::expand_inputs(&args.images)?;
    let mut failed = 0;
    let mut embeddings: Vec<f32> = Vec::new();
    let mut width = 0;
    let mut rows = 0;
    for file in &files {
        let result = preprocess::load(file, &model.card).and_then(|image| model.run(&image, 1));
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(error) => {
                failed += 1;
                report_failure(file, &format!("{error:#}"), args.json);
                continue;
            }
        };
        let output = |name: &str| {
            outputs
                .iter()
                .find(|o| o.name == name)
                .expect("the model card lists this output")
        };
        if args.features.is_some() {
            let pooled = output("pooled");
            width = pooled.data.len();
            embeddings.extend_from_slice(&pooled.data);
            if args.json {
                let line = serde_json::json!({ "file": file, "row": rows });
                println!("{line}");
            } else {
                println!("{}: row {rows}", file.display());
            }
            rows += 1;
            continue;
        }
        let topk = top_k(&output("logits").data, args.topk, &model.card.class_names);
        if args.json {
            println!("{}", serde_json::json!({ "file": file, "topk": topk }));
        } else {
            println!("{}", file.display());
            for p in &topk {
                println!("  {:>7.4}  {} ({})", p.prob, p.label, p.index);
            }
        }
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

fn report_failure(file: &Path, error: &str, json: bool) {
    eprintln!("{}: {error}", file.display());
    if json {
        println!("{}", serde_json::json!({ "file": file, "error": error }));
    }
}
