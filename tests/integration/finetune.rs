//! `eesmm finetune`, `eval`, `linear-probe` and `knn` as a user runs them, on real data:
//! the CIFAR-10 and ImageFolder fixtures and Fashion-MNIST.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::common::*;

fn test_fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn run_ok(args: &[&str]) -> String {
    let output = eesmm(args);
    assert!(
        output.status.success(),
        "eesmm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// 20 CIFAR-10 images, 40 epochs without augmentation: the classifier must fit them, and
/// `eesmm eval` on the saved classifier must give the run's own final number.
#[test]
fn fine_tuning_fits_twenty_cifar_images_and_eval_agrees() {
    let dir = TempDir::new("ft-cifar");
    let cifar = test_fixture("cifar/cifar-10-batches-bin");
    let data = format!(
        "{{dataset: cifar10, root: {}, split: test}}",
        cifar.display()
    );
    let run = dir.0.join("run");
    let config = write(
        &dir.0.join("ft.yaml"),
        &format!(
            "model: models/swin-micro-32.yaml\nout_dir: {}\ndata: {data}\neval_data: {data}\n\
             drop_path_rate: 0.0\noptimizer: {{base_lr: 0.1, weight_decay: 0.0}}\n\
             train: {{epochs: 40, batch_size: 10, log_every: 2}}\n",
            run.display()
        ),
    );
    run_ok(&["finetune", "--config", &config]);
    let report = json(&run.join("eval.json"));
    assert_eq!(report["images"], 20);
    let top1 = report["top1"].as_f64().unwrap();
    assert!(top1 >= 0.9, "fits only {top1} of 20 training images");
    let per_class: u64 = report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["images"].as_u64().unwrap())
        .sum();
    assert_eq!(per_class, 20);
    for file in [
        "classifier.safetensors",
        "loss.png",
        "accuracy.png",
        "eval_confusion.png",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    let sidecar = json(&run.join("classifier.json"));
    assert_eq!(sidecar["class_names"][0], "airplane");
    assert_eq!(sidecar["model"]["num_classes"], 10);

    // `eval` reads the architecture from the sidecar.
    let eval = write(
        &dir.0.join("eval.yaml"),
        &format!(
            "weights: {}\nout_dir: {}\ndata: {data}\n",
            run.join("classifier.safetensors").display(),
            dir.0.join("eval").display()
        ),
    );
    let stdout = run_ok(&["eval", "--config", &eval]);
    assert!(stdout.contains("airplane"), "{stdout}");
    let again = json(&dir.0.join("eval/eval.json"));
    assert_eq!(again["top1"], report["top1"]);
    assert_eq!(again["confusion"], report["confusion"]);
    assert!(dir.0.join("eval/eval_confusion.png").exists());

    // Data-parallel on two CPU replicas (5 images each): the same losses, and it fits too.
    let text = std::fs::read_to_string(&config).unwrap();
    let parallel = write(
        &dir.0.join("ft2.yaml"),
        &format!("device: cpu,cpu\n{}", text.replace("/run\n", "/run2\n")),
    );
    run_ok(&["finetune", "--config", &parallel]);
    let losses = |run: &str| metric(&dir.0.join(run), "loss");
    let (one, two) = (losses("run"), losses("run2"));
    assert_eq!(one.len(), two.len());
    assert!((one[0] - two[0]).abs() < 1e-4, "{} vs {}", one[0], two[0]);
    let top1 = json(&dir.0.join("run2/eval.json"))["top1"]
        .as_f64()
        .unwrap();
    assert!(top1 >= 0.9, "two replicas fit only {top1} of 20 images");
}

/// The whole recipe (crop, RandAugment, erasing, Mixup/CutMix, smoothing, layer decay, EMA)
/// runs, and resuming from a mid-run checkpoint ends with the same classifier, byte for byte.
#[test]
fn the_full_recipe_resumes_to_the_same_classifier() {
    let dir = TempDir::new("ft-resume");
    let stage = |name: &str| {
        write(
            &dir.0.join(format!("{name}.yaml")),
            &format!(
                "model: models/swin-micro-28.yaml\nout_dir: {}\n\
                 data: {{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: 256,\n\
                 \x20 augment: {{scale: [0.5, 1.0]}}}}\n\
                 augment: {{rand_augment: {{num_ops: 2, magnitude: 9}}, random_erasing: 0.5,\n\
                 \x20 mixup: 0.8, cutmix: 1.0, mix_prob: 1.0, switch_prob: 0.5, label_smoothing: 0.1}}\n\
                 ema: 0.9\n\
                 optimizer: {{base_lr: 2.0e-2, layer_decay: 0.75, warmup_epochs: 0.5, clip_grad: 5.0}}\n\
                 train: {{epochs: 2, batch_size: 16, checkpoint_every: 8, keep_checkpoints: 10, log_every: 1}}\n",
                dir.0.join(name).display()
            ),
        )
    };
    let (straight, resumed) = (stage("straight"), stage("resumed"));
    run_ok(&["finetune", "--config", &straight]);
    let checkpoint = dir.0.join("straight/checkpoints/step_00000008");
    assert!(
        checkpoint.join("ema.mpk").exists(),
        "the EMA is checkpointed"
    );
    run_ok(&[
        "finetune",
        "--config",
        &resumed,
        "--resume",
        checkpoint.to_str().unwrap(),
    ]);
    let bytes = |run: &str| std::fs::read(dir.0.join(run).join("classifier.safetensors")).unwrap();
    assert!(
        bytes("straight") == bytes("resumed"),
        "the resumed run ended elsewhere"
    );
    let losses = |run: &str| metric(&dir.0.join(run), "loss");
    assert_eq!(losses("straight").len(), 32);
    assert_eq!(losses("straight")[8..], losses("resumed")[..]);
}

/// On the ImageFolder fixture with the timm weights: a 1-NN of a set against itself is exact,
/// and a linear probe fits 20 points; the features are extracted once and cached.
#[test]
fn linear_probe_and_knn_judge_a_frozen_encoder() {
    let dir = TempDir::new("probe");
    let folder = format!(
        "{{dataset: image_folder, root: {}}}",
        test_fixture("imagefolder/train").display()
    );
    let config = write(
        &dir.0.join("probe.yaml"),
        &format!(
            "model: {FIXTURE_MODEL}\nweights: {}\nout_dir: {}\n\
             train_data: {folder}\ntest_data: {folder}\n\
             probe: {{epochs: 200, lr: 1.0e-2, batch_size: 20}}\nknn: {{k: 1}}\n",
            fixture("cls10.safetensors").display(),
            dir.0.join("probe").display()
        ),
    );
    run_ok(&["knn", "--config", &config]);
    let knn = json(&dir.0.join("probe/knn.json"));
    assert_eq!(knn["images"], 20);
    assert_eq!(knn["top1"], 1.0);
    let cached = std::fs::read_dir(dir.0.join(".features")).unwrap().count();
    assert_eq!(
        cached, 1,
        "train and test are the same data: one cache file"
    );
    run_ok(&["linear-probe", "--config", &config]);
    let probe = json(&dir.0.join("probe/linear_probe.json"));
    assert!(probe["top1"].as_f64().unwrap() >= 0.9, "{probe}");
    assert!(dir.0.join("probe/linear_probe_confusion.png").exists());
}

/// The raw-pixel baselines on real Fashion-MNIST: a 20-NN and a logistic regression on the
/// pixels of 500 class-balanced training images, judged on 1,000 test images, far above
/// chance (10 %); pixels with weights is refused.
#[test]
fn probes_on_raw_pixels_are_the_baselines() {
    let dir = TempDir::new("pixels");
    let fmnist = "{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist";
    let text = format!(
        "model: models/swin-nano-32.yaml\nfeatures: pixels\nout_dir: {}\n\
         train_data: {fmnist}, subset: {{images: 500, seed: 1}}}}\n\
         test_data: {fmnist}, split: test, limit: 1000}}\n\
         probe: {{epochs: 30, lr: 1.0e-3}}\nknn: {{k: 20}}\n",
        dir.0.join("probe").display()
    );
    let config = write(&dir.0.join("pixels.yaml"), &text);
    run_ok(&["knn", "--config", &config]);
    run_ok(&["linear-probe", "--config", &config]);
    for file in ["knn.json", "linear_probe.json"] {
        let report = json(&dir.0.join("probe").join(file));
        assert_eq!(report["images"], 1000);
        let top1 = report["top1"].as_f64().unwrap();
        assert!((0.6..1.0).contains(&top1), "{file}: top-1 {top1}");
    }
    let with_weights = write(
        &dir.0.join("both.yaml"),
        &format!(
            "{text}weights: {}\n",
            fixture("cls10.safetensors").display()
        ),
    );
    let output = eesmm(&["knn", "--config", &with_weights]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("features: pixels judges the input pixels"),
        "{stderr}"
    );
}

#[test]
fn bad_fine_tuning_stages_name_the_file_and_field() {
    let dir = TempDir::new("ft-bad");
    let base = "model: models/swin-micro-28.yaml\nout_dir: /tmp/never\n\
                data: {dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist}\n\
                optimizer: {base_lr: 1.0e-3}\ntrain: {epochs: 1, batch_size: 8}\n";
    for (text, expected) in [
        (
            format!("{base}augment: {{mixupp: 0.8}}\n"),
            "unknown field `mixupp`",
        ),
        (format!("{base}ema: 1.5\n"), "ema: 1.5 is not in [0, 1)"),
        (
            base.replace("base_lr: 1.0e-3", "base_lr: 1.0e-3, layer_decay: 0"),
            "optimizer.layer_decay",
        ),
        (
            format!("{base}init: /no/such/encoder.safetensors\n"),
            "init: /no/such/encoder.safetensors does not exist",
        ),
    ] {
        let config = write(&dir.0.join("bad.yaml"), &text);
        let output = eesmm(&["finetune", "--config", &config]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("bad.yaml") && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert!(!Path::new("/tmp/never").exists());
}

/// Values that used to be accepted silently (a negative warm-up) or panic later (an inverted
/// crop scale) are refused before anything runs, with the allowed range.
#[test]
fn silent_fine_tuning_values_are_refused_with_their_range() {
    let dir = TempDir::new("ft-silent");
    let base = "model: models/swin-micro-28.yaml\nout_dir: /tmp/never-silent\n\
                data: {dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist}\n\
                optimizer: {base_lr: 1.0e-3}\ntrain: {epochs: 1, batch_size: 8}\n";
    for (text, expected) in [
        (
            base.replace("base_lr: 1.0e-3", "base_lr: 1.0e-3, warmup_epochs: -1"),
            "optimizer.warmup_epochs: -1 is not a finite number ≥ 0",
        ),
        (
            base.replace(
                "fashion-mnist}",
                "fashion-mnist, augment: {scale: [1.0, 0.5]}}",
            ),
            "data.augment.scale: [1, 0.5] is not a range [min, max] with 0 < min ≤ max ≤ 1",
        ),
        (
            format!(
                "{base}eval_data: {{dataset: fashion_mnist, root: /x, augment: {{ratio: [0, 1]}}}}\n"
            ),
            "eval_data.augment.ratio: [0, 1] is not a range [min, max] with 0 < min ≤ max",
        ),
        (
            format!("{base}augment: {{rand_augment: {{num_ops: 1000000000}}}}\n"),
            "augment.rand_augment.num_ops: 1000000000 is not in [0, 16]",
        ),
        (
            format!("{base}augment: {{mixup: .inf}}\n"),
            "augment.mixup: inf is not a finite value ≥ 0",
        ),
    ] {
        let config = write(&dir.0.join("silent.yaml"), &text);
        let output = eesmm(&["finetune", "--config", &config]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("silent.yaml") && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert!(!Path::new("/tmp/never-silent").exists());
}

/// ImageFolder: labels and class names come from the sorted folder names, and they travel with
/// the classifier into `eval` and the ONNX model card.
#[test]
fn fine_tuning_on_an_image_folder_keeps_its_class_names() {
    let dir = TempDir::new("ft-folder");
    let folder = format!(
        "{{dataset: image_folder, root: {}}}",
        test_fixture("imagefolder/train").display()
    );
    let run = dir.0.join("run");
    let config = write(
        &dir.0.join("ft.yaml"),
        &format!(
            "model: {FIXTURE_MODEL}\nout_dir: {}\n\
             init: {}\ndata: {folder}\neval_data: {folder}\n\
             optimizer: {{base_lr: 1.0e-2}}\ntrain: {{epochs: 1, batch_size: 10}}\n",
            run.display(),
            fixture("cls10.safetensors").display()
        ),
    );
    run_ok(&["finetune", "--config", &config]);
    let mut wnids: Vec<String> = std::fs::read_dir(test_fixture("imagefolder/train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    wnids.sort();
    let sidecar = json(&run.join("classifier.json"));
    let names: Vec<String> = sidecar["class_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, wnids);
    let report = json(&run.join("eval.json"));
    assert_eq!(report["images"], 20);
    assert_eq!(report["per_class"][0]["class"], wnids[0].as_str());

    // The exported classifier's model card (ONNX metadata) carries the names.
    let onnx = dir.0.join("model.onnx");
    run_ok(&[
        "export",
        "--model",
        FIXTURE_MODEL,
        "--weights",
        run.join("classifier.safetensors").to_str().unwrap(),
        "--head",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    let metadata = std::fs::read(&onnx).unwrap();
    let text = String::from_utf8_lossy(&metadata);
    assert!(text.contains(&wnids[0]) && text.contains(&wnids[wnids.len() - 1]));

    // The weights carry their architecture: without --model the export is the same file; a
    // preset that disagrees with the sidecar is refused, naming the key.
    let from_sidecar = dir.0.join("from_sidecar.onnx");
    let weights = run.join("classifier.safetensors");
    run_ok(&[
        "export",
        "--weights",
        weights.to_str().unwrap(),
        "--head",
        "--out",
        from_sidecar.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&from_sidecar).unwrap(), metadata);
    let output = eesmm(&[
        "export",
        "--model",
        "models/swin-micro-32.yaml",
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        dir.0.join("wrong.onnx").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model: embed_dim is 48, but")
            && stderr.contains("classifier.json says the weights were trained with 24"),
        "{stderr}"
    );
}
