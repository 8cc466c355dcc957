//! Swin model presets: the YAML files in `models/`, with keys named as timm's
//! `SwinTransformer` arguments, and the geometry every other module derives from them.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A Swin Transformer v1 configuration. Keys match timm's `SwinTransformer(...)` arguments,
/// so a preset reads like the Python call that would build the same network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Side of the square input in pixels; a multiple of `patch_size`. Required.
    pub img_size: usize,
    /// Side of a patch of the patch embedding (the first stage's stride). Required.
    pub patch_size: usize,
    /// Input channels (1 for gray images, 3 for RGB). Default: 3.
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// Channels of the first stage; each later stage doubles them. Required.
    pub embed_dim: usize,
    /// Blocks per stage, e.g. `[2, 2, 6, 2]` (Swin-T). Required.
    pub depths: Vec<usize>,
    /// Attention heads per stage, one per entry of `depths`; each divides its stage's
    /// channels. Required.
    pub num_heads: Vec<usize>,
    /// Side of an attention window in tokens (clamped to a stage's resolution, as timm does).
    /// Required.
    pub window_size: usize,
    /// Hidden width of the MLP as a multiple of the channels. Default: 4.0.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// A bias in the attention's query/key/value projection. Default: true.
    #[serde(default = "crate::yaml::default_true")]
    pub qkv_bias: bool,
    /// Stochastic depth of the last block, rising linearly from 0 over the blocks; in [0, 1).
    /// Default: 0.0.
    #[serde(default)]
    pub drop_path_rate: f64,
    /// Classes of the linear head; 0 builds the encoder alone (timm's `num_classes=0`).
    /// Default: 0.
    #[serde(default)]
    pub num_classes: usize,
}

/// timm's `SwinTransformer()` defaults (Swin-T at 224 px, 1000 classes).
impl Default for SwinConfig {
    fn default() -> Self {
        Self {
            img_size: 224,
            patch_size: 4,
            in_chans: 3,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.1,
            num_classes: 1000,
        }
    }
}

fn default_in_chans() -> usize {
    3
}
fn default_mlp_ratio() -> f64 {
    4.0
}

/// A configuration that cannot build a network, naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

/// What one stage looks like once the configuration is resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageGeometry {
    /// Tokens per side at this stage (after its PatchMerging, if any).
    pub resolution: usize,
    pub dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    /// Window side after clamping to the resolution, as timm does.
    pub window: usize,
    /// Shift of the odd blocks; 0 when the window covers the whole stage.
    pub shift: usize,
}

impl SwinConfig {
    /// The layer a parameter belongs to for layer-wise LR decay (SimMIM's `get_swin_layer`, in
    /// timm's layout): 0 for the patch embedding, `1 + block index` counted over all stages for
    /// blocks, a stage's patch merging with the previous stage's last block, and `blocks + 1` for
    /// the final norm and the head.
    pub fn layer_id(&self, path: &str) -> usize {
        let depths = &self.depths;
        let blocks: usize = depths.iter().sum();
        let parts: Vec<&str> = path.split('.').collect();
        match parts[..] {
            ["patch_embed", ..] | ["mask_token"] => 0,
            ["layers", stage, "blocks", block, ..] => {
                let stage: usize = stage.parse().unwrap_or(0);
                depths[..stage].iter().sum::<usize>() + block.parse::<usize>().unwrap_or(0) + 1
            }
            ["layers", stage, ..] => depths[..stage.parse::<usize>().unwrap_or(0)].iter().sum(),
            _ => blocks + 1,
        }
    }

    /// Reads and validates a preset. Errors name the file, and the key (with line and
    /// column for YAML syntax and unknown keys).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read model preset: {e}", path.display()))?;
        Self::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let config: SwinConfig = crate::yaml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn num_stages(&self) -> usize {
        self.depths.len()
    }

    /// Width of the final feature map (`num_features` in timm).
    pub fn num_features(&self) -> usize {
        self.embed_dim << (self.num_stages() - 1)
    }

