#!/usr/bin/env bash
# eesmm against PyTorch eager + timm on the same cores, in one run: encoder forward,
# forward+backward, and the full EESMM and SimMIM pretraining steps, 2 threads each.
#
#   scripts/bench_vs_torch.sh [BINARY]        (default target/release/eesmm)
#   BENCH_ROUNDS=3 BENCH_ITERS=6 scripts/bench_vs_torch.sh
#
# Prints one markdown table of images/s and eesmm / PyTorch. Each case runs eesmm and then
# PyTorch back to back, BENCH_ROUNDS times in turn, so that both see the same machine; the table
# shows the median of the rounds for each side and the ratio of the medians, with the lowest and
# highest per-round ratio beside it (this machine's speed moves by ±25 % within minutes). The
# PyTorch side comes from scripts/setup_bench_python.sh (.venv-bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/release/eesmm}"
python="$(bash scripts/setup_bench_python.sh)"
iters="${BENCH_ITERS:-6}"
rounds="${BENCH_ROUNDS:-3}"
# OpenBLAS-era CPU overrides slow torch's own kernels; unset them for this run alone.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS=2

json() { grep '^{' | tail -1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# row NAME "e1 e2 .." "t1 t2 ..": medians, their ratio, and the range of the per-round ratios.
row() {
    python3 - "$@" <<'PY'
import statistics, sys
name, ours, theirs = sys.argv[1], [float(v) for v in sys.argv[2].split()], [float(v) for v in sys.argv[3].split()]
e, t = statistics.median(ours), statistics.median(theirs)
ratios = [a / b for a, b in zip(ours, theirs)]
print(f"| {name} | {e:.1f} | {t:.1f} | {e / t:.2f} | {min(ratios):.2f}–{max(ratios):.2f} |")
PY
}

# compare PRESET BATCH BENCH SCRIPT "LABEL|FIELD"...: BENCH_ROUNDS rounds of `eesmm bench BENCH`
# and then the PyTorch SCRIPT, one table row per FIELD (both sides' JSON name it alike).
compare() {
    local preset=$1 batch=$2 bench=$3 script=$4
    shift 4
    local ours=() theirs=()
    for _ in $(seq "$rounds"); do
        ours+=("$("$binary" bench "$bench" --model "$preset" --batch "$batch" --iters "$iters" --json | json)")
        theirs+=("$("$python" "scripts/$script" --preset "$preset" --batch "$batch" --iters "$iters" --threads 2 2>/dev/null | json)")
    done
    for spec in "$@"; do
        local label=${spec%|*} key=${spec#*|}
        row "$label" "$(for j in "${ours[@]}"; do field "$j" "$key"; done)" \
            "$(for j in "${theirs[@]}"; do field "$j" "$key"; done)"
    done
}

echo "| case | eesmm images/s | PyTorch images/s | eesmm / PyTorch | per-round ratios |"
echo "|---|---|---|---|---|"
for case in "swin-micro-32 32" "swin-micro-28 64" "swin-t 8"; do
    set -- $case
    compare "models/$1.yaml" "$2" encoder timm_bench.py \
        "$1 b$2, encoder forward|forward_images_per_s" \
        "$1 b$2, encoder forward+backward|forward_backward_images_per_s"
done
for case in "swin-micro-32 32" "swin-micro-28 64"; do
    set -- $case
    compare "models/$1.yaml" "$2" pretrain torch_pretrain_bench.py \
        "$1 b$2, EESMM pretraining step (both images counted)|eesmm_images_per_s" \
        "$1 b$2, SimMIM pretraining step|simmim_images_per_s"
done
