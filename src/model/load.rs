//! A model built from its config with weights loaded from any supported checkpoint.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::prelude::*;

use super::saved::{sidecar_path, SavedModel};
use super::weights::{head_classes, load_weights, read_timm_checkpoint, LoadReport};
use super::{Swin, SwinConfig};

/// The architecture to build: the preset if given, else the one in `saved`, the sidecar of
/// `weights`. Errors start with the key they are about (`model:`).
pub fn architecture(
    model: Option<&Path>,
    weights: Option<&Path>,
    saved: Option<&SavedModel>,
) -> Result<SwinConfig> {
    if let Some(model) = model {
        return SwinConfig::load(model).context("model");
    }
    let weights = weights.context("model: needed when there are no weights")?;
    let saved = saved.with_context(|| {
        format!(
            "model: not given, and {} has no .json sidecar naming its architecture",
            weights.display()
        )
    })?;
    Ok(saved.model.clone())
}

/// The preset keys that fix a parameter's shape.
const SHAPE_KEYS: [&str; 7] = [
    "patch_size",
    "in_chans",
    "embed_dim",
    "depths",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
];

/// Checks that `config` builds the network the weights were saved from (their sidecar's), in
/// every key that fixes a parameter's shape. Resolution and window may differ: the
/// relative-position tables are resized on load, as timm does.
fn check_against_sidecar(config: &SwinConfig, weights: &Path) -> Result<()> {
    let Some(saved) = SavedModel::read_beside(weights)? else {
        return Ok(());
    };
    let (given, saved) = (
        serde_json::to_value(config)?,
        serde_json::to_value(&saved.model)?,
    );
    for key in SHAPE_KEYS {
        anyhow::ensure!(
            given[key] == saved[key],
            "model: {key} is {}, but {} says the weights were trained with {}",
            given[key],
            sidecar_path(weights).display(),
            saved[key]
        );
    }
    Ok(())
}

/// Builds the model of `config` and loads `weights` into it. With `with_head`, the head is
/// sized from the checkpoint's own `head.fc.weight` (an error if it has none). When the
/// weights have an eesmm sidecar, `config` must agree with its architecture.
pub fn load_model<B: Backend>(
    mut config: SwinConfig,
    weights: &Path,
    with_head: bool,
    device: &B::Device,
) -> Result<(Swin<B>, LoadReport)> {
    check_against_sidecar(&config, weights)?;
    let (dict, notes) = read_timm_checkpoint(weights, &config)?;
    config.num_classes = match (with_head, head_classes(&dict)) {
        (false, _) => 0,
        (true, Some(classes)) => classes,
        (true, None) => bail!(
            "{}: has no classifier head (head.fc.weight)",
            weights.display()
        ),
    };
    let model = config.init::<B>(device);
    let (model, report) =
        load_weights(model, dict, notes).with_context(|| weights.display().to_string())?;
    for note in &report.notes {
        tracing::info!("{}: {note}", weights.display());
    }
    Ok((model, report))
}
