#!/usr/bin/env python3
"""Swin parity reference, computed with timm itself: writes tests/fixtures/timm-swin-tiny/.

A timm `SwinTransformer` (img 32, patch 2, in_chans 3, window 4, embed 24, depths (2, 2, 2),
heads (3, 6, 12), mlp_ratio 4, qkv_bias, exact GELU, LayerNorm eps 1e-5, drop path 0, 10 classes)
with random weights drawn at a larger scale than timm's own init ("strong init"), so that
structural bugs move the outputs a lot; the manifest records by how much (the mutation table).
Stage resolutions are 16x16 / 8x8 / 4x4 tokens; the last one equals the window, so timm uses no
shift there.

Strong init (`strong_init`, one torch.Generator per call, parameters in `named_parameters` order):
relative-position bias tables N(0,1); LayerNorm weights 1 + 0.2 N(0,1); every other 1-d parameter
(biases, LayerNorm biases) 0.1 N(0,1); every other weight N(0,1) / sqrt(fan_in), where
fan_in = numel / out_features (conv: in_chans * kh * kw). timm's SwinTransformer has no mask token.

Files (float32 unless noted; feature maps NHWC as timm 1.0 returns them):
  backbone.safetensors          backbone weights, timm 1.0 key names (no head)
  cls10.safetensors             the same plus the 10-class head `head.fc.{weight,bias}`
  input.npy                     [2, 3, 32, 32] NCHW
  expected_patch_embed.npy      [2, 16, 16, 24]  after patch_embed (conv + LayerNorm)
  expected_stage{0,1,2}.npy     output of timm's layers[i] (timm 1.0: downsample at the START of
                                stage i > 0): [2,16,16,24], [2,8,8,48], [2,4,4,96]
  expected_features.npy         [2, 4, 4, 96]  forward_features (after the final norm)
  expected_pooled.npy           [2, 96]        forward_head(pre_logits=True) (average pool)
  expected_pooled_f64.npy       [2, 96]        the same with the model in float64 (float64 file)
  expected_logits.npy           [2, 10]
  relative_position_index_w4.npy  [16, 16] int64, timm's (non-persistent) index buffer
  attn_mask_layers.{0,1}.blocks.1.npy  [16|4, 16, 16] the shifted-window masks (0 / -100)
  old_layout_0.6.13.pt          {"state_dict": <timm 0.6.13 / Microsoft layout: downsample at the END
                                of stage i, `head.weight`/`head.bias`, relative_position_index and
                                attn_mask buffers saved>, "x": [2,3,32,32] input, "y": [2,10] logits
                                computed by timm 0.6.13 itself, "timm": "0.6.13"}. DIFFERENT weights
                                (seed 4321) and a different input (seed 4322) from the files above.
  timm_keys_{0.6.13,0.9.16,1.0.31}.json  key names, shapes and dtypes in each timm version
  model.yaml                    the eesmm preset of this architecture (keys of models/swin-micro-32.yaml)
  manifest.json                 config, versions, seeds, every key and shape, measured notes

timm 0.6.13 and 0.9.16 run from `pip install --no-deps --target DIR timm==VERSION` directories,
put in front of the bench venv's own timm 1.0.31 through PYTHONPATH (they run with torch 2.15.0):
  .venv-bench/bin/python -m pip install --no-deps --target /tmp/timm-0.6.13 timm==0.6.13
  .venv-bench/bin/python -m pip install --no-deps --target /tmp/timm-0.9.16 timm==0.9.16
  .venv-bench/bin/python scripts/make_parity_fixture.py [--timm-0613 DIR] [--timm-0916 DIR]
Run from anywhere; made with torch 2.15.0, timm 1.0.31 (and 0.6.13 / 0.9.16 as above), CPU.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "timm-swin-tiny")

CONFIG = dict(img_size=32, patch_size=2, in_chans=3, window_size=4, embed_dim=24, depths=(2, 2, 2),
              num_heads=(3, 6, 12), mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.0)
NUM_CLASSES = 10
BATCH = 2
SEED_WEIGHTS = 1234
SEED_INPUT = 1235
SEED_OLD_WEIGHTS = 4321
SEED_OLD_INPUT = 4322

MODEL_YAML = """\
# The architecture of the timm parity fixture (scripts/make_parity_fixture.py): a CPU-sized Swin for
# 32 px inputs, 16x16 -> 8x8 -> 4x4 tokens, window 4 (clamped, unshifted in the last stage).
# Same keys as models/swin-micro-32.yaml; embed_dim 24 instead of 48, drop_path_rate 0 (as timm ran).
img_size: 32
patch_size: 2
in_chans: 3
embed_dim: 24
depths: [2, 2, 2]
num_heads: [3, 6, 12]
window_size: 4
mlp_ratio: 4.0
qkv_bias: true
drop_path_rate: 0.0
"""


# ---------------------------------------------------------------------------------------------
# shared by every timm version

def strong_init(model, seed):
    """Deterministic large-scale init (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    ln_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "relative_position_bias_table" in name:
                p.copy_(noise)
            elif name in ln_weights:
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                fan_in = p[0].numel()
                p.copy_(noise / fan_in ** 0.5)


def make_input(seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, CONFIG["in_chans"], CONFIG["img_size"], CONFIG["img_size"], generator=gen)


def build(num_classes):
    from timm.models.swin_transformer import SwinTransformer
    torch.manual_seed(0)
    return SwinTransformer(num_classes=num_classes, **CONFIG).eval()


def dtype_name(t):
    return str(t.dtype).replace("torch.", "")


def keys_report(path):
    """timm_keys_<version>.json: state_dict keys, shapes, dtypes for num_classes 0 and 10."""
    import timm
    report = {"timm": timm.__version__,
              "file": os.path.join(f"timm-{timm.__version__}", "timm", "__init__.py")}
    for nc in (0, NUM_CLASSES):
        model = build(nc)
        sd = model.state_dict()
        tag = f"num_classes={nc}"
        report[tag] = {k: [list(v.shape), dtype_name(v)] for k, v in sd.items()}
        report[f"{tag}_buffers_nonpersistent"] = [k for k, _ in model.named_buffers() if k not in sd]
        x = make_input(SEED_INPUT)
        with torch.no_grad():
            report[f"{tag}_out_shape"] = list(model(x).shape)
            report[f"{tag}_forward_features_shape"] = list(model.forward_features(x).shape)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"timm {timm.__version__}: wrote {os.path.basename(path)}")


