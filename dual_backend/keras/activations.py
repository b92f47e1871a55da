"""``keras.activations``: the activations both backends compute, as names a layer takes.

``keras.activations.relu`` (or ``tf.nn.relu``) passed as ``activation=`` means
the same as ``"relu"``.  Called on numbers, each computes its function with
numpy, so ``keras.activations.softmax(np.array([[1.0, 2.0]]))`` works as in Keras.

``tf.nn.softmax`` and ``tf.nn.sigmoid`` are the same as ``"softmax"`` and
``"sigmoid"`` for the loss too: Keras' TensorFlow backend finds the logits
behind either (measured in tests/front_end/keras_namespace/), so the ports
compute the loss from the logits in both cases.
"""

from __future__ import annotations

import numpy as np

from dual_backend.errors import DualBackendError

# Keras' selu constants (Klambauer et al.).
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


class Activation:
    """One of the activations both backends implement: its Keras name and a numpy version."""

    def __init__(self, name: str, function):
        self.__name__ = self.name = name
        self.function = function

    def __call__(self, x):
        return self.function(np.asarray(x, dtype=np.float32))

    def __repr__(self):
        return f"keras.activations.{self.name}"


def _softmax(x):
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


relu = Activation("relu", lambda x: np.maximum(x, 0))
sigmoid = Activation("sigmoid", lambda x: 0.5 * (1 + np.tanh(x / 2)))  # no overflow for large |x|
softmax = Activation("softmax", _softmax)
tanh = Activation("tanh", np.tanh)
selu = Activation("selu", lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)))
elu = Activation("elu", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))))  # Keras' alpha 1.0
linear = Activation("linear", lambda x: x)

BY_NAME = {a.name: a for a in (relu, sigmoid, softmax, tanh, selu, elu, linear)}


def get(identifier) -> str | None:
    """Keras' ``activations.get``: a name, one of this module's functions, or None → the name both
    backends build ("linear" and None are the identity on both)."""
    if identifier is None:
        return None
    name = identifier.name if isinstance(identifier, Activation) else identifier
    if isinstance(name, str) and name in BY_NAME:
        return name
    if callable(identifier):  # a function of TensorFlow, torch or the user's own: not computed alike on both
        shown = f"{getattr(identifier, '__module__', '')}.{getattr(identifier, '__qualname__', repr(identifier))}"
        raise DualBackendError(
            f"activation={shown} is a function dual-backend cannot build on both backends. Give its name "
            f"({', '.join(BY_NAME)}) or dual_backend's own: keras.activations.relu, or tf.nn.relu after "
            "`from dual_backend import tf`.")
    raise DualBackendError(f"Unknown activation {identifier!r}. Valid activations: {', '.join(BY_NAME)} or None, "
                           "by name or as keras.activations.relu, tf.nn.relu, ... (from dual_backend).")
