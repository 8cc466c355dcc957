#!/usr/bin/env bash
# A Python venv in the repository with the given packages, made once: kept while CHECK (Python
# code, e.g. "import onnx") runs in it. Prints the interpreter's path.
#   scripts/setup_venv.sh VENV CHECK PACKAGE...
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$1" check="$2"
shift 2
if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
        echo "setup_venv.sh: python3 venv support is missing; installing python3-venv" >&2
        sudo=$([[ $(id -u) -eq 0 ]] || echo sudo)
        $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq python3-venv python3-pip >&2
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
fi
echo "$PWD/$venv/bin/python"
