//! Loading timm and Microsoft Swin checkpoints into [`Swin`].
//!
//! 1. [`read_state_dict`] reads a safetensors file or a PyTorch `.pth`/`.pt` (zip or legacy
//!    pickle, parsed as data by burn-store: no pickle code runs) into float32 tensors.
//! 2. [`to_timm_layout`] rewrites it into timm 1.0's layout: strips wrappers (`model.`,
//!    `module.`, SimMIM's `encoder.`), moves the old layout's PatchMerging from the end of stage
//!    i to the start of stage i+1, renames `head.weight` to `head.fc.weight`, drops saved buffers,
//!    and resizes relative-position-bias tables to the model's window (bicubic, like SimMIM/timm).
//! 3. [`load_weights`] applies it to the model through burn-store's PyTorch adapter (Linear
//!    weights transposed, LayerNorm weight/bias → gamma/beta) and reports every key that did
//!    not match by name.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use super::config::SwinConfig;
use super::pickle_scan;
use super::swin::Swin;
use crate::limits;

/// Parameter name → float32 tensor, in PyTorch's layout.
pub type StateDict = BTreeMap<String, TensorData>;

/// Reads every floating-point tensor of a checkpoint, telling the format by content.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let result = if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
        read_pytorch(path)
    } else if looks_like_safetensors(&bytes) {
        read_safetensors(&bytes)
    } else {
        Err(anyhow::anyhow!(
            "neither a safetensors file nor a PyTorch checkpoint (zip or pickle)"
        ))
    };
    result.with_context(|| format!("{}: cannot read weights", path.display()))
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    match bytes.split_first_chunk::<8>() {
        Some((header, [b'{', ..])) => u64::from_le_bytes(*header) < bytes.len() as u64,
        _ => false,
    }
}

/// Float tensors are converted to float32; integer ones keep their type (buffers such as
/// `relative_position_index`, dropped later, or a parameter of the wrong type, refused by
/// [`load_weights`] naming it).
fn read_safetensors(bytes: &[u8]) -> Result<StateDict> {
    use safetensors::Dtype;
    let file = safetensors::SafeTensors::deserialize(bytes)?;
    let mut dict = StateDict::new();
    for (name, view) in file.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            other => bail!("{name}: dtype {other:?} is not supported (float or integer tensors)"),
        };
        limits::element_count(view.shape(), limits::MAX_ELEMENTS, &name)?;
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        dict.insert(name, as_f32_if_float(data));
    }
    Ok(dict)
}

fn as_f32_if_float(data: TensorData) -> TensorData {
    if data.dtype.is_float() {
        data.convert::<f32>()
    } else {
        data
    }
}

