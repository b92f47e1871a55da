"""``keras.losses``: the four losses both backends compute, as classes or as Keras' function names.

``compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))``
takes the model's outputs as logits, as Keras does (on torch: the loss from
those logits, ``torch_impl.keras.Sequential.loss_activation``).  Without
``from_logits`` a loss means what its string means: behind a softmax or sigmoid
head Keras computes it from the logits in front of the head anyway.  The
functions (``keras.losses.sparse_categorical_crossentropy``) name the same
losses for ``compile``.  Other arguments are refused at values other than Keras' defaults.
"""

from __future__ import annotations

from dual_backend.errors import DualBackendError


class Loss:
    """A loss by Keras' name, and whether the model's outputs are logits."""

    name = ""
    takes_logits = True  # Keras' class has a from_logits argument
    refused: dict = {"reduction": "sum_over_batch_size", "name": None, "dtype": None}

    def __init__(self, from_logits: bool = False, **kwargs):
        kind = type(self).__name__
        if from_logits and not self.takes_logits:
            raise DualBackendError(f"{kind} has no argument 'from_logits' in Keras 3.")
        if not isinstance(from_logits, bool):
            raise DualBackendError(f"{kind}(from_logits=...) must be True or False, got {from_logits!r}.")
        for argument, value in kwargs.items():
            if argument not in self.refused:
                raise DualBackendError(f"{kind} has no argument {argument!r} in Keras 3.")
            if value != self.refused[argument] and argument != "name":
                raise DualBackendError(f"{kind}({argument}={value!r}) is not supported by dual-backend on either "
                                       f"backend. {kind} takes: {'from_logits' if self.takes_logits else 'nothing'}.")
        self.from_logits = from_logits

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    refused = {**Loss.refused, "ignore_class": None, "axis": -1}


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    refused = {**Loss.refused, "label_smoothing": 0.0, "axis": -1}


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    refused = {**Loss.refused, "label_smoothing": 0.0, "axis": -1}


class MeanSquaredError(Loss):
    name = "mean_squared_error"
    takes_logits = False


# Keras' loss functions, for compile(loss=keras.losses.sparse_categorical_crossentropy): the same losses.
sparse_categorical_crossentropy = SparseCategoricalCrossentropy()
categorical_crossentropy = CategoricalCrossentropy()
binary_crossentropy = BinaryCrossentropy()
mean_squared_error = mse = MeanSquaredError()


def __getattr__(name: str):
    if not name.startswith("__"):
        raise UnsupportedLoss(f"keras.losses.{name} is not supported by dual-backend on either backend. Supported "
                              "losses: SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy, "
                              "MeanSquaredError (from_logits on the cross-entropies).")
    raise AttributeError(name)


class UnsupportedLoss(DualBackendError, AttributeError):
    """A Keras loss dual-backend does not compute (an AttributeError too, so ``hasattr`` says no)."""
