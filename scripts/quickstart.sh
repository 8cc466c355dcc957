#!/usr/bin/env bash
# The main job: build eesmm (release), describe the Swin-T preset, and check the burn encoder
# against timm's own outputs for the same weights (../shared/fixtures/timm-swin-small).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
cargo build --release
eesmm=target/release/eesmm
fixtures=../shared/fixtures/timm-swin-small
out=runs/quickstart
mkdir -p "$out"

"$eesmm" info models/swin-t.yaml
"$eesmm" features --model models/swin-micro-32.yaml --weights "$fixtures/swin_small_cls10.safetensors" \
    --input "$fixtures/input.npy" --out "$out/pooled.npy" --logits "$out/logits.npy"
echo "pooled features vs timm:"
"$eesmm" diff "$out/pooled.npy" "$fixtures/expected_pooled.npy"
echo "logits vs timm:"
"$eesmm" diff "$out/logits.npy" "$fixtures/expected_logits.npy"

# ONNX: the timm checkpoint → a verified .onnx → classify a JPEG (ONNX Runtime from setup_ort.sh).
bash scripts/setup_ort.sh >/dev/null
"$eesmm" export --model models/swin-micro-32.yaml --weights "$fixtures/swin_small_cls10.safetensors" \
    --head --out "$out/swin-micro-32.onnx"
"$eesmm" verify "$out/swin-micro-32.onnx" --weights "$fixtures/swin_small_cls10.safetensors" \
    --images ../shared/fixtures/photos
"$eesmm" infer ../shared/fixtures/photos/chelsea.jpg --model "$out/swin-micro-32.onnx" --topk 3
