#!/usr/bin/env bash
# The main job, end to end on CPU: build eesmm (release); check the burn encoder against timm's
# outputs for the same weights (../shared/fixtures/timm-swin-small); pretrain a small Swin with
# EESMM on Fashion-MNIST (a few minutes); export the pretrained encoder to ONNX and verify it in
# ONNX Runtime; export the timm checkpoint and classify a photo.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
bash scripts/setup_data.sh          # Fashion-MNIST (Debian package)
bash scripts/setup_ort.sh >/dev/null  # ONNX Runtime 1.31.1 into .ort/
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

# EESMM pretraining on 16,384 Fashion-MNIST images (one epoch, ~3 minutes on 2 cores), then the
# pretrained encoder as a verified ONNX file. Re-running resumes or skips finished work.
run=runs/quickstart-pretrain
sed -e "s#out_dir: runs/pretrain-fmnist-eesmm#out_dir: $run#" -e 's#split: train#split: train\n  limit: 16384#' \
    pipelines/stages/pretrain-fmnist-eesmm.yaml > "$out/pretrain.yaml"
[ -f "$run/encoder.safetensors" ] || "$eesmm" pretrain --config "$out/pretrain.yaml"
"$eesmm" export --model models/swin-micro-28.yaml --weights "$run/encoder.safetensors" \
    --mean 0.2860 --std 0.3530 --out "$out/encoder.onnx"
"$eesmm" verify "$out/encoder.onnx" --weights "$run/encoder.safetensors"
echo "pretraining run: $run (loss.png, recon_epoch001.png, metrics.jsonl, encoder.*)"

# The timm checkpoint → a verified .onnx → classify a JPEG.
"$eesmm" export --model models/swin-micro-32.yaml --weights "$fixtures/swin_small_cls10.safetensors" \
    --head --out "$out/swin-micro-32.onnx"
"$eesmm" verify "$out/swin-micro-32.onnx" --weights "$fixtures/swin_small_cls10.safetensors" \
    --images ../shared/fixtures/photos
"$eesmm" infer ../shared/fixtures/photos/chelsea.jpg --model "$out/swin-micro-32.onnx" --topk 3
