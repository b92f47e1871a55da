"""Shared test settings: the real data folder, the backends, the devices to train on."""

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


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param
