#!/usr/bin/env python3
"""PyTorch eager reference for `eesmm bench pretrain`: the same EESMM and SimMIM pretraining
steps (timm's SwinTransformer encoder with a SimMIM mask token, SimMIM's linear decoder — 1x1
conv + PixelShuffle — masked L1 losses, AdamW with global-norm clipping at 5), on random
images and Bernoulli(0.6) cell masks drawn inside the timed step, as eesmm's bench does.

EESMM (eesmm's defaults): mix = 0.5·T1·(1−M1) + 0.5·T2·(1−M2); the mask token where both cells
are masked; the decoder predicts both images (2·C channels); loss = L1(Î1, T1 | M1) +
L1(Î2, T2 | M2) + L1(0.5·Î1 + 0.5·Î2, 0.5·T1 + 0.5·T2 | M1 ∪ M2). Images/s count both images.

  python scripts/bench/torch_pretrain_bench.py --preset models/swin-micro-32.yaml --batch 32

Prints one JSON line like `eesmm bench pretrain --json`. Needs torch, timm and pyyaml
(scripts/bench/setup_bench_python.sh).
"""
import argparse
import json

import timm
import torch
import torch.nn as nn
from timm.models.swin_transformer import SwinTransformer

from timm_bench import encoder_kwargs, median_seconds  # scripts/bench/timm_bench.py


class Pretrain(nn.Module):
    def __init__(self, cfg, out_channels):
        super().__init__()
        self.encoder = SwinTransformer(**cfg)
        self.stride = cfg["patch_size"] * 2 ** (len(cfg["depths"]) - 1)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, cfg["embed_dim"]))
        self.decoder = nn.Sequential(
            nn.Conv2d(self.encoder.num_features, self.stride ** 2 * out_channels, 1),
            nn.PixelShuffle(self.stride),
        )

    def forward(self, images, token_mask):
        x = self.encoder.patch_embed(images)  # [B, H/p, W/p, D] (timm 1.0 is NHWC)
        w = token_mask.unsqueeze(-1)
        x = x * (1 - w) + self.mask_token * w
        x = self.encoder.norm(self.encoder.layers(x))
        return self.decoder(x.permute(0, 3, 1, 2))


def masked_l1(pred, target, mask):
    return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[1] + 1e-5)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--batch", type=int, default=8, help="encoder inputs per step")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()

    cfg = encoder_kwargs(a.preset)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c, s = cfg["in_chans"], cfg["img_size"]
    stride = cfg["patch_size"] * 2 ** (len(cfg["depths"]) - 1)
    grid, token_factor = s // stride, stride // cfg["patch_size"]

    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def cells():  # [B, g, g] -> pixel mask [B, 1, S, S] and token mask [B, S/p, S/p]
        m = (torch.rand(a.batch, grid, grid, device=a.device) < 0.6).float()
        return (m.repeat_interleave(stride, 1).repeat_interleave(stride, 2).unsqueeze(1),
                m.repeat_interleave(token_factor, 1).repeat_interleave(token_factor, 2))

    def run(eesmm):
        model = Pretrain(cfg, 2 * c if eesmm else c).to(a.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

        def step():
            t1 = torch.randn(a.batch, c, s, s, device=a.device)
            m1, k1 = cells()
            if eesmm:
                t2 = torch.randn(a.batch, c, s, s, device=a.device)
                m2, k2 = cells()
                mixed = 0.5 * t1 * (1 - m1) + 0.5 * t2 * (1 - m2)
                out = model(mixed, k1 * k2)
                r1, r2 = out[:, :c], out[:, c:]
                loss = (masked_l1(r1, t1, m1) + masked_l1(r2, t2, m2)
                        + masked_l1(0.5 * r1 + 0.5 * r2, 0.5 * t1 + 0.5 * t2, torch.maximum(m1, m2)))
            else:
                loss = masked_l1(model(t1, k1), t1, m1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sync()

        return a.batch * (2 if eesmm else 1) / median_seconds(step, a.iters, a.warmup)

    eesmm, simmim = run(True), run(False)
    print(json.dumps({
        "model": a.preset,
        "backend": f"torch {torch.__version__} / timm {timm.__version__} ({a.device})",
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "eesmm_images_per_s": round(eesmm, 2),
        "simmim_images_per_s": round(simmim, 2),
        "peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 1e6, 1)
        if a.device.startswith("cuda") else None,
    }))


if __name__ == "__main__":
    main()
