"""The files each backend writes, named in one table.

``model``: what ``Model.save`` writes and ``load_model`` / ``dual-backend predict`` read
(Keras' own ``.keras`` zip; a ``.pt`` of tensors that ``torch.load(weights_only=True)`` reads).
``checkpoint``: :class:`~dual_backend.callbacks.ModelCheckpoint`'s best model (Keras writes
``.keras``, Lightning its ``.ckpt``).  ``backup``: :class:`~dual_backend.callbacks.BackupAndRestore`'s
last finished epoch (Keras' variables in ``.npz``, Lightning's checkpoint as ``.ckpt``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dual_backend.errors import DualBackendError


@dataclass(frozen=True)
class FileFormats:
    model: str
    checkpoint: str
    backup: str


FILE_FORMATS = {
    "keras": FileFormats(model=".keras", checkpoint=".keras", backup=".npz"),
    "torch": FileFormats(model=".pt", checkpoint=".ckpt", backup=".ckpt"),
}


def model_file_kinds() -> str:
    """``a .keras (keras) or .pt (torch) file``: what a saved model may be, for messages."""
    return "a " + " or ".join(f"{formats.model} ({backend})" for backend, formats in FILE_FORMATS.items()) + " file"


def backend_of_model_file(path) -> str:
    """The backend whose ``Model.save`` writes files named like ``path``."""
    for backend, formats in FILE_FORMATS.items():
        if str(path).endswith(formats.model):
            return backend
    raise DualBackendError(f"Cannot tell the backend of {path}: expected {model_file_kinds()}.")
