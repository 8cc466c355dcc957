#!/usr/bin/env bash
# A Python with the `onnx` package in .venv-test/, only for the test that runs
# onnx.checker.check_model(full_check=True) on an export. Prints the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
if ! "$venv/bin/python" -c "import onnx" >/dev/null 2>&1; then
    if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
        echo "setup_test_python.sh: python3 venv support is missing; installing python3-venv" >&2
        sudo=$([[ $(id -u) -eq 0 ]] || echo sudo)
        $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq python3-venv python3-pip >&2
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "onnx==1.23.2" >&2
fi
echo "$PWD/$venv/bin/python"
