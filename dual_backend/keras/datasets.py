"""``keras.datasets``: the course's two data sets, from the project's offline-capable loaders.

``keras.datasets.fashion_mnist.load_data()`` and ``mnist.load_data()`` return
``((x_train, y_train), (x_test, y_test))``, uint8 arrays exactly as Keras'
do, looked up where ``dual_backend.data`` looks (README, "Where the data comes from").
"""

from __future__ import annotations

from types import SimpleNamespace

from dual_backend import data
from dual_backend.errors import DualBackendError

fashion_mnist = SimpleNamespace(load_data=data.load_fashion_mnist)
mnist = SimpleNamespace(load_data=data.load_mnist)


class UnsupportedDataset(DualBackendError, AttributeError):
    """A Keras data set dual-backend does not load (an AttributeError too, so ``hasattr`` says no)."""


def __getattr__(name: str):
    if not name.startswith("__"):
        raise UnsupportedDataset(f"keras.datasets.{name} is not supported by dual-backend. "
                                 "Supported data sets: fashion_mnist, mnist.")
    raise AttributeError(name)
