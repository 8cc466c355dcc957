#!/usr/bin/env bash
# The PyTorch references of the benchmarks (torch 2.15.0 + timm 1.0.31, about 3 GB with the CUDA
# wheels PyPI serves) in .venv-bench/. Not part of the tests. Prints the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-bench
if ! "$venv/bin/python" -c "import torch, timm, yaml" >/dev/null 2>&1; then
    if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
        echo "setup_bench_python.sh: python3 venv support is missing; installing python3-venv" >&2
        sudo=$([[ $(id -u) -eq 0 ]] || echo sudo)
        $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq python3-venv python3-pip >&2
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "torch==2.15.0" "timm==1.0.31" pyyaml numpy >&2
fi
echo "$PWD/$venv/bin/python"