fn read_pytorch(path: &Path) -> Result<StateDict> {
    pickle_scan::check_pytorch_file(path)?;
    let reader =
        burn_store::pytorch::PytorchReader::new(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut dict = StateDict::new();
    for (name, snapshot) in reader.into_tensors() {
        limits::element_count(&snapshot.shape, limits::MAX_ELEMENTS, &name)?;
        let data = snapshot
            .to_data()
            .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
        dict.insert(name, as_f32_if_float(data));
    }
    Ok(dict)
}

/// Rewrites a state dict into timm 1.0's key layout for `config`, returning notes on
/// everything it changed.
pub fn to_timm_layout(
    mut dict: StateDict,
    config: &SwinConfig,
) -> Result<(StateDict, Vec<String>)> {
    let mut notes = Vec::new();
    for wrapper in ["model.", "state_dict.", "module.", "encoder."] {
        if dict.keys().any(|k| k.starts_with(wrapper))
            && !dict.contains_key("patch_embed.proj.weight")
        {
            let before = dict.len();
            dict = dict
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix(wrapper).map(|k| (k.to_string(), v)))
                .collect();
            notes.push(format!(
                "took the keys under '{wrapper}' ({} of {before})",
                dict.len()
            ));
        }
    }
    let buffers: Vec<String> = dict
        .keys()
        .filter(|k| k.ends_with("relative_position_index") || k.ends_with("attn_mask"))
        .cloned()
        .collect();
    if !buffers.is_empty() {
        notes.push(format!(
            "dropped {} saved buffers (rebuilt from the config)",
            buffers.len()
        ));
        for k in buffers {
            dict.remove(&k);
        }
    }
    // Microsoft/SimMIM checkpoints keep PatchMerging at the end of a stage; their tables are
    // resized the way SimMIM does it, timm-layout ones the way timm does it.
    let resize = if dict.keys().any(|k| k.starts_with("layers.0.downsample.")) {
        notes.push(
            "converted the old layout (PatchMerging at the end of a stage, head.weight)".into(),
        );
        dict = dict
            .into_iter()
            .map(|(k, v)| (old_to_timm_key(&k), v))
            .collect();
        TableResize::Bicubic
    } else {
        TableResize::TimmGeometric
    };
    let stages = config.stages();
    for (key, table) in dict.iter_mut() {
        let Some(stage) = key
            .strip_prefix("layers.")
            .filter(|_| key.ends_with(".relative_position_bias_table"))
            .and_then(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .and_then(|i| stages.get(i))
        else {
            continue;
        };
        let (&[rows, heads], Ok(values)) = (table.shape.as_slice(), table.to_vec::<f32>()) else {
            bail!(
                "{key}: a {:?} table of shape {:?}, expected float [(2·window-1)², heads]",
                table.dtype,
                table.shape.as_slice()
            );
        };
        let new_side = 2 * stage.window - 1;
        if rows != new_side * new_side {
            let side = (rows as f64).sqrt().round() as usize;
            if side * side != rows {
                bail!("{key}: {rows} rows is not a square table");
            }
            *table = TensorData::new(
                resize.apply(&values, side, heads, new_side),
                [new_side * new_side, heads],
            );
            notes.push(format!(
                "{key}: resized the bias table from window {} to {} ({resize:?})",
                side.div_ceil(2),
                stage.window
            ));
        }
    }
    Ok((dict, notes))
}

/// Old (Microsoft / timm ≤ 0.6) key → timm 1.0 key.
fn old_to_timm_key(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("layers.") {
        if let Some((stage, tail)) = rest.split_once('.') {
            if tail.starts_with("downsample.") {
                let stage: usize = stage.parse().unwrap_or(0);
                return format!("layers.{}.{tail}", stage + 1);
            }
        }
    }
    match key.strip_prefix("head.") {
        Some(tail) if !tail.starts_with("fc.") => format!("head.fc.{tail}"),
        _ => key.to_string(),
    }
}

/// How a relative-position-bias table is resized to another window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableResize {
    /// SimMIM's `load_pretrained`: `F.interpolate(mode="bicubic", align_corners=False)` of each
    /// head's `(2w-1) x (2w-1)` table.
    Bicubic,
    /// timm 1.0's `resize_rel_pos_bias_table`: source offsets spread on a geometric progression
    /// (BEiT), bilinear interpolation at the integer target offsets, edges clamped.
    TimmGeometric,
}

impl TableResize {
    /// `[side², heads]` → `[new_side², heads]`, row-major (dy, dx).
    pub fn apply(self, table: &[f32], side: usize, heads: usize, new_side: usize) -> Vec<f32> {
        // For each output coordinate along one axis: source indices and their weights.
        let taps: Vec<Vec<(usize, f64)>> = match self {
            Self::Bicubic => bicubic_taps(side, new_side),
            Self::TimmGeometric => geometric_taps(side, new_side),
        };
        let mut out = vec![0.0f32; new_side * new_side * heads];
        for (oy, row_taps) in taps.iter().enumerate() {
            for (ox, col_taps) in taps.iter().enumerate() {
                for h in 0..heads {
                    let mut acc = 0.0f64;
                    for &(iy, wy) in row_taps {
                        for &(ix, wx) in col_taps {
                            acc += wy * wx * table[(iy * side + ix) * heads + h] as f64;
                        }
                    }
                    out[(oy * new_side + ox) * heads + h] = acc as f32;
                }
            }
        }
        out
    }
}

