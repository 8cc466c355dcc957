//! The cubecl path (burn's wgpu backend, `--features wgpu`) against NdArray, through the binary a
//! user runs. CI runs these on lavapipe, Mesa's Vulkan on the CPU (`scripts/dev/test.sh` installs it):
//! the same cubecl front-end, runtime and kernels the CUDA backend uses, so a kernel cubecl cannot
//! lower or an op the JIT path gets wrong fails here rather than in a GPU's few minutes.

use std::path::{Path, PathBuf};

use eesmm::npy;

use super::common::*;

/// Asserts the command succeeded and returns its stderr.
fn succeeded(output: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// Largest difference relative to the largest magnitude of `reference`; infinite on NaN/Inf.
fn relative_diff(values: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(values.len(), reference.len());
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    values
        .iter()
        .zip(reference)
        .map(|(a, b)| {
            if a.is_finite() && b.is_finite() {
                (a - b).abs() / scale
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

#[test]
fn encoder_forward_on_wgpu_matches_ndarray() {
    let dir = TempDir::new("wgpu-features");
    let features = |device: &str| {
        let (out, logits) = (
            dir.0.join(format!("pooled-{device}.npy")),
            dir.0.join(format!("logits-{device}.npy")),
        );
        succeeded(eesmm(&[
            "features",
            "--model",
            FIXTURE_MODEL,
            "--weights",
            fixture("cls10.safetensors").to_str().unwrap(),
            "--input",
            fixture("input.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--logits",
            logits.to_str().unwrap(),
            "--device",
            device,
        ]));
        (npy::read(&out).unwrap(), npy::read(&logits).unwrap())
    };
    let (cpu_pooled, cpu_logits) = features("cpu");
    let (gpu_pooled, gpu_logits) = features("wgpu");
    assert_eq!(gpu_pooled.shape, cpu_pooled.shape);
    let pooled = max_diff(&gpu_pooled.data, &cpu_pooled.data);
    let logits = max_diff(&gpu_logits.data, &cpu_logits.data);
    eprintln!("wgpu vs ndarray: pooled max |Δ| {pooled:.2e}, logits max |Δ| {logits:.2e}");
    assert!(pooled <= 1e-4 && logits <= 1e-4, "{pooled} {logits}");
}

/// A stage file of `kind` on `device`: swin-micro-28 without drop path (whose draws come from
/// each backend's own generator), a few Fashion-MNIST images, batch 16, one metrics line per step.
fn stage(dir: &Path, kind: &str, device: &str) -> PathBuf {
    let model = micro_28_without_drop_path(dir);
    let run = dir.join(format!("{kind}-{device}"));
    let body = match kind {
        "pretrain" => "objective: {kind: eesmm, mask_patch_size: 4}\n\
                       optimizer: {base_lr: 4.0e-3, warmup_epochs: 0.25, clip_grad: 5.0}\n\
                       train: {epochs: 1, batch_size: 16, log_every: 1}\n"
            .to_string(),
        _ => "optimizer: {base_lr: 1.0e-3, warmup_epochs: 0.0, clip_grad: 5.0}\n\
              train: {epochs: 1, batch_size: 16, log_every: 1}\n"
            .to_string(),
    };
    let limit = if kind == "pretrain" { 96 } else { 16 };
    let path = dir.join(format!("{kind}-{device}.yaml"));
    std::fs::write(
        &path,
        format!(
            "model: {}\nout_dir: {}\ndevice: {device}\nseed: 3\n\
             data: {{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: {limit}}}\n\
             {body}",
            model.display(),
            run.display()
        ),
    )
    .unwrap();
    path
}

/// Runs `eesmm KIND` on cpu and on wgpu from the same seed and compares every logged loss term
/// and the gradient norm (the backward pass) step by step.
fn losses_match(kind: &str, keys: &[&str], steps: usize) {
    let dir = TempDir::new(&format!("wgpu-{kind}"));
    for device in ["cpu", "wgpu"] {
        let config = stage(&dir.0, kind, device);
        succeeded(eesmm(&[kind, "--config", config.to_str().unwrap()]));
    }
    for key in keys {
        let values = |device: &str| metric(&dir.0.join(format!("{kind}-{device}")), key);
        let (cpu, gpu) = (values("cpu"), values("wgpu"));
        assert_eq!(cpu.len(), steps, "{key}: {cpu:?}");
        let diff = relative_diff(&gpu, &cpu);
        eprintln!("{kind} {key}: wgpu {gpu:?}, cpu {cpu:?}: relative |Δ| {diff:.2e}");
        assert!(diff <= 1e-4, "{key}: {diff}");
    }
}

#[test]
fn three_eesmm_pretraining_steps_on_wgpu_match_ndarray() {
    losses_match(
        "pretrain",
        &["loss", "first", "second", "mix", "grad_norm"],
        3,
    );
}

#[test]
fn a_finetuning_step_on_wgpu_matches_ndarray() {
    losses_match("finetune", &["loss", "grad_norm"], 1);
}

#[test]
fn the_smallest_pipeline_runs_on_wgpu() {
    let dir = TempDir::new("wgpu-pipeline");
    let run_dir = dir.0.join("run");
    let stderr = succeeded(eesmm(&[
        "run",
        "pipelines/pretrain-export.yaml",
        "--set",
        &format!("run_dir={}", run_dir.display()),
        "--set",
        "defaults.device=wgpu",
        "--set",
        "pretrain.data.limit=128",
        "--set",
        "pretrain.train.log_every=1",
    ]));
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(summary.contains(": completed"), "{summary}\n{stderr}");
    let losses = metric(&run_dir.join("pretrain"), "loss");
    assert_eq!(losses.len(), 2, "two steps of 32 pairs: {losses:?}");
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
}
