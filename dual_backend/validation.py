"""Checks on a model's inputs before any framework sees them.

Both backends call these with the same arguments, so a learner gets the same
words whichever framework is underneath, and gets them before a single step
is taken on data that cannot be right (the two error exercises of LESSONS.md
§2 are the models these were written for).

What is checked, for ``fit``, ``evaluate`` and ``predict`` alike (and for
``validation_data``'s arrays as for ``fit``'s):

- ``x`` and ``y`` are arrays of real numbers (bool, integer or float), not
  ragged lists, objects, strings, dates or complex numbers;
- ``x`` has the model's input shape after the batch axis, with a hint at the
  reshape the course uses; ``x`` is not empty; ``y`` has one label per sample;
- neither holds NaN, infinity, or a number too large for float32 (both
  frameworks compute in float32, where it would become infinite);
- the labels fit the loss and the last layer: integer classes in
  ``[0, units)`` for ``sparse_categorical_crossentropy`` (floats with integral
  values, such as ``y.astype(float)``, are accepted, as Keras accepts them),
  one-hot rows of ``units`` columns for ``categorical_crossentropy``, values
  in ``[0, 1]`` (hard or soft labels) of the output's shape for
  ``binary_crossentropy``, targets of the output's shape for
  ``mean_squared_error``;
- ``batch_size``, ``epochs`` and ``steps_per_epoch`` are integers in range;
  the optimizer, loss and metric names are ones both backends know.
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
# bool, signed and unsigned integers, floats: what both frameworks take as float32 (or int64 labels).
REAL_NUMBER_KINDS = "biuf"
# What fit and evaluate take besides arrays, named when something else is passed.
PIPELINES = "or the backend's own pipeline: a tf.data.Dataset on keras, a torch DataLoader on torch"


def loss_name(loss) -> str:
    if not isinstance(loss, str) or LOSS_ALIASES.get(loss, loss) not in LOSSES:
        raise DualBackendError(
            f"Unknown loss {loss!r}. Valid losses: {', '.join(LOSSES + tuple(LOSS_ALIASES))}."
        )
    return LOSS_ALIASES.get(loss, loss)


def metric_names(metrics) -> list[str]:
    if isinstance(metrics, str):
        raise DualBackendError(f"metrics must be a list of names, such as ['{metrics}'], got the string {metrics!r}.")
    metrics = list(metrics or [])
    for metric in metrics:
        if metric not in METRICS:
            raise DualBackendError(f"Unknown metric {metric!r}. Valid metrics: {', '.join(METRICS)}.")
    return metrics


def accuracy_kind(label_shape: tuple, output_shape: tuple) -> str:
    """Which accuracy Keras 3 means by ``'accuracy'`` or ``'acc'``: ``"binary"``, ``"sparse_categorical"``
    or ``"categorical"``, chosen from the shapes of the labels and of the model's output as
    ``keras.src.trainers.compile_utils.is_binary_or_sparse_categorical`` chooses (whatever the loss).

    One output unit: binary (thresholded at 0.5, every entry counted).  Labels of
    lower rank than the output, or of one column for several units: sparse
    categorical (argmax against the class index).  Otherwise: categorical
    (argmax against the labels' argmax)."""
    if output_shape[-1] == 1:
        return "binary"
    if len(label_shape) < len(output_shape) or label_shape[-1] == 1:
        return "sparse_categorical"
    return "categorical"


def optimizer_name(optimizer) -> str:
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise DualBackendError(f"Unknown optimizer {optimizer!r}. Valid optimizers: {', '.join(OPTIMIZERS)} "
                               "(or an optimizer object of the backend's framework).")
    return optimizer.lower()


def integer_argument(name: str, value, minimum: int, default: int | None = None) -> int | None:
    """``batch_size``, ``epochs`` or ``steps_per_epoch``: an integer of at least ``minimum``
    (``None`` means ``default``).  ``True`` is not taken for 1."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise DualBackendError(f"{name} must be {kind}, got {value!r}.")
    return int(value)


def _real_numbers(values, what: str, alternative: str = "") -> np.ndarray:
    """``values`` as a numpy array of real numbers; ``what`` ("Inputs", "Labels") names it,
    ``alternative`` says what else would have been taken."""
    if values is None:
        raise DualBackendError(f"{what} are missing (got None): give a numpy array.")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:
        raise DualBackendError(
            f"{what} cannot be made into one array ({error}). Give a numpy array in which every sample "
            "has the same shape."
        ) from None
    if array.dtype == object and array.ndim == 0:
        raise DualBackendError(f"{what} must be a numpy array{alternative}, got {type(values).__name__}.")
    if array.dtype.kind == "c":
        raise DualBackendError(
            f"{what} must be real numbers, got an array of dtype {array.dtype}: keep the real part "
            "(np.real) or the magnitude (np.abs)."
        )
    if array.dtype.kind not in REAL_NUMBER_KINDS:
        raise DualBackendError(f"{what} must be numbers, got an array of dtype {array.dtype}.")
    return array


def _finite(converted: np.ndarray, original: np.ndarray, what: str, consequence: str) -> None:
    """Refuse NaN and infinity in ``converted`` (the float32 copy of ``original``)."""
    if converted.dtype.kind != "f" or converted.size == 0:
        return
    # NaN propagates through min and max: two passes over the data, no mask unless something is wrong.
    if np.isfinite(converted.min()) and np.isfinite(converted.max()):
        return
    bad = ~np.isfinite(converted)
    first = int(np.argmax(bad.reshape(len(bad), -1).any(axis=1)))
    where = f"{int(bad.sum())} of them, the first in sample {first}"
    if np.isfinite(original[bad]).all():
        raise DualBackendError(
            f"{what} hold values too large for float32 ({where}): beyond ±3.4e38, both frameworks would "
            "turn them into infinity. Scale them down."
        )
    raise DualBackendError(
        f"{what} contain NaN or infinite values ({where}): {consequence}. Drop those samples or replace "
        "the values (np.nan_to_num)."
    )


def _reshape_hint(shape: tuple, input_shape: tuple) -> str:
    """The course's fix for a shape that holds the right numbers in the wrong arrangement."""
    dims = ", ".join(map(str, input_shape))
    if shape == input_shape:
        return f" That is one sample: add the batch axis, x.reshape(1, {dims})."
    if len(shape) >= 1 and int(np.prod(shape[1:])) == int(np.prod(input_shape)):
        return f" Reshape it with x.reshape({shape[0]}, {dims})."
    if len(shape) == len(input_shape) + 1 and shape[1:-1] == input_shape[:-1] and (shape[-1], input_shape[-1]) == (4, 3):
        return " These are RGBA images: drop the alpha channel with x[..., :3]."
    if shape[1:] == input_shape[:-1] and input_shape[-1] == 3:
        return " These are grayscale images: repeat them into 3 channels with np.stack([x] * 3, axis=-1)."
    return ""


def as_inputs(x, input_shape: tuple, pipeline_accepted: bool = False) -> np.ndarray:
    """``x`` as a float array (float32, or ``precision.floatx()``) shaped for a model whose input is
    ``(None, *input_shape)``.

    A 1-D ``x`` for a model of one input feature is taken as one feature per
    sample, as Keras 2 did for the course's ``model.predict([10.0])``.
    ``pipeline_accepted``: the caller (fit, evaluate) would also have taken a pipeline.
    """
    array = _real_numbers(x, "Inputs", f" ({PIPELINES})" if pipeline_accepted else "")
    input_shape = tuple(input_shape)
    if array.ndim == 1 and input_shape == (1,):
        array = array.reshape(-1, 1)
    if tuple(array.shape[1:]) != input_shape or array.ndim == 0:
        raise DualBackendError(
            f"The model expects inputs of shape {(None, *input_shape)}, got {array.shape}."
            + _reshape_hint(array.shape, input_shape)
        )
    if len(array) == 0:
        raise DualBackendError("The inputs are empty (0 samples): nothing to train or predict on.")
    with np.errstate(over="ignore"):  # _finite names what overflowed
        inputs = array.astype(precision.dtype(), copy=False)
    _finite(inputs, array, "The inputs", "the model would learn from NaN and predict NaN")
    return inputs


def as_targets(y, n_samples: int, loss: str, output_shape: tuple, batch_size: int) -> np.ndarray:
    """``y`` checked against the model's output and loss, in the dtype the loss wants."""
    if y is None:
        raise DualBackendError("Labels are missing (y is None): with an array x, give y, one label per sample.")
    labels = _real_numbers(y, "Labels")
    if labels.ndim == 0 or len(labels) != n_samples:
        raise DualBackendError(
            f"x has {n_samples} samples but y has {labels.shape[0] if labels.ndim else 'no'} labels: "
            "they must have one label per sample."
        )
    with np.errstate(over="ignore"):
        _finite(labels.astype(np.float32), labels, "The labels", "the loss would be NaN")
    batch = min(batch_size, n_samples)
    if loss == "sparse_categorical_crossentropy":
        return _sparse_labels(labels, output_shape, batch)
    targets = labels.astype(precision.dtype()).reshape(len(labels), -1)
    if loss == "categorical_crossentropy" and (labels.ndim != 2 or targets.shape[1] != output_shape[-1]):
        raise DualBackendError(
            f"categorical_crossentropy needs one-hot labels of shape ({n_samples}, {output_shape[-1]}), one "
            f"column per unit of the last layer, got labels of shape {labels.shape}. For integer class labels "
            f"compile with loss='sparse_categorical_crossentropy', or one-hot them: np.eye({output_shape[-1]})[y]."
        )
    if targets.shape[1] != output_shape[-1] or len(output_shape) != 2:
        raise DualBackendError(
            f"Targets of shape {labels.shape} do not match the model's output of shape {output_shape}."
        )
    if loss == "binary_crossentropy" and (targets.min() < 0 or targets.max() > 1):
        raise DualBackendError(
            f"binary_crossentropy needs labels between 0 and 1 (one class 0, the other 1), got values from "
            f"{labels.min()} to {labels.max()}."
        )
    return targets


def check_batch(index: int, batch: tuple, input_shape: tuple, loss: str | None, output_shape: tuple,
                pipeline: str = "the data pipeline") -> None:
    """Everything arrays are checked for (``as_inputs``, ``as_targets``), for one batch of a pipeline
    as it streams: ``batch`` is ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` as numpy arrays, images
    in Keras' (N, height, width, channels) layout.  Raises :class:`DualBackendError` naming the batch
    (counted from 0 as each pass over the pipeline begins; across passes for a repeated pipeline)."""
    try:
        x = as_inputs(batch[0], input_shape)
        if len(batch) > 1 and loss is not None:
            as_targets(batch[1], len(x), loss, output_shape, len(x))
    except DualBackendError as error:
        raise DualBackendError(f"Batch {index} of {pipeline}: {error}") from None


def as_sample_weights(sample_weight, n_samples: int) -> np.ndarray:
    """``sample_weight`` as one finite, non-negative float per sample (Keras' ``fit``/``evaluate``)."""
    weights = _real_numbers(sample_weight, "Sample weights")
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.ndim != 1 or len(weights) != n_samples:
        raise DualBackendError(f"sample_weight must hold one weight per sample, shape ({n_samples},), "
                               f"got shape {weights.shape}.")
    weights = weights.astype(precision.dtype())
    _finite(weights, weights, "The sample weights", "the loss would be NaN")
    if weights.min() < 0:
        raise DualBackendError(f"Sample weights must not be negative, got {weights.min()}.")
    return weights


def class_weights_per_sample(targets: np.ndarray, class_weight) -> np.ndarray:
    """``fit(class_weight={class: weight})`` as one weight per sample, by Keras' rule
    (``data_adapter_utils.class_weight_to_sample_weights``): a sample's class is its label, or the
    argmax of a one-hot row; classes missing from the dict weigh 1."""
    if not isinstance(class_weight, dict):
        raise DualBackendError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}.")
    classes = targets
    if classes.ndim > 1:
        classes = classes.argmax(-1) if classes.shape[-1] != 1 else classes[:, 0]
    classes = np.round(classes).astype(np.int64)
    weights = np.array([float(class_weight.get(int(c), 1.0)) for c in range(int(classes.max()) + 1)])
    return weights[classes]


