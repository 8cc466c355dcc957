#!/usr/bin/env bash
# Exports swin-micro-32 with the timm fixture weights, imports the file back into burn with
# burn-onnx (code generation in build.rs) and checks the result against timm's outputs.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p model
(cd ../.. && cargo run --release -- export --model models/swin-micro-32.yaml \
    --weights ../shared/fixtures/timm-swin-small/swin_small_cls10.safetensors --head \
    --out tools/onnx-roundtrip/model/swin-micro-32.onnx)
cargo run --release
