//! The `eesmm` binary as a user runs it.

use eesmm::npy;

use super::common::*;

#[test]
fn features_writes_timm_pooled_features_and_logits() {
    let dir = TempDir::new("features");
    let (out, logits) = (dir.0.join("pooled.npy"), dir.0.join("logits.npy"));
    let output = eesmm(&[
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
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pooled = npy::read(&out).unwrap();
    assert_eq!(pooled.shape, vec![2, 96]);
    assert!(
        max_diff(
            &pooled.data,
            &npy::read(&fixture("expected_pooled.npy")).unwrap().data
        ) < 1e-4
    );
    let logits = npy::read(&logits).unwrap();
    assert_eq!(logits.shape, vec![2, 10]);
    assert!(
        max_diff(
            &logits.data,
            &npy::read(&fixture("expected_logits.npy")).unwrap().data
        ) < 1e-4
    );
}

#[test]
fn features_rejects_an_input_of_the_wrong_size() {
    let dir = TempDir::new("badinput");
    let input = dir.0.join("x.npy");
    npy::write(&input, &[1, 3, 28, 28], &vec![0.0; 3 * 28 * 28]).unwrap();
    let output = eesmm(&[
        "features",
        "--model",
        FIXTURE_MODEL,
        "--weights",
        fixture("backbone.safetensors").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.0.join("y.npy").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("x.npy") && stderr.contains("[1, 3, 28, 28] is not [N, 3, 32, 32]"),
        "{stderr}"
    );
    assert!(!dir.0.join("y.npy").exists());
}

#[test]
fn info_prints_size_shapes_and_flops() {
    let output = eesmm(&["info", "models/swin-t.yaml"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    // timm's swin_tiny_patch4_window7_224 without its 769,000-parameter head.
    assert!(
        stdout.contains("parameters: 27519354 (+96 mask token)"),
        "{stdout}"
    );
    assert!(stdout.contains("FLOPs per image: 4.49"), "{stdout}");
    assert!(stdout.contains("7x7x768"), "{stdout}");
}

#[test]
fn invalid_presets_fail_naming_file_and_key() {
    let dir = TempDir::new("preset");
    let path = dir.0.join("bad.yaml");
    std::fs::write(&path, "img_size: 32\npatch_size: 2\nembed_dim: 50\ndepths: [2, 2]\nnum_heads: [3, 6]\nwindow_size: 4\n").unwrap();
    let output = eesmm(&["info", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml: num_heads: stage 0: 3 heads do not divide the width 50"),
        "{stderr}"
    );
}

/// A NaN or an infinity is never within tolerance, even against itself.
#[test]
fn diff_fails_on_nan_and_infinity() {
    let dir = TempDir::new("diff-nan");
    let (nan, inf) = (dir.0.join("nan.npy"), dir.0.join("inf.npy"));
    npy::write(&nan, &[2], &[f32::NAN, f32::NAN]).unwrap();
    npy::write(&inf, &[2], &[f32::INFINITY, 1.0]).unwrap();
    for (a, b) in [(&nan, &nan), (&inf, &inf), (&nan, &inf)] {
        let output = eesmm(&[
            "diff",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--tol",
            "1e9",
        ]);
        assert_eq!(output.status.code(), Some(1), "{a:?} vs {b:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("NaN or infinity"), "{stderr}");
    }
}

#[test]
fn diff_reports_the_error_and_fails_above_the_tolerance() {
    let (f32_pooled, f64_pooled) = (
        fixture("expected_pooled.npy"),
        fixture("expected_pooled_f64.npy"),
    );
    let args = |tol: &'static str| {
        [
            "diff",
            f32_pooled.to_str().unwrap(),
            f64_pooled.to_str().unwrap(),
            "--tol",
            tol,
        ]
        .map(String::from)
    };
    // timm's float32 and float64 pooled outputs differ by 8.9e-7 (manifest.json), 8.3e-7 once
    // the float64 file is read as float32.
    let output = eesmm(&args("1e-5").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("max abs diff 8.3"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let output = eesmm(&args("1e-7").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is above the tolerance 1.0e-7"));
}
