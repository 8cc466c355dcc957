"""eesmm's ONNX export against PyTorch's own (torch.onnx.export) of the same timm Swin, in ONNX
Runtime: the eesmm export of timm's random weights must give timm's logits, and both graphs are
timed at batch 1 and 32 in the same process (docs/onnx.md).

Needs torch, timm, safetensors, onnxruntime==1.31.1 (the library eesmm uses) and a release
eesmm:  python scripts/bench/onnx_vs_torch.py target/release/eesmm
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
CASES = {
    # preset: timm constructor arguments of the same network
    "swin-micro-32": dict(img_size=32, patch_size=2, window_size=4, embed_dim=48,
                          depths=(2, 2, 2), num_heads=(3, 6, 12)),
    "swin-t": dict(img_size=224, patch_size=4, window_size=7, embed_dim=96,
                   depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
}


def median_ms(session, x, iters):
    session.run(None, {"images": x})
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, {"images": x})
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main(eesmm):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in CASES.items():
            compare(eesmm, Path(tmp), name, kwargs)


def compare(eesmm, tmp, name, kwargs):
    model = timm.models.swin_transformer.SwinTransformer(num_classes=10, **kwargs).eval()
    weights = tmp / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()
               if "relative_position_index" not in k and "attn_mask" not in k}, str(weights))
    ours, theirs = tmp / f"{name}-eesmm.onnx", tmp / f"{name}-torch.onnx"
    subprocess.run([eesmm, "export", "--model", str(ROOT / "models" / f"{name}.yaml"),
                    "--weights", str(weights), "--head", "--out", str(ours)], check=True)
    size = kwargs["img_size"]
    x = torch.randn(2, 3, size, size)
    torch.onnx.export(model, (x,), str(theirs), opset_version=17, input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}},
                      dynamo=False)
    with torch.no_grad():
        expected = model(x).numpy()
    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for k, p in [("eesmm", ours), ("torch", theirs)]}
    logits = sessions["eesmm"].run(["logits"], {"images": x.numpy()})[0]
    print(f"{name}: eesmm export in ORT vs timm logits: max abs "
          f"{np.abs(logits - expected).max():.2e} (max |logit| {np.abs(expected).max():.2f})")
    for batch in (1, 32):
        xb = np.random.randn(batch, 3, size, size).astype(np.float32)
        iters = 20 if size <= 64 else 3
        ms = {k: median_ms(s, xb, iters) for k, s in sessions.items()}
        print(f"{name} batch {batch:>2}: ORT on eesmm's export {ms['eesmm']:8.2f} ms, "
              f"on torch.onnx.export's {ms['torch']:8.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/eesmm"))
