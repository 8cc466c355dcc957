//! `eesmm export`, `verify` and `infer` as a user runs them, with ONNX Runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eesmm::npy;
use eesmm::runtime::OnnxModel;

use super::common::*;

fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn photos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos")
}

/// `eesmm export` of `weights` in the fixture's architecture to `out`, with the extra flags given.
fn export(weights: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut args = vec![
        "export",
        "--model",
        FIXTURE_MODEL,
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    eesmm(&args)
}

/// Exports the timm fixture (10-class head) into `dir`, with the extra flags given.
fn export_fixture(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let stdout = success(&export(&fixture("cls10.safetensors"), &out, flags));
    assert!(
        stdout.contains("input images [batch, 3, 32, 32]"),
        "{stdout}"
    );
    out
}

#[test]
fn export_writes_a_model_card_that_infer_can_use() {
    let dir = TempDir::new("card");
    let labels = dir.0.join("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("thing {i}")).collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    let path = export_fixture(
        &dir.0,
        "m.onnx",
        &["--head", "--labels", labels.to_str().unwrap()],
    );
    let card = OnnxModel::load(&path).unwrap().card;
    assert_eq!((card.image_size, card.in_chans), (32, 3));
    assert_eq!(card.resize_shorter_side, 35); // floor(32 / 0.9), timm's crop
    assert_eq!(card.mean, [0.485, 0.456, 0.406]);
    assert_eq!(card.std, [0.229, 0.224, 0.225]);
    assert_eq!(card.class_names, names);
    assert_eq!(card.outputs, ["pooled", "logits"]);
    assert_eq!(card.model_config.num_classes, 10);
    assert_eq!(card.model_config.embed_dim, 24);
    assert_eq!(card.source_checkpoint, "cls10.safetensors");
    let sha = eesmm::hash::sha256_file(&fixture("cls10.safetensors")).unwrap();
    assert_eq!(card.source_checkpoint_sha256, sha);
    assert_eq!(sha.len(), 64);
    assert_eq!(card.eesmm_version, env!("CARGO_PKG_VERSION"));
}

/// `onnx.checker.check_model(full_check=True)` (stricter than ORT: shapes on every output).
/// The Python with `onnx` comes from EESMM_TEST_PYTHON, which scripts/dev/test.sh sets up.
#[test]
fn exported_model_passes_the_onnx_checker_full_check() {
    let python = std::env::var("EESMM_TEST_PYTHON").expect(
        "EESMM_TEST_PYTHON is not set: it must name a Python with the `onnx` package \
         (scripts/dev/test.sh creates .venv-test/ and sets it)",
    );
    let dir = TempDir::new("checker");
    let script = "import sys, onnx\n\
                  m = onnx.load(sys.argv[1])\n\
                  onnx.checker.check_model(m, full_check=True)\n\
                  print('checked', m.ir_version, m.opset_import[0].version, len(m.graph.node))";
    // full_check infers every tensor's type: in fp16 it proves that no fp32 value is left
    // between the input and output Casts.
    for precision in ["fp32", "fp16"] {
        let flags = ["--head", "--feature-map", "--precision", precision];
        let path = export_fixture(&dir.0, &format!("{precision}.onnx"), &flags);
        let output = Command::new(&python)
            .args(["-c", script, path.to_str().unwrap()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let stdout = success(&output);
        assert!(stdout.starts_with("checked 8 17 "), "{precision}: {stdout}");
    }
}

#[test]
fn verify_reports_errors_and_latency_and_fails_above_the_tolerance() {
    let dir = TempDir::new("verify");
    let path = export_fixture(&dir.0, "m.onnx", &["--head", "--feature-map"]);
    let weights = fixture("cls10.safetensors");
    let args = |tol: &'static str| {
        vec![
            "verify".to_string(),
            path.to_str().unwrap().into(),
            "--weights".into(),
            weights.to_str().unwrap().into(),
            "--images".into(),
            photos().to_str().unwrap().into(),
            "--batch".into(),
            "4".into(),
            "--iters".into(),
            "1".into(),
            "--tol".into(),
            tol.into(),
            "--json".into(),
        ]
    };
    let run = |tol| eesmm(&args(tol).iter().map(String::as_str).collect::<Vec<_>>());
    let output = run("1e-4");
    let report: serde_json::Value = serde_json::from_str(&success(&output)).unwrap();
    assert_eq!(report["passed"], true);
    let comparisons = report["comparisons"].as_array().unwrap();
    // pooled, logits, features on the random batch and on the 3 photos.
    assert_eq!(comparisons.len(), 6);
    assert_eq!(comparisons[3]["inputs"], "3 images");
    let worst = comparisons
        .iter()
        .map(|c| c["max_abs"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(worst > 0.0 && worst < 1e-4, "{worst}");
    assert!(comparisons
        .iter()
        .all(|c| c["relative"].as_f64().unwrap() < 1e-5));
    let latency = report["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 2);
    assert_eq!(
        (latency[0]["batch"].as_u64(), latency[1]["batch"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(latency
        .iter()
        .all(|l| l["ort_ms"].as_f64().unwrap() > 0.0 && l["burn_ms"].as_f64().unwrap() > 0.0));

    // ORT and burn differ by ~1e-6: a tolerance below that fails with exit code 1.
    let output = run("1e-9");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("above the tolerance 1.0e-9"), "{stderr}");
}

/// `export --precision fp16` then `verify`, as a user runs them: the card says fp16, verify picks
/// fp16's tolerance (1e-2 relative to the largest burn output) and passes on the random batch
/// and the photos, every difference finite; the file is about half the fp32 export's.
#[test]
fn fp16_export_verifies_in_ort_within_its_tolerance_at_half_the_size() {
    let dir = TempDir::new("fp16");
    let flags = ["--head", "--feature-map"];
    let fp32 = export_fixture(&dir.0, "fp32.onnx", &flags);
    let fp16 = export_fixture(
        &dir.0,
        "fp16.onnx",
        &[&flags[..], &["--precision", "fp16"]].concat(),
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&fp16) / size(&fp32);
    assert!((0.45..0.55).contains(&ratio), "fp16 / fp32 size {ratio}");
    assert_eq!(
        OnnxModel::load(&fp16).unwrap().card.precision,
        eesmm::onnx::Precision::Fp16
    );
    let weights = fixture("cls10.safetensors");
    let output = eesmm(&[
        "verify",
        fp16.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--images",
        photos().to_str().unwrap(),
        "--batch",
        "4",
        "--iters",
        "1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&success(&output)).unwrap();
    assert_eq!(report["precision"], "fp16");
    let tolerance = report["tolerance"].as_f64().unwrap();
    assert!((tolerance - 1e-2).abs() < 1e-9, "{tolerance}");
    assert_eq!(report["tolerance_kind"], "relative");
    assert_eq!(report["passed"], true);
    let comparisons = report["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 6);
    for c in comparisons {
        eprintln!("fp16 verify: {c}");
        // An infinity or NaN serialises as null: `expect` fails on it.
        let max_abs = c["max_abs"].as_f64().expect("a finite difference");
        let relative = c["relative"].as_f64().expect("a finite difference");
        // Measured 1.1e-3 .. 2.0e-3 relative (max abs 1.9e-3 .. 9.1e-3, the features the largest).
        assert!(max_abs > 0.0 && relative < 1e-2, "{c}");
    }
}

#[test]
fn infer_json_gives_sorted_probabilities_that_sum_to_one() {
    let dir = TempDir::new("infer");
    let path = export_fixture(&dir.0, "m.onnx", &["--head"]);
    let stdout = success(&eesmm(&[
        "infer",
        photos().to_str().unwrap(),
        "--model",
        path.to_str().unwrap(),
        "--topk",
        "10",
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 3);
    for (file, name) in files
        .iter()
        .zip(["astronaut.jpg", "chelsea.jpg", "coffee.jpg"])
    {
        assert!(file.ends_with(name), "{file}");
    }
    for line in &lines {
        let topk = line["topk"].as_array().unwrap();
        assert_eq!(topk.len(), 10);
        let probs: Vec<f64> = topk.iter().map(|p| p["prob"].as_f64().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
        let mut indices: Vec<u64> = topk.iter().map(|p| p["index"].as_u64().unwrap()).collect();
        let index = indices[0];
        assert_eq!(topk[0]["label"], format!("class_{index}"));
        indices.sort();
        assert_eq!(indices, (0..10).collect::<Vec<_>>());
    }
    // Default text output: the top 5 per image.
    let stdout = success(&eesmm(&[
        "infer",
        photos().join("chelsea.jpg").to_str().unwrap(),
        "--model",
        path.to_str().unwrap(),
    ]));
    assert_eq!(stdout.lines().count(), 1 + 5, "{stdout}");
}

/// A corrupt file is reported by name and makes the exit code 1; the other images (one of them a
/// PNG named .jpg, decoded by content) are still classified.
#[test]
fn infer_reports_unreadable_images_by_name_and_processes_the_rest() {
    let dir = TempDir::new("corrupt");
    let path = export_fixture(&dir.0, "m.onnx", &["--head"]);
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(photos().join("coffee.jpg"), images.join("a_coffee.jpg")).unwrap();
    std::fs::write(
        images.join("b_corrupt.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    image::open(photos().join("chelsea.jpg"))
        .unwrap()
        .save_with_format(images.join("c_png_named.jpg"), image::ImageFormat::Png)
        .unwrap();
    let output = eesmm(&[
        "infer",
        images.to_str().unwrap(),
        "--model",
        path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("b_corrupt.jpg: "), "{stderr}");
    assert!(
        stderr.contains("1 of 3 images could not be read"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["topk"].as_array().unwrap().len(), 5);
    assert!(lines[1]["file"]
        .as_str()
        .unwrap()
        .ends_with("b_corrupt.jpg"));
    assert!(lines[1]["error"].is_string());
    assert_eq!(lines[2]["topk"].as_array().unwrap().len(), 5);
}

/// Logs captured in a file (stderr not a terminal) are plain text: the warning about an entry
/// that is not a regular file comes without colour codes.
#[test]
fn captured_logs_carry_no_colour_codes() {
    let dir = TempDir::new("plainlog");
    let path = export_fixture(&dir.0, "m.onnx", &["--head"]);
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(photos().join("coffee.jpg"), images.join("a_coffee.jpg")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("nowhere"), images.join("b_dangling.jpg")).unwrap();
    let output = eesmm(&[
        "infer",
        images.to_str().unwrap(),
        "--model",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("left out 1 entries"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a captured log: {stderr:?}"
    );
}

/// `--features` writes the pooled embeddings, equal to burn's on the same preprocessed pixels.
#[test]
fn infer_features_writes_the_embeddings_burn_computes() {
    let dir = TempDir::new("embed");
    let path = export_fixture(&dir.0, "encoder.onnx", &[]);
    let out = dir.0.join("emb.npy");
    let model = path.to_str().unwrap();
    let photo = photos().join("astronaut.jpg");
    // An encoder-only model cannot classify.
    let output = eesmm(&["infer", photo.to_str().unwrap(), "--model", model]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("use --features"));

    success(&eesmm(&[
        "infer",
        photo.to_str().unwrap(),
        "--model",
        model,
        "--features",
        out.to_str().unwrap(),
    ]));
    let embeddings = npy::read(&out).unwrap();
    assert_eq!(embeddings.shape, [1, 96]);
    let card = OnnxModel::load(&path).unwrap().card;
    let pixels = card.load_image(&photo).unwrap();
    let config = fixture_model();
    let weights = fixture("cls10.safetensors");
    let device = Default::default();
    let (burn_model, _) = eesmm::model::load_model::<B>(config, &weights, false, &device).unwrap();
    let images = burn::tensor::Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(pixels, [1, 3, 32, 32]),
        &device,
    );
    let pooled: Vec<f32> = burn_model.forward(images).into_data().to_vec().unwrap();
    let error = embeddings
        .data
        .iter()
        .zip(&pooled)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(error < 1e-4, "{error}");
}

/// What is evaluated is what is shipped: the pooled features of the same image files through the
/// evaluation engine (`eesmm knn`'s feature extraction: the image-folder loader with the model's
/// resize, burn) and through `eesmm infer --features` (the ONNX model card's preprocessing, ONNX
/// Runtime) agree. The photos are large (512 px and more), so any difference in resize, filter,
/// crop or normalisation between the two paths shows far above the tolerance.
#[test]
fn eval_and_infer_compute_the_same_features_of_an_image_file() {
    let dir = TempDir::new("eval-infer");
    let class = dir.0.join("images/photo");
    std::fs::create_dir_all(&class).unwrap();
    for name in ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"] {
        std::fs::copy(photos().join(name), class.join(name)).unwrap();
    }
    let weights = fixture("cls10.safetensors");
    let folder = format!(
        "{{dataset: image_folder, root: {}}}",
        dir.0.join("images").display()
    );
    let config = dir.0.join("knn.yaml");
    std::fs::write(
        &config,
        format!(
            "model: {FIXTURE_MODEL}\nweights: {}\nout_dir: {}\n\
             train_data: {folder}\ntest_data: {folder}\nknn: {{k: 1}}\n",
            weights.display(),
            dir.0.join("knn").display()
        ),
    )
    .unwrap();
    success(&eesmm(&["knn", "--config", config.to_str().unwrap()]));
    let cache: Vec<_> = std::fs::read_dir(dir.0.join(".features"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cache.len(), 1, "train and test are the same set: {cache:?}");
    let evaluated = npy::read(&cache[0]).unwrap();

    let onnx = export_fixture(&dir.0, "encoder.onnx", &[]);
    let served = dir.0.join("served.npy");
    success(&eesmm(&[
        "infer",
        class.to_str().unwrap(),
        "--model",
        onnx.to_str().unwrap(),
        "--features",
        served.to_str().unwrap(),
    ]));
    let served = npy::read(&served).unwrap();
    assert_eq!(evaluated.shape, [3, 96]);
    assert_eq!(served.shape, evaluated.shape);
    let error = max_diff(&served.data, &evaluated.data);
    assert!(error < 1e-5, "eval and infer features differ by {error}");
}

/// Weights holding a NaN: ONNX Runtime and burn both output NaN, which is a failure of the
/// check, not a difference of 0.
#[test]
fn verify_fails_when_the_outputs_are_nan() {
    let dir = TempDir::new("verify-nan");
    let dict = eesmm::model::weights::read_state_dict(&fixture("cls10.safetensors")).unwrap();
    let mut dict: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> = dict
        .into_iter()
        .map(|(k, v)| (k, (v.shape.to_vec(), v.to_vec::<f32>().unwrap())))
        .collect();
    dict.get_mut("norm.weight").unwrap().1[0] = f32::NAN;
    let weights = dir.0.join("nan.safetensors");
    write_safetensors(&weights, &dict);
    let onnx = dir.0.join("nan.onnx");
    success(&export(&weights, &onnx, &["--head"]));
    let output = eesmm(&[
        "verify",
        onnx.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--iters",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("inf"),
        "{stdout}"
    );
}

/// Values that would silently give a broken model card or no output are refused.
#[test]
fn export_refuses_a_zero_std_and_infer_an_empty_folder() {
    let dir = TempDir::new("silent-values");
    let weights = fixture("cls10.safetensors");
    let output = export(&weights, &dir.0.join("m.onnx"), &["--std", "0.2,0,0.2"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--std: [0.2, 0.0, 0.2] must be finite and positive"),
        "{stderr}"
    );
    assert!(!dir.0.join("m.onnx").exists());

    let onnx = export_fixture(&dir.0, "e.onnx", &[]);
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = eesmm(&[
        "infer",
        empty.to_str().unwrap(),
        "--model",
        onnx.to_str().unwrap(),
        "--features",
        dir.0.join("f.npy").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no image files in") && stderr.contains("empty"),
        "{stderr}"
    );
}

#[test]
fn missing_onnx_runtime_says_how_to_get_it() {
    let dir = TempDir::new("noort");
    let path = export_fixture(&dir.0, "m.onnx", &["--head"]);
    let output = eesmm_with_env(
        &[
            "infer",
            photos().to_str().unwrap(),
            "--model",
            path.to_str().unwrap(),
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ONNX Runtime 1.31.1 not found")
            && stderr.contains("/nonexistent/libonnxruntime.so.1.31.1")
            && stderr.contains("scripts/setup_ort.sh")
            && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
}

#[test]
fn bench_onnx_reports_ort_and_burn_latency() {
    let stdout = success(&eesmm(&[
        "bench",
        "onnx",
        "--model",
        "models/swin-micro-32.yaml",
        "--batch",
        "1,2",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
    ]));
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per batch, the fp32 then the fp16 export, against one burn timing.
    assert_eq!(rows.len(), 4);
    let cases = [(1, "fp32"), (1, "fp16"), (2, "fp32"), (2, "fp16")];
    for (row, (batch, precision)) in rows.iter().zip(cases) {
        assert_eq!(row["model"], "swin-micro-32");
        assert_eq!(row["batch"], batch);
        assert_eq!(row["precision"], precision);
        assert!(row["ort_ms"].as_f64().unwrap() > 0.0);
        assert!(row["burn_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(rows[0]["burn_ms"], rows[1]["burn_ms"]);
    let megabytes = |row: &serde_json::Value| row["onnx_mb"].as_f64().unwrap();
    let ratio = megabytes(&rows[1]) / megabytes(&rows[0]);
    assert!((0.45..0.55).contains(&ratio), "fp16 / fp32 size {ratio}");
}

/// Non-UTF-8 file names, a truncated JPEG, a FIFO and a tiny image with a huge resize target in
/// one `infer` batch: each bad file is an error naming it, the good ones are still classified
/// (with `--json`, the name with U+FFFD for the bytes JSON cannot hold) or embedded, exit code 1.
#[test]
fn infer_reports_hostile_files_and_keeps_the_good_ones() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("hostile-infer");
    let onnx = export_fixture(&dir.0, "m.onnx", &["--head"]);
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let good = images.join(OsStr::from_bytes(b"a_caf\xe9.jpg"));
    std::fs::copy(photos().join("coffee.jpg"), &good).unwrap();
    let bytes = std::fs::read(photos().join("chelsea.jpg")).unwrap();
    std::fs::write(images.join("b_truncated.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    image::GrayImage::new(1, 5000)
        .save(images.join("c_tall.png"))
        .unwrap();
    let fifo = dir.0.join("fifo.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let run = |extra: &[&OsStr]| {
        let output = Command::new(env!("CARGO_BIN_EXE_eesmm"))
            .args([OsStr::new("infer"), images.as_os_str(), fifo.as_os_str()])
            .args([
                OsStr::new("--model"),
                onnx.as_os_str(),
                OsStr::new("--json"),
            ])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("b_truncated.jpg: truncated JPEG")
                && stderr.contains("c_tall.png: a 1x5000 image resized to 35x175000")
                && stderr.contains("fifo.png: not a regular file")
                && stderr.contains("3 of 4 images could not be read"),
            "{stderr}"
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("a_caf\u{FFFD}.jpg"));
        assert!(lines[1..].iter().all(|l| l["error"].is_string()));
        lines
    };
    let lines = run(&[]);
    assert_eq!(lines[0]["topk"].as_array().unwrap().len(), 5);
    let features = dir.0.join(OsStr::from_bytes(b"f\xff.npy"));
    let lines = run(&[OsStr::new("--features"), features.as_os_str()]);
    assert_eq!(lines[0]["row"], 0);
    assert_eq!(npy::read(&features).unwrap().shape[0], 1);
}
