#!/usr/bin/env bash
# The PyTorch references of the benchmarks (torch 2.15.0 + timm 1.0.31, about 3 GB with the CUDA
# wheels PyPI serves) in .venv-bench/. Not part of the tests. Prints the interpreter's path.
exec bash "$(dirname "$0")/../setup_venv.sh" .venv-bench "import torch, timm, yaml" \
    "torch==2.15.0" "timm==1.0.31" pyyaml numpy
