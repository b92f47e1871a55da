"""Helpers of the ``dual_backend.keras`` tests: one definition built on both backends."""

import numpy as np

import dual_backend
from dual_backend import keras

BACKENDS = ("keras", "torch")
_rng = np.random.default_rng(1)
IMAGES = _rng.random((16, 13, 13, 3)).astype("float32")  # odd sizes: 'same' padding's uneven split
FEATURES = _rng.normal(size=(16, 6)).astype("float32")
EVEN_IMAGES = IMAGES[:, :12, :12]


def defined_on(backend: str, make_layers, **kwargs):
    dual_backend.set_backend(backend)
    return keras.Sequential(make_layers(), **kwargs)


def twins(make_layers, input_shape=None):
    """The same definition built on keras and on torch, the torch one given the keras weights."""
    keras_model, torch_model = (defined_on(backend, make_layers) for backend in BACKENDS)
    if input_shape is not None:
        for model in (keras_model, torch_model):
            model.build((None, *input_shape))
    torch_model.set_weights(keras_model.get_weights())
    return keras_model, torch_model


def max_difference(first, second) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(first, second, strict=True)) if len(first) else 0.0
