#!/usr/bin/env bash
# What scripts/gpu/gpu_check.sh needs on a GPU machine without Rust or network, made here, in dist/
# (ignored by git; copy it along with the working tree):
#   dist/eesmm-cuda        the release binary with the `cuda` feature, stripped
#   dist/fashion-mnist/    the first 16,384 training and 2,000 test images of Fashion-MNIST (the
#                          quickstart's pretraining set; its evaluation on 2,000 test images)
# and checks that the working tree's tracked files and dist/ stay under 64 MiB together.
#   scripts/gpu/gpu_pack.sh                 (CUDARC_CUDA_VERSION=12080 to bind an older driver API;
#                                        without it and without nvcc, cudarc binds CUDA 13.4)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p dist

start=$(date +%s)
cargo build --release --features cuda --bin eesmm
echo "gpu_pack: cargo build --release --features cuda: $(( $(date +%s) - start )) s"
strip -o dist/eesmm-cuda target/release/eesmm

bash scripts/setup_data.sh
python3 - /usr/share/datasets/fashion-mnist dist/fashion-mnist <<'EOF'
"""The first N records of each idx file, with the count in the header changed to N."""
import gzip, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for split, n in (("train", 16384), ("t10k", 2000)):
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = f"{split}-{kind}.gz"
        with gzip.open(os.path.join(src, name), "rb") as f:
            data = f.read()
        ndim = data[3]
        dims = list(struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim]))
        record = 1
        for d in dims[1:]:
            record *= d
        head = data[:4] + struct.pack(f">{ndim}I", n, *dims[1:])
        body = data[4 + 4 * ndim:4 + 4 * ndim + n * record]
        with gzip.open(os.path.join(dst, name), "wb", compresslevel=9) as f:
            f.write(head + body)
EOF

tree_bytes=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
dist_bytes=$(du -sb dist | cut -f1)
total=$((tree_bytes + dist_bytes))
limit=$((64 * 1024 * 1024))
awk -v bin="$(stat -c %s dist/eesmm-cuda)" -v dist="$dist_bytes" -v tree="$tree_bytes" \
    -v total="$total" -v limit="$limit" 'BEGIN { printf "gpu_pack: binary %.1f MB stripped, \
dist/ %.1f MB, tracked files %.1f MB: %.1f of %.1f MB\n", bin/1e6, dist/1e6, tree/1e6, total/1e6, limit/1e6 }'
if [ "$total" -gt "$limit" ]; then
    echo "gpu_pack: over the 64 MiB a GPU machine's copy may take" >&2
    exit 1
fi