def old_layout(path):
    """Runs under timm 0.6.13: its own model, state_dict and logits."""
    import timm
    assert timm.__version__ == "0.6.13", timm.__version__
    model = build(NUM_CLASSES)
    strong_init(model, SEED_OLD_WEIGHTS)
    sd = model.state_dict()
    assert "layers.0.downsample.reduction.weight" in sd and "head.weight" in sd
    assert "layers.0.blocks.1.attn_mask" in sd and "layers.0.blocks.0.attn.relative_position_index" in sd
    x = make_input(SEED_OLD_INPUT)
    with torch.no_grad():
        y = model(x)
    torch.save({"state_dict": sd, "x": x, "y": y, "timm": timm.__version__}, path)
    print(f"timm {timm.__version__}: wrote {os.path.basename(path)} ({len(sd)} entries), |y| max "
          f"{y.abs().max().item():.4f}")


# ---------------------------------------------------------------------------------------------
# timm 1.0.31 (main)

def run_with_timm(dirpath, args):
    env = dict(os.environ, PYTHONPATH=dirpath + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-W", "ignore", os.path.abspath(__file__)] + args, env=env, check=True)


def outputs(model, x):
    with torch.no_grad():
        emb = model.patch_embed(x)
        stages, h = [], emb
        for layer in model.layers:
            h = layer(h)
            stages.append(h)
        features = model.norm(h)
        pooled = model.forward_head(features, pre_logits=True)
        out = dict(patch_embed=emb, features=features, pooled=pooled)
        for i, s in enumerate(stages):
            out[f"stage{i}"] = s
        if model.num_classes:
            out["logits"] = model.forward_head(features)
        # the stage-by-stage path must be timm's own forward
        assert torch.equal(model.forward_features(x), features)
    return out


def swin_attn(self, x, roll=True, mask=True):
    """timm 1.0.31 SwinTransformerBlock._attn (no padding: every resolution divides the window),
    with the cyclic shift and the shift mask separately switchable."""
    from timm.models.swin_transformer import window_partition, window_reverse
    B, H, W, C = x.shape
    has_shift = any(self.shift_size)
    shifted = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2)) \
        if has_shift and roll else x
    windows = window_partition(shifted, self.window_size).view(-1, self.window_area, C)
    attn = self.attn(windows, mask=self.attn_mask if mask else None)
    attn = attn.view(-1, self.window_size[0], self.window_size[1], C)
    shifted = window_reverse(attn, self.window_size, H, W)
    return torch.roll(shifted, shifts=self.shift_size, dims=(1, 2)) if has_shift and roll else shifted


