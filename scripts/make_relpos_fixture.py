#!/usr/bin/env python3
"""Reference data for relative-position-bias table resizing, computed with timm itself.

timm's checkpoint_filter_fn (models/swin_transformer.py) resizes a checkpoint's
`relative_position_bias_table` when its shape differs from the model's with
    timm.layers.resize_rel_pos_bias_table(v, new_window_size=m.window_size,
                                          new_bias_shape=m.relative_position_bias_table.shape)
(no old_window_size: the source window is taken as square). That is the BEiT-style resize:
geometric-progression source coordinates + piecewise-bilinear RegularGridInterpolator, NOT
F.interpolate(bicubic).

Writes (float32 .npy) into tests/data/:
  relpos_table_w4.npy          [49, 3]   layers.0.blocks.0 table of the w4 fixture
                                          (tests/fixtures/timm-swin-tiny/backbone.safetensors, made by
                                          scripts/make_parity_fixture.py)
  relpos_table_w4_to_w7.npy    [169, 3]  timm resize to window 7
  relpos_table_w4_to_w2.npy    [9, 3]    timm resize to window 2
  swin_w7_img56_input.npy      [2, 3, 56, 56]  seeded input (torch.manual_seed(0), randn)
  swin_tiny_w7_pooled.npy      [2, 96]   pooled output of SwinTransformer(img_size=56, window_size=7,
                                          rest = fixture config, num_classes=0) after loading the w4
                                          backbone through checkpoint_filter_fn (every table resized 4->7;
                                          stage resolutions 28/14/7, so no padding; stage 2 has shift 0)

Run with torch + timm 1.0.31 installed (made with torch 2.15.0, timm 1.0.31):
  .venv-bench/bin/python scripts/make_relpos_fixture.py
then scripts/make_bicubic_fixture.py (it reads relpos_table_w4.npy).
"""
import os
import warnings

import numpy as np
import torch
from safetensors.torch import load_file
from timm.layers import resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, checkpoint_filter_fn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(ROOT, "tests", "fixtures", "timm-swin-tiny", "backbone.safetensors")
OUT = os.path.join(ROOT, "tests", "data")
KEY = "layers.0.blocks.0.attn.relative_position_bias_table"


def save(name, t):
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
    np.save(os.path.join(OUT, name), a)
    print(f"{name}: {list(a.shape)}")


def resize(table, window):
    # exactly as checkpoint_filter_fn calls it
    new_shape = ((2 * window - 1) ** 2, table.shape[1])
    return resize_rel_pos_bias_table(table, new_window_size=(window, window), new_bias_shape=new_shape)


def main():
    warnings.filterwarnings("ignore", category=UserWarning)  # torch deprecation noise inside timm
    os.makedirs(OUT, exist_ok=True)
    sd = load_file(CKPT)
    table = sd[KEY].float()
    assert tuple(table.shape) == (49, 3), table.shape
    save("relpos_table_w4.npy", table)
    w7 = resize(table, 7)
    save("relpos_table_w4_to_w7.npy", w7)
    save("relpos_table_w4_to_w2.npy", resize(table, 2))

    # whole-model check: w4 backbone loaded into a window-7 model through timm's own filter
    torch.manual_seed(0)
    model = SwinTransformer(img_size=56, patch_size=2, in_chans=3, embed_dim=24, depths=(2, 2, 2),
                            num_heads=(3, 6, 12), window_size=7, mlp_ratio=4.0, qkv_bias=True,
                            drop_path_rate=0.0, num_classes=0).eval()
    missing, unexpected = model.load_state_dict(checkpoint_filter_fn(sd, model), strict=False)
    missing = [k for k in missing if not k.endswith(("relative_position_index", "attn_mask"))]
    assert not missing and not unexpected, (missing, unexpected)
    for name, blk in model.named_modules():
        if isinstance(blk, SwinTransformerBlock):
            assert tuple(blk.window_size) == (7, 7), (name, blk.window_size)
    assert torch.equal(model.get_submodule(KEY[:-29]).relative_position_bias_table, w7)
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pooled = model(x)
    save("swin_w7_img56_input.npy", x)
    assert tuple(pooled.shape) == (2, 96), pooled.shape
    save("swin_tiny_w7_pooled.npy", pooled)


if __name__ == "__main__":
    main()
