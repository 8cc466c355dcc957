#!/usr/bin/env bash
# CUDA check, run on a GPU machine from the repository root:
#   scripts/gpu_check.sh EESMM_CUDA_BINARY OUT_DIR [FASHION_MNIST_DIR]
# The binary is built without a GPU (`CUDARC_CUDA_VERSION=13000 cargo build --release
# --features cuda`). It checks the CUDA
# encoder against timm's outputs, then measures encoder throughput next to PyTorch eager (timm)
# on the same GPU, when python3 with torch + timm is there, and EESMM vs SimMIM pretraining
# steps. With FASHION_MNIST_DIR (the idx files, carried along: the GPU machine has no network),
# it also runs the quickstart pipeline on CUDA (ORT_DYLIB_PATH must name the ONNX Runtime library
# for its verify/infer stages), and, on a machine with several GPUs, pretraining throughput on one
# GPU against all of them data-parallel (scripts/bench_data_parallel.sh).
set -uo pipefail
bin=$1 out=$2 fmnist=${3:-}
fixtures=tests/fixtures/timm-swin-tiny
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

"$bin" features --device cuda --model "$fixtures/model.yaml" \
    --weights "$fixtures/cls10.safetensors" --input "$fixtures/input.npy" \
    --out "$out/pooled.npy" --logits "$out/logits.npy"
echo "cuda pooled vs timm:"; "$bin" diff "$out/pooled.npy" "$fixtures/expected_pooled.npy"
echo "cuda logits vs timm:"; "$bin" diff "$out/logits.npy" "$fixtures/expected_logits.npy"

for case in "swin-micro-32 256" "swin-t 64" "swin-b 32"; do
    set -- $case
    "$bin" bench encoder --device cuda --model "models/$1.yaml" --batch "$2" --iters 10 --warmup 3 --json
    python3 scripts/timm_bench.py --device cuda --preset "models/$1.yaml" --batch "$2" --iters 10 --warmup 3
done

for case in "swin-micro-32 64" "swin-t 32" "swin-b 16"; do
    set -- $case
    "$bin" bench pretrain --device cuda --model "models/$1.yaml" --batch "$2" --iters 10 --json
done

if [ -n "$fmnist" ]; then
    "$bin" run pipelines/quickstart.yaml --set defaults.device=cuda --set "vars.fmnist=$fmnist" \
        --set "run_dir=$out/quickstart-cuda"
fi

gpus=$(nvidia-smi -L | wc -l)
if [ -n "$fmnist" ] && [ "$gpus" -gt 1 ]; then
    all=$(seq -s, -f "cuda:%g" 0 $((gpus - 1)))
    EESMM_FASHION_MNIST="$fmnist" scripts/bench_data_parallel.sh "$bin" cuda "$all"
fi
