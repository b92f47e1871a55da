"""The keras backend starts TensorFlow without its C++ start-up lines about CUDA (``keras_ref/process.py``),
unless the user asked for them with ``TF_CPP_MIN_LOG_LEVEL``."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CUDA_START_UP_LINES = ("cuda drivers", "cuInit", "absl::InitializeLog")


def _python(code, env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_starting_the_keras_backend_prints_no_cuda_start_up_lines():
    code = """
import dual_backend
frontend = dual_backend.backend_package("keras")
frontend.select_device("auto")
print("started")
"""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**environment, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "started" in done.stdout, done.stderr[-3000:]
    assert not [line for line in done.stderr.splitlines() if any(text in line for text in CUDA_START_UP_LINES)], \
        done.stderr


def test_tensorflows_log_lines_below_the_level_are_told_from_other_output():
    from keras_ref import process

    notice = "I0000 00:00:1796017607.113539    3968 cudart_stub.cc:31] Could not find cuda drivers on your machine."
    assert process.below_log_level(notice, 1) and not process.below_log_level(notice, 0)
    error = "E0000 00:00:1796017609.633709    3968 cuda_platform.cc:52] failed call to cuInit: INTERNAL"
    assert process.below_log_level(error, 3) and not process.below_log_level(error, 2)
    assert not process.below_log_level("Epoch 1/5\n", 3)


def test_a_user_who_asks_for_tensorflows_start_up_lines_gets_them():
    code = "import dual_backend; dual_backend.backend_package('keras').select_device('auto')"
    done = _python(code, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "absl::InitializeLog" in done.stderr
