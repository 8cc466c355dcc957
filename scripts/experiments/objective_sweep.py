#!/usr/bin/env python3
"""The EESMM objective comparison behind the default (docs/pretraining.md): each
variant pretrains swin-nano-32 on the same Fashion-MNIST images, then its encoder is judged by a
linear probe and a 20-NN vote (6,000 class-balanced labels, the 10,000 test images). Collected:
the separation figures of the last epoch, the final loss, and both accuracies, into
docs/results/objective-sweep.json (stamped: scripts/stamp.py). Each run is skipped when its
results exist.

    python3 scripts/experiments/objective_sweep.py [BINARY] [VARIANT ...]     (default: all variants)
"""
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import stamp  # noqa: E402  (scripts/stamp.py)

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "objective-sweep"
FMNIST = os.environ.get("EESMM_FMNIST", "/usr/share/datasets/fashion-mnist")
MODEL = "models/swin-nano-32.yaml"
IMAGES = int(os.environ.get("EESMM_SWEEP_IMAGES", "16384"))
BASE_LR = float(os.environ.get("EESMM_SWEEP_LR", "2e-3"))  # per 512 encoder inputs
TAG = f"{IMAGES}-lr{BASE_LR:g}"

PAPER = {"kind": "eesmm", "mask_patch_size": 4, "mask_ratio": 0.6,
         "augment": {"rotate_degrees": 15, "hflip": True, "max_scale": 1.25, "random_crop": True}}
VARIANTS = {
    "paper": {},
    "visibility-tokens": {"visibility_tokens": True},
    "lambda-0.1-0.4": {"lambda1": [0.1, 0.4]},
    "pit": {"assignment": "pit"},
    "complementary": {"masks": "complementary", "mask_ratio": 0.5},
    "complementary-visibility": {"masks": "complementary", "mask_ratio": 0.5,
                                 "visibility_tokens": True},
    "pit-complementary": {"assignment": "pit", "masks": "complementary", "mask_ratio": 0.5},
    "pit-complementary-visibility": {"assignment": "pit", "masks": "complementary",
                                     "mask_ratio": 0.5, "visibility_tokens": True},
    "pit-lambda-0.1-0.4": {"assignment": "pit", "lambda1": [0.1, 0.4]},
    "simmim": {"kind": "simmim"},
}


def stage(name):
    objective = dict(PAPER, **VARIANTS[name])
    return {
        "model": MODEL, "seed": 0, "out_dir": str(RUNS / TAG / name),
        "data": {"dataset": "fashion_mnist", "root": FMNIST, "split": "train", "limit": IMAGES},
        "objective": objective,
        "optimizer": {"base_lr": BASE_LR, "warmup_epochs": 0.2, "min_lr": 1.0e-5,
                      "weight_decay": 0.05, "clip_grad": 5.0},
        "train": {"epochs": 1, "batch_size": 64, "checkpoint_every": 200, "log_every": 10},
    }


def probe(name):
    return {
        "model": MODEL, "seed": 0, "out_dir": str(RUNS / TAG / name / "probe"),
        "weights": str(RUNS / TAG / name / "encoder.safetensors"),
        "train_data": {"dataset": "fashion_mnist", "root": FMNIST, "split": "train",
                       "subset": {"images": 6000, "seed": 0}},
        "test_data": {"dataset": "fashion_mnist", "root": FMNIST, "split": "test"},
        "probe": {"epochs": 50, "lr": 1.0e-3}, "knn": {"k": 20, "temperature": 0.07},
    }


def run(binary, command, config, done):
    out_dir = pathlib.Path(config["out_dir"])
    if (out_dir / done).exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{command}.yaml"
    path.write_text(json.dumps(config, indent=1) + "\n")
    start = time.time()
    subprocess.run([binary, command, "--config", str(path)], cwd=ROOT, check=True)
    (out_dir / f"{command}.wall_s").write_text(f"{time.time() - start:.1f}\n")


def result(name):
    out_dir = RUNS / TAG / name
    records = [json.loads(l) for l in (out_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    separation = [r for r in records if "separation_first" in r]
    top1 = lambda f: json.loads((out_dir / "probe" / f).read_text())["top1"]
    row = {"name": name, "images": IMAGES, "base_lr": BASE_LR, "objective": VARIANTS[name],
           "final_loss": steps[-1]["loss"], "pretrain_s": round(steps[-1]["elapsed_s"], 1),
           "linear_probe_top1": top1("linear_probe.json"), "knn_top1": top1("knn.json")}
    if separation:
        row["separation_first"] = separation[-1]["separation_first"]
        row["separation_second"] = separation[-1]["separation_second"]
        row["separation_train"] = steps[-1].get("separation")
    return row


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/eesmm")
    names = sys.argv[2:] or list(VARIANTS)
    results = ROOT / "docs" / "results" / "objective-sweep.json"
    run_stamp = stamp.make(stamp.invocation(
        __file__, sys.argv[1:], ["EESMM_FMNIST", "EESMM_SWEEP_IMAGES", "EESMM_SWEEP_LR"]))
    previous, existing = stamp.read(results)
    by_name = {(r["name"], r["images"], r["base_lr"]): r for r in existing}
    earlier = set(by_name)  # rows of an earlier run, until this one redoes them
    for name in names:
        run(binary, "pretrain", stage(name), "encoder.safetensors")
        run(binary, "linear-probe", probe(name), "linear_probe.json")
        run(binary, "knn", probe(name), "knn.json")
        row = result(name)
        by_name[(name, IMAGES, BASE_LR)] = row
        earlier.discard((name, IMAGES, BASE_LR))
        file_stamp = stamp.keeping(run_stamp, previous) if earlier else run_stamp
        stamp.write(results, file_stamp, list(by_name.values()))
        print(json.dumps(row))


if __name__ == "__main__":
    main()
