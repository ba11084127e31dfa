#!/usr/bin/env bash
# GPU readiness check of feseq-tf, in one run: GPU visible, one synthetic epoch with and
# without XLA in float16, Ele.me-preset throughput at batch 4096, GPU/CPU parity of the
# exported SavedModel. Steps print PASS/FAIL/SKIP; the exit status is non-zero on a failure.
#
#   bash benchmarks/gpu_check.sh                  # on a GPU machine (under 8 minutes)
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # the same steps on the CPU, tiny
#
# Options: python -m benchmarks.gpu_check --help. PYTHON selects the interpreter.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python}" -m benchmarks.gpu_check "$@"
