#!/usr/bin/env bash
# Pretraining throughput on one device against data-parallel replicas, in one run of this script:
# the same stage (swin-micro-28, EESMM, batch 64 pairs, Fashion-MNIST) once per `device:` value.
#   scripts/bench/bench_data_parallel.sh [EESMM_BINARY] [DEVICES...]   (default: cpu and cpu,cpu)
# Prints one line per device: median images/s over the logged steps after the first 5.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/release/eesmm}"
shift || true
devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(cpu cpu,cpu)
fmnist="${EESMM_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed 's/drop_path_rate: 0.1/drop_path_rate: 0.0/' models/swin-micro-28.yaml > "$work/model.yaml"
for device in "${devices[@]}"; do
    run="$work/run-${device//[,:]/_}"
    cat > "$run.yaml" <<YAML
model: $work/model.yaml
device: "$device"
out_dir: $run
data: {dataset: fashion_mnist, root: $fmnist, limit: 3840}
objective: {kind: eesmm, mask_patch_size: 4}
optimizer: {base_lr: 2.0e-3, warmup_epochs: 0.2, clip_grad: 5.0}
train: {epochs: 1, batch_size: 64, checkpoint_every: 1000, log_every: 1}
YAML
    "$binary" pretrain --config "$run.yaml" >/dev/null 2>&1
    python3 - "$run/metrics.jsonl" "$device" <<'PY'
import json, statistics, sys
rates = [json.loads(l)["images_per_s"] for l in open(sys.argv[1])][5:]
print(f"device {sys.argv[2]:<16} {statistics.median(rates):8.1f} images/s  ({len(rates)} steps)")
PY
done
