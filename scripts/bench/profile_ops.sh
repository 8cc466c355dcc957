#!/usr/bin/env bash
# Where a training step's CPU time goes, per op family: perf samples of
# `eesmm bench encoder` (forward + forward/backward of one model and batch), bucketed by symbol.
#
#   scripts/bench/profile_ops.sh [BINARY] [PRESET] [BATCH]
#   scripts/bench/profile_ops.sh target/release/eesmm models/swin-micro-28.yaml 64
#
# Prints a markdown table (family, % of samples) and keeps the raw report in
# runs/profile/<binary name>.txt. Needs `perf` (Debian: linux-perf).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/release/eesmm}"
preset="${2:-models/swin-micro-28.yaml}"
batch="${3:-64}"
out="runs/profile"
mkdir -p "$out"
name="$(basename "$binary")"

perf record -F 499 -g -o "$out/$name.data" -- \
    "$binary" bench encoder --model "$preset" --batch "$batch" --iters 5 --json >/dev/null 2>&1
perf report -i "$out/$name.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' > "$out/$name.txt"

python3 - "$out/$name.txt" <<'EOF'
import re, sys
families = [
    ("matrix products (sgemm, packing)", r"gemm|matrixmultiply|packing|kernel_target|dgemm|sgemm|mat_mul|general_mat_mul"),
    ("fused kernels (eesmm::kernels)", r"eesmm::kernels"),
    ("copies (memmove / memcpy)", r"memmove|memcpy|__memcpy|copy_nonoverlapping"),
    ("allocation, zero-filling, page faults", r"memset|TensorData::full|malloc|free|realloc|calloc|_int_|mmap|munmap|page|clear_page|do_anonymous|handle_mm|alloc|cfree|arena"),
    ("scalar libm (exp, erf, tanh, pow)", r"expf|erff|tanhf|powf|expm1|__ieee754|exp@|libm|__exp|__erf|__tanh|__pow"),
    ("element-wise loops (ndarray zip/map)", r"ndarray::|Zip|zip|map_inplace|burn_ndarray|NdArray|macerator|simd"),
    ("autodiff graph", r"burn_autodiff|autodiff"),
    ("rayon / threads", r"rayon|crossbeam|futex|sched|__lll|pthread"),
]
totals = {name: 0.0 for name, _ in families}
totals["other"] = 0.0
for line in open(sys.argv[1]):
    m = re.match(r"\s*([0-9.]+)%\s+\S+\s+(.*)", line)
    if not m:
        continue
    pct, sym = float(m.group(1)), m.group(2)
    for name, pattern in families:
        if re.search(pattern, sym):
            totals[name] += pct
            break
    else:
        totals["other"] += pct
print("| op family | % of samples |")
print("|---|---|")
for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"| {name} | {pct:.1f} |")
EOF