/// PyTorch's bicubic sampling positions (align_corners=False, a = -0.75, indices clamped).
fn bicubic_taps(side: usize, new_side: usize) -> Vec<Vec<(usize, f64)>> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = side as f64 / new_side as f64;
    (0..new_side)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let base = src.floor();
            let t = src - base;
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            (0..4)
                .map(|k| {
                    (
                        (base + k as f64 - 1.0).clamp(0.0, side as f64 - 1.0) as usize,
                        weights[k],
                    )
                })
                .collect()
        })
        .collect()
}

/// timm's geometric source grid: offsets `0, ±1, ±(1+q), ±(1+q+q²), ...` with `q` found by
/// bisection so the grid reaches the target's half-width; targets are integer offsets, each
/// interpolated linearly between its two neighbouring source offsets (f32, as timm computes).
fn geometric_taps(side: usize, new_side: usize) -> Vec<Vec<(usize, f64)>> {
    let half = side / 2;
    let progression = |q: f64| (1.0 - q.powi(half as i32)) / (1.0 - q);
    let (mut left, mut right, mut q) = (1.01f64, 1.5f64, 1.01f64);
    while right - left > 1e-6 {
        q = (left + right) / 2.0;
        if progression(q) > (new_side / 2) as f64 {
            right = q;
        } else {
            left = q;
        }
    }
    let mut distances = Vec::with_capacity(half);
    let mut cur = 1.0f64;
    for i in 0..half {
        distances.push(cur);
        cur += q.powi(i as i32 + 1);
    }
    let grid: Vec<f32> = distances
        .iter()
        .rev()
        .map(|d| -d)
        .chain([0.0])
        .chain(distances.iter().copied())
        .map(|v| v as f32)
        .collect();
    let target_half = (new_side / 2) as f32;
    (0..new_side)
        .map(|o| {
            let x = o as f32 - target_half;
            let right = grid.iter().position(|&p| p >= x).unwrap_or(side - 1);
            let left = right.saturating_sub(1);
            let (mut to_left, mut to_right) =
                ((x - grid[left]).max(0.0), (grid[right] - x).max(0.0));
            if to_left == 0.0 && to_right == 0.0 {
                (to_left, to_right) = (1.0, 1.0);
            }
            let total = to_left + to_right;
            vec![
                (left, (to_right / total) as f64),
                (right, (to_left / total) as f64),
            ]
        })
        .collect()
}

/// What [`load_weights`] did, for the user to read.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub applied: usize,
    /// Layout conversions and resizes.
    pub notes: Vec<String>,
    /// Checkpoint keys the model has no place for but that are expected to be absent from it
    /// (a classifier head when loading a backbone, a SimMIM decoder).
    pub ignored: Vec<String>,
    /// Model parameters the checkpoint does not set and that keep their initial values
    /// (the mask token, or a new head).
    pub kept_initial: Vec<String>,
}

impl LoadReport {
    pub fn has_head(&self) -> bool {
        !self.kept_initial.iter().any(|k| k.starts_with("head."))
    }
}

/// Reads a checkpoint and rewrites it into timm 1.0's layout for `config` (see [`to_timm_layout`]).
pub fn read_timm_checkpoint(path: &Path, config: &SwinConfig) -> Result<(StateDict, Vec<String>)> {
    let dict = read_state_dict(path)?;
    to_timm_layout(dict, config).with_context(|| format!("{}", path.display()))
}

