"""Importing the torch backend changes nothing in the process; its settings come when it is used.

``torch_impl/process.py`` holds what the backend sets (huge pages, threads,
denormals, freed memory, Lightning's messages): applied by the front end
before torch starts and around fit, evaluate and predict, never by an import.
The one exception is the Triton guard, which acts only in a process that
already holds TensorFlow, where loading Triton would crash it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCH_MODULES = ["torch_impl", "torch_impl.backend", "torch_impl.keras", "torch_impl.fast", "torch_impl.process",
                 "torch_impl.plain_loop", "torch_impl.convolution", "torch_impl.fashion_cnn", "torch_impl.fashion_mlp",
                 "torch_impl.hello_world", "torch_impl.horse_or_human", "torch_impl.keras_basics",
                 "torch_impl.mnist_callback"]
SNAPSHOT = """
import importlib, json, logging, os, sys, warnings

def snapshot():
    loggers = {name: logging.getLogger(name).level
               for name in ["lightning", "lightning.pytorch", "lightning.fabric", "torch.utils.flop_counter"]}
    return {"environ": dict(os.environ), "loggers": loggers, "filters": [repr(f) for f in warnings.filters],
            "triton": repr(sys.modules.get("triton", "absent"))}

import torch, lightning  # the frameworks' own import-time settings are not the project's
before = snapshot()
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"before": before, "after": snapshot()}))
"""


def _python(code, *arguments, env=None):
    environment = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    environment = {**environment, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_importing_the_torch_backend_and_every_port_changes_nothing_in_the_process():
    found = json.loads(_python(SNAPSHOT, *TORCH_MODULES).stdout.splitlines()[-1])
    before, after = found["before"], found["after"]
    assert after["environ"] == before["environ"]
    assert after["loggers"] == before["loggers"]
    assert after["filters"] == before["filters"]
    assert after["triton"] == before["triton"]


def test_a_torch_fit_puts_lightnings_logger_and_the_warning_filters_back():
    code = """
import logging, warnings
import numpy as np
import dual_backend
model = dual_backend.build("hello_world", backend="torch", device="cpu")
logger = logging.getLogger("lightning.pytorch")
level, filters = logger.level, list(warnings.filters)
model.fit(np.arange(6, dtype=np.float32), np.arange(6, dtype=np.float32), epochs=1, verbose=0)
model.evaluate(np.arange(6, dtype=np.float32), np.arange(6, dtype=np.float32))
assert logger.level == level and warnings.filters == filters, (logger.level, level)
"""
    _python(code)


def test_the_front_end_starts_torch_with_huge_pages_for_large_tensors():
    code = """
import os
import dual_backend
dual_backend.backend_package("torch")
assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
"""
    _python(code)


def test_a_port_imported_after_tensorflow_runs_without_triton_instead_of_crashing():
    code = """
import sys
import tensorflow
from torch_impl.keras import Dense, Input, Sequential
Sequential([Input(shape=(1,)), Dense(1)])
assert sys.modules["triton"] is None
"""
    _python(code, env={"TF_CPP_MIN_LOG_LEVEL": "3"})


def test_evaluate_and_predict_print_none_of_lightnings_announcements(capfd):
    """Lightning announces the hardware and its settings as a Trainer is made; the front end prints its own lines."""
    import numpy as np

    import dual_backend

    model = dual_backend.build("hello_world", backend="torch", device="cpu")
    x = np.arange(4, dtype="float32")
    capfd.readouterr()
    model.evaluate(x, 3 * x + 1)
    model.predict(x)
    model.fit(x, 3 * x + 1, epochs=1, verbose=0)
    printed = capfd.readouterr()
    assert "GPU available" not in printed.out + printed.err
    assert "limit_" not in printed.out + printed.err
