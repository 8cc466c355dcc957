#!/usr/bin/env bash
# eesmm against PyTorch eager + timm on the same cores, in one run: encoder forward,
# forward+backward, and the full EESMM and SimMIM pretraining steps, 2 threads each.
#
#   scripts/bench_vs_torch.sh [BINARY]        (default target/release/eesmm)
#
# Prints one markdown table of images/s and eesmm / PyTorch. Each row runs eesmm and then
# PyTorch back to back, so both see the same machine. The PyTorch side comes from
# scripts/setup_bench_python.sh (.venv-bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/release/eesmm}"
python="$(bash scripts/setup_bench_python.sh)"
iters="${BENCH_ITERS:-6}"
# OpenBLAS-era CPU overrides slow torch's own kernels; unset them for this run alone.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS=2

json() { grep '^{' | tail -1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
row() { # name eesmm torch
    python3 -c "import sys; e, t = float(sys.argv[2]), float(sys.argv[3]); print(f'| {sys.argv[1]} | {e:.1f} | {t:.1f} | {e / t:.2f} |')" "$@"
}

echo "| case | eesmm images/s | PyTorch images/s | eesmm / PyTorch |"
echo "|---|---|---|---|"
for case in "swin-micro-32 32" "swin-micro-28 64" "swin-t 8"; do
    set -- $case
    preset="models/$1.yaml"
    ours=$("$binary" bench encoder --model "$preset" --batch "$2" --iters "$iters" --json | json)
    theirs=$("$python" scripts/timm_bench.py --preset "$preset" --batch "$2" --iters "$iters" --threads 2 2>/dev/null | json)
    row "$1 b$2, encoder forward" "$(field "$ours" forward_images_per_s)" "$(field "$theirs" forward_images_per_s)"
    row "$1 b$2, encoder forward+backward" "$(field "$ours" forward_backward_images_per_s)" "$(field "$theirs" forward_backward_images_per_s)"
done
for case in "swin-micro-32 32" "swin-micro-28 64"; do
    set -- $case
    preset="models/$1.yaml"
    ours=$("$binary" bench pretrain --model "$preset" --batch "$2" --iters "$iters" --json | json)
    theirs=$("$python" scripts/torch_pretrain_bench.py --preset "$preset" --batch "$2" --iters "$iters" --threads 2 2>/dev/null | json)
    row "$1 b$2, EESMM pretraining step (both images counted)" "$(field "$ours" eesmm_images_per_s)" "$(field "$theirs" eesmm_images_per_s)"
    row "$1 b$2, SimMIM pretraining step" "$(field "$ours" simmim_images_per_s)" "$(field "$theirs" simmim_images_per_s)"
done
