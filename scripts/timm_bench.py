#!/usr/bin/env python3
"""Reference throughput of timm's SwinTransformer encoder (num_classes=0, pooled output) on CPU.

Measures the median time per iteration (after warmup) of
  (a) forward under torch.no_grad() in eval mode, and
  (b) forward + backward of out.sum() in train mode,
and prints one JSON line with images/s for each.

Usage (venv from the reference setup, e.g. /work/pyref):
  /work/pyref/bin/python scripts/timm_bench.py --preset presets/swin_tiny.yaml --batch 8
  /work/pyref/bin/python scripts/timm_bench.py --img-size 32 --patch-size 2 --window-size 4 \
      --embed-dim 48 --depths 2 2 2 --num-heads 3 6 12 --batch 2 --iters 1 --warmup 0

Preset YAML keys are timm SwinTransformer kwargs: img_size, patch_size, in_chans, embed_dim, depths,
num_heads, window_size, mlp_ratio, qkv_bias, drop_path_rate (num_classes is ignored: always 0 here).
Explicit command-line options override preset values.
"""
import argparse
import json
import statistics
import time

import timm
import torch
from timm.models.swin_transformer import SwinTransformer

MODEL_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depths", "num_heads",
              "window_size", "mlp_ratio", "qkv_bias", "drop_path_rate")


def _scalar(s):
    s = s.strip().strip("'\"")
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def read_yaml(path):
    """Flat YAML mapping: `key: scalar`, `key: [a, b]` or a block list of `- item` lines."""
    try:
        import yaml
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except ImportError:
        pass
    out, last = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if line.lstrip().startswith("- ") and last is not None:
                out[last].append(_scalar(line.lstrip()[2:]))
                continue
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if not val:
                out[key], last = [], key
            elif val.startswith("["):
                out[key] = [_scalar(v) for v in val.strip("[]").split(",") if v.strip()]
            else:
                out[key] = _scalar(val)
    return out


def median_seconds(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", help="YAML preset with timm SwinTransformer kwargs")
    p.add_argument("--img-size", type=int)
    p.add_argument("--patch-size", type=int)
    p.add_argument("--in-chans", type=int)
    p.add_argument("--embed-dim", type=int)
    p.add_argument("--depths", type=int, nargs="+")
    p.add_argument("--num-heads", type=int, nargs="+")
    p.add_argument("--window-size", type=int)
    p.add_argument("--mlp-ratio", type=float)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    # defaults = timm's swin_tiny_patch4_window7_224
    cfg = dict(img_size=224, patch_size=4, in_chans=3, embed_dim=96, depths=[2, 2, 6, 2],
               num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.0)
    if a.preset:
        preset = read_yaml(a.preset)
        cfg.update({k: v for k, v in preset.items() if k in MODEL_KEYS})
    for k in MODEL_KEYS:
        v = getattr(a, k, None)
        if v is not None:
            cfg[k] = v
    cfg["depths"], cfg["num_heads"] = tuple(cfg["depths"]), tuple(cfg["num_heads"])

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = SwinTransformer(**cfg, num_classes=0)
    x = torch.randn(a.batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"])

    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    model.eval()
    t_fwd = median_seconds(fwd, a.iters, a.warmup)
    model.train()
    t_fb = median_seconds(fwd_bwd, a.iters, a.warmup)

    name = a.preset or "swin_p{patch_size}_w{window_size}_e{embed_dim}_{img_size}".format(**cfg)
    print(json.dumps({
        "model": name,
        "config": cfg,
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "forward_images_per_s": round(a.batch / t_fwd, 3),
        "forward_backward_images_per_s": round(a.batch / t_fb, 3),
    }))


if __name__ == "__main__":
    main()
