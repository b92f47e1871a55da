"""``keras.utils``: what the course uses of it, with numpy."""

from __future__ import annotations

import numpy as np

from dual_backend.errors import DualBackendError


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """Keras' ``to_categorical``: integer class labels as float32 one-hot rows (a trailing axis of
    size 1 is dropped first, as Keras does)."""
    labels = np.asarray(x)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.size and (labels.dtype.kind not in "biu" and not np.all(labels == np.round(labels))):
        raise DualBackendError("to_categorical takes integer class labels.")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DualBackendError(f"to_categorical takes class labels from 0, got {labels.min()}.")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.size and labels.max() >= num_classes:
        raise DualBackendError(f"Label {labels.max()} is outside the {num_classes} classes asked for.")
    return np.eye(num_classes, dtype=np.float32)[labels]
