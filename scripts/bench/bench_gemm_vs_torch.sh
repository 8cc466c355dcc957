#!/usr/bin/env bash
# The Linear layers' matrix products of one model at one batch: eesmm's CPU kernels
# (src/kernels/gemm.rs), matrixmultiply alone (what they replaced) and PyTorch's sgemm, 2 threads
# each, BENCH_ROUNDS runs of each side in turn; one markdown table of median GFLOP/s.
#
#   scripts/bench/bench_gemm_vs_torch.sh [BINARY] [PRESET] [BATCH]
#   scripts/bench/bench_gemm_vs_torch.sh target/release/eesmm models/swin-micro-28.yaml 64
#
# BENCH_JSON=OUT.json: the rows and the step total also go to that file, stamped with the machine,
# the versions, the date and the command (scripts/stamp.py; keys in docs/results/README.md).
set -euo pipefail
json_out="${BENCH_JSON:+$(realpath -m "$BENCH_JSON")}"
cd "$(dirname "$0")/../.."
binary="${1:-target/release/eesmm}"
preset="${2:-models/swin-micro-28.yaml}"
batch="${3:-64}"
rounds="${BENCH_ROUNDS:-3}"
python="$(bash scripts/bench/setup_bench_python.sh)"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS=2
runs="$(mktemp -d)"
trap 'rm -rf "$runs"' EXIT
for r in $(seq "$rounds"); do
    "$binary" bench gemm --model "$preset" --batch "$batch" --iters 10 --warmup 2 --json > "$runs/eesmm-$r.jsonl"
    "$python" scripts/bench/torch_gemm_bench.py --preset "$preset" --batch "$batch" --threads 2 > "$runs/torch-$r.jsonl"
done
invocation="BENCH_ROUNDS=$rounds scripts/bench/bench_gemm_vs_torch.sh $binary $preset $batch"
"$python" - "$runs" "$preset" "$batch" "$json_out" "$invocation" <<'PY'
import glob, json, statistics, sys
import yaml
depths = yaml.safe_load(open(sys.argv[2]))["depths"]
sides = ("eesmm_gflops", "matrixmultiply_gflops", "torch_gflops")
rows = {}
json_rows = []  # the table's rows for BENCH_JSON
for path in sorted(glob.glob(f"{sys.argv[1]}/*.jsonl")):
    for line in open(path):
        r = json.loads(line)
        row = rows.setdefault(r["product"], {"mkn": (r["m"], r["k"], r["n"])})
        for key in sides:
            if key in r:
                row.setdefault(key, []).append(r[key])
print("| product | shape | eesmm GFLOP/s | matrixmultiply | PyTorch | eesmm / PyTorch |")
print("|---|---|---|---|---|---|")
# A training step's time in these products: each stage's blocks run its four layers' three products.
step_ms = dict.fromkeys(sides, 0.0)
for name, row in rows.items():
    m, k, n = row["mkn"]
    gflops = {key: statistics.median(row[key]) for key in sides}
    blocks = depths[int(name[len("stage"):].split(".")[0])]
    for key in sides:
        step_ms[key] += blocks * 2 * m * k * n / 1e9 / gflops[key] * 1e3
    print(f'| {name} | [{m}, {k}] · [{k}, {n}] | {gflops["eesmm_gflops"]:.0f} '
          f'| {gflops["matrixmultiply_gflops"]:.0f} | {gflops["torch_gflops"]:.0f} '
          f'| {gflops["eesmm_gflops"] / gflops["torch_gflops"]:.2f} |')
    json_rows.append({"product": name, "m": m, "k": k, "n": n, "blocks": blocks,
                      **{key: round(gflops[key], 1) for key in sides},
                      "eesmm_over_torch": round(gflops["eesmm_gflops"] / gflops["torch_gflops"], 3)})
e, mm, t = (step_ms[key] for key in sides)
print(f"| all blocks' Linear products of one forward+backward | | {e:.1f} ms | {mm:.1f} ms | {t:.1f} ms | {t / e:.2f} |")
if sys.argv[4]:
    import importlib.metadata
    sys.path.insert(0, "scripts")
    import stamp
    step = {"what": "all blocks' Linear products of one forward+backward",
            "preset": sys.argv[2], "batch": int(sys.argv[3]),
            "eesmm_ms": round(e, 1), "matrixmultiply_ms": round(mm, 1), "torch_ms": round(t, 1),
            "eesmm_over_torch": round(t / e, 3)}
    stamp.write(sys.argv[4], stamp.make(sys.argv[5], torch=importlib.metadata.version("torch")), json_rows, step=step)
PY
