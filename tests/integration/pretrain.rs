//! `eesmm pretrain` as a user runs it, on real Fashion-MNIST images.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use eesmm::model::load_model;

use super::common::*;

/// A small stage: swin-micro-28, `images` Fashion-MNIST images, batch 16 (32 images per step).
fn stage(dir: &Path, name: &str, images: usize, epochs: usize, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let run = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "model: models/swin-micro-28.yaml\nout_dir: {}\n\
             data: {{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: {images}}}\n\
             objective: {{kind: eesmm, mask_patch_size: 4}}\n\
             optimizer: {{base_lr: 4.0e-3, warmup_epochs: 0.25, clip_grad: 5.0}}\n\
             train: {{epochs: {epochs}, batch_size: 16, checkpoint_every: 3, log_every: 1{extra}}}\n",
            run.display()
        ),
    )
    .unwrap();
    path
}

fn losses(run: &Path) -> Vec<f64> {
    metric(run, "loss")
}

#[test]
fn eesmm_loss_falls_and_the_run_leaves_its_artifacts() {
    let dir = TempDir::new("pretrain");
    let config = stage(&dir.0, "run", 1024, 2, "");
    let output = eesmm(&["pretrain", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = dir.0.join("run");
    let losses = losses(&run);
    assert_eq!(losses.len(), 64, "one metrics line per step");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..8]), mean(&losses[56..]));
    assert!(
        last < 0.85 * first,
        "loss went from {first:.3} to {last:.3}"
    );
    for file in [
        "loss.png",
        "recon_epoch001.png",
        "recon_epoch002.png",
        "encoder.mpk",
        "encoder.json",
        "stage.json",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    // The timm-layout export loads back into a Swin (every key, no extras).
    let (_, report) = load_model::<B>(
        preset("swin-micro-28.yaml"),
        &run.join("encoder.safetensors"),
        false,
        &Default::default(),
    )
    .unwrap();
    assert!(report.kept_initial.is_empty(), "{:?}", report.kept_initial);
}

