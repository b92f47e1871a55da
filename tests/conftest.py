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
    import torch

    return torch.cuda.is_available()


def devices():
    """CPU always; the GPU too when CUDA is present (skipped otherwise)."""
    return ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu,
                                             pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")])]


def skip_keras_on_a_gpu_without_tensorflow(backends, device) -> None:
    """A GPU machine with torch but no TensorFlow (``pip install -e ".[torch,test]"``, or an image
    that ships torch alone) runs the torch backend's GPU tests and skips the keras backend's, saying
    why. On the CPU nothing is skipped: there a missing TensorFlow is a broken install and fails."""
    if device == "gpu" and "keras" in backends and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the keras backend on a GPU needs TensorFlow's GPU build: "
                    "pip install -e '.[all,gpu]' (see README, GPU); TensorFlow is not installed here")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param
