"""Data-parallel training on the frameworks' own engines: Lightning DDP over 2 CPU processes (gloo) on
torch, tf.distribute.MirroredStrategy over 2 logical CPUs on keras.

Each run goes through the command line in a fresh process: Lightning's DDP
starts its second process by running the command line again, and TensorFlow's
logical CPUs must be set up before TensorFlow first runs anything.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import dual_backend
from dual_backend import lessons
from dual_backend.errors import DualBackendError
from tests.conftest import BACKENDS


def run_on_two_devices(backend: str, out) -> dict:
    command = [sys.executable, "-m", "dual_backend.cli", "run", "fashion_mlp", "--backend", backend,
               "--devices", "2", "--profile", "quick", "--seed", "0", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((out / backend / "metrics.json").read_text()), done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_devices_land_in_the_one_process_range(backend, tmp_path):
    metrics, printed = run_on_two_devices(backend, tmp_path)
    expected = lessons.recipe("fashion_mlp").expected("quick")
    assert metrics["devices"] == 2
    assert metrics["test"]["accuracy"] in expected, f"{backend} on 2 devices: {metrics['test']['accuracy']:.4f}"
    assert metrics["epochs_run"] == lessons.recipe("fashion_mlp").profile_epochs("quick")
    # Only rank 0 reports: one line per epoch, one result line.
    assert printed.count("Epoch 1/") == 1
    assert printed.count(f"{backend}: test") == 1


def test_each_backend_scales_out_with_its_own_strategy():
    with pytest.raises(DualBackendError, match="mirrored"):
        dual_backend.build("fashion_mlp", backend="keras", device="cpu", devices=2, strategy="ddp")
    with pytest.raises(DualBackendError, match="ddp"):
        dual_backend.build("fashion_mlp", backend="torch", device="cpu", devices=2, strategy="mirrored")
    with pytest.raises(DualBackendError, match="positive integer"):
        dual_backend.build("fashion_mlp", backend="torch", device="cpu", devices=0)


def test_the_global_batch_must_split_evenly():
    model = dual_backend.build("fashion_mlp", backend="torch", device="cpu", devices=2)
    x, y = np.zeros((8, 28, 28), np.float32), np.zeros(8, np.int64)
    with pytest.raises(DualBackendError, match="multiple of 2"):
        model.fit(x, y, batch_size=5, verbose=0)
