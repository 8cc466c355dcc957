#!/usr/bin/env bash
# Fetches ONNX Runtime 1.31.1 (the shared library eesmm's `verify`, `infer` and `bench onnx` load at
# run time) from the official PyPI wheel into .ort/ in the repository:
#   .ort/libonnxruntime.so.1.31.1  (+ LICENSE, ThirdPartyNotices.txt)
# eesmm finds it there, next to its executable, or wherever ORT_DYLIB_PATH points.
# Needs python3 with pip or venv (Debian: apt-get install python3-venv) to download the wheel;
# nothing of Python is needed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.31.1
dest=.ort
lib="$dest/libonnxruntime.so.$version"
if [[ -f "$lib" ]]; then
    echo "$lib"
    exit 0
fi
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64 | Linux-aarch64) ;;
    *) echo "setup_ort.sh: only Linux is scripted; take the library from the onnxruntime==$version wheel" \
        "for your platform and point ORT_DYLIB_PATH at it" >&2; exit 1 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python=python3
if ! python3 -m pip --version >/dev/null 2>&1; then
    if ! python3 -m venv "$tmp/venv" >/dev/null 2>&1; then
        echo "setup_ort.sh: python3 with pip or venv is needed to download the onnxruntime wheel" \
            "(Debian: sudo apt-get install python3-venv)" >&2
        exit 1
    fi
    python="$tmp/venv/bin/python"
fi
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$version" >&2
wheel=$(ls "$tmp"/onnxruntime-"$version"-*.whl)
"$python" - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if n.startswith("onnxruntime/capi/libonnxruntime.so")
             or n.endswith(("LICENSE", "ThirdPartyNotices.txt"))]
    z.extractall(out, names)
PY
mkdir -p "$dest"
cp "$tmp"/x/onnxruntime/capi/libonnxruntime.so."$version" "$dest/"
find "$tmp/x" \( -name LICENSE -o -name ThirdPartyNotices.txt \) -exec cp {} "$dest/" \;
echo "$lib"
