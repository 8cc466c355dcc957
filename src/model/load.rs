//! A model built from its config with weights loaded from any supported checkpoint.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::prelude::*;

use super::weights::{head_classes, load_weights, read_timm_checkpoint, LoadReport};
use super::{Swin, SwinConfig};

/// Builds the model of `config` and loads `weights` into it. With `with_head`, the head is
/// sized from the checkpoint's own `head.fc.weight` (an error if it has none).
pub fn load_model<B: Backend>(
    mut config: SwinConfig,
    weights: &Path,
    with_head: bool,
    device: &B::Device,
) -> Result<(Swin<B>, LoadReport)> {
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
