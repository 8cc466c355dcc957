#!/usr/bin/env python3
"""Collates runs/experiment/ (scripts/experiments/fmnist_experiment.sh) into the markdown table of docs/results.md."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/experiment")
rows = [
    ("scratch (no pretraining)", None),
    ("SimMIM, 1 epoch", "simmim"),
    ("EESMM split, 1 epoch (equal epochs)", "eesmm"),
    ("EESMM split, 2 epochs (equal wall time)", "eesmm-2ep"),
    ("EESMM subtract, 1 epoch", "eesmm-subtract"),
]


def top1(path):
    return f"{100 * json.loads(path.read_text())['top1']:.2f}" if path.exists() else "—"


print("| pretraining | pretrain steps | pretrain wall time | final pretrain loss "
      "| fine-tune top-1 % | linear probe top-1 % | 20-NN top-1 % |")
print("|---|---|---|---|---|---|---|")
for label, name in rows:
    steps = wall = loss = "—"
    if name:
        lines = (out / f"pretrain-{name}" / "metrics.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        steps, wall, loss = last["step"], f"{last['elapsed_s'] / 60:.1f} min", f"{last['loss']:.3f}"
    key = name or "scratch"
    print(f"| {label} | {steps} | {wall} | {loss} "
          f"| {top1(out / f'finetune-{key}' / 'eval.json')} "
          f"| {top1(out / f'probe-{key}' / 'linear_probe.json')} "
          f"| {top1(out / f'probe-{key}' / 'knn.json')} |")
