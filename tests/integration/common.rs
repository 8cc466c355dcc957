//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::prelude::*;
use eesmm::npy;

pub type B = eesmm::backend::Cpu;

/// A file of the timm parity fixture (tests/fixtures/timm-swin-tiny, made by
/// scripts/fixtures/make_parity_fixture.py).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/timm-swin-tiny")
        .join(name)
}

/// The parity fixture's architecture, relative to the repository root (where `eesmm` runs).
pub const FIXTURE_MODEL: &str = "tests/fixtures/timm-swin-tiny/model.yaml";

/// The parity fixture's architecture.
pub fn fixture_model() -> eesmm::model::SwinConfig {
    eesmm::model::SwinConfig::load(&fixture("model.yaml")).unwrap()
}

pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn preset(name: &str) -> eesmm::model::SwinConfig {
    eesmm::model::SwinConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name),
    )
    .unwrap()
}

pub fn read_tensor<const D: usize>(path: &Path) -> Tensor<B, D> {
    let array = npy::read(path).unwrap();
    Tensor::from_data(
        TensorData::new(array.data, array.shape),
        &Default::default(),
    )
}

/// Runs the `eesmm` binary from the repository root with extra environment variables.
pub fn eesmm_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

pub fn eesmm(args: &[&str]) -> Output {
    eesmm_with_env(args, &[])
}

/// Runs the `eesmm` binary like [`eesmm`], failing the test if it has not exited after
/// `seconds` (for runs that must not hang).
pub fn eesmm_within(args: &[&str], seconds: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("eesmm {args:?} still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The values of `key` in a run directory's `metrics.jsonl`, in order (lines without it skipped).
pub fn metric(run: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_f64())
        .collect()
}

/// Largest absolute difference of two slices of the same length; infinite when either side holds a NaN or an infinity, so that a
/// non-finite result never passes a tolerance (`f32::max` alone would drop NaN).
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    eesmm::compare::difference(a, b).max_abs
}

/// Largest absolute difference between two arrays of the same shape.
pub fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let values = |t: Tensor<B, D>| t.into_data().to_vec::<f32>().unwrap();
    max_diff(&values(a), &values(b))
}

/// A scratch folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("eesmm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `dict` (name → (shape, values)) as a safetensors file.
pub fn write_safetensors(
    path: &std::path::Path,
    dict: &std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) {
    let bytes: std::collections::BTreeMap<&String, (Vec<usize>, Vec<u8>)> = dict
        .iter()
        .map(|(k, (shape, values))| {
            (
                k,
                (
                    shape.clone(),
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            )
        })
        .collect();
    let views: Vec<(&String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, (shape, data))| {
            (
                *k,
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// swin-micro-28 without drop path, written into `dir`: drop path draws from the backend's (and
/// replica's) own generator, so runs meant to match each other turn it off.
pub fn micro_28_without_drop_path(dir: &Path) -> PathBuf {
    let model = dir.join("model.yaml");
    let preset = std::fs::read_to_string("models/swin-micro-28.yaml").unwrap();
    std::fs::write(
        &model,
        preset.replace("drop_path_rate: 0.1", "drop_path_rate: 0.0"),
    )
    .unwrap();
    model
}