/// A run killed mid-way and resumed ends with exactly the weights of an uninterrupted run, also
/// when its newest checkpoint is corrupt (it falls back to the one before) and a checkpoint
/// folder was half-written. While it runs, a second run of the same directory is refused.
#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let dir = TempDir::new("resume");
    let straight = stage(&dir.0, "straight", 384, 1, "");
    assert!(eesmm(&["pretrain", "--config", straight.to_str().unwrap()])
        .status
        .success());

    let interrupted = stage(&dir.0, "interrupted", 384, 1, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(["pretrain", "--config", interrupted.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .unwrap();
    let checkpoints = dir.0.join("interrupted/checkpoints");
    let second_checkpoint = checkpoints.join("step_00000006/state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !second_checkpoint.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second_run = eesmm(&["pretrain", "--config", interrupted.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(second_run.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&second_run.stderr);
    assert!(
        refusal.contains("in use by another eesmm process")
            && refusal.contains(&format!("pid {}", child.id())),
        "{refusal}"
    );
    assert!(
        !dir.0.join("interrupted/encoder.safetensors").exists(),
        "killed before the end"
    );

    // The newest checkpoint loses half its weights file; a killed write left a temporary folder.
    let newest = eesmm::train::checkpoint::latest(&dir.0.join("interrupted")).unwrap();
    let weights = newest.join("model.mpk");
    let length = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let stale = checkpoints.join(".step_00000009.tmp99999");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("state.json"), "{").unwrap();

    let resumed = eesmm(&["pretrain", "--config", interrupted.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: not a usable checkpoint", newest.display()))
            && stderr.contains("trying the one before")
            && stderr.contains("resuming from"),
        "{stderr}"
    );
    assert!(
        !stale.exists(),
        "the stale temporary folder was not removed"
    );

    let a = std::fs::read(dir.0.join("straight/encoder.safetensors")).unwrap();
    let b = std::fs::read(dir.0.join("interrupted/encoder.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    assert_eq!(
        losses(&dir.0.join("straight")),
        losses(&dir.0.join("interrupted"))
    );
}

/// `--resume` from a checkpoint of another architecture is refused before loading, by name.
#[test]
fn resuming_from_another_models_checkpoint_is_refused() {
    let dir = TempDir::new("resume-other");
    let micro = stage(&dir.0, "micro", 96, 1, "");
    assert!(eesmm(&["pretrain", "--config", micro.to_str().unwrap()])
        .status
        .success());
    let checkpoint = eesmm::train::checkpoint::latest(&dir.0.join("micro")).unwrap();
    // The same preset with wider embeddings.
    let wider = dir.0.join("wider.yaml");
    let preset = std::fs::read_to_string("models/swin-micro-28.yaml").unwrap();
    std::fs::write(&wider, preset.replace("embed_dim: 48", "embed_dim: 24")).unwrap();
    let other = stage(&dir.0, "other", 96, 1, "");
    let text = std::fs::read_to_string(&other).unwrap().replace(
        "model: models/swin-micro-28.yaml",
        &format!("model: {}", wider.display()),
    );
    std::fs::write(&other, text).unwrap();
    let output = eesmm(&[
        "pretrain",
        "--config",
        other.to_str().unwrap(),
        "--resume",
        checkpoint.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}: made for another model", checkpoint.display())),
        "{stderr}"
    );
}

/// `grad_norm` in `metrics.jsonl` is the real norm also when clipping is off (it was 0).
#[test]
fn grad_norm_is_logged_without_clipping() {
    let dir = TempDir::new("noclip");
    let config = stage(&dir.0, "noclip", 256, 1, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(", clip_grad: 5.0", "");
    std::fs::write(&config, text).unwrap();
    let output = eesmm(&["pretrain", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let norms = metric(&dir.0.join("noclip"), "grad_norm");
    assert_eq!(norms.len(), losses(&dir.0.join("noclip")).len());
    assert!(!norms.is_empty());
    assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_its_checkpoint() {
    let dir = TempDir::new("nan");
    let config = stage(&dir.0, "nan", 512, 1, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("base_lr: 4.0e-3", "base_lr: 1.0e+30")
        .replace(", clip_grad: 5.0", "");
    std::fs::write(&config, text).unwrap();
    let output = eesmm(&["pretrain", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the loss became") && stderr.contains("last good checkpoint"),
        "{stderr}"
    );
    assert!(!dir.0.join("nan/encoder.safetensors").exists());
}

#[test]
fn bad_stage_files_fail_naming_file_line_and_field() {
    let dir = TempDir::new("badstage");
    let config = stage(&dir.0, "bad", 512, 1, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "objective: {kind: eesmm,",
            "objective: {kind: eesmm, mask_ratios: 0.5,",
        ),
    )
    .unwrap();
    let stderr =
        String::from_utf8_lossy(&eesmm(&["pretrain", "--config", config.to_str().unwrap()]).stderr)
            .to_string();
    assert!(
        stderr.contains("bad.yaml")
            && stderr.contains("unknown field `mask_ratios`")
            && stderr.contains("line 4"),
        "{stderr}"
    );

    std::fs::write(
        &config,
        text.replace("mask_patch_size: 4", "mask_patch_size: 3"),
    )
    .unwrap();
    let stderr =
        String::from_utf8_lossy(&eesmm(&["pretrain", "--config", config.to_str().unwrap()]).stderr)
            .to_string();
    assert!(
        stderr.contains(
            "objective.mask_patch_size: 3 must be a multiple of the model's patch_size 2"
        ),
        "{stderr}"
    );

    std::fs::write(
        &config,
        text.replace("/usr/share/datasets/fashion-mnist", "/nonexistent/fmnist"),
    )
    .unwrap();
    let stderr =
        String::from_utf8_lossy(&eesmm(&["pretrain", "--config", config.to_str().unwrap()]).stderr)
            .to_string();
    assert!(
        stderr.contains("data.root: /nonexistent/fmnist does not exist"),
        "{stderr}"
    );
}

/// The transformer decoder, the visibility tokens and crop augmentation train end to end, and SimMIM runs on the
/// same code (one image per encoder input: twice the steps for the same images).
#[test]
fn transformer_decoder_visibility_tokens_and_simmim_run() {
    let dir = TempDir::new("variants");
    let eesmm_config = stage(&dir.0, "transformer", 256, 1, "");
    let text = std::fs::read_to_string(&eesmm_config).unwrap().replace("limit: 256}", "limit: 256, augment: {scale: [0.5, 1.0]}}").replace(
        "objective: {kind: eesmm, mask_patch_size: 4}",
        "objective: {kind: eesmm, mask_patch_size: 4, visibility_tokens: true, decoder: {kind: transformer, width: 32, depth: 1, heads: 4}}",
    );
    std::fs::write(&eesmm_config, &text).unwrap();
    let output = eesmm(&["pretrain", "--config", eesmm_config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(losses(&dir.0.join("transformer")).len(), 8); // 256 images / 32 per step

    let simmim_config = stage(&dir.0, "simmim", 256, 1, "");
    let text = std::fs::read_to_string(&simmim_config)
        .unwrap()
        .replace("kind: eesmm", "kind: simmim");
    std::fs::write(&simmim_config, &text).unwrap();
    let output = eesmm(&["pretrain", "--config", simmim_config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(losses(&dir.0.join("simmim")).len(), 16); // 256 images / 16 per step
}

/// The tensors of a safetensors file, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The stage of `stage()` on `device`, without drop path (two CPU replicas share one RNG).
fn data_parallel_stage(dir: &Path, name: &str, device: &str, images: usize) -> PathBuf {
    let model = micro_28_without_drop_path(dir);
    let path = stage(dir, name, images, 1, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("models/swin-micro-28.yaml", model.to_str().unwrap());
    std::fs::write(&path, format!("device: \"{device}\"\n{text}")).unwrap();
    path
}

/// Two replicas (`device: cpu,cpu`), each on half of every batch with burn-collective averaging
/// their gradients, train like one device on the whole batch. The reconstruction terms of each
/// image match to float precision; the mixed term differs slightly, as each replica normalises
/// it by its own half's masked-pixel count.
#[test]
fn two_replicas_train_like_one_device() {
    let dir = TempDir::new("ddp");
    for (name, device) in [("one", "cpu"), ("two", "cpu,cpu")] {
        let config = data_parallel_stage(&dir.0, name, device, 256);
        let output = eesmm(&["pretrain", "--config", config.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let terms = |run: &str| -> Vec<[f64; 3]> {
        let [first, second, mix] = ["first", "second", "mix"].map(|k| metric(&dir.0.join(run), k));
        (0..first.len())
            .map(|i| [first[i], second[i], mix[i]])
            .collect()
    };
    let (one, two) = (terms("one"), terms("two"));
    assert_eq!(one.len(), 8);
    assert_eq!(two.len(), 8, "rank 0 logs every step once");
    for k in 0..2 {
        assert!(
            (one[0][k] - two[0][k]).abs() < 1e-5,
            "step 1 term {k}: {:?} vs {:?}",
            one[0],
            two[0]
        );
    }
    assert!((one[0][2] - two[0][2]).abs() < 1e-2 * one[0][2]);
    let (a, b) = (
        tensors(&dir.0.join("one/encoder.safetensors")),
        tensors(&dir.0.join("two/encoder.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|((name, x), (_, y))| (max_diff(x, y), name))
        .fold(
            (0.0, ""),
            |m, (d, n)| if d > m.0 { (d, n.as_str()) } else { m },
        );
    let first_step = (0..2)
        .map(|k| (one[0][k] - two[0][k]).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "two replicas vs one device: step-1 image terms differ by {first_step:.1e}, \
         weights after 8 steps by {:.1e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 2e-4,
        "weights differ by {} in {}",
        worst.0,
        worst.1
    );
    assert!(dir
        .0
        .join("two/checkpoints/step_00000008/state.json")
        .exists());

    // A two-replica checkpoint resumes on one device and ends where the two replicas did.
    let config = data_parallel_stage(&dir.0, "resumed", "cpu", 256);
    let checkpoint = dir.0.join("two/checkpoints/step_00000006");
    let output = eesmm(&[
        "pretrain",
        "--config",
        config.to_str().unwrap(),
        "--resume",
        checkpoint.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from"), "{stderr}");
    let resumed = tensors(&dir.0.join("resumed/encoder.safetensors"));
    let worst = resumed
        .iter()
        .zip(&b)
        .map(|((_, x), (_, y))| max_diff(x, y))
        .fold(0.0, f32::max);
    assert!(
        worst < 1e-4,
        "resumed on one device: weights differ by {worst}"
    );
}

/// A diverging data-parallel run stops every replica with the NaN message (none is left
/// waiting in an all-reduce), and a batch that does not split evenly is refused up front.
#[test]
fn a_diverging_data_parallel_run_stops_every_replica() {
    let dir = TempDir::new("ddp-nan");
    let config = data_parallel_stage(&dir.0, "nan", "cpu,cpu", 512);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("base_lr: 4.0e-3", "base_lr: 1.0e+30")
        .replace(", clip_grad: 5.0", "");
    std::fs::write(&config, text).unwrap();
    let output = eesmm_within(&["pretrain", "--config", config.to_str().unwrap()], 120);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the loss became"), "{stderr}");

    let uneven = data_parallel_stage(&dir.0, "uneven", "cpu,cpu,cpu", 512);
    let output = eesmm(&["pretrain", "--config", uneven.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("train.batch_size: 16 does not split evenly over the 3 devices"),
        "{stderr}"
    );
}

/// An image that passes the folder scan (its header is whole) but cannot be decoded fails the
/// batch of the replica that draws it — here the second replica, at the second step: both stop,
/// the error names the file, and the run exits 1 instead of waiting in an all-reduce.
#[test]
fn a_replica_that_cannot_decode_an_image_stops_the_run() {
    let dir = TempDir::new("ddp-badimage");
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..32u32 {
        let image = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y * i) as u8]));
        image.save(images.join(format!("{i:02}.png"))).unwrap();
    }
    // Batch 4 pairs = 8 images per step; at the second step (the first one also makes the
    // preview grid) the second replica takes positions 12..16 of the epoch's order (seed 0),
    // files in sorted order.
    let second_replicas = eesmm::data::loader::epoch_order(32, 0, 0)[12];
    let victim = images.join(format!("{second_replicas:02}.png"));
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let config = data_parallel_stage(&dir.0, "bad", "cpu,cpu", 32);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: 32}",
        &format!("{{dataset: unlabelled_folder, root: {}}}", images.display()),
    );
    std::fs::write(&config, text.replace("batch_size: 16", "batch_size: 4")).unwrap();
    let output = eesmm_within(&["pretrain", "--config", config.to_str().unwrap()], 120);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(&format!("{name}: cannot decode")),
        "{stderr}"
    );
}

/// Three free TCP ports in a row on every interface (the coordinator and the two data services
/// of a two-node run on this machine).
fn free_ports() -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok();
    (0..200)
        .map(|i| 20_000 + ((std::process::id() as u16).wrapping_mul(7) % 20_000 + i * 97) % 40_000)
        .find(|&base| (base..base + 3).all(free))
        .expect("three free ports")
}

/// Node `rank` of a two-node pretraining of `config` (one CPU device each) on loopback, its
/// output in `log`.
fn node(config: &Path, rank: usize, port: u16, log: &Path) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_eesmm"))
        .args(["pretrain", "--config", config.to_str().unwrap()])
        .args(["--nodes", "2", "--node-rank", &rank.to_string()])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--node-timeout", "60"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `seconds`; its exit status and how long it took.
fn wait_within(child: &mut std::process::Child, seconds: u64) -> (std::process::ExitStatus, f64) {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed().as_secs_f64());
        }
        if started.elapsed().as_secs() > seconds {
            child.kill().unwrap();
            panic!("a node still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Both nodes of a two-node run of `config`; panics unless both succeed.
fn two_nodes(config: &Path, dir: &Path, tag: &str) {
    let port = free_ports();
    let logs = [0, 1].map(|r| dir.join(format!("{tag}-node{r}.log")));
    let mut nodes = [0, 1].map(|r| node(config, r, port, &logs[r]));
    for (rank, child) in nodes.iter_mut().enumerate() {
        let (status, _) = wait_within(child, 600);
        let log = std::fs::read_to_string(&logs[rank]).unwrap();
        assert!(status.success(), "{tag} node {rank}: {log}");
    }
}

/// Two processes on 127.0.0.1 (`--nodes 2`, one CPU device each) through burn-collective's global
/// mode train like one process with `device: cpu,cpu`: the same global replicas take the same
/// rows, so the final encoders match. Killing node 1 mid-run makes node 0 exit 1 naming it, well
/// within the timeout, and the same two commands resume from node 0's checkpoint and end where
/// the uninterrupted run did.
#[test]
fn two_nodes_train_like_two_local_replicas_and_survive_a_kill() {
    let dir = TempDir::new("nodes");
    let local = data_parallel_stage(&dir.0, "local", "cpu,cpu", 256);
    let output = eesmm(&["pretrain", "--config", local.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = data_parallel_stage(&dir.0, "nodes", "cpu", 256);
    let started = std::time::Instant::now();
    two_nodes(&config, &dir.0, "nodes");
    let two_nodes_s = started.elapsed().as_secs_f64();
    assert_eq!(
        metric(&dir.0.join("nodes"), "loss").len(),
        8,
        "node 0 alone logs"
    );
    let worst = |a: &Path, b: &Path| {
        let (a, b) = (tensors(a), tensors(b));
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|((_, x), (_, y))| max_diff(x, y))
            .fold(0.0, f32::max)
    };
    let nodes_encoder = dir.0.join("nodes/encoder.safetensors");
    let difference = worst(&dir.0.join("local/encoder.safetensors"), &nodes_encoder);
    eprintln!(
        "two nodes vs device: cpu,cpu: encoders differ by {difference:.1e} after 8 steps \
         ({two_nodes_s:.1} s for both nodes)"
    );
    assert!(difference <= 1e-6, "encoders differ by {difference}");

    // Node 1 killed after node 0's first checkpoint: node 0 exits 1, naming node 1.
    let config = data_parallel_stage(&dir.0, "killed", "cpu", 256);
    let port = free_ports();
    let logs = [0, 1].map(|r| dir.0.join(format!("killed-node{r}.log")));
    let mut nodes = [0, 1].map(|r| node(&config, r, port, &logs[r]));
    let checkpoint = dir.0.join("killed/checkpoints/step_00000003/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !checkpoint.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nodes[1].kill().unwrap();
    nodes[1].wait().unwrap();
    let (status, after_kill_s) = wait_within(&mut nodes[0], 90);
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    eprintln!(
        "node 0 exited {:?} {after_kill_s:.1} s after node 1 was killed",
        status.code()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("node 1"), "{log}");
    assert!(!dir.0.join("killed/encoder.safetensors").exists());

    two_nodes(&config, &dir.0, "resumed");
    let log = std::fs::read_to_string(dir.0.join("resumed-node1.log")).unwrap();
    assert!(log.contains("resuming from"), "{log}");
    let difference = worst(&dir.0.join("killed/encoder.safetensors"), &nodes_encoder);
    eprintln!("resumed after the kill vs uninterrupted: encoders differ by {difference:.1e}");
    assert!(
        difference < 1e-4,
        "resumed: encoders differ by {difference}"
    );
}

/// The image the second replica cannot decode, now on node 1 of a two-node run: node 1 exits 1
/// with the decode error, and node 0 exits 1 naming node 1 and that cause (carried by the
/// step's agreement), at the same step.
#[test]
fn a_node_that_cannot_decode_an_image_stops_the_other_with_its_cause() {
    let dir = TempDir::new("nodes-badimage");
    let images = dir.0.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..32u32 {
        let image = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y * i) as u8]));
        image.save(images.join(format!("{i:02}.png"))).unwrap();
    }
    // As in `a_replica_that_cannot_decode_an_image_stops_the_run`: global replica 1 (node 1)
    // takes positions 12..16 of the epoch's order at the second step.
    let victim = images.join(format!(
        "{:02}.png",
        eesmm::data::loader::epoch_order(32, 0, 0)[12]
    ));
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let config = data_parallel_stage(&dir.0, "bad", "cpu", 32);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "{dataset: fashion_mnist, root: /usr/share/datasets/fashion-mnist, limit: 32}",
        &format!("{{dataset: unlabelled_folder, root: {}}}", images.display()),
    );
    std::fs::write(&config, text.replace("batch_size: 16", "batch_size: 4")).unwrap();
    let port = free_ports();
    let logs = [0, 1].map(|r| dir.0.join(format!("node{r}.log")));
    let mut nodes = [0, 1].map(|r| node(&config, r, port, &logs[r]));
    let name = victim.file_name().unwrap().to_str().unwrap();
    for (rank, child) in nodes.iter_mut().enumerate() {
        let (status, _) = wait_within(child, 120);
        let log = std::fs::read_to_string(&logs[rank]).unwrap();
        assert_eq!(status.code(), Some(1), "node {rank}: {log}");
        assert!(
            log.contains(&format!("{name}: cannot decode")),
            "node {rank}: {log}"
        );
    }
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("stopped at step 1: node 1 failed: "), "{log}");
}
