#!/usr/bin/env python3
"""The label-efficiency experiment (docs/results.md): what self-supervised
pretraining buys when labels are few.

Pretraining on all 60,000 Fashion-MNIST training images without labels, SimMIM and EESMM at equal
pretraining wall time (EESMM encodes two images per pass, so it makes more epochs in the same
time); then, for every encoder and for none (scratch), fine-tuning, a linear probe and a 20-NN
vote with 600 (1 %), 6,000 (10 %) and 60,000 labels (class-balanced random subsets, 3 seeds at
600 and 6,000, one at 60,000), plus the raw-pixel baselines (a logistic regression and a 20-NN on
pixels). Every number is judged on the 10,000 test images. Each run is skipped when its result
exists, so re-running resumes; rows go to docs/results/label-efficiency.json (stamped:
scripts/stamp.py) and the plot to docs/results/label-efficiency.png (`eesmm report
label-efficiency`).

    python3 scripts/experiments/label_efficiency.py [BINARY]          (hours on 2 cores; see docs/results.md)
    EESMM_LABELS=600 python3 scripts/experiments/label_efficiency.py   (only the 600-label runs)
"""
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import stamp  # noqa: E402  (scripts/stamp.py)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "runs" / "label-efficiency"
RESULTS = ROOT / "docs" / "results" / "label-efficiency.json"
PLOT = ROOT / "docs" / "results" / "label-efficiency.png"
FMNIST = os.environ.get("EESMM_FMNIST", "/usr/share/datasets/fashion-mnist")
MODEL = "models/swin-nano-32.yaml"
# Pretraining epochs over the 60,000 images: SimMIM's, and EESMM's for the same wall time (an
# EESMM step costs about what a SimMIM step costs and consumes two images; `eesmm bench pretrain`).
PRETRAIN_EPOCHS = {"simmim": 1, "eesmm": 2}
LABELS = [600, 6000, 60000]
SEEDS = {600: [0, 1, 2], 6000: [0, 1, 2], 60000: [0]}
# Fine-tuning: about the same number of images seen per run at 600 and 6,000 labels.
FINETUNE_EPOCHS = {600: 50, 6000: 5, 60000: 2}


def train_data(labels, seed, augment=None):
    data = {"dataset": "fashion_mnist", "root": FMNIST, "split": "train"}
    if labels < 60000:
        data["subset"] = {"images": labels, "seed": seed}
    if augment:
        data["augment"] = augment
    return data


TEST_DATA = {"dataset": "fashion_mnist", "root": FMNIST, "split": "test"}


def pretrain_stage(kind):
    objective = {"kind": kind, "mask_patch_size": 4, "mask_ratio": 0.6,
                 "augment": {"rotate_degrees": 15, "hflip": True, "max_scale": 1.25,
                             "random_crop": True}}
    if kind == "eesmm":
        objective.update(EESMM_DEFAULTS)
    return {
        "model": MODEL, "seed": 0, "out_dir": str(OUT / f"pretrain-{kind}"),
        "data": train_data(60000, 0),
        "objective": objective,
        "optimizer": {"base_lr": 1.0e-2, "warmup_epochs": 0.1, "min_lr": 1.0e-5,
                      "weight_decay": 0.05, "clip_grad": 5.0},
        "train": {"epochs": PRETRAIN_EPOCHS[kind], "batch_size": 64, "checkpoint_every": 200,
                  "log_every": 20},
    }


# The objective options the quickstart ships (docs/pretraining.md).
EESMM_DEFAULTS = {"masks": "complementary", "mask_ratio": 0.5, "assignment": "pit"}


def finetune_stage(name, pretraining, labels, seed):
    stage = {
        "model": MODEL, "seed": seed, "out_dir": str(OUT / name),
        "data": train_data(labels, seed, {"scale": [0.8, 1.0], "hflip": True}),
        "eval_data": TEST_DATA,
        "eval_every": FINETUNE_EPOCHS[labels],
        "optimizer": {"base_lr": 3.2e-2, "warmup_epochs": 0.1 * FINETUNE_EPOCHS[labels],
                      "min_lr": 1.0e-5, "weight_decay": 0.05, "clip_grad": 5.0},
        "train": {"epochs": FINETUNE_EPOCHS[labels], "batch_size": 32,
                  "checkpoint_every": 500, "log_every": 20},
    }
    if pretraining != "scratch":
        stage["init"] = str(OUT / f"pretrain-{pretraining}" / "encoder.safetensors")
    return stage


