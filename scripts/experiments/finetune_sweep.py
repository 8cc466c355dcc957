#!/usr/bin/env python3
"""The fine-tuning recipe sweep behind the quickstart's defaults (docs/finetuning.md).

Each variant is the base stage below with some fields replaced; each runs as
`eesmm finetune --config runs/sweep/<name>/stage.yaml` (skipped when its eval.json exists), and the
collected top-1 figures go to docs/results/finetune-sweep.json, stamped (scripts/stamp.py). Usage:

    python3 scripts/experiments/finetune_sweep.py [BINARY] [VARIANT ...]     (default: all variants)
"""
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import stamp  # noqa: E402  (scripts/stamp.py)

FMNIST = "/usr/share/datasets/fashion-mnist"
ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "sweep"


def base(train_images, eval_images):
    return {
        "model": "models/swin-micro-28.yaml",
        "device": "cpu",
        "seed": 0,
        "data": {"dataset": "fashion_mnist", "root": FMNIST, "split": "train",
                 "limit": train_images, "augment": {"scale": [1.0, 1.0], "hflip": True}},
        "eval_data": {"dataset": "fashion_mnist", "root": FMNIST, "split": "test",
                      "limit": eval_images},
        "drop_path_rate": 0.0,
        "optimizer": {"base_lr": 3.2e-2, "warmup_epochs": 0.1, "min_lr": 1.0e-5,
                      "weight_decay": 0.05, "clip_grad": 5.0},
        "train": {"epochs": 1, "batch_size": 32, "checkpoint_every": 200, "log_every": 20},
    }


def merged(stage, changes):
    out = json.loads(json.dumps(stage))
    for dotted, value in changes.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out


# name → (train images, eval images, changes to the base stage)
VARIANTS = {
    "plain-lr2e-3": (16384, 2000, {}),
    "plain-lr4e-3": (16384, 2000, {"optimizer.base_lr": 6.4e-2}),
    "plain-lr1e-3": (16384, 2000, {"optimizer.base_lr": 1.6e-2}),
    "plain-lr4e-3-b64": (16384, 2000, {"optimizer.base_lr": 3.2e-2, "train.batch_size": 64}),
    "plain-lr4e-3-crop": (16384, 2000, {"optimizer.base_lr": 6.4e-2,
                                        "data.augment.scale": [0.6, 1.0]}),
    "plain-lr4e-3-ls": (16384, 2000, {"optimizer.base_lr": 6.4e-2,
                                      "augment": {"label_smoothing": 0.1}}),
    "plain-lr4e-3-warm0.02": (16384, 2000, {"optimizer.base_lr": 6.4e-2,
                                            "optimizer.warmup_epochs": 0.02}),
    "nano-60k": (60000, 2000, {"model": "models/swin-nano-32.yaml"}),
    "nano-60k-b64-lr4e-3": (60000, 2000, {"model": "models/swin-nano-32.yaml",
                                          "train.batch_size": 64, "optimizer.base_lr": 3.2e-2}),
    "micro-60k": (60000, 2000, {}),
}


def run(binary, name):
    train_images, eval_images, changes = VARIANTS[name]
    stage = merged(base(train_images, eval_images), changes)
    out_dir = RUNS / name
    stage["out_dir"] = str(out_dir)
    eval_json = out_dir / "eval.json"
    if not eval_json.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        config = out_dir / "stage.yaml"
        config.write_text(json.dumps(stage, indent=1) + "\n")
        start = time.time()
        subprocess.run([binary, "finetune", "--config", str(config)], cwd=ROOT, check=True)
        (out_dir / "wall_s").write_text(f"{time.time() - start:.1f}\n")
    result = json.loads(eval_json.read_text())
    wall = float((out_dir / "wall_s").read_text()) if (out_dir / "wall_s").exists() else None
    return {"name": name, "train_images": train_images, "eval_images": eval_images,
            "changes": changes, "top1": result["top1"], "wall_s": wall}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/eesmm")
    names = sys.argv[2:] or list(VARIANTS)
    run_stamp = stamp.make(stamp.invocation(__file__, sys.argv[1:]))
    rows = [run(binary, name) for name in names]
    results = ROOT / "docs" / "results" / "finetune-sweep.json"
    previous, existing = stamp.read(results)
    by_name = {row["name"]: row for row in existing}
    if set(by_name) - set(names):  # rows of an earlier run are kept
        run_stamp = stamp.keeping(run_stamp, previous)
    by_name.update({row["name"]: row for row in rows})
    stamp.write(results, run_stamp, list(by_name.values()))
    for row in by_name.values():
        print(f"{row['name']:28} {100 * row['top1']:6.2f} %  {row['wall_s']} s")


if __name__ == "__main__":
    main()
