#!/usr/bin/env bash
# The long fuzz run (tests/fuzz.rs): every reader for EESMM_FUZZ_SECONDS seconds (default 180),
# seed EESMM_FUZZ_SEED (default 14); prints inputs, errors, valid values and peak memory per
# reader, and fails naming any input that panicked or went past the memory bound (kept in
# target/fuzz-failures/). `scripts/dev/test.sh` runs the same harness with a fixed number of inputs.
#   EESMM_FUZZ_SECONDS=600 bash scripts/dev/fuzz.sh          (10 minutes per reader)
#   EESMM_FUZZ_ITERS=100000 bash scripts/dev/fuzz.sh         (a number of inputs instead)
# Extra arguments go to cargo (e.g. --release: faster, but without overflow checks).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${EESMM_FUZZ_ITERS:-}" ]]; then
    export EESMM_FUZZ_SECONDS="${EESMM_FUZZ_SECONDS:-180}"
fi
cargo test "$@" --test fuzz
