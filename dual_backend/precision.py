"""float64 mode on both backends: the same run without float32's rounding to amplify.

The float type is Keras' ``floatx``; the ``--precision`` speed-up (bfloat16
autocast) is another thing, ``dual_backend.model.SpeedUps``.

In float32 two frameworks (or one with oneDNN on and off) that take the same
steps from the same weights drift apart after a few hundred steps: each
matrix product sums in its own order, and training amplifies the last-bit
differences.  In float64 those differences start 2**29 times smaller
(53 bits of mantissa against 24), so a difference that remains is the port's, not the rounding's.

``using("float64", backends)`` switches, for the block, Keras' floatx (the
dtype of variables, optimizer slots, losses and metrics), torch's default
dtype (parameters, buffers) and the front end's input arrays.  Models are
built, trained and evaluated inside the block.
"""

from __future__ import annotations

import contextlib

import numpy as np

from dual_backend.errors import DualBackendError

FLOAT_TYPES = ("float32", "float64")
_current = "float32"


def floatx() -> str:
    """The front end's float dtype now: inputs (and float targets) are cast to it."""
    return _current


def set_floatx(name: str, backends=()) -> None:
    global _current
    if name not in FLOAT_TYPES:
        raise DualBackendError(f"Unknown float type {name!r}. Valid float types: {', '.join(FLOAT_TYPES)}.")
    import dual_backend

    for backend in dict.fromkeys(backends):
        dual_backend.backend_package(backend).set_floatx(name)
    _current = name


@contextlib.contextmanager
def using(name: str, backends):
    """Build, train and evaluate in ``name`` ("float32" or "float64") inside the block, on ``backends``."""
    before = _current
    set_floatx(name, backends)
    try:
        yield
    finally:
        set_floatx(before, backends)


def dtype() -> np.dtype:
    return np.dtype(_current)
