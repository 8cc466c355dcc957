//! `eesmm run` as a user runs it: the resolved plan, errors with their positions, and a real
//! pretrain → export → verify pipeline that is skipped when up to date and re-run when changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// The pipeline of the real run: a tiny pretraining, its export and the check of the export.
/// `x-train` holds an anchor that a stage merges with `<<`.
fn pipeline(dir: &Path) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            "name: tiny\n\
             run_dir: {run}\n\
             vars:\n  fmnist: /usr/share/datasets/fashion-mnist\n\
             defaults:\n  model: models/swin-micro-28.yaml\n  device: cpu\n  seed: 0\n\
             x-train: &train\n  epochs: 1\n  batch_size: 16\n\
             stages:\n\
             \x20 - name: pretrain\n\
             \x20   kind: pretrain\n\
             \x20   data: {{dataset: fashion_mnist, root: \"${{vars.fmnist}}\", limit: 128}}\n\
             \x20   objective: {{kind: eesmm, mask_patch_size: 4}}\n\
             \x20   optimizer: {{base_lr: 4.0e-3, warmup_epochs: 0.25, clip_grad: 5.0}}\n\
             \x20   train:\n\
             \x20     <<: *train\n\
             \x20     log_every: 1\n\
             \x20 - name: export\n\
             \x20   kind: export\n\
             \x20   weights: ${{pretrain.encoder}}\n\
             \x20 - name: verify\n\
             \x20   kind: verify\n\
             \x20   onnx: ${{export.onnx}}\n\
             \x20   weights: ${{pretrain.encoder}}\n\
             \x20   batch: 2\n\
             \x20   iters: 1\n",
            run = dir.join("run").display()
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    eesmm(&all)
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stage name → status, from `summary.json`.
fn statuses(run_dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(statuses: &[(String, String)], expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    assert_eq!(statuses, expected);
}

#[test]
fn dry_run_prints_the_resolved_plan_and_writes_nothing() {
    let dir = TempDir::new("pipeline-plan");
    let file = pipeline(&dir.0);
    let stdout = stdout_of(&run(&[
        file.to_str().unwrap(),
        "--dry-run",
        "--set",
        "pretrain.train.epochs=2",
        "--set",
        "export.head=false",
    ]));
    let run_dir = dir.0.join("run");
    for expected in [
        "stages[0] pretrain (pretrain): would run (no record of a finished run)",
        "stages[1] export (export): would run (reads outputs of `pretrain`, which runs first)",
        // The merged anchor, with --set over it.
        "epochs: 2\n",
        "batch_size: 16\n",
        "log_every: 1\n",
        // Defaults, vars and references substituted.
        "model: models/swin-micro-28.yaml",
        "root: /usr/share/datasets/fashion-mnist",
        &format!(
            "weights: {}",
            run_dir.join("pretrain/encoder.safetensors").display()
        ),
        &format!("onnx: {}", run_dir.join("export/model.onnx").display()),
        &format!("out_dir: {}", run_dir.join("verify").display()),
    ] {
        assert!(stdout.contains(expected), "`{expected}` not in\n{stdout}");
    }
    assert!(!run_dir.exists(), "a dry run writes nothing");
}

#[test]
fn the_example_pipeline_resolves_with_vars_from_the_environment() {
    let output = eesmm_with_env(
        &[
            "run",
            "pipelines/pretrain-export.yaml",
            "--dry-run",
            "--set",
            "run_dir=/nonexistent/runs",
        ],
        &[("EESMM_FMNIST", "/usr/share/datasets")],
    );
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("weights: /nonexistent/runs/pretrain/encoder.safetensors"),
        "{stdout}"
    );
    assert!(stdout.contains("root: /usr/share/datasets\n"), "{stdout}");
}