def merging_row_major(self, x):
    """PatchMerging with the concat order x0, x2, x1, x3 ((0,0), (0,1), (1,0), (1,1) as (row, col)
    offsets) instead of timm's / Microsoft's x0, x1, x2, x3 ((0,0), (1,0), (0,1), (1,1))."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5).flatten(3)
    return self.reduction(self.norm(x))


def mutate(model, kind):
    from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock, WindowAttention
    m = copy.deepcopy(model)
    for mod in m.modules():
        if kind == "relpos_bias_transposed" and isinstance(mod, WindowAttention):
            orig = mod._get_rel_pos_bias
            mod._get_rel_pos_bias = lambda orig=orig: orig().transpose(-1, -2)
        elif isinstance(mod, SwinTransformerBlock) and kind in (
                "reference_reimplementation", "no_cyclic_shift_mask_kept", "no_shift_no_mask",
                "shift_without_mask"):
            roll, use_mask = {"reference_reimplementation": (True, True),
                              "no_cyclic_shift_mask_kept": (False, True),
                              "no_shift_no_mask": (False, False),
                              "shift_without_mask": (True, False)}[kind]
            mod._attn = types.MethodType(lambda self, x, r=roll, k=use_mask: swin_attn(self, x, r, k), mod)
        elif kind == "patch_merging_order_x0_x2_x1_x3" and isinstance(mod, PatchMerging):
            mod.forward = types.MethodType(merging_row_major, mod)
        elif kind == "layer_norm_eps_1e-6" and isinstance(mod, nn.LayerNorm):
            mod.eps = 1e-6
        elif kind == "gelu_tanh" and isinstance(mod, nn.GELU):
            mod.approximate = "tanh"
    return m


MUTATIONS = {
    "reference_reimplementation": "sanity: the script's own _attn (roll + mask) -- must be 0",
    "relpos_bias_transposed": "relative-position bias [h, j, i] instead of [h, i, j]",
    "no_cyclic_shift_mask_kept": "shifted blocks skip torch.roll (both ways) but still add the shift mask",
    "no_shift_no_mask": "shifted blocks behave as W-MSA (no roll, no mask)",
    "shift_without_mask": "cyclic shift done, shift mask not added",
    "patch_merging_order_x0_x2_x1_x3": "PatchMerging concat order x0,x2,x1,x3 (row-major) instead of x0,x1,x2,x3",
    "layer_norm_eps_1e-6": "every LayerNorm eps 1e-6 instead of 1e-5 (not structural)",
    "gelu_tanh": "tanh-approximate GELU instead of exact erf (not structural)",
}
STRUCTURAL = ("relpos_bias_transposed", "no_cyclic_shift_mask_kept", "no_shift_no_mask",
              "shift_without_mask", "patch_merging_order_x0_x2_x1_x3")


def save_npy(name, t, dtype="<f4"):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    a = np.ascontiguousarray(a.astype(dtype))
    np.save(os.path.join(OUT, name), a)
    return list(a.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timm-0613", default="/tmp/timm-0.6.13", help="pip --target dir holding timm 0.6.13")
    ap.add_argument("--timm-0916", default="/tmp/timm-0.9.16", help="pip --target dir holding timm 0.9.16")
    ap.add_argument("--keys", help=argparse.SUPPRESS)        # internal: run under another timm
    ap.add_argument("--old-layout", help=argparse.SUPPRESS)  # internal: run under timm 0.6.13
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.keys:
        return keys_report(args.keys)
    if args.old_layout:
        return old_layout(args.old_layout)

    import timm
    from safetensors.torch import load_file, save_file
    from timm.models.swin_transformer import SwinTransformerBlock, checkpoint_filter_fn
    assert timm.__version__ == "1.0.31", timm.__version__
    if not os.path.isdir(os.path.join(args.timm_0613, "timm")):
        sys.exit(f"timm 0.6.13 not found in {args.timm_0613}: "
                 f"{sys.executable} -m pip install --no-deps --target {args.timm_0613} timm==0.6.13")
    os.makedirs(OUT, exist_ok=True)

    # -- weights, input, timm 1.0.31 outputs ------------------------------------------------
    model = build(NUM_CLASSES)
    strong_init(model, SEED_WEIGHTS)
    full = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    backbone = {k: v for k, v in full.items() if not k.startswith("head.")}
    head = {k: v for k, v in full.items() if k.startswith("head.")}
    assert set(head) == {"head.fc.weight", "head.fc.bias"}, head.keys()
    save_file(backbone, os.path.join(OUT, "backbone.safetensors"))
    save_file(full, os.path.join(OUT, "cls10.safetensors"))
    for fname in ("backbone.safetensors", "cls10.safetensors"):
        os.chmod(os.path.join(OUT, fname), 0o644)  # safetensors writes 0600
    x = make_input(SEED_INPUT)
    shapes = {"input": save_npy("input.npy", x)}
    out32 = outputs(model, x)
    for name, t in out32.items():
        shapes[f"expected_{name}"] = save_npy(f"expected_{name}.npy", t)
    model64 = copy.deepcopy(model).double()
    out64 = outputs(model64, x.double())
    shapes["expected_pooled_f64"] = save_npy("expected_pooled_f64.npy", out64["pooled"], "<f8")
    f32_vs_f64 = {k: (out32[k].double() - out64[k]).abs().max().item() for k in out32}

    # reload both files into fresh models: outputs must be identical
    reload = 0.0
    for fname, nc in (("backbone.safetensors", 0), ("cls10.safetensors", NUM_CLASSES)):
        fresh = build(nc)
        fresh.load_state_dict(load_file(os.path.join(OUT, fname)), strict=True)
        o = outputs(fresh, x)
        reload = max(reload, max((o[k] - out32[k]).abs().max().item() for k in o))

    # -- buffers timm does not save ------------------------------------------------------------
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, SwinTransformerBlock)}
    index = blocks["layers.0.blocks.0"].attn.relative_position_index
    shapes["relative_position_index_w4"] = save_npy("relative_position_index_w4.npy", index, "<i8")
    for layer in (0, 1):
        mask = blocks[f"layers.{layer}.blocks.1"].attn_mask
        assert mask is not None and set(mask.unique().tolist()) == {0.0, -100.0}
        shapes[f"attn_mask_layers.{layer}.blocks.1"] = save_npy(f"attn_mask_layers.{layer}.blocks.1.npy", mask)
    per_block = {n: {"input_resolution": list(b.input_resolution), "window_size": list(b.window_size),
                     "shift_size": list(b.shift_size)} for n, b in blocks.items()}
    sd_keys = set(model.state_dict())
    nonpersistent = {k: list(v.shape) for k, v in model.named_buffers() if k not in sd_keys}

    # -- mutation table (float64, so that small effects are not float32 noise) ------------------
    mutations = {}
    for kind, what in MUTATIONS.items():
        o = outputs(mutate(model64, kind), x.double())
        mutations[kind] = {
            "what": what,
            "pooled_max_abs": (o["pooled"] - out64["pooled"]).abs().max().item(),
            "features_max_abs": (o["features"] - out64["features"]).abs().max().item(),
            "logits_max_abs": (o["logits"] - out64["logits"]).abs().max().item(),
        }
    assert mutations["reference_reimplementation"]["pooled_max_abs"] < 1e-12, mutations
    for kind in STRUCTURAL:
        assert mutations[kind]["pooled_max_abs"] >= 1e-2, (kind, mutations[kind])

    # -- old layout: timm 0.6.13 itself, in a subprocess ------------------------------------------
    old_path = os.path.join(OUT, "old_layout_0.6.13.pt")
    run_with_timm(args.timm_0613, ["--old-layout", old_path])
    old = torch.load(old_path, weights_only=True)
    converted = build(NUM_CLASSES)
    converted.load_state_dict(checkpoint_filter_fn(old["state_dict"], converted), strict=True)
    with torch.no_grad():
        old_vs_1031 = (converted(old["x"]) - old["y"]).abs().max().item()
    assert old_vs_1031 < 1e-5, old_vs_1031

    # -- key listings per timm version --------------------------------------------------------------
    keys_report(os.path.join(OUT, "timm_keys_1.0.31.json"))
    run_with_timm(args.timm_0613, ["--keys", os.path.join(OUT, "timm_keys_0.6.13.json")])
    keys_files = ["timm_keys_0.6.13.json", "timm_keys_1.0.31.json"]
    if os.path.isdir(os.path.join(args.timm_0916, "timm")):
        run_with_timm(args.timm_0916, ["--keys", os.path.join(OUT, "timm_keys_0.9.16.json")])
        keys_files.insert(1, "timm_keys_0.9.16.json")
    else:
        print(f"timm 0.9.16 not in {args.timm_0916}: timm_keys_0.9.16.json not written")

    with open(os.path.join(OUT, "model.yaml"), "w") as f:
        f.write(MODEL_YAML)

    manifest = {
        "generator": "scripts/make_parity_fixture.py",
        "timm": timm.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": "cpu",
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()
                   if k not in ("mlp_ratio", "qkv_bias", "drop_path_rate")},
        "num_classes": NUM_CLASSES,
        "drop_path_rate": CONFIG["drop_path_rate"],
        "mlp_ratio": CONFIG["mlp_ratio"],
        "qkv_bias": CONFIG["qkv_bias"],
        "layer_norm_eps": 1e-5,
        "gelu": "exact (erf)",
        "attn_mask_fill": -100.0,
        "init": f"strong_init(seed={SEED_WEIGHTS}): rel-pos tables N(0,1); LN gamma 1+0.2N; other 1-d "
                "params 0.1N; weights N(0,1)/sqrt(fan_in); one torch.Generator, named_parameters order "
                "(timm's SwinTransformer has no mask token)",
        "input": f"torch.randn({BATCH}, 3, 32, 32, generator=torch.Generator().manual_seed({SEED_INPUT}))",
        "shapes": shapes,
        "backbone_keys": {k: list(v.shape) for k, v in backbone.items()},
        "cls10_extra_keys": {k: list(v.shape) for k, v in head.items()},
        "nonpersistent_buffers": nonpersistent,
        "f32_vs_f64_pooled_max_abs": f32_vs_f64["pooled"],
        "f32_vs_f64_max_abs": f32_vs_f64,
        "pooled_abs_max": out32["pooled"].abs().max().item(),
        "features_abs_max": out32["features"].abs().max().item(),
        "logits_abs_max": out32["logits"].abs().max().item(),
        "per_block_window_shift": per_block,
        "reload_max_abs_diff": reload,
        "mutations": {
            "note": "max |mutated - reference| with the model in float64 on input.npy; the structural "
                    "ones must move pooled by >= 1e-2 (asserted), so a 1e-4 tolerance catches each",
            "structural": list(STRUCTURAL),
            "table": mutations,
        },
        "old_layout": {
            "file": "old_layout_0.6.13.pt",
            "made_by": "timm 0.6.13 itself (pip install --no-deps --target DIR timm==0.6.13, run with "
                       f"torch {torch.__version__}); torch.save of its model.state_dict()",
            "contents": {"state_dict": f"{len(old['state_dict'])} entries (backbone, head.weight/bias, "
                                       "relative_position_index and attn_mask buffers)",
                         "x": list(old["x"].shape), "y": list(old["y"].shape), "timm": old["timm"]},
            "weights": f"strong_init(seed={SEED_OLD_WEIGHTS}) -- NOT the weights of the safetensors files",
            "x": f"torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed({SEED_OLD_INPUT}))",
            "timm_1.0.31_after_checkpoint_filter_fn_vs_y_max_abs": old_vs_1031,
        },
        "timm_keys_files": keys_files,
        "suggested_tolerances": {"f32_pooled_abs": 1e-4, "f32_stage_abs_rel": "1e-4 * max|ref|"},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)

    print("shapes:", json.dumps(shapes))
    print(f"f32 vs f64 pooled max abs {f32_vs_f64['pooled']:.3e}; reload diff {reload}; "
          f"old layout: timm 1.0.31 vs 0.6.13 logits {old_vs_1031:.3e}")
    for kind, row in mutations.items():
        print(f"  {kind:34s} pooled {row['pooled_max_abs']:.4g}  logits {row['logits_max_abs']:.4g}")


if __name__ == "__main__":
    main()
