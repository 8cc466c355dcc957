#!/usr/bin/env bash
# Pretraining throughput of one process against two processes of a two-node run on this machine
# (127.0.0.1, one CPU device each): the stage of bench_data_parallel.sh (swin-micro-28, EESMM,
# batch 64 pairs, Fashion-MNIST, 30 steps).
#   scripts/bench/bench_nodes.sh [EESMM_BINARY] [PORT]
# Prints one line per setup: median images/s (all nodes together) over the logged steps after 5.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/release/eesmm}"
port="${2:-29500}"
fmnist="${EESMM_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed 's/drop_path_rate: 0.1/drop_path_rate: 0.0/' models/swin-micro-28.yaml > "$work/model.yaml"
stage() {
    cat > "$work/$1.yaml" <<YAML
model: $work/model.yaml
device: cpu
out_dir: $work/$1
data: {dataset: fashion_mnist, root: $fmnist, limit: 3840}
objective: {kind: eesmm, mask_patch_size: 4}
optimizer: {base_lr: 2.0e-3, warmup_epochs: 0.2, clip_grad: 5.0}
train: {epochs: 1, batch_size: 64, checkpoint_every: 1000, log_every: 1}
YAML
}
median() {
    python3 - "$1" "$2" <<'PY'
import json, statistics, sys
rates = [json.loads(l)["images_per_s"] for l in open(sys.argv[1]) if "images_per_s" in l][5:]
print(f"{sys.argv[2]:<28} {statistics.median(rates):8.1f} images/s  ({len(rates)} steps)")
PY
}
stage one
"$binary" pretrain --config "$work/one.yaml" >/dev/null 2>&1
median "$work/one/metrics.jsonl" "1 process (device: cpu)"
stage two
for rank in 1 0; do
    "$binary" pretrain --config "$work/two.yaml" --nodes 2 --node-rank $rank \
        --coordinator "127.0.0.1:$port" >"$work/node$rank.log" 2>&1 &
done
wait
median "$work/two/metrics.jsonl" "2 processes (--nodes 2)"
