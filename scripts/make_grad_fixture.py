#!/usr/bin/env python3
"""Gradient reference for one training step of a small Swin, computed with timm itself.

A timm `SwinTransformer` (img 16, patch 2, window 4, embed 16, depths (2, 2), heads (2, 4),
10 classes, drop path 0) with random weights drawn at a larger scale than timm's init, so that a
wrong backward moves the gradients a lot. Stage 0 (8x8 tokens, 2x2 windows) has a shifted block
with its mask; stage 1 (4x4 tokens) is one window, so timm uses no shift there.

The step: train mode, `loss = cross_entropy(model(x), labels)`, `loss.backward()`, all in float64
(the reference), saved as float32. Writes into tests/fixtures/timm-grad/:
  model.yaml             the eesmm preset of this architecture
  weights.safetensors    the weights, timm 1.0 key names (with head.fc)
  grads.safetensors      d loss / d parameter for every weight, same keys
  input.npy              [4, 3, 16, 16] float32
  labels.npy             [4] float32 (class indices)
  loss.npy               [1] the float64 loss, as float32

Run from the repository root with the bench venv (scripts/setup_bench_python.sh):
  .venv-bench/bin/python scripts/make_grad_fixture.py
Made with torch 2.15.0 and timm 1.0.31.
"""
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "timm-grad")

PRESET = """\
# The architecture of the gradient fixture (scripts/make_grad_fixture.py).
img_size: 16
patch_size: 2
in_chans: 3
embed_dim: 16
depths: [2, 2]
num_heads: [2, 4]
window_size: 4
mlp_ratio: 4.0
qkv_bias: true
drop_path_rate: 0.0
num_classes: 10
"""


def main():
    warnings.filterwarnings("ignore", category=UserWarning)
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    model = SwinTransformer(
        img_size=16, patch_size=2, in_chans=3, window_size=4, embed_dim=16, depths=(2, 2),
        num_heads=(2, 4), mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.0, num_classes=10,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "relative_position_bias_table" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model = model.double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    labels = torch.tensor([3, 7, 0, 9])
    loss = F.cross_entropy(model(x), labels)
    loss.backward()

    weights = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
    grads = {k: p.grad.detach().float().contiguous() for k, p in model.named_parameters()}
    assert set(grads) <= set(weights), set(grads) - set(weights)
    save_file(weights, os.path.join(OUT, "weights.safetensors"))
    save_file(grads, os.path.join(OUT, "grads.safetensors"))
    np.save(os.path.join(OUT, "input.npy"), x.float().numpy())
    np.save(os.path.join(OUT, "labels.npy"), labels.float().numpy())
    np.save(os.path.join(OUT, "loss.npy"), np.array([loss.item()], dtype="<f4"))
    with open(os.path.join(OUT, "model.yaml"), "w") as f:
        f.write(PRESET)
    largest = max(g.abs().max().item() for g in grads.values())
    print(f"loss {loss.item():.6f}; {len(grads)} gradients, largest |g| {largest:.4f}")


if __name__ == "__main__":
    main()