/// Writes `stages` (YAML lines of the stage list) into a pipeline file and runs it: it must
/// fail before running anything; returns stderr.
fn errors(dir: &Path, stages: &str, sets: &[&str]) -> String {
    let file = dir.join("bad.yaml");
    let run_dir = dir.join("bad-run");
    std::fs::write(
        &file,
        format!(
            "name: bad\nrun_dir: {}\ndefaults:\n  model: models/swin-micro-28.yaml\nstages:\n{stages}",
            run_dir.display()
        ),
    )
    .unwrap();
    let mut args = vec![file.to_str().unwrap()];
    args.extend_from_slice(sets);
    let output = run(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !run_dir.exists(),
        "nothing may be created before every check passed"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const PRETRAIN: &str = "  - name: pretrain\n    kind: pretrain\n    \
     data: {dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: 128}\n    \
     objective: {kind: eesmm, mask_patch_size: 4}\n    optimizer: {base_lr: 4.0e-3}\n    \
     train: {epochs: 1, batch_size: 16}\n";

#[test]
fn errors_name_file_line_column_stage_and_key_and_nothing_runs() {
    let dir = TempDir::new("pipeline-errors");
    let file = dir.0.join("bad.yaml");
    let at = |line_col: &str| format!("{}:{line_col}:", file.display());

    // An unknown key, in a flow mapping on line 9.
    let stderr = errors(
        &dir.0,
        &PRETRAIN.replace(
            "mask_patch_size: 4}",
            "mask_patch_size: 4, mask_ratios: 0.5}",
        ),
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "{} stages[0] (pretrain) objective.mask_ratios: unknown field `mask_ratios`",
            at("9:50")
        )),
        "{stderr}"
    );

    // A wrong type.
    let stderr = errors(&dir.0, &PRETRAIN.replace("epochs: 1", "epochs: many"), &[]);
    assert!(
        stderr.contains(&format!(
            "{} stages[0] (pretrain) train.epochs: invalid u64, got \"many\"",
            at("11:13")
        )),
        "{stderr}"
    );

    // A wrong type given by --set is reported at the argument.
    let stderr = errors(&dir.0, PRETRAIN, &["--set", "pretrain.seed=abc"]);
    assert!(
        stderr
            .contains("bad.yaml (--set pretrain.seed=abc): stages[0] (pretrain) seed: invalid u64"),
        "{stderr}"
    );

    // References to a later stage and to an unknown one.
    let stages = format!(
        "  - name: export\n    kind: export\n    weights: ${{pretrain.encoder}}\n{PRETRAIN}\
         \x20 - name: verify\n    kind: verify\n    onnx: ${{exporter.onnx}}\n    weights: x\n"
    );
    let stderr = errors(&dir.0, &stages, &[]);
    assert!(
        stderr.contains(&format!(
            "{} stages[0] (export) weights: `${{pretrain.encoder}}`: `pretrain` is a later stage \
             (stages[1]); a stage can only use outputs of stages before it (which also rules out \
             reference cycles)",
            at("8:14")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} stages[2] (verify) onnx: `${{exporter.onnx}}`: no stage named `exporter`",
            at("17:11")
        )),
        "{stderr}"
    );

    // A missing input file.
    let stages = format!(
        "{PRETRAIN}  - name: export\n    kind: export\n    weights: /nonexistent/w.safetensors\n"
    );
    let stderr = errors(&dir.0, &stages, &[]);
    assert!(
        stderr.contains(&format!(
            "{} stages[1] (export) weights: /nonexistent/w.safetensors does not exist",
            at("14:5")
        )),
        "{stderr}"
    );

    // A duplicate stage name; every error is reported, with a count.
    let stages = format!(
        "{PRETRAIN}{}  - name: export\n    kind: nope\n",
        PRETRAIN.replace("epochs: 1", "epochs: x")
    );
    let stderr = errors(&dir.0, &stages, &[]);
    assert!(
        stderr.contains(&format!(
            "{} stages[1].name: duplicate stage name `pretrain` (also stages[0])",
            at("12:11")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} stages[2] (export) kind: unknown kind `nope`; expected one of pretrain, finetune, eval, linear_probe, knn, export",
            at("19:11")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 errors in") && stderr.contains("nothing was run"),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_runs_records_skips_and_reruns_what_changed() {
    let dir = TempDir::new("pipeline-run");
    let file = pipeline(&dir.0);
    let file = file.to_str().unwrap();
    let run_dir = dir.0.join("run");

    let stdout = stdout_of(&run(&[file]));
    assert!(stdout.contains("stage     kind"), "{stdout}");
    expect(
        &statuses(&run_dir),
        &[("pretrain", "ran"), ("export", "ran"), ("verify", "ran")],
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    for stage in summary["stages"].as_array().unwrap() {
        for artifact in stage["artifacts"].as_array().unwrap() {
            assert!(Path::new(artifact.as_str().unwrap()).exists(), "{artifact}");
        }
    }
    assert_eq!(summary["stages"][0]["metric"]["name"], "loss");
    assert_eq!(summary["stages"][2]["metric"]["name"], "max_abs");
    assert!(run_dir.join("export/model.onnx").exists());
    assert!(run_dir.join("summary.md").exists());
    for stage in ["pretrain", "export", "verify"] {
        assert!(run_dir.join(format!(".eesmm/{stage}.done.json")).exists());
    }

    stdout_of(&run(&[file]));
    expect(
        &statuses(&run_dir),
        &[
            ("pretrain", "skipped"),
            ("export", "skipped"),
            ("verify", "skipped"),
        ],
    );

    // --only with --force runs that stage alone; the others stay up to date.
    stdout_of(&run(&[file, "--only", "export", "--force"]));
    expect(
        &statuses(&run_dir),
        &[
            ("pretrain", "skipped"),
            ("export", "ran"),
            ("verify", "skipped"),
        ],
    );

    // A new seed re-runs pretraining, and so everything that reads its encoder.
    let stdout = stdout_of(&run(&[file, "--set", "pretrain.seed=1"]));
    assert!(
        stdout.contains("pretrain (pretrain): running (configuration changed)"),
        "{stdout}"
    );
    expect(
        &statuses(&run_dir),
        &[("pretrain", "ran"), ("export", "ran"), ("verify", "ran")],
    );

    // A failing stage is marked in the summary, which is written anyway, and the exit is 1.
    let output = run(&[file, "--set", "pretrain.seed=1", "--set", "verify.tol=0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("stage `verify` failed: ONNX Runtime and burn differ"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    expect(
        &statuses(&run_dir),
        &[
            ("pretrain", "skipped"),
            ("export", "skipped"),
            ("verify", "failed"),
        ],
    );
    let markdown = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(
        markdown.contains("| verify | verify | failed |"),
        "{markdown}"
    );

    // Back to seed 0: the records now hold seed 1, so --from export needs pretrain first.
    let output = run(&[file, "--from", "export"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "stage `pretrain` (before --from export) is not up to date: configuration changed"
        ),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A pipeline killed during pretraining resumes from the stage's checkpoints when run again
/// unchanged, and starts afresh when its configuration changed meanwhile.
#[test]
fn an_interrupted_stage_resumes_only_when_unchanged() {
    let dir = TempDir::new("pipeline-resume");
    let file = pipeline(&dir.0);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("limit: 128", "limit: 384")
        .replace("log_every: 1", "log_every: 1\n      checkpoint_every: 3");
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let run_dir = dir.0.join("run");

    let mut child = Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(["run", file, "--only", "pretrain"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = run_dir.join("pretrain/checkpoints/step_00000003/state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run_dir.join(".eesmm/pretrain.done.json").exists());

    let output = run(&[file, "--only", "pretrain"]);
    let stdout = stdout_of(&output);
    assert!(stdout.contains("resuming"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("resuming from"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // With another seed, the finished run's checkpoints are stale: resuming from them would
    // train no step at all.
    let output = run(&[file, "--only", "pretrain", "--set", "pretrain.seed=2"]);
    let stdout = stdout_of(&output);
    assert!(!stdout.contains("resuming"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("removing stale checkpoints"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Ctrl-C during pretraining (48 steps): the stage stops at a step boundary with a checkpoint of the steps
/// done, the summary says `interrupted`, the exit status is 130; a second `eesmm run` of the
/// same directory meanwhile is refused; running again resumes and finishes.
#[test]
fn ctrl_c_stops_at_a_step_writes_the_summary_and_resumes() {
    let dir = TempDir::new("pipeline-sigint");
    let file = pipeline(&dir.0);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("limit: 128", "limit: 1536")
        .replace("log_every: 1", "log_every: 1\n      checkpoint_every: 3");
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let run_dir = dir.0.join("run");

    let mut child = Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(["run", file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoints = run_dir.join("pretrain/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoints.join("step_00000003/state.json").exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&[file]);
    assert_eq!(second.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(
        refusal.contains("in use by another eesmm process")
            && refusal.contains(&format!("pid {}", child.id())),
        "{refusal}"
    );
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running 60 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "interrupted");
    expect(
        &statuses(&run_dir),
        &[
            ("pretrain", "interrupted"),
            ("export", "not_run"),
            ("verify", "not_run"),
        ],
    );
    // The checkpoint holds exactly the steps logged: the stop came at a step boundary.
    let newest = eesmm::train::checkpoint::latest(&run_dir.join("pretrain")).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest.join("state.json")).unwrap()).unwrap();
    let logged = metric(&run_dir.join("pretrain"), "step");
    assert_eq!(state["step"].as_f64(), logged.last().copied());
    assert!(logged.len() < 48, "interrupted after the last step");

    let output = run(&[file]);
    let stdout = stdout_of(&output);
    assert!(stdout.contains("resuming"), "{stdout}");
    expect(
        &statuses(&run_dir),
        &[("pretrain", "ran"), ("export", "ran"), ("verify", "ran")],
    );
    // 48 logged steps (the epoch's separation line comes after them).
    assert_eq!(metric(&run_dir.join("pretrain"), "loss").len(), 48);
}

/// `--dry-run` hashes a stage's input folder from the same listing as training: a link back to a
/// folder already listed and a FIFO named like an image end the listing instead of hanging it.
#[test]
fn dry_run_ends_on_a_folder_with_a_link_cycle_and_a_fifo() {
    let dir = TempDir::new("pipeline-cycle");
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(
        "tests/fixtures/imagefolder/train/n01855672/n01855672_15.JPEG",
        images.join("a.jpg"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&dir.0, images.join("loop")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(images.join("pipe.png"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let file = dir.0.join("cycle.yaml");
    std::fs::write(
        &file,
        format!(
            "name: cycle\nrun_dir: {}\ndefaults:\n  model: models/swin-micro-28.yaml\n\
             stages:\n  - name: pretrain\n    kind: pretrain\n\
             \x20   data: {{dataset: unlabelled_folder, root: {}}}\n\
             \x20   objective: {{kind: eesmm, mask_patch_size: 4}}\n\
             \x20   optimizer: {{base_lr: 1.0e-3}}\n\
             \x20   train: {{epochs: 1, batch_size: 2}}\n",
            dir.0.join("run").display(),
            images.display()
        ),
    )
    .unwrap();
    let output = eesmm_within(&["run", file.to_str().unwrap(), "--dry-run"], 60);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("stages[0] pretrain (pretrain): would run (no record of a finished run)"),
        "{stdout}"
    );
}

/// Every pipeline in `pipelines/` resolves and validates, with the dataset roots pointed at the
/// fixtures through `EESMM_<NAME>` (ImageNet: the ImageFolder fixture as both train and val),
/// full.yaml's training stages on two GPUs.
#[test]
fn every_shipped_pipeline_validates() {
    let dir = TempDir::new("pipeline-shipped");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let imagenet = dir.0.join("imagenet");
    std::fs::create_dir_all(&imagenet).unwrap();
    for split in ["train", "val"] {
        std::os::unix::fs::symlink(fixtures.join("imagefolder/train"), imagenet.join(split))
            .unwrap();
    }
    let (cifar10, cifar100) = (
        fixtures.join("cifar/cifar-10-batches-bin"),
        fixtures.join("cifar/cifar-100-binary"),
    );
    let env = [
        ("EESMM_IMAGENET", imagenet.to_str().unwrap()),
        ("EESMM_CIFAR10", cifar10.to_str().unwrap()),
        ("EESMM_CIFAR100", cifar100.to_str().unwrap()),
        // full.yaml trains data-parallel on these (a dry run parses them, needs no GPU).
        ("EESMM_TRAIN_DEVICES", "cuda:0,cuda:1"),
    ];
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for file in &names {
        let run_dir = dir.0.join("runs");
        let output = eesmm_with_env(
            &[
                "run",
                file.to_str().unwrap(),
                "--dry-run",
                "--set",
                &format!("run_dir={}", run_dir.display()),
            ],
            &env,
        );
        let stdout = stdout_of(&output);
        let text = std::fs::read_to_string(file).unwrap();
        let stages = text.matches("\n  - name: ").count();
        assert_eq!(
            stdout.matches(": would run").count(),
            stages,
            "{}:\n{stdout}",
            file.display()
        );
        assert!(!run_dir.exists(), "a dry run writes nothing");
    }
}

/// `pipelines/quickstart.yaml` for real, shrunk with `--set`: every stage runs, the ONNX
/// classifier names Fashion-MNIST's classes, the summary lists it all; a second run skips all.
#[test]
fn the_quickstart_pipeline_runs_at_reduced_size() {
    let dir = TempDir::new("pipeline-quickstart");
    let run_dir = dir.0.join("run");
    let run_dir_set = format!("run_dir={}", run_dir.display());
    let args = [
        "pipelines/quickstart.yaml",
        "--set",
        &run_dir_set,
        "--set",
        "pretrain.data.limit=256",
        "--set",
        "pretrain.train.batch_size=16",
        "--set",
        "finetune.data.limit=256",
        "--set",
        "finetune.eval_data.limit=200",
        "--set",
        "finetune.train.batch_size=16",
        "--set",
        "verify.batch=2",
        "--set",
        "verify.iters=1",
    ];
    stdout_of(&run(&args));
    let names = ["pretrain", "finetune", "export", "verify", "infer"];
    let ran: Vec<(&str, &str)> = names.iter().map(|n| (*n, "ran")).collect();
    expect(&statuses(&run_dir), &ran);
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("finetune/eval.json")).unwrap())
            .unwrap();
    assert_eq!(eval["images"], 200);
    assert!(run_dir.join("export/model.onnx").exists());
    let predictions = std::fs::read_to_string(run_dir.join("infer/predictions.jsonl")).unwrap();
    assert_eq!(predictions.lines().count(), 10, "one line per sample image");
    assert!(
        predictions.contains("\"Ankle boot\"") || predictions.contains("\"Trouser\""),
        "{predictions}"
    );
    // People-shaped figures: accuracies as %, counts as integers.
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    let row = |stage: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("| {stage} |")))
            .unwrap_or_else(|| panic!("no {stage} row in {summary}"))
            .to_string()
    };
    let top1 = format!("top-1 {:.2} %", 100.0 * eval["top1"].as_f64().unwrap());
    assert!(row("finetune").contains(&top1), "{summary}");
    assert!(row("infer").contains("| images 10 |"), "{summary}");

    stdout_of(&run(&args));
    let skipped: Vec<(&str, &str)> = names.iter().map(|n| (*n, "skipped")).collect();
    expect(&statuses(&run_dir), &skipped);
}
