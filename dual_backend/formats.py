"""The files each backend writes, named in one table.

``model``: what ``Model.save`` writes and ``load_model`` / ``dual-backend predict`` read
(Keras' own ``.keras`` zip; a ``.pt`` of tensors that ``torch.load(weights_only=True)`` reads).
:class:`~dual_backend.callbacks.ModelCheckpoint` writes the ``model`` file too (on torch a
``.pt`` in place of the ``.keras`` it is given).  ``backup``: :class:`~dual_backend.callbacks.BackupAndRestore`'s
last finished epoch (Keras' variables in ``.npz``, Lightning's checkpoint as ``.ckpt``).  A torch model
also saves as a Lightning checkpoint (``.ckpt``) that a user's own Trainer resumes from, and loads from one.
"""

from __future__ import annotations

from dataclasses import dataclass

from dual_backend.errors import DualBackendError


@dataclass(frozen=True)
class FileFormats:
    model: str
    backup: str


FILE_FORMATS = {
    "keras": FileFormats(model=".keras", backup=".npz"),
    "torch": FileFormats(model=".pt", backup=".ckpt"),
}

LIGHTNING_CHECKPOINT = ".ckpt"


def model_file_kinds() -> str:
    """``a .keras (keras) or .pt (torch) file``: what a saved model may be, for messages."""
    return "a " + " or ".join(f"{formats.model} ({backend})" for backend, formats in FILE_FORMATS.items()) + " file"


def backend_of_model_file(path) -> str:
    """The backend whose ``Model.save`` writes files named like ``path`` (a Lightning ``.ckpt``: torch)."""
    if str(path).endswith(LIGHTNING_CHECKPOINT):
        return "torch"
    for backend, formats in FILE_FORMATS.items():
        if str(path).endswith(formats.model):
            return backend
    raise DualBackendError(f"Cannot tell the backend of {path}: expected {model_file_kinds()}.")
