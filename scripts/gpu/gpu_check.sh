#!/usr/bin/env bash
# The GPU check: one call of under 8 minutes on one GPU machine that has PyTorch and timm but no
# Rust toolchain and no network. Made beforehand, here: scripts/gpu/gpu_pack.sh (dist/eesmm-cuda, the
# stripped CUDA binary, and dist/fashion-mnist/); copy the working tree with dist/ along, then
#   scripts/gpu/gpu_check.sh [--dry-run] [OUT_DIR]          (OUT_DIR default runs/gpu-check)
# writes OUT_DIR/gpu_check.json (scripts/gpu/gpu_check_report.py assembles it from OUT_DIR/parts/):
#   - timm parity on CUDA: the fixture's pooled features and logits against timm's (tests/fixtures)
#   - encoder forward and forward+backward images/s, eesmm and PyTorch eager (timm), and full
#     pretraining steps (EESMM and SimMIM, backward and AdamW), eesmm and PyTorch, for swin-t
#     and swin-b at 224 px, each with the peak GPU memory nvidia-smi saw while it ran
#   - the loss curve of a 200-step EESMM pretraining run (the quickstart's, 2 epochs of 12,800 images)
#   - the quickstart pipeline on CUDA with its wall time (evaluated on the 2,000 test images of
#     dist/fashion-mnist; its verify and infer stages need ONNX Runtime: ORT_DYLIB_PATH, or the
#     library of an `onnxruntime` the Python has)
# Each part runs under its own `timeout` (BUDGETS below), so a slow part cannot eat the others'.
# It exits 1 when a part failed or a check did not hold (the JSON's `complete` says which).
# --dry-run needs no GPU: it checks the inputs (the binary, whether it has CUDA, its size with the
# tracked files, python with torch/timm/yaml/numpy, the fixtures, the data, the budgets) and
# writes the JSON with them alone; it exits 1 only if the script itself cannot run (fixtures,
# presets or the budget wrong), reporting a missing binary, CUDA or PyTorch as not ready.
# --rehearse [DEVICE] needs no GPU either: every part, the report and its checks, end to end, on
# DEVICE (cpu, the default, or wgpu) with PyTorch on the CPU, small presets (swin-nano-32,
# swin-micro-32 at batch 4), a 10-step pretraining run and a one-epoch quickstart on 640 images,
# so that the GPU's minutes are not the first time the script runs. CI runs it.
# Environment: EESMM_BIN (default dist/eesmm-cuda), PYTHON (default python3), EESMM_FASHION_MNIST
# (default dist/fashion-mnist), ORT_DYLIB_PATH.
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=gpu
device=cuda
case "${1:-}" in
--dry-run)
    mode=dry-run
    shift
    ;;
--rehearse)
    mode=rehearse
    shift
    case "${1:-}" in cpu | wgpu)
        device=$1
        shift
        ;;
    *) device=cpu ;;
    esac
    ;;
