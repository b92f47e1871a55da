"""A data pipeline's batches get the checks arrays get, as they stream, in the same words on both backends."""

import numpy as np
import pytest

import dual_backend
from dual_backend.errors import DualBackendError

SAMPLES = 100


def pipeline(backend: str, x, y, batch_size: int = 32):
    """The backend's own pipeline of (images, labels) batches: a tf.data.Dataset or a torch DataLoader."""
    if backend == "keras":
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size)


def images_and_labels(classes: int = 5):
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 28, 28)).astype("float32")
    return x, rng.integers(0, classes, SAMPLES)


def refusals(variant: str, x, y) -> dict:
    """What fit, evaluate and predict answer on each backend: the front end's words."""
    answers = {}
    for backend in ("keras", "torch"):
        model = dual_backend.build("fashion_mlp", backend=backend, variant=variant, device="cpu")
        for method in ("fit", "evaluate", "predict"):
            data = pipeline(backend, x, y)
            with pytest.raises(DualBackendError) as error:
                getattr(model, method)(data, **({"epochs": 1, "verbose": 0} if method == "fit" else {}))
            answers[backend, method] = str(error.value)
    return answers


def test_a_label_out_of_range_in_a_later_batch_is_named_in_fit_and_evaluate_on_both_backends():
    x, y = images_and_labels()
    y[70] = 9  # batch 2 of 32-sample batches
    answers = refusals("five_outputs", x, y)
    expected = ("Batch 2 of the data pipeline: Received a label value of 9 which is outside the valid range of "
                "[0, 5).")
    for method in ("fit", "evaluate"):
        assert answers["keras", method] == answers["torch", method]
        assert answers["keras", method].startswith(expected)


def test_nan_and_wrong_shapes_in_a_pipeline_are_refused_in_the_same_words():
    x, y = images_and_labels(10)
    x[40, 3, 3] = np.nan
    answers = refusals("default", x, y)
    assert len(set(answers.values())) == 1
    assert answers["keras", "predict"].startswith("Batch 1 of the data pipeline: The inputs contain NaN")
    flat = images_and_labels(10)[0].reshape(SAMPLES, 784)
    answers = refusals("default", flat, y)
    assert len(set(answers.values())) == 1
    assert "Batch 0 of the data pipeline: The model expects inputs of shape (None, 28, 28), got (32, 784)." \
        in answers["torch", "fit"]


def test_a_valid_pipeline_trains_evaluates_and_predicts_as_its_arrays_do():
    x, y = images_and_labels(10)
    for backend in ("keras", "torch"):
        model = dual_backend.build("fashion_mlp", backend=backend, device="cpu")
        history = model.fit(pipeline(backend, x, y), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        loss, accuracy = model.evaluate(pipeline(backend, x, y))
        assert [loss, accuracy] == pytest.approx(model.evaluate(x, y), rel=1e-5)
        np.testing.assert_allclose(model.predict(pipeline(backend, x, y)), model.predict(x), rtol=1e-5, atol=1e-6)