    /// Tokens per side after the patch embedding.
    pub fn patch_grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Total stride of the encoder, input pixels per final-stage token.
    pub fn total_stride(&self) -> usize {
        self.patch_size << (self.num_stages() - 1)
    }

    /// Per-stage geometry, assuming a valid configuration.
    pub fn stages(&self) -> Vec<StageGeometry> {
        (0..self.num_stages())
            .map(|i| {
                let resolution = self.patch_grid() >> i;
                let clamped = resolution <= self.window_size;
                let window = if clamped {
                    resolution
                } else {
                    self.window_size
                };
                StageGeometry {
                    resolution,
                    dim: self.embed_dim << i,
                    depth: self.depths[i],
                    num_heads: self.num_heads[i],
                    window,
                    shift: if clamped { 0 } else { window / 2 },
                }
            })
            .collect()
    }

    /// Stochastic-depth rate of every block, rising linearly from 0 to `drop_path_rate`
    /// over the whole network (timm's `torch.linspace(0, rate, sum(depths))`).
    pub fn drop_path_rates(&self) -> Vec<Vec<f64>> {
        let total: usize = self.depths.iter().sum();
        let rate = |k: usize| {
            if total > 1 {
                self.drop_path_rate * k as f64 / (total - 1) as f64
            } else {
                0.0
            }
        };
        let mut k = 0;
        self.depths
            .iter()
            .map(|&depth| {
                (0..depth)
                    .map(|_| {
                        k += 1;
                        rate(k - 1)
                    })
                    .collect()
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("img_size", self.img_size),
            ("patch_size", self.patch_size),
            ("in_chans", self.in_chans),
            ("embed_dim", self.embed_dim),
            ("window_size", self.window_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.depths.is_empty() || self.depths.contains(&0) {
            return Err(invalid(
                "depths",
                "needs one or more stages, each of depth ≥ 1",
            ));
        }
        if self.num_heads.len() != self.depths.len() {
            return Err(invalid(
                "num_heads",
                format!(
                    "has {} entries but depths has {} stages",
                    self.num_heads.len(),
                    self.depths.len()
                ),
            ));
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return Err(invalid("mlp_ratio", "must be positive"));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(invalid("drop_path_rate", "must be in [0, 1)"));
        }
        if !self.img_size.is_multiple_of(self.patch_size) {
            return Err(invalid(
                "img_size",
                format!(
                    "{} is not divisible by patch_size {}",
                    self.img_size, self.patch_size
                ),
            ));
        }
        for i in 1..self.num_stages() {
            let before = self.patch_grid() >> (i - 1);
            if !before.is_multiple_of(2) {
                return Err(invalid(
                    "img_size",
                    format!(
                        "stage {} starts with PatchMerging of a {before}x{before} grid, which must be even \
                         (img_size / patch_size / 2^{} = {before})",
                        i,
                        i - 1
                    ),
                ));
            }
        }
        for (i, stage) in self.stages().iter().enumerate() {
            if !stage.dim.is_multiple_of(stage.num_heads) {
                return Err(invalid(
                    "num_heads",
                    format!(
                        "stage {i}: {} heads do not divide the width {}",
                        stage.num_heads, stage.dim
                    ),
                ));
            }
            if !stage.resolution.is_multiple_of(stage.window) {
                return Err(invalid(
                    "window_size",
                    format!(
                        "stage {i}: resolution {r}x{r} is not divisible by window {w} \
                         (timm clamps the window only when it covers the whole stage)",
                        r = stage.resolution,
                        w = stage.window
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_follow_simmim() {
        let config = SwinConfig {
            depths: vec![2, 2, 6, 2],
            ..Default::default()
        };
        let layer_id = |path| config.layer_id(path);
        assert_eq!(layer_id("patch_embed.proj.weight"), 0);
        assert_eq!(layer_id("mask_token"), 0);
        assert_eq!(layer_id("layers.0.blocks.0.attn.qkv.weight"), 1);
        assert_eq!(layer_id("layers.2.blocks.5.mlp.fc2.bias"), 10);
        // Patch merging at the start of stage 2 goes with stage 1's last block.
        assert_eq!(layer_id("layers.2.downsample.reduction.weight"), 4);
        assert_eq!(layer_id("layers.1.blocks.1.norm1.gamma"), 4);
        assert_eq!(layer_id("norm.gamma"), 13);
        assert_eq!(layer_id("head.fc.weight"), 13);
    }

    /// The rule sees burn's real parameter paths: every layer id from 0 to the top occurs.
    #[test]
    fn every_layer_of_a_real_model_gets_its_own_id() {
        use burn_store::ModuleSnapshot;
        let mut config =
            SwinConfig::load(std::path::Path::new("models/swin-micro-28.yaml")).unwrap();
        config.num_classes = 10;
        let model = config.init::<crate::backend::Cpu>(&Default::default());
        let mut ids: Vec<usize> = model
            .collect(None, None, false)
            .iter()
            .map(|s| config.layer_id(&s.full_path()))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids,
            (0..=9).collect::<Vec<_>>(),
            "depths [2, 6]: 8 blocks + embed + top"
        );
    }

    const MICRO: &str = "img_size: 32\npatch_size: 2\nembed_dim: 48\ndepths: [2, 2, 2]\n\
                         num_heads: [3, 6, 12]\nwindow_size: 4\n";

    #[test]
    fn stage_geometry_clamps_window_and_drops_shift() {
        let config = SwinConfig::from_yaml(MICRO).unwrap();
        let stages = config.stages();
        assert_eq!(
            stages
                .iter()
                .map(|s| (s.resolution, s.window, s.shift))
                .collect::<Vec<_>>(),
            vec![(16, 4, 2), (8, 4, 2), (4, 4, 0)]
        );
        assert_eq!(config.num_features(), 192);
        assert_eq!(config.total_stride(), 8);
    }

    #[test]
    fn drop_path_rates_rise_linearly_over_all_blocks() {
        let mut config = SwinConfig::from_yaml(MICRO).unwrap();
        config.drop_path_rate = 0.5;
        let rates: Vec<f64> = config.drop_path_rates().concat();
        assert_eq!(rates.len(), 6);
        assert_eq!(rates[0], 0.0);
        assert!((rates[5] - 0.5).abs() < 1e-12);
        assert!((rates[1] - 0.1).abs() < 1e-12);
    }

    fn error_of(yaml: &str) -> String {
        format!("{:#}", SwinConfig::from_yaml(yaml).unwrap_err())
    }

    #[test]
    fn invalid_presets_name_the_key() {
        assert!(error_of(&format!("{MICRO}colour: red\n")).contains("colour"));
        assert!(error_of(&MICRO.replace("[3, 6, 12]", "[5, 6, 12]")).starts_with("num_heads"));
        assert!(error_of(&MICRO.replace("[3, 6, 12]", "[3, 6]")).starts_with("num_heads"));
        assert!(
            error_of(&MICRO.replace("window_size: 4", "window_size: 3")).starts_with("window_size")
        );
        assert!(error_of(&MICRO.replace("img_size: 32", "img_size: 33")).starts_with("img_size"));
        assert!(error_of(&MICRO.replace("img_size: 32", "img_size: 20")).starts_with("img_size"));
        // 28 px, patch 2, window 7: 14 → 7 (window covers the stage) → 3.5 is not a grid.
        let odd = "img_size: 28\npatch_size: 2\nembed_dim: 48\ndepths: [2, 2, 2]\n\
                   num_heads: [3, 6, 12]\nwindow_size: 7\n";
        assert!(error_of(odd).starts_with("img_size"));
    }

    #[test]
    fn unknown_key_error_has_line_and_column() {
        let message = error_of(&format!("{MICRO}colour: red\n"));
        assert!(
            message.starts_with("line 7 column 1: unknown field `colour`"),
            "{message}"
        );
    }
}
