#!/usr/bin/env bash
# Exports the timm parity fixture (tests/fixtures/timm-swin-tiny), imports the file back into burn with
# burn-onnx (code generation in build.rs) and checks the result against timm's outputs.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p model
(cd ../.. && cargo run --release -- export --model tests/fixtures/timm-swin-tiny/model.yaml \
    --weights tests/fixtures/timm-swin-tiny/cls10.safetensors --head \
    --out tools/onnx-roundtrip/model/swin-micro-32.onnx)
cargo run --release