def split_off_validation(x, y, sample_weight, validation_split: float):
    """``fit(validation_split=f)`` as Keras does it: the last fraction ``f`` of the samples, taken before
    any shuffling, becomes ``validation_data``; returns ``x, y, sample_weight, (x_val, y_val)``."""
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
            or not 0 <= validation_split < 1:
        raise DualBackendError(f"validation_split must be a fraction in [0, 1), got {validation_split!r}.")
    split_at = int(np.floor(len(x) * (1.0 - validation_split)))
    if split_at == 0 or split_at == len(x):
        raise DualBackendError(
            f"Training data contains {len(x)} samples, which is not sufficient to split it into a validation "
            f"and training set as specified by validation_split={validation_split}. Either provide more data, "
            "or a different value for the validation_split argument.")
    weights = None if sample_weight is None else sample_weight[:split_at]
    return x[:split_at], y[:split_at], weights, (x[split_at:], y[split_at:])


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
    if labels.dtype.kind == "f" and np.any(labels != np.round(labels)):
        raise DualBackendError(
            "sparse_categorical_crossentropy needs integer class labels (0, 1, 2, ...), got fractional values "
            f"such as {labels[labels != np.round(labels)][0]}."
        )
    classes = output_shape[-1]
    low, high = labels.min(), labels.max()
    if low < 0:
        raise DualBackendError(
            f"Received a label value of {int(low)} which is outside the valid range of [0, {classes}): "
            f"class labels count from 0, one per unit of the last layer."
        )
    if high >= classes:
        raise DualBackendError(
            f"Received a label value of {int(high)} which is outside the valid range of [0, {classes}). "
            f"The last layer has {classes} units but the labels go up to {int(high)}: give the last layer "
            f"{int(high) + 1} units, Dense({int(high) + 1}, activation='softmax'), one per class."
        )
    return labels.astype(np.int64)
