#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU tests, the GPU benchmark table and a comparison report (docs/gpu.md).
#
#   DUAL_BACKEND_DATA_DIR=/path/to/datasets DUAL_BACKEND_KERAS_PYTHON=.venv-keras/bin/python \
#     bash scripts/gpu_check.sh [OUTPUT_FOLDER]
#
# $PYTHON (default: the active python3; a machine's own torch works with PYTHONPATH set to this
# folder) is the torch environment's, DUAL_BACKEND_KERAS_PYTHON the keras environment's: one
# environment per framework, docs/gpu.md. Without a keras environment whose TensorFlow sees the GPU
# the keras backend's GPU tests are skipped, saying so, and the benchmark and the comparison run
# without it. Writes the test logs, the benchmark (JSON, markdown, log) and a quick-profile
# comparison of every lesson on the GPU to OUTPUT_FOLDER (default: gpu-results/).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
PYTHON="${PYTHON:-python3}"
KERAS_PYTHON="${DUAL_BACKEND_KERAS_PYTHON:-$PYTHON}"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA GPU with $PYTHON; run this on a GPU machine (see docs/gpu.md)." >&2
  exit 2
fi
mkdir -p "$out"
"$PYTHON" -c "from dual_backend.environments import cuda_libraries_advice as advice
print(advice('torch') or 'torch environment: one build of each NVIDIA library')" | tee "$out/environment.txt"
"$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log"
status=${PIPESTATUS[0]}
keras_sees_a_gpu=no
"$KERAS_PYTHON" -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" \
  2>/dev/null && keras_sees_a_gpu=yes
echo "keras environment ($KERAS_PYTHON): TensorFlow sees a GPU: $keras_sees_a_gpu" | tee -a "$out/environment.txt"
if [ "$KERAS_PYTHON" != "$PYTHON" ]; then
  # The keras environment has no torch: its share of the GPU tests is the keras backend's quick runs.
  "$KERAS_PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider tests/lessons/test_training.py 2>&1 \
    | tee "$out/gpu_tests_keras.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
systems="torch plain-torch keras-on-torch"
[ "$keras_sees_a_gpu" = yes ] && systems="keras $systems"
# shellcheck disable=SC2086  # the systems are words
"$PYTHON" -m dual_backend.cli bench all --device gpu --epochs 4 --systems $systems \
  --json "$out/bench_gpu.json" --markdown "$out/bench_gpu.md" 2>&1 | tee "$out/bench_gpu.log"
if [ "$keras_sees_a_gpu" = yes ]; then
  # Both backends on the GPU, each in its own environment, judged against each other.
  "$PYTHON" -m dual_backend.cli compare all --profile quick --seeds 1 --device gpu --out "$out/compare" 2>&1 \
    | tail -n 40 | tee "$out/compare.log"
fi
exit "$status"