/// The burn parameter path of a timm key. Every LayerNorm in Swin is named `norm*`; burn calls
/// its weight and bias `gamma` and `beta`. (Linear weights are transposed by the adapter.)
fn burn_path(key: &str) -> Vec<String> {
    let mut path: Vec<String> = key.split('.').map(str::to_string).collect();
    let n = path.len();
    if n >= 2 && path[n - 2].starts_with("norm") {
        match path[n - 1].as_str() {
            "weight" => path[n - 1] = "gamma".into(),
            "bias" => path[n - 1] = "beta".into(),
            _ => {}
        }
    }
    path
}

/// Number of classes of the checkpoint's classifier head, if it has one.
pub fn head_classes(dict: &StateDict) -> Option<usize> {
    dict.get("head.fc.weight")
        .and_then(|w| w.shape.as_slice().first().copied())
}

/// Loads a timm-layout state dict into `model`. Fails naming every key that is missing (other
/// than the mask token and the head), unexpected, or of the wrong shape.
pub fn load_weights<B: Backend>(
    mut model: Swin<B>,
    dict: StateDict,
    notes: Vec<String>,
) -> Result<(Swin<B>, LoadReport)> {
    let has_head = model.head.is_some();
    let (dict, ignored): (StateDict, StateDict) = dict
        .into_iter()
        .partition(|(k, _)| !(k.starts_with("decoder.") || (!has_head && k.starts_with("head."))));
    let wrong_type: Vec<String> = dict
        .iter()
        .filter(|(_, data)| !data.dtype.is_float())
        .map(|(k, data)| format!("{k}: stored as {:?}, not a floating-point type", data.dtype))
        .collect();
    if !wrong_type.is_empty() {
        bail!(
            "the weights do not fit this model ({} of the wrong type):\n  {}",
            wrong_type.len(),
            wrong_type.join("\n  ")
        );
    }
    let snapshots = dict
        .into_iter()
        .map(|(key, data)| TensorSnapshot::from_data(data, burn_path(&key), vec![], ParamId::new()))
        .collect();
    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    let mut problems: Vec<String> = result.errors.iter().map(|e| format!("{e}")).collect();
    let (kept_initial, missing): (Vec<String>, Vec<String>) = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .partition(|k| k == "mask_token" || k.starts_with("head."));
    problems.extend(
        missing
            .iter()
            .map(|k| format!("missing from the checkpoint: {k}")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .map(|k| format!("unexpected in the checkpoint: {k}")),
    );
    if !problems.is_empty() {
        bail!(
            "the weights do not fit this model ({} problems):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    let report = LoadReport {
        applied: result.applied.len(),
        notes,
        ignored: ignored.into_keys().collect(),
        kept_initial,
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_move_patch_merging_to_the_next_stage() {
        assert_eq!(
            old_to_timm_key("layers.0.downsample.reduction.weight"),
            "layers.1.downsample.reduction.weight"
        );
        assert_eq!(
            old_to_timm_key("layers.2.downsample.norm.bias"),
            "layers.3.downsample.norm.bias"
        );
        assert_eq!(
            old_to_timm_key("layers.1.blocks.0.attn.qkv.weight"),
            "layers.1.blocks.0.attn.qkv.weight"
        );
        assert_eq!(old_to_timm_key("head.weight"), "head.fc.weight");
        assert_eq!(old_to_timm_key("head.fc.bias"), "head.fc.bias");
    }

    #[test]
    fn bicubic_resize_to_the_same_size_is_the_identity() {
        let table: Vec<f32> = (0..49 * 2).map(|v| (v as f32).sin()).collect();
        assert_eq!(TableResize::Bicubic.apply(&table, 7, 2, 7), table);
    }

    #[test]
    fn bicubic_resize_keeps_a_constant_table_constant() {
        let table = vec![0.25f32; 9 * 3];
        for resize in [TableResize::Bicubic, TableResize::TimmGeometric] {
            for v in resize.apply(&table, 3, 3, 13) {
                assert!((v - 0.25).abs() < 1e-6);
            }
        }
    }
}
