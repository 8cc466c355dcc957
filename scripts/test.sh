#!/usr/bin/env bash
# The test command: formatting, lints and every test, on the CPU backend.
# Needs only the Rust toolchain (rustup, stable ≥ 1.92) and the reference fixtures in ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with https://rustup.rs (stable, 1.92 or newer)" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