esac
out=${1:-runs/gpu-check}
bin=${EESMM_BIN:-dist/eesmm-cuda}
python=${PYTHON:-python3}
fmnist=${EESMM_FASHION_MNIST:-dist/fashion-mnist}
fixtures=tests/fixtures/timm-swin-tiny
parts=$out/parts
mkdir -p "$parts"
rm -f "$parts"/*

# Seconds per part; `timeout -k 2` adds at most 2 s to each. The benchmarks run once per model.
BUDGETS=("parity 35" "pretrain_200 45" "quickstart 95")
MODEL_BUDGETS=("encoder_eesmm 50" "encoder_torch 18" "pretrain_eesmm 55" "pretrain_torch 18")
LIMIT_S=480
# The benchmarked models and their batch sizes in encoder inputs (an EESMM input holds two images).
MODELS=(swin-t swin-b)
declare -A ENCODER_BATCH=([swin-t]=128 [swin-b]=64) PRETRAIN_BATCH=([swin-t]=64 [swin-b]=32)
ITERS=(--iters 10 --warmup 3)
# The two pipeline runs. The loss curve's run is two epochs at batch 64 (dist/ holds 16,384
# training images); an EESMM input takes two images, so an epoch of STEPS / 2 steps is STEPS * 64.
pretrain_steps=200
QUICKSTART_SIZE=(--set finetune.eval_data.limit=2000)
if [ "$mode" = rehearse ]; then
    MODELS=(swin-nano-32 swin-micro-32)
    ENCODER_BATCH=([swin-nano-32]=4 [swin-micro-32]=4)
    PRETRAIN_BATCH=([swin-nano-32]=4 [swin-micro-32]=4)
    ITERS=(--iters 2 --warmup 1)
    pretrain_steps=10
    QUICKSTART_SIZE=(--set pretrain.data.limit=640 --set finetune.data.limit=640
        --set finetune.eval_data.limit=200 --set finetune.train.epochs=1)
fi
PRETRAIN_200=(pipelines/quickstart.yaml --only pretrain --force --set "defaults.device=$device"
    --set "vars.fmnist=$fmnist" --set "run_dir=$out/pretrain-200"
    --set "pretrain.data.limit=$((pretrain_steps * 64))" --set pretrain.train.epochs=2
    --set pretrain.train.batch_size=64 --set pretrain.train.log_every=1)
QUICKSTART=(pipelines/quickstart.yaml --force --set "defaults.device=$device"
    --set "vars.fmnist=$fmnist" --set "run_dir=$out/quickstart" "${QUICKSTART_SIZE[@]}")

# A part's budget: its name without the model (encoder_eesmm_swin-t → encoder_eesmm).
budget_of() {
    local name=${1%%_swin-*} entry
    for entry in "${BUDGETS[@]}" "${MODEL_BUDGETS[@]}"; do
        set -- $entry
        if [ "$1" = "$name" ]; then echo "$2"; return; fi
    done
}

# One part: NAME, then the command; stdout, stderr, exit status, wall time and the GPU memory
# samples go to $parts/NAME.*.
part() {
    local part_name=$1
    shift
    local seconds
    seconds=$(budget_of "$part_name")
    echo "gpu_check: $part_name (at most $seconds s)" >&2
    local sampler="" start rc ms
    if [ "$device" = cuda ]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
            >"$parts/$part_name.mem" 2>/dev/null &
        sampler=$!
    fi
    start=$(date +%s%N)
    timeout -k 2 "$seconds" "$@" >"$parts/$part_name.out" 2>"$parts/$part_name.err"
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
    fi
    printf '{"rc": %d, "budget_s": %d, "wall_s": %d.%03d}\n' "$rc" "$seconds" \
        $((ms / 1000)) $((ms % 1000)) >"$parts/$part_name.meta"
}

# The folder holding a library the Python's packages ship (PyTorch's CUDA wheels carry NVRTC).
python_library_dir() {
    "$python" - "$1" <<'EOF' 2>/dev/null
import glob, os, sys
try:
    import torch
except ImportError:
    sys.exit(1)
roots = {os.path.dirname(os.path.dirname(torch.__file__))}
try:
    import onnxruntime
    roots.add(os.path.dirname(onnxruntime.__file__))
except ImportError:
    pass
for root in sorted(roots):
    hits = sorted(glob.glob(os.path.join(root, "**", sys.argv[1]), recursive=True))
    if hits:
        print(hits[0])
        sys.exit(0)
sys.exit(1)
EOF
}

check_inputs() {
    local total=0 entry
    for entry in "${BUDGETS[@]}"; do
        set -- $entry
        total=$((total + $2 + 2))
    done
    for entry in "${MODEL_BUDGETS[@]}"; do
        set -- $entry
        total=$((total + ${#MODELS[@]} * ($2 + 2)))
    done
    local script_ok=true
    for f in model.yaml cls10.safetensors input.npy expected_pooled.npy expected_logits.npy; do
        [ -f "$fixtures/$f" ] || { echo "missing fixture $fixtures/$f" >&2; script_ok=false; }
    done
    local presets=("${MODELS[@]/%/.yaml}")
    for f in "${presets[@]/#/models/}" pipelines/quickstart.yaml \
        scripts/bench/timm_bench.py scripts/bench/torch_pretrain_bench.py scripts/gpu/gpu_check_report.py; do
        [ -f "$f" ] || { echo "missing $f" >&2; script_ok=false; }
    done
    if [ "$total" -gt "$LIMIT_S" ]; then
        echo "the parts' budgets add up to $total s, over $LIMIT_S s" >&2
        script_ok=false
    fi
    {
        echo "mode=$mode"
        echo "device=$device"
        echo "models=${MODELS[*]}"
        echo "budget_total_s=$total"
        echo "pretrain_200_steps=$pretrain_steps"
        echo "script_ok=$script_ok"
        if [ -x "$bin" ]; then
            echo "binary=$bin"
            echo "binary_bytes=$(stat -c %s "$bin")"
            if command -v file >/dev/null; then echo "binary_file=$(file -b "$bin")"; fi
            # What --device cuda says: the probe's error without a driver, or the build's.
            "$bin" features --device cuda --model "$fixtures/model.yaml" \
                --weights "$fixtures/cls10.safetensors" --input "$fixtures/input.npy" \
                --out "$parts/probe_pooled.npy" >/dev/null 2>"$parts/probe.err"
            echo "cuda_rc=$?"
            # The pipeline overrides resolve (the data folder is only read when a stage runs).
            "$bin" run "${PRETRAIN_200[@]}" --dry-run >/dev/null 2>"$parts/plan_pretrain_200.err"
            echo "plan_pretrain_200_rc=$?"
            "$bin" run "${QUICKSTART[@]}" --dry-run >/dev/null 2>"$parts/plan_quickstart.err"
            echo "plan_quickstart_rc=$?"
        else
            echo "binary=missing: $bin (scripts/gpu/gpu_pack.sh builds it)"
        fi
        if command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
            echo "tracked_bytes=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)"
        fi
        [ -d dist ] && echo "dist_bytes=$(du -sb dist | cut -f1)"
        for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
            t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
            [ -f "$fmnist/$f" ] || echo "data_missing=$fmnist/$f"
        done
        for module in torch timm yaml numpy onnxruntime; do
            version=$("$python" -c "import $module; print(getattr($module, '__version__', 'present'))" 2>/dev/null)
            echo "python_$module=${version:-missing}"
        done
        echo "python_cuda=$("$python" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)"
        command -v nvidia-smi >/dev/null && echo "nvidia_smi=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
        echo "nvrtc=${nvrtc_dir:-}"
        echo "ort=${ORT_DYLIB_PATH:-}"
    } >"$parts/inputs.txt"
    $script_ok
}

# NVRTC and ONNX Runtime from the Python's wheels when the system has none.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    nvrtc=$(python_library_dir 'libnvrtc.so.[0-9]*')
    if [ -n "$nvrtc" ]; then
        nvrtc_dir=$(dirname "$nvrtc")
        export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ort=$(python_library_dir 'libonnxruntime.so.[0-9]*')
    [ -n "$ort" ] && export ORT_DYLIB_PATH=$ort
fi

start=$(date +%s)
check_inputs
inputs_ok=$?
if [ "$mode" = dry-run ]; then
    "$python" scripts/gpu/gpu_check_report.py --dry-run "$out" 2>/dev/null \
        || python3 scripts/gpu/gpu_check_report.py --dry-run "$out"
    exit $inputs_ok
fi
[ "$inputs_ok" = 0 ] || exit 1

if [ "$mode" = rehearse ]; then
    echo "rehearsal on $device: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >"$parts/gpu.txt"
    torch_device=cpu
else
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$parts/gpu.txt"
    torch_device=cuda
fi

part parity "$bin" features --device "$device" --model "$fixtures/model.yaml" \
    --weights "$fixtures/cls10.safetensors" --input "$fixtures/input.npy" \
    --out "$parts/parity_pooled.npy" --logits "$parts/parity_logits.npy"

for model in "${MODELS[@]}"; do
    batch=${ENCODER_BATCH[$model]}
    part "encoder_eesmm_$model" "$bin" bench encoder --device "$device" \
        --model "models/$model.yaml" --batch "$batch" "${ITERS[@]}" --json
    part "encoder_torch_$model" "$python" scripts/bench/timm_bench.py --device "$torch_device" \
        --preset "models/$model.yaml" --batch "$batch" "${ITERS[@]}"
done
for model in "${MODELS[@]}"; do
    batch=${PRETRAIN_BATCH[$model]}
    part "pretrain_eesmm_$model" "$bin" bench pretrain --device "$device" \
        --model "models/$model.yaml" --batch "$batch" "${ITERS[@]}" --json
    part "pretrain_torch_$model" "$python" scripts/bench/torch_pretrain_bench.py --device "$torch_device" \
        --preset "models/$model.yaml" --batch "$batch" "${ITERS[@]}"
done

part pretrain_200 "$bin" run "${PRETRAIN_200[@]}"
part quickstart "$bin" run "${QUICKSTART[@]}"

echo "gpu_check: parts took $(( $(date +%s) - start )) s" >&2
"$python" scripts/gpu/gpu_check_report.py "$out"
