"""``keras.initializers``: the kernel and bias initialisers both backends draw alike.

A layer takes one by Keras' name (``kernel_initializer="he_normal"``, or the
class name ``"HeNormal"``), as a class or as an instance
(``keras.initializers.HeNormal()``); its description keeps the name.  tf.keras
draws it itself; the torch layers draw from the same distribution with the
fans Keras counts (``torch_impl/keras/initializers.py``).  The rule is Keras
3's, ``keras/src/initializers/random_initializers.py``: a variance-scaling
initialiser divides ``scale`` by n (the fan its ``mode`` names, at least 1)
and draws uniformly within ±sqrt(3·scale/n), or from a normal cut at two
standard deviations whose deviation sqrt(scale/n)/0.87962566103423978 makes
the cut one's deviation sqrt(scale/n).

Each framework draws its own numbers, so no seed gives the same weights on
both: ``seed`` is taken as None only (as ``Dropout``'s), and
``model.set_weights(other.get_weights())`` is what makes two models equal.
"""

from __future__ import annotations

import inspect
import math

from dual_backend.errors import DualBackendError

# Keras 3's variance-scaling initialisers: (scale, mode, distribution), as their constructors set them.
VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}
CONSTANTS = {"zeros": 0.0, "ones": 1.0}
# The standard deviation of a unit normal cut at ±2: Keras divides by it so that the cut draws keep sqrt(scale/n).
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


class UnsupportedInitializer(DualBackendError, AttributeError):
    """A Keras initialiser dual-backend does not draw (an AttributeError too, so ``hasattr`` says no)."""


class Initializer:
    """One of Keras' initialisers as a class: ``HeNormal()`` means what ``"he_normal"`` means."""

    name = ""

    def __init__(self, seed=None):
        if seed is not None:
            raise DualBackendError(
                f"keras.initializers.{type(self).__name__}(seed={seed!r}) is not supported by dual-backend on either "
                "backend: each framework draws its own numbers, so a seed would not give the same weights on both. "
                "Leave seed=None; copy weights across with model.set_weights(other.get_weights()).")

    def __repr__(self):
        return f"keras.initializers.{type(self).__name__}()"


class GlorotUniform(Initializer):
    """Uniform within ±sqrt(6 / (fan_in + fan_out)): Keras' default kernel."""

    name = "glorot_uniform"


class GlorotNormal(Initializer):
    """Truncated normal, standard deviation sqrt(2 / (fan_in + fan_out))."""

    name = "glorot_normal"


class HeNormal(Initializer):
    """Truncated normal, standard deviation sqrt(2 / fan_in): for relu layers."""

    name = "he_normal"


class HeUniform(Initializer):
    """Uniform within ±sqrt(6 / fan_in)."""

    name = "he_uniform"


class LecunNormal(Initializer):
    """Truncated normal, standard deviation sqrt(1 / fan_in): for selu layers."""

    name = "lecun_normal"


class LecunUniform(Initializer):
    """Uniform within ±sqrt(3 / fan_in)."""

    name = "lecun_uniform"


class Zeros(Initializer):
    """Every value 0: Keras' default bias."""

    name = "zeros"


class Ones(Initializer):
    """Every value 1."""

    name = "ones"


CLASSES = {kind.__name__: kind for kind in (GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal,
                                            LecunUniform, Zeros, Ones)}
BY_NAME = {kind.name: kind for kind in CLASSES.values()}
# Keras' own spellings of the same initialisers: its class names, and two short names it keeps.
SPELLINGS = {**BY_NAME, **CLASSES, "zero": Zeros, "one": Ones}


def get(identifier) -> str:
    """Keras' ``initializers.get`` for the initialisers both backends draw: a name, a class name, one of
    this module's classes or instances → Keras' name (``"he_normal"``)."""
    if isinstance(identifier, Initializer):
        return identifier.name
    if inspect.isclass(identifier) and issubclass(identifier, Initializer):
        return identifier.name
    if isinstance(identifier, str) and identifier in SPELLINGS:
        return SPELLINGS[identifier].name
    if callable(identifier):  # TensorFlow's, torch's or the user's own: drawn by one framework only
        raise ValueError(f"supported: {', '.join(BY_NAME)}, by name or as dual_backend's keras.initializers.HeNormal() "
                         "and its siblings; a function or another framework's initializer is drawn by one backend "
                         "only")
    raise ValueError(f"supported: {', '.join(BY_NAME)}, by name or as keras.initializers.HeNormal() and its siblings")


def compute_fans(shape: tuple) -> tuple[int, int]:
    """Keras' ``compute_fans`` for a weight of Keras' ``shape``: a Dense kernel (inputs, units) has fans
    (inputs, units); a convolution kernel (height, width, in, out), (in, out) times the window; a bias
    (n,), n and n."""
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    window = math.prod(shape[:-2])
    return shape[-2] * window, shape[-1] * window


def __getattr__(name: str):
    if name[:1].isupper():
        raise UnsupportedInitializer(f"keras.initializers.{name} is not supported by dual-backend on either backend. "
                                     f"Supported initializers: {', '.join(CLASSES)}.")
    raise AttributeError(f"module 'dual_backend.keras.initializers' has no attribute {name!r}")
