//! `eesmm info`: parameter count, per-stage shapes and FLOPs of a preset.
//!
//! FLOPs are counted as multiply-accumulates of the convolutions, linear layers and the two
//! attention matmuls, the convention of the Swin paper and fvcore (Swin-T: 4.5 G).

use std::fmt::Write;

use burn::module::Module;

use super::config::SwinConfig;

/// One row of the summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCost {
    pub name: String,
    /// Output shape per image, `[H, W, C]` (or `[classes]`).
    pub output: Vec<usize>,
    pub macs: u64,
}

/// Multiply-accumulates per image, layer by layer.
pub fn layer_costs(config: &SwinConfig) -> Vec<LayerCost> {
    let mut rows = Vec::new();
    let grid = config.patch_grid() as u64;
    let (p, c_in, d) = (
        config.patch_size as u64,
        config.in_chans as u64,
        config.embed_dim as u64,
    );
    rows.push(LayerCost {
        name: "patch_embed".into(),
        output: vec![grid as usize, grid as usize, config.embed_dim],
        macs: grid * grid * d * c_in * p * p,
    });
    for (i, stage) in config.stages().iter().enumerate() {
        let (r, c) = (stage.resolution as u64, stage.dim as u64);
        let tokens = r * r;
        let merge = if i > 0 { tokens * (2 * c) * c } else { 0 };
        let window_tokens = (stage.window * stage.window) as u64;
        let hidden = (stage.dim as f64 * config.mlp_ratio) as u64;
        let attention = tokens * 3 * c * c // qkv
            + 2 * tokens * window_tokens * c // q·kᵀ and attn·v within each window
            + tokens * c * c; // proj
        let mlp = 2 * tokens * c * hidden;
        rows.push(LayerCost {
            name: format!(
                "layers.{i} ({} blocks, window {}, shift {})",
                stage.depth, stage.window, stage.shift
            ),
            output: vec![stage.resolution, stage.resolution, stage.dim],
            macs: merge + stage.depth as u64 * (attention + mlp),
        });
    }
    if config.num_classes > 0 {
        rows.push(LayerCost {
            name: "head.fc".into(),
            output: vec![config.num_classes],
            macs: (config.num_features() * config.num_classes) as u64,
        });
    }
    rows
}

/// Parameters of the timm-equivalent network, and of the mask token pretraining adds to it.
pub fn parameter_count(config: &SwinConfig) -> (usize, usize) {
    let device = Default::default();
    let model = config.init::<crate::backend::Cpu>(&device);
    (model.num_params(), config.embed_dim)
}

/// The text `eesmm info` prints.
pub fn summary(config: &SwinConfig) -> String {
    let rows = layer_costs(config);
    let total: u64 = rows.iter().map(|r| r.macs).sum();
    let (params, mask_token) = parameter_count(config);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "input: {}x{}x{}   patch {}   window {}   stride {}",
        config.in_chans,
        config.img_size,
        config.img_size,
        config.patch_size,
        config.window_size,
        config.total_stride()
    );
    let _ = writeln!(out, "parameters: {params} (+{mask_token} mask token)");
    let _ = writeln!(
        out,
        "FLOPs per image: {:.3} G (multiply-adds)",
        total as f64 / 1e9
    );
    let _ = writeln!(out, "{:<40} {:>16} {:>12}", "layer", "output", "GFLOPs");
    for row in rows {
        let shape = row
            .output
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let _ = writeln!(
            out,
            "{:<40} {:>16} {:>12.4}",
            row.name,
            shape,
            row.macs as f64 / 1e9
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str) -> SwinConfig {
        SwinConfig::load(std::path::Path::new(&format!("models/{name}.yaml"))).unwrap()
    }

    /// timm's `swin_tiny_patch4_window7_224` and `swin_base_patch4_window7_224` (1000 classes)
    /// have 28,288,354 and 87,768,224 parameters; the Swin paper gives 4.5 G and 15.4 G FLOPs.
    #[test]
    fn swin_t_and_swin_b_match_published_sizes() {
        let mut tiny = preset("swin-t");
        tiny.num_classes = 1000;
        assert_eq!(parameter_count(&tiny).0, 28_288_354);
        let flops: u64 = layer_costs(&tiny).iter().map(|r| r.macs).sum();
        assert!((4.45e9..4.55e9).contains(&(flops as f64)), "{flops}");

        let mut base = preset("swin-b");
        base.num_classes = 1000;
        let flops: u64 = layer_costs(&base).iter().map(|r| r.macs).sum();
        assert!((15.3e9..15.5e9).contains(&(flops as f64)), "{flops}");
    }
}
