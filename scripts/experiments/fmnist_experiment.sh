#!/usr/bin/env bash
# The experiment behind docs/results.md's first table: swin-micro-28 on Fashion-MNIST,
# CPU, seed 0. Pretraining on the first 20,000 training images with
#   SimMIM (1 epoch) · EESMM split (1 epoch: the same images) · EESMM subtract (1 epoch) ·
#   EESMM split for 2 epochs (SimMIM's wall time: an EESMM step encodes two images at once),
# then for each encoder and a random one (scratch): fine-tuning on the first 10,000 training
# images (1 epoch, equal budget), a linear probe and a 20-NN vote on frozen features, each
# judged on the 10,000 test images. Re-running skips finished runs. Results: runs/experiment/.
#
#   scripts/experiments/fmnist_experiment.sh [eesmm-binary]      (about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
eesmm=${1:-target/release/eesmm}
out=runs/experiment
fmnist=${EESMM_FMNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out/stages"

pretrain() { # name objective decomposition epochs
    cat > "$out/stages/pretrain-$1.yaml" <<EOF
model: models/swin-micro-28.yaml
seed: 0
out_dir: $out/pretrain-$1
data: {dataset: fashion_mnist, root: $fmnist, split: train, limit: 20000}
objective:
  kind: $2
  mask_patch_size: 4
  mask_ratio: 0.6
  decomposition: $3
  augment: {rotate_degrees: 15, hflip: true, max_scale: 1.25, random_crop: true}
optimizer: {base_lr: 2.0e-3, warmup_epochs: 0.2, min_lr: 1.0e-5, weight_decay: 0.05, clip_grad: 5.0}
train: {epochs: $4, batch_size: 64, checkpoint_every: 100, log_every: 10}
EOF
    [ -f "$out/pretrain-$1/encoder.safetensors" ] ||
        "$eesmm" pretrain --config "$out/stages/pretrain-$1.yaml"
}

evaluate() { # name [encoder weights]
    local init="" weights=""
    [ -n "${2:-}" ] && init="init: $2" && weights="weights: $2"
    cat > "$out/stages/finetune-$1.yaml" <<EOF
model: models/swin-micro-28.yaml
seed: 0
out_dir: $out/finetune-$1
$init
data: {dataset: fashion_mnist, root: $fmnist, split: train, limit: 10000, augment: {scale: [0.6, 1.0], hflip: true}}
eval_data: {dataset: fashion_mnist, root: $fmnist, split: test}
drop_path_rate: 0.1
augment: {label_smoothing: 0.1}
optimizer: {base_lr: 4.0e-2, layer_decay: 0.9, warmup_epochs: 0.1, min_lr: 1.0e-5, weight_decay: 0.05, clip_grad: 5.0}
train: {epochs: 1, batch_size: 32, checkpoint_every: 100, log_every: 10}
EOF
    cat > "$out/stages/probe-$1.yaml" <<EOF
model: models/swin-micro-28.yaml
seed: 0
out_dir: $out/probe-$1
$weights
train_data: {dataset: fashion_mnist, root: $fmnist, split: train, limit: 10000}
test_data: {dataset: fashion_mnist, root: $fmnist, split: test}
probe: {epochs: 50, lr: 1.0e-3}
knn: {k: 20, temperature: 0.07}
EOF
    [ -f "$out/finetune-$1/eval.json" ] ||
        "$eesmm" finetune --config "$out/stages/finetune-$1.yaml"
    [ -f "$out/probe-$1/linear_probe.json" ] ||
        "$eesmm" linear-probe --config "$out/stages/probe-$1.yaml"
    [ -f "$out/probe-$1/knn.json" ] || "$eesmm" knn --config "$out/stages/probe-$1.yaml"
}

pretrain simmim simmim split 1
pretrain eesmm eesmm split 1
pretrain eesmm-subtract eesmm subtract 1
pretrain eesmm-2ep eesmm split 2

evaluate scratch
for name in simmim eesmm eesmm-2ep eesmm-subtract; do
    evaluate "$name" "$out/pretrain-$name/encoder.safetensors"
done

python3 scripts/experiments/experiment_table.py "$out" | tee "$out/results.md"
