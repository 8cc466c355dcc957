#!/usr/bin/env bash
# The test command: formatting, lints and every test, on the CPU backend and on burn's wgpu backend
# (cubecl's kernels, the CUDA backend's compiler and runtime) over lavapipe, Vulkan on the CPU.
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
# lavapipe for the wgpu tests; only its ICD is used (VK_ICD_FILENAMES), whatever GPU is present.
bash scripts/setup_vulkan.sh
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
# ONNX Runtime for the export/verify/infer tests, and a Python with `onnx` for the checker test.
EESMM_TEST_PYTHON="$(bash scripts/setup_test_python.sh)"
ORT_DYLIB_PATH="$PWD/$(bash scripts/setup_ort.sh)"
export ORT_DYLIB_PATH EESMM_TEST_PYTHON

cargo fmt --all -- --check
# Layers import only downwards: no cycle between src/ modules, the CLI imported only by the root.
python3 scripts/check_layers.py
# Lints with the CUDA backend too: it compiles without a GPU (CUDA loads at run time), and one
# check of burn with both features replaces a second check build for `--features cuda`.
cargo clippy --all-targets --features wgpu,cuda -- -D warnings
# Every test, the fuzz harness (tests/fuzz.rs) included: a fixed 2,000 mutated inputs per reader
# (scripts/fuzz.sh is the long run). `--features wgpu` adds tests/integration/wgpu.rs.
EESMM_FUZZ_ITERS=2000 cargo test --features wgpu
