#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU tests and the GPU benchmark table (README, "GPU").
#
#   DUAL_BACKEND_DATA_DIR=/path/to/datasets bash scripts/gpu_check.sh [OUTPUT_FOLDER]
#
# Runs with the Python in $PYTHON (default: the active one; a machine's own torch works with
# PYTHONPATH set to this folder). The keras system joins the benchmark when TensorFlow imports;
# without it the keras backend's GPU tests are skipped, saying so. Writes the test log and the
# benchmark as JSON, markdown and log to OUTPUT_FOLDER (default: gpu-results/).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA GPU with $PYTHON; run this on a GPU machine (see README, GPU)." >&2
  exit 2
fi
mkdir -p "$out"
systems="torch plain-torch keras-on-torch"
"$PYTHON" -c "import tensorflow" 2>/dev/null && systems="keras $systems"
"$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
# shellcheck disable=SC2086  # the systems are words
"$PYTHON" -m dual_backend.cli bench all --device gpu --epochs 4 --systems $systems \
  --json "$out/bench_gpu.json" --markdown "$out/bench_gpu.md" 2>&1 | tee "$out/bench_gpu.log"
exit "$tests"
