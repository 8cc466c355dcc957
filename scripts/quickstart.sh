#!/usr/bin/env bash
# The main job, end to end on CPU (4–9 minutes on 2 cores after the build):
#   1. install Fashion-MNIST (Debian package) and ONNX Runtime 1.31.1 (.ort/), build eesmm;
#   2. check the burn encoder against timm's outputs for the same weights (a few seconds);
#   3. `eesmm run pipelines/quickstart.yaml`: EESMM pretraining → fine-tuning → ONNX export →
#      verification in ONNX Runtime → inference on one test image per class.
# Re-running skips finished stages; an interrupted stage resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
bash scripts/setup_data.sh            # Fashion-MNIST (Debian package)
bash scripts/setup_ort.sh >/dev/null  # ONNX Runtime 1.31.1 into .ort/
cargo build --release
eesmm=target/release/eesmm

fixtures=tests/fixtures/timm-swin-tiny
if [ -d "$fixtures" ]; then
    check=$(mktemp -d)
    "$eesmm" features --model "$fixtures/model.yaml" --weights "$fixtures/cls10.safetensors" \
        --input "$fixtures/input.npy" --out "$check/pooled.npy" --logits "$check/logits.npy"
    echo "encoder vs timm, pooled features and logits:"
    "$eesmm" diff "$check/pooled.npy" "$fixtures/expected_pooled.npy"
    "$eesmm" diff "$check/logits.npy" "$fixtures/expected_logits.npy"
    rm -rf "$check"
fi

"$eesmm" run pipelines/quickstart.yaml "$@"
echo
echo "The classifier as ONNX:  runs/quickstart/export/model.onnx"
echo "Classify your images:    $eesmm infer IMAGE.png --model runs/quickstart/export/model.onnx"
echo "Plots:                   runs/quickstart/pretrain/{loss,recon_epoch001}.png, runs/quickstart/finetune/{accuracy,eval_confusion}.png"
