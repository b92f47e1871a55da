"""What ``'accuracy'`` and the loss mean for every loss, label form and head: tf.keras is the specification.

For each combination the same one-layer model (the same weights) is compiled on
both backends through the front end and evaluated on the same data.  tf.keras
itself, called directly, gives the expected values; the front end either
reports them on both backends or refuses the labels on both with the same words.
"""

import itertools

import numpy as np
import pytest

from dual_backend.errors import DualBackendError
from tests.user_models import one_layer_models

LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error")
HEADS = ("softmax", "sigmoid", "linear")
SAMPLES = 64
_rng = np.random.default_rng(0)
X = _rng.normal(size=(SAMPLES, 4)).astype("float32")
CLASSES = _rng.integers(0, 3, SAMPLES)
BITS = (np.random.default_rng(1).random((SAMPLES, 3)) > 0.5).astype("float32")


def labels(form: str, units: int) -> np.ndarray:
    """Labels in one of the forms Keras code passes: integer classes (N,) or (N, 1), one-hot, 0/1 floats."""
    classes = np.minimum(CLASSES, units - 1) if units > 1 else CLASSES % 2
    if form == "integers (N,)":
        return classes
    if form == "integers (N, 1)":
        return classes.reshape(-1, 1)
    if form == "one-hot":
        return np.eye(units, dtype="float32")[classes] if units > 1 else classes.astype("float32").reshape(-1, 1)
    return BITS[:, :units]


FORMS = ("integers (N,)", "integers (N, 1)", "one-hot", "0/1 floats")


def outcome(model, loss: str, y) -> tuple | str:
    """``(loss, accuracy)`` as the front end evaluates them, or the words of its refusal."""
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    try:
        return tuple(model.evaluate(X, y, batch_size=16))
    except DualBackendError as error:
        return str(error)


@pytest.mark.parametrize("loss, head", list(itertools.product(LOSSES, HEADS)))
def test_accuracy_and_loss_are_what_tf_keras_reports_on_both_backends(loss, head):
    table = []
    for units, form in itertools.product((1, 3), FORMS):
        keras_model, keras, torch = one_layer_models(units, head)
        y = labels(form, units)
        on_keras, on_torch = outcome(keras, loss, y), outcome(torch, loss, y)
        row = f"Dense({units}, {head}), {loss}, {form}: keras {on_keras}, torch {on_torch}"
        if isinstance(on_keras, str):
            assert on_torch == on_keras, row  # refused on both, in the same words
            continue
        keras_model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        expected = keras_model.evaluate(X, y, batch_size=16, verbose=0, return_dict=True)
        assert on_keras == pytest.approx((expected["loss"], expected["accuracy"]), rel=1e-6), row
        assert on_torch == pytest.approx(on_keras, rel=2e-6, abs=1e-6), row
        table.append(row)
    assert table, "every combination was refused: the table tests nothing"


def test_binary_crossentropy_on_one_hot_labels_counts_argmax_accuracy():
    """Keras 3 picks the categorical accuracy for a 10-unit head with one-hot labels, whatever the loss."""
    keras_model, keras, torch = one_layer_models(3, "softmax")
    y = labels("one-hot", 3)
    on_keras, on_torch = outcome(keras, "binary_crossentropy", y), outcome(torch, "binary_crossentropy", y)
    assert 0 <= on_torch[1] <= 1
    assert on_torch[1] == pytest.approx(on_keras[1])
