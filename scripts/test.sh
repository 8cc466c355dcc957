#!/usr/bin/env bash
# The test command: formatting, lints and every test, on the CPU backend.
# Needs the Rust toolchain (rustup, stable ≥ 1.92) and python3 with pip once, to fetch ONNX Runtime (.ort/) and `onnx` for the checker test (.venv-test/).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Fashion-MNIST (Debian package) for the data and pretraining tests.
bash scripts/setup_data.sh
# ONNX Runtime for the export/verify/infer tests, and a Python with `onnx` for the checker test.
EESMM_TEST_PYTHON="$(bash scripts/setup_test_python.sh)"
ORT_DYLIB_PATH="$PWD/$(bash scripts/setup_ort.sh)"
export ORT_DYLIB_PATH EESMM_TEST_PYTHON

cargo fmt --all -- --check
# Layers import only downwards: no cycle between src/ modules, the CLI imported only by the root.
python3 scripts/check_layers.py
cargo clippy --all-targets -- -D warnings
# Every test, the fuzz harness (tests/fuzz.rs) included: a fixed 2,000 mutated inputs per reader
# (scripts/fuzz.sh is the long run).
EESMM_FUZZ_ITERS=2000 cargo test
