#!/usr/bin/env python3
"""PyTorch eager reference for `eesmm bench encoder`: timm's SwinTransformer encoder
(num_classes=0, pooled output) on CPU, same preset, batch and thread count.

Median time per iteration after warm-up of (a) forward under no_grad in eval mode and
(b) forward + backward of out.sum() in train mode; prints one JSON line with images/s.

  python scripts/bench/timm_bench.py --preset models/swin-micro-32.yaml --batch 32
  python scripts/bench/timm_bench.py --preset models/swin-t.yaml --batch 8

Needs torch, timm and pyyaml (see docs/speed.md).
"""
import argparse
import json
import statistics
import time

import timm
import torch
import yaml
from timm.models.swin_transformer import SwinTransformer


def encoder_kwargs(preset):
    """timm `SwinTransformer` keyword arguments of an eesmm preset, without a head."""
    with open(preset) as f:
        cfg = yaml.safe_load(f)
    cfg["depths"], cfg["num_heads"] = tuple(cfg["depths"]), tuple(cfg["num_heads"])
    cfg["num_classes"] = 0
    return cfg


def median_seconds(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True, help="eesmm model preset (timm SwinTransformer kwargs)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()

    cfg = encoder_kwargs(a.preset)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SwinTransformer(**cfg).to(a.device)
    x = torch.randn(a.batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def forward():
        with torch.no_grad():
            model(x)
        sync()

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        sync()

    model.eval()
    t_forward = median_seconds(forward, a.iters, a.warmup)
    model.train()
    t_forward_backward = median_seconds(forward_backward, a.iters, a.warmup)
    print(json.dumps({
        "model": a.preset,
        "backend": f"torch {torch.__version__} / timm {timm.__version__} ({a.device})",
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "forward_images_per_s": round(a.batch / t_forward, 2),
        "forward_backward_images_per_s": round(a.batch / t_forward_backward, 2),
    }))


if __name__ == "__main__":
    main()
