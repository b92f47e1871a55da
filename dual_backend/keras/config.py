"""``keras.config``: which backend models are built on.

Chosen by ``dual_backend.set_backend("torch")``, else by the environment
variable ``DUAL_BACKEND`` (``keras`` or ``torch``, as Keras reads
``KERAS_BACKEND``), else ``keras``.  A model is built on the backend chosen
when it is defined; choosing another later changes only the models defined after.
"""

from __future__ import annotations

import contextlib
import os

from dual_backend.errors import DualBackendError

BACKENDS = ("keras", "torch")
_chosen: str | None = None


def set_backend(name: str) -> None:
    global _chosen
    _chosen = _valid(name, "set_backend")


def backend() -> str:
    """``"keras"`` or ``"torch"``: the backend the next model will be built on."""
    return _chosen or _valid(os.environ.get("DUAL_BACKEND", "keras"), "The environment variable DUAL_BACKEND")


@contextlib.contextmanager
def defining_on(name: str):
    """Models defined inside are built on ``name``; the choice before is restored after (for code that
    builds one definition on both backends in one process: ``dual_backend.parity.definition_checks``)."""
    global _chosen
    before, _chosen = _chosen, _valid(name, "defining_on")
    try:
        yield
    finally:
        _chosen = before


def _valid(name, where: str) -> str:
    if name not in BACKENDS:
        raise DualBackendError(f"{where}: unknown backend {name!r}. Valid backends: {', '.join(BACKENDS)}.")
    return name