def probe_stage(name, pretraining, labels, seed):
    stage = {
        "model": MODEL, "seed": seed, "out_dir": str(OUT / name),
        "train_data": train_data(labels, seed), "test_data": TEST_DATA,
        "probe": {"epochs": 50, "lr": 1.0e-3}, "knn": {"k": 20, "temperature": 0.07},
    }
    if pretraining == "pixels":
        stage["features"] = "pixels"
    elif pretraining != "scratch":
        stage["weights"] = str(OUT / f"pretrain-{pretraining}" / "encoder.safetensors")
    return stage


def run(binary, command, stage, done):
    """Runs `eesmm COMMAND --config` on the stage unless `done` exists (a killed run resumes)."""
    out_dir = pathlib.Path(stage["out_dir"])
    if not (out_dir / done).exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        config = out_dir / f"{command}.yaml"
        config.write_text(json.dumps(stage, indent=1) + "\n")
        subprocess.run([binary, command, "--config", str(config)], cwd=ROOT, check=True)


def top1(path):
    return json.loads(path.read_text())["top1"] if path.exists() else None


def pretraining_record(kind):
    """Training wall time (the last metrics line's elapsed_s) and images seen by the pretraining."""
    out_dir = OUT / f"pretrain-{kind}"
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    last = [json.loads(line) for line in lines if '"elapsed_s"' in line][-1]
    images = PRETRAIN_EPOCHS[kind] * 60000
    return {"pretrain_wall_s": round(last["elapsed_s"], 1), "pretrain_images": images}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/eesmm")
    run_stamp = stamp.make(stamp.invocation(__file__, sys.argv[1:], ["EESMM_FMNIST", "EESMM_LABELS"]))
    only = os.environ.get("EESMM_LABELS")
    labels_to_run = [int(n) for n in only.split(",")] if only else LABELS
    pretrained = {}
    for kind in ["simmim", "eesmm"]:
        run(binary, "pretrain", pretrain_stage(kind), "encoder.safetensors")
        pretrained[kind] = pretraining_record(kind)
    previous, rows = stamp.read(RESULTS)
    key = lambda row: (row["pretraining"], row["labels"], row["seed"])
    by_key = {key(row): row for row in rows}
    earlier = set(by_key)  # rows of an earlier run, until this one redoes them
    for labels in labels_to_run:
        for seed in SEEDS[labels]:
            for pretraining in ["scratch", "simmim", "eesmm", "pixels"]:
                tag = f"{pretraining}-{labels}-s{seed}"
                row = {"pretraining": pretraining, "labels": labels, "seed": seed,
                       "finetune_top1": None}
                if pretraining != "pixels":
                    stage = finetune_stage(f"finetune-{tag}", pretraining, labels, seed)
                    run(binary, "finetune", stage, "eval.json")
                    row["finetune_top1"] = top1(OUT / f"finetune-{tag}" / "eval.json")
                probe = probe_stage(f"probe-{tag}", pretraining, labels, seed)
                run(binary, "linear-probe", probe, "linear_probe.json")
                run(binary, "knn", probe, "knn.json")
                row["linear_probe_top1"] = top1(OUT / f"probe-{tag}" / "linear_probe.json")
                row["knn_top1"] = top1(OUT / f"probe-{tag}" / "knn.json")
                row.update(pretrained.get(pretraining,
                                          {"pretrain_wall_s": 0.0, "pretrain_images": 0}))
                row["model"] = MODEL
                by_key[key(row)] = row
                earlier.discard(key(row))
                file_stamp = stamp.keeping(run_stamp, previous) if earlier else run_stamp
                stamp.write(RESULTS, file_stamp, sorted(by_key.values(), key=key))
    subprocess.run([binary, "report", "label-efficiency", "--results", str(RESULTS),
                    "--plot", str(PLOT)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
