"""Checks on a model's inputs before any framework sees them.

Both backends call these with the same arguments, so a learner gets the same
words whichever framework is underneath, and gets them before a single step
is taken on data that cannot be right (the two error exercises of LESSONS.md
§2 are the models these were written for).
"""

from __future__ import annotations

import numpy as np

from dual_backend import precision
from dual_backend.errors import DualBackendError

LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error")
LOSS_ALIASES = {"mse": "mean_squared_error"}
METRICS = ("accuracy", "acc")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


def loss_name(loss) -> str:
    if not isinstance(loss, str) or LOSS_ALIASES.get(loss, loss) not in LOSSES:
        raise DualBackendError(
            f"Unknown loss {loss!r}. Valid losses: {', '.join(LOSSES + tuple(LOSS_ALIASES))}."
        )
    return LOSS_ALIASES.get(loss, loss)


def metric_names(metrics) -> list[str]:
    metrics = list(metrics or [])
    for metric in metrics:
        if metric not in METRICS:
            raise DualBackendError(f"Unknown metric {metric!r}. Valid metrics: {', '.join(METRICS)}.")
    return metrics


def optimizer_name(optimizer) -> str:
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise DualBackendError(f"Unknown optimizer {optimizer!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")
    return optimizer.lower()


def as_inputs(x, input_shape: tuple) -> np.ndarray:
    """``x`` as a float array (float32, or ``precision.floatx()``) shaped for a model whose input is
    ``(None, *input_shape)``.

    A 1-D ``x`` for a model of one input feature is taken as one feature per
    sample, as Keras 2 did for the course's ``model.predict([10.0])``.
    """
    array = np.asarray(x)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DualBackendError(f"Inputs must be numbers, got an array of dtype {array.dtype}.")
    if array.ndim == 1 and tuple(input_shape) == (1,):
        array = array.reshape(-1, 1)
    if tuple(array.shape[1:]) != tuple(input_shape):
        expected = (None, *input_shape)
        hint = ""
        if array.ndim >= 1 and int(np.prod(array.shape[1:])) == int(np.prod(input_shape)):
            hint = f" Reshape it with x.reshape(-1, {', '.join(map(str, input_shape))})."
        raise DualBackendError(
            f"The model expects inputs of shape {expected}, got {array.shape}.{hint}"
        )
    if len(array) == 0:
        raise DualBackendError("The inputs are empty (0 samples): nothing to train or predict on.")
    return array.astype(precision.dtype(), copy=False)


def as_targets(y, n_samples: int, loss: str, output_shape: tuple, batch_size: int) -> np.ndarray:
    """``y`` checked against the model's output and loss, in the dtype the loss wants."""
    labels = np.asarray(y)
    if labels.dtype == object or not (np.issubdtype(labels.dtype, np.number) or labels.dtype == bool):
        raise DualBackendError(f"Labels must be numbers, got an array of dtype {labels.dtype}.")
    if labels.ndim == 0 or len(labels) != n_samples:
        raise DualBackendError(
            f"x has {n_samples} samples but y has {labels.shape[0] if labels.ndim else 'no'} labels: "
            "they must have one label per sample."
        )
    batch = min(batch_size, n_samples)
    if loss == "sparse_categorical_crossentropy":
        return _sparse_labels(labels, output_shape, batch)
    if loss == "binary_crossentropy":
        if set(np.unique(labels).tolist()) - {0, 1}:
            raise DualBackendError("binary_crossentropy needs labels 0 and 1, got other values.")
        return labels.reshape(-1, 1).astype(precision.dtype())
    if loss == "mean_squared_error":
        targets = labels.astype(precision.dtype()).reshape(len(labels), -1)
        if targets.shape[1] != output_shape[-1]:
            raise DualBackendError(
                f"Targets of shape {labels.shape} do not match the model's output of shape {output_shape}."
            )
        return targets
    return labels.astype(precision.dtype())


def _sparse_labels(labels: np.ndarray, output_shape: tuple, batch: int) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DualBackendError(
            f"sparse_categorical_crossentropy needs one integer class label per sample, got labels of shape "
            f"{labels.shape}. For one-hot labels compile with loss='categorical_crossentropy'."
        )
    if len(output_shape) != 2:
        got = (batch, *output_shape[1:])
        flatten_hint = (
            " The Dense layers were applied to each row of every image because the model does not start "
            "with Flatten(): add Flatten() as the first layer, so that each image becomes one vector."
            if len(output_shape) > 2 else ""
        )
        raise DualBackendError(
            f"Shape mismatch: labels of shape ({batch},) cannot be matched with the model's output of shape "
            f"{got}. sparse_categorical_crossentropy needs an output of shape (batch, classes), one row of "
            f"class probabilities per sample.{flatten_hint}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DualBackendError(
                "sparse_categorical_crossentropy needs integer class labels (0, 1, 2, ...), got fractional or "
                "non-finite values."
            )
    classes = output_shape[-1]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        bad = high if high >= classes else low
        raise DualBackendError(
            f"Received a label value of {bad} which is outside the valid range of [0, {classes}). "
            f"The last layer has {classes} units but the labels go up to {high}: give the last layer "
            f"{high + 1} units, Dense({high + 1}, activation='softmax'), one per class."
        )
    return labels.astype(np.int64)
