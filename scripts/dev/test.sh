#!/usr/bin/env bash
# The test command: formatting, lints and every test, on the CPU backend and on burn's wgpu backend
# (cubecl's kernels, the CUDA backend's compiler and runtime) over lavapipe, Vulkan on the CPU.
# Needs the Rust toolchain (rustup, stable ≥ 1.92) and python3 with pip once, to fetch ONNX Runtime (.ort/) and `onnx` for the checker test (.venv-test/).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# `phase NAME`: prints how long the step since the last call took (CONTRIBUTING.md, "Where CI
# time goes", is made of these lines).
last=$(date +%s)
phase() {
    local now
    now=$(date +%s)
    echo "test.sh: $1 took $((now - last)) s" >&2
    last=$now
}

# Fashion-MNIST (Debian package) for the data and pretraining tests.
bash scripts/setup_data.sh
# lavapipe for the wgpu tests; only its ICD is used (VK_ICD_FILENAMES), whatever GPU is present.
bash scripts/setup_vulkan.sh
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
# ONNX Runtime for the export/verify/infer tests, and a Python with `onnx` for the checker test.
EESMM_TEST_PYTHON="$(bash scripts/dev/setup_test_python.sh)"
ORT_DYLIB_PATH="$PWD/$(bash scripts/setup_ort.sh)"
export ORT_DYLIB_PATH EESMM_TEST_PYTHON
phase "set-up (data, lavapipe, venv, ONNX Runtime)"

cargo fmt --all -- --check
# Layers import only downwards: no cycle between src/ modules (the CLI is the binary's own).
python3 scripts/dev/check_layers.py
# The user docs state facts, not development history, and README.md stays under 300 lines;
# docs/config.md is what the schema structs' doc comments say (the test suite checks its keys).
python3 scripts/dev/check_docs.py
python3 scripts/dev/config_reference.py --check
phase "fmt and the docs checks"
# Lints with the CUDA backend too: it compiles without a GPU (CUDA loads at run time), and one
# check of burn with both features replaces a second check build for `--features cuda`.
cargo clippy --all-targets --features wgpu,cuda -- -D warnings
phase "clippy"
# Every test, the fuzz harness (tests/fuzz.rs) included: a fixed 2,000 mutated inputs per reader
# (scripts/dev/fuzz.sh is the long run). `--features wgpu` adds tests/integration/wgpu.rs.
cargo test --features wgpu --no-run
phase "test build"
EESMM_FUZZ_ITERS=2000 cargo test --features wgpu
phase "tests"
