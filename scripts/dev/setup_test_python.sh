#!/usr/bin/env bash
# A Python with the `onnx` package in .venv-test/, only for the test that runs
# onnx.checker.check_model(full_check=True) on an export. Prints the interpreter's path.
exec bash "$(dirname "$0")/../setup_venv.sh" .venv-test "import onnx" "onnx==1.23.2"
