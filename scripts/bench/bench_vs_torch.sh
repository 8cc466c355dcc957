#!/usr/bin/env bash
# eesmm against PyTorch eager + timm on the same cores, in one run: encoder forward,
# forward+backward, and the full EESMM and SimMIM pretraining steps, 2 threads each.
#
#   scripts/bench/bench_vs_torch.sh [BINARY]        (default target/release/eesmm)
#   BENCH_ROUNDS=3 BENCH_ITERS=6 scripts/bench/bench_vs_torch.sh
#   BENCH_JSON=docs/results/speed/NAME.json scripts/bench/bench_vs_torch.sh BINARY
#
# Prints one markdown table of images/s and eesmm / PyTorch. Each case runs eesmm and then
# PyTorch back to back, BENCH_ROUNDS times in turn, so that both see the same machine; the table
# shows the median of the rounds for each side and the ratio of the medians, with the lowest and
# highest per-round ratio beside it (this machine's speed moves by ±25 % within minutes). The
# PyTorch side comes from scripts/bench/setup_bench_python.sh (.venv-bench/). With BENCH_JSON, the
# rows (and each side's per-round images/s) also go to that file, stamped with the machine, the
# versions, the date and the command (scripts/stamp.py; keys in docs/results/README.md).
set -euo pipefail
json_out="${BENCH_JSON:+$(realpath -m "$BENCH_JSON")}"
cd "$(dirname "$0")/../.."
binary="${1:-target/release/eesmm}"
python="$(bash scripts/bench/setup_bench_python.sh)"
iters="${BENCH_ITERS:-6}"
rounds="${BENCH_ROUNDS:-3}"
# OpenBLAS-era CPU overrides slow torch's own kernels; unset them for this run alone.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS=2
rows="$(mktemp)"
trap 'rm -f "$rows"' EXIT

json() { grep '^{' | tail -1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# row NAME "e1 e2 .." "t1 t2 ..": medians, their ratio, and the range of the per-round ratios;
# the same as one JSON line appended to $rows.
row() {
    python3 - "$rows" "$@" <<'PY'
import json, statistics, sys
rows, name = sys.argv[1], sys.argv[2]
ours, theirs = ([float(v) for v in arg.split()] for arg in sys.argv[3:5])
e, t = statistics.median(ours), statistics.median(theirs)
ratios = [a / b for a, b in zip(ours, theirs)]
print(f"| {name} | {e:.1f} | {t:.1f} | {e / t:.2f} | {min(ratios):.2f}–{max(ratios):.2f} |")
head, measure = name.split(", ", 1)  # "swin-t b8, encoder forward"
model, batch = head.rsplit(" b", 1)
with open(rows, "a") as out:
    print(json.dumps({
        "case": name, "model": model, "batch": int(batch), "measure": measure,
        "eesmm_images_per_s": round(e, 1), "torch_images_per_s": round(t, 1),
        "eesmm_over_torch": round(e / t, 3),
        "round_ratio_min": round(min(ratios), 3), "round_ratio_max": round(max(ratios), 3),
        "eesmm_rounds": [round(v, 1) for v in ours],
        "torch_rounds": [round(v, 1) for v in theirs]}), file=out)
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
        theirs+=("$("$python" "scripts/bench/$script" --preset "$preset" --batch "$batch" --iters "$iters" --threads 2 2>/dev/null | json)")
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
if [ -n "$json_out" ]; then
    python3 scripts/stamp.py wrap --python "$python" --rows "$rows" --out "$json_out" \
        --command "BENCH_ROUNDS=$rounds BENCH_ITERS=$iters scripts/bench/bench_vs_torch.sh $binary"
fi
