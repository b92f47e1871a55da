"""Shared test settings: the real data folder, the backends, the devices to train on."""

import importlib.util
import os
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

if "DUAL_BACKEND_DATA_DIR" not in os.environ and SHARED_DATASETS.is_dir():
    os.environ["DUAL_BACKEND_DATA_DIR"] = str(SHARED_DATASETS)

BACKENDS = ("keras", "torch")


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU; in an environment without torch (a GPU machine's keras
    environment, docs/gpu.md), whether TensorFlow sees one."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.is_available()
    return tensorflow_sees_a_gpu()


def tensorflow_sees_a_gpu() -> bool:
    if importlib.util.find_spec("tensorflow") is None:
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def devices():
    """CPU always; the GPU too when CUDA is present (skipped otherwise)."""
    return ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu,
                                             pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")])]


def skip_backends_this_gpu_environment_lacks(backends, device) -> None:
    """On a GPU machine each framework has an environment of its own (docs/gpu.md): the torch one
    (``.[all]``: TensorFlow there has no CUDA libraries) runs the torch backend's GPU tests and skips
    the keras backend's, the keras one (``.[keras,test,gpu]``: no torch) the other way round, each
    saying why; tests of both backends in one process are skipped in both (``dual-backend compare
    --device gpu`` compares them, each backend in its own environment).  An image that ships only
    torch skips the keras tests alike.  On the CPU nothing is skipped: there a missing framework is
    a broken install and fails."""
    if device != "gpu":
        return
    if "keras" in backends and not tensorflow_sees_a_gpu():
        pytest.skip("the keras backend's GPU tests need TensorFlow with its CUDA 12 libraries, in an environment "
                    "of its own: pip install -e '.[keras,test,gpu]' there and run pytest -m gpu with its python "
                    "(docs/gpu.md); TensorFlow sees no GPU in this one")
    if "torch" in backends and importlib.util.find_spec("torch") is None:
        pytest.skip("the torch backend's GPU tests run in the torch environment (docs/gpu.md); "
                    "torch is not installed in this one")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param
