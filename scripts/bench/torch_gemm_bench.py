#!/usr/bin/env python3
"""PyTorch's side of `eesmm bench gemm`: the matrix products of every Linear layer of a Swin
preset's blocks at a batch (forward `x · W + b`, input gradient `dy · Wᵀ`, weight gradient
`xᵀ · dy`), with torch.addmm / torch.mm on the given threads, in GFLOP/s.

  python scripts/bench/torch_gemm_bench.py --preset models/swin-micro-28.yaml --batch 64

Prints one JSON object per product, named as eesmm names them.
"""
import argparse
import json

import torch
import yaml

from timm_bench import median_seconds  # scripts/bench/timm_bench.py


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(a.preset))
    grid = cfg["img_size"] // cfg["patch_size"]
    for i in range(len(cfg["depths"])):
        tokens = a.batch * (grid >> i) ** 2
        dim = cfg["embed_dim"] << i
        hidden = int(dim * cfg.get("mlp_ratio", 4.0))
        for layer, d_in, d_out in [("qkv", dim, 3 * dim), ("proj", dim, dim),
                                   ("fc1", dim, hidden), ("fc2", hidden, dim)]:
            x, w = torch.randn(tokens, d_in), torch.randn(d_in, d_out)
            d_y, bias = torch.randn(tokens, d_out), torch.randn(d_out)
            cases = [
                ("forward", x, w, lambda: torch.addmm(bias, x, w)),
                ("input_grad", d_y, w.t(), lambda: torch.mm(d_y, w.t())),
                ("weight_grad", x.t(), d_y, lambda: torch.mm(x.t(), d_y)),
            ]
            for name, lhs, rhs, product in cases:
                seconds = median_seconds(product, a.iters, a.warmup)
                m, k, n = lhs.shape[0], lhs.shape[1], rhs.shape[1]
                print(json.dumps({"product": f"stage{i}.{layer} {name}", "m": m, "k": k, "n": n,
                                  "torch_gflops": round(2 * m * k * n / seconds / 1e9, 2)}))


if __name__ == "__main__":
    main()
