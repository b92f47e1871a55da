"""``keras.layers``: layers as framework-free descriptions, built on the backend when the model is.

A layer here is what its constructor was given, checked against what both
backends compute with Keras' meaning.  An argument outside that set, at a
value other than Keras' default, is refused as the layer is defined, in the
same words on both backends: nothing is ever built with a silently
different meaning.  ``keras_ref/user_model.py`` builds these as tf.keras
layers, ``torch_impl/user_model.py`` as ``torch_impl.keras`` layers.

Once the model is built, a layer answers as Keras' does: ``name``,
``get_weights()`` / ``set_weights()`` (Keras' layout on both backends),
``count_params()``, and Keras 2's ``output_shape``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from dual_backend.errors import DualBackendError
from dual_backend.keras import activations, initializers

_name_counts: dict[str, int] = defaultdict(int)  # Keras' automatic names: dense, dense_1, ... per session


def snake_case(class_name: str) -> str:
    """Keras' ``to_snake_case``: MaxPooling2D → max_pooling2d, BatchNormalization → batch_normalization."""
    name = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


class UnsupportedLayer(DualBackendError, AttributeError):
    """A Keras layer dual-backend does not build (an AttributeError too, so ``hasattr`` says no)."""


class Option:
    """One argument of a Keras layer: Keras' default and what both backends build."""

    def __init__(self, default, allowed: tuple | None = None, convert=None, shown: str = ""):
        self.default, self.allowed, self.convert = default, allowed, convert
        self.shown = shown or ("/".join(map(repr, allowed)) if allowed else "")

    def value(self, given):
        if self.convert is not None:
            return self.convert(given)
        if given not in self.allowed:
            raise ValueError(f"supported: {self.shown}")
        return given


def only(*values) -> Option:
    """An argument taken only at Keras' default (the first value) or the other values listed."""
    return Option(values[0], values)


def positive_integer(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError("a positive integer")
    return int(value)


def pair(value):
    """Keras' ``(height, width)`` arguments: an int or two ints."""
    values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    return tuple(positive_integer(v) for v in values) if len(values) == 2 else positive_integer(None)


def rate(value):
    if not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError("a float in [0, 1)")
    return float(value)


def positive_float(value):
    if not isinstance(value, (int, float, np.floating)) or not value > 0:
        raise ValueError("a positive float")
    return float(value)


def fraction(value):
    if not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ValueError("a float in [0, 1]")
    return float(value)


def activation(value):
    try:
        return activations.get(value)
    except DualBackendError as error:  # a foreign function gets activations.get's own explanation
        raise ValueError(str(error) if callable(value) else f"{', '.join(activations.BY_NAME)} or None") from None


ACTIVATION = Option(None, convert=activation, shown=f"{', '.join(activations.BY_NAME)}, None")
# Kernel and bias initialisers by Keras' names, drawn alike on both backends (keras/initializers.py).
INITIALIZERS = ", ".join(initializers.BY_NAME)
KERNEL_INITIALIZER = Option("glorot_uniform", convert=initializers.get, shown=INITIALIZERS)
BIAS_INITIALIZER = Option("zeros", convert=initializers.get, shown=INITIALIZERS)
ZEROS = only("zeros", "Zeros")
# Keras' paddings; 'same' pads as TensorFlow does (the extra row or column of an odd total after).
PADDING = Option("valid", convert=lambda v: only("valid", "same").value(v.lower() if isinstance(v, str) else v),
                 shown="'valid'/'same'")
# Arguments every Keras layer takes: accepted at Keras' defaults only, except ``name``.
COMMON = {"trainable": only(True), "dtype": only(None, "float32"), "activity_regularizer": only(None),
          "autocast": only(True)}


class Layer:
    """A layer described, not built: its Keras class, its arguments, and what it becomes once built."""

    required: tuple[str, ...] = ()  # Keras' positional arguments, in order
    options: dict[str, Option] = {}

    def __init__(self, *args, name: str | None = None, input_shape=None, input_dim=None, **kwargs):
        kind = type(self).__name__
        positional = [*self.required, *self.options]  # Keras' order
        if len(args) > len(positional):
            raise DualBackendError(f"{kind} takes at most {len(positional)} positional arguments, got {len(args)}.")
        for argument, value in zip(positional, args):
            if argument in kwargs:
                raise DualBackendError(f"{kind} got two values for its argument {argument!r}.")
            kwargs[argument] = value
        missing = [argument for argument in self.required if argument not in kwargs]
        if missing:
            raise DualBackendError(f"{kind} needs its argument {missing[0]!r}. {self._supported_text()}")
        self.arguments = {}
        for argument, value in kwargs.items():
            if argument not in (*self.required, *self.options, *COMMON):
                raise DualBackendError(
                    f"{kind} has no argument {argument!r} in Keras 3. {self._supported_text()}")
            checked = self._checked(argument, value)
            if argument not in COMMON:
                self.arguments[argument] = checked
        for argument, option in self.options.items():
            self.arguments.setdefault(argument, option.default)
        if input_dim is not None:
            input_shape = (input_dim,)
        self.input_shape = None if input_shape is None else _shape(input_shape, f"{kind}(input_shape=...)")
        self.name = name or unique_name(snake_case(kind))
        self.model = None  # the Sequential it belongs to, set when it is added
        self.built_layer = None  # the framework's layer, set when the model is built
        self.output_shape = None  # Keras' (None, ...) output shape, set when the model is built

    def _checked(self, argument, value):
        option = self.options.get(argument) or COMMON.get(argument)
        if option is None:  # a required argument
            option = self.required_options[argument]
        try:
            return option.value(value)
        except (ValueError, TypeError) as reason:
            raise DualBackendError(
                f"{type(self).__name__}({argument}={value!r}) is not supported by dual-backend on either backend "
                f"({argument}: {reason}). {self._supported_text()}") from None

    def _supported_text(self) -> str:
        described = [*self.required,
                     *(f"{a} ({o.shown})" if o.shown else a for a, o in self.options.items()), "name",
                     *(["input_shape"] if self.takes_input_shape else [])]
        return f"{type(self).__name__} takes: {', '.join(described)}."

    required_options: dict[str, Option] = {}
    takes_input_shape = True

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"<{type(self).__name__} name={self.name!r} {arguments}>"

    # ------------------------------------------------------------------ shapes, framework-free

    def compute_output_shape(self, input_shape: tuple, channels_first: bool) -> tuple:
        """The output shape (no batch axis) for ``input_shape``; ``channels_first``: the torch model
        computes images as NCHW (it has a Conv2D or a MaxPooling2D).  Refuses, in the same words on
        both backends, what one of them would compute differently."""
        return input_shape

    # ------------------------------------------------------------------ once built

    def _built(self):
        if self.built_layer is None and self.model is not None:
            self.model.build_if_shape_known()
        return self.built_layer

    def get_weights(self) -> list:
        """Keras' ``layer.get_weights()``: numpy arrays in Keras' layout; [] until the model is built."""
        layer = self._built()
        return [] if layer is None else [np.asarray(w) for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        layer = self._built()
        if layer is None:
            raise DualBackendError(f"Layer {self.name!r} has no weights yet: its model is not built "
                                   "(give its input shape, or fit or predict once).")
        layer.set_weights(list(weights))

    def count_params(self) -> int:
        return int(sum(w.size for w in self.get_weights()))

    @property
    def weights(self) -> list:
        return self.get_weights()

    @property
    def output(self):
        """Keras' ``layer.output``: for ``keras.Model(inputs=model.input, outputs=[...])``."""
        from dual_backend.keras.models import SymbolicTensor

        if self.model is None:
            raise DualBackendError(f"Layer {self.name!r} has no output yet: it is in no model.")
        self.model._require_built()
        return SymbolicTensor(self.model, self.model.layers.index(self))


def _shape(shape, what: str) -> tuple:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise DualBackendError(f"{what} must be a tuple of positive integers (no batch axis), "
                               f"such as (28, 28), got {shape!r}.") from None
    if not dims or any(d < 1 for d in dims):
        raise DualBackendError(f"{what} must be a tuple of positive integers (no batch axis), "
                               f"such as (28, 28), got {shape!r}.")
    return dims


class Input:
    """``keras.Input(shape)``: not a layer, the shape of one sample (no batch axis)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, **kwargs):
        for argument, value in {"batch_size": batch_size, **kwargs}.items():
            if value not in (None, False):
                raise DualBackendError(f"Input({argument}={value!r}) is not supported by dual-backend on either "
                                       "backend. Input takes: shape, dtype ('float32'), name.")
        if dtype not in (None, "float32"):
            raise DualBackendError(f"Input(dtype={dtype!r}) is not supported by dual-backend on either backend. "
                                   "Input takes: shape, dtype ('float32'), name.")
        self.shape = _shape(shape, "Input(shape=...)")
        self.name = name or unique_name("input_layer")


class Flatten(Layer):
    """``keras.layers.Flatten``: each sample's values in one axis (Keras' height, width, channels order)."""

    options = {"data_format": only(None, "channels_last")}

    def compute_output_shape(self, input_shape, channels_first):
        return (math.prod(input_shape),)


class Dense(Layer):
    """``keras.layers.Dense``: applied to the last axis; a glorot-uniform kernel and a zero bias unless
    other initialisers are given."""

    required = ("units",)
    required_options = {"units": Option(None, convert=positive_integer, shown="a positive integer")}
    options = {"activation": ACTIVATION, "use_bias": only(True, False), "kernel_initializer": KERNEL_INITIALIZER,
               "bias_initializer": BIAS_INITIALIZER, "kernel_regularizer": only(None), "bias_regularizer": only(None),
               "kernel_constraint": only(None), "bias_constraint": only(None), "lora_rank": only(None)}

    def compute_output_shape(self, input_shape, channels_first):
        if channels_first and len(input_shape) == 3:
            raise DualBackendError(
                f"Dense layer {self.name!r} gets images of shape {input_shape} in a model with convolutions or "
                "pooling: dual-backend does not apply Dense to each pixel there (the torch backend holds those "
                "images channels first). Put Flatten() before it.")
        return (*input_shape[:-1], self.arguments["units"])


class Conv2D(Layer):
    """``keras.layers.Conv2D``: 'valid' or 'same' padding; a glorot-uniform kernel and a zero bias unless
    other initialisers are given."""

    required = ("filters", "kernel_size")
    required_options = {"filters": Option(None, convert=positive_integer, shown="a positive integer"),
                        "kernel_size": Option(None, convert=pair, shown="an int or two")}
    options = {"strides": Option((1, 1), convert=pair, shown="an int or two"), "padding": PADDING,
               "data_format": only(None, "channels_last"), "dilation_rate": only(1, (1, 1)), "groups": only(1),
               "activation": ACTIVATION, "use_bias": only(True, False), "kernel_initializer": KERNEL_INITIALIZER,
               "bias_initializer": BIAS_INITIALIZER, "kernel_regularizer": only(None), "bias_regularizer": only(None),
               "kernel_constraint": only(None), "bias_constraint": only(None)}

    def compute_output_shape(self, input_shape, channels_first):
        _no_softmax_over_maps(self, self.arguments["activation"])
        if len(input_shape) != 3:
            raise DualBackendError(
                f"Conv2D layer {self.name!r} expects inputs of shape (height, width, channels), got {input_shape}: "
                "reshape the images to (N, height, width, 1), as the course does.")
        return (*windows_out(self, input_shape, self.arguments["kernel_size"], self.arguments["strides"], "kernel"),
                self.arguments["filters"])


class MaxPooling2D(Layer):
    """``keras.layers.MaxPooling2D``: strides default to the pool size, 'valid' or 'same' padding."""

    options = {"pool_size": Option((2, 2), convert=pair, shown="an int or two"),
               "strides": Option(None, convert=lambda v: None if v is None else pair(v), shown="an int or two, None"),
               "padding": PADDING, "data_format": only(None, "channels_last")}

    def compute_output_shape(self, input_shape, channels_first):
        if len(input_shape) != 3:
            raise DualBackendError(f"MaxPooling2D layer {self.name!r} expects inputs of shape (height, width, "
                                   f"channels), got {input_shape}.")
        pool_size = self.arguments["pool_size"]
        return (*windows_out(self, input_shape, pool_size, self.arguments["strides"] or pool_size, "window"),
                input_shape[2])


class AveragePooling2D(MaxPooling2D):
    """``keras.layers.AveragePooling2D``: the mean of each window; with 'same' padding, of the window's
    cells inside the image, as TensorFlow counts them."""


class GlobalAveragePooling2D(Layer):
    """``keras.layers.GlobalAveragePooling2D``: each channel's mean over height and width."""

    options = {"data_format": only(None, "channels_last"), "keepdims": only(False)}

    def compute_output_shape(self, input_shape, channels_first):
        if len(input_shape) != 3:
            raise DualBackendError(f"GlobalAveragePooling2D layer {self.name!r} expects inputs of shape (height, "
                                   f"width, channels), got {input_shape}.")
        return input_shape[2:]


def target_shape(value):
    dims = tuple(int(d) for d in value)
    if not dims or any(d < 1 and d != -1 for d in dims) or dims.count(-1) > 1:
        raise ValueError("a tuple of positive integers, one of them may be -1")
    return dims


class Reshape(Layer):
    """``keras.layers.Reshape``: each sample's values, in Keras' order, into ``target_shape``."""

    required = ("target_shape",)
    required_options = {"target_shape": Option(None, convert=target_shape, shown="a tuple of positive integers")}

    def compute_output_shape(self, input_shape, channels_first):
        size, wanted = math.prod(input_shape), self.arguments["target_shape"]
        known = math.prod(d for d in wanted if d != -1)
        if size % known or (-1 not in wanted and size != known):
            raise DualBackendError(f"Reshape layer {self.name!r} cannot reshape inputs of shape {input_shape} "
                                   f"({size} values) into {wanted}.")
        return tuple(size // known if d == -1 else d for d in wanted)


def scalar(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError("a number (per-channel arrays are not supported)")
    return float(value)


class Rescaling(Layer):
    """``keras.layers.Rescaling``: ``x · scale + offset`` (the course's ``Rescaling(1./255)``)."""

    required = ("scale",)
    required_options = {"scale": Option(None, convert=scalar, shown="a number")}
    options = {"offset": Option(0.0, convert=scalar, shown="a number")}


class BatchNormalization(Layer):
    """``keras.layers.BatchNormalization``: momentum 0.99, ε 1e-3, over the last axis."""

    options = {"axis": only(-1), "momentum": Option(0.99, convert=fraction, shown="a float in [0, 1]"),
               "epsilon": Option(1e-3, convert=positive_float, shown="a positive float"), "center": only(True),
               "scale": only(True), "beta_initializer": ZEROS, "gamma_initializer": only("ones", "Ones"),
               "moving_mean_initializer": ZEROS, "moving_variance_initializer": only("ones", "Ones"),
               "beta_regularizer": only(None), "gamma_regularizer": only(None), "beta_constraint": only(None),
               "gamma_constraint": only(None), "renorm": only(False), "synchronized": only(False)}

    def compute_output_shape(self, input_shape, channels_first):
        if len(input_shape) == 1 or (len(input_shape) == 3 and channels_first):
            return input_shape
        raise DualBackendError(
            f"BatchNormalization layer {self.name!r} gets inputs of shape {input_shape}: dual-backend normalises "
            "flat features (after Flatten or Dense on flat inputs) or convolution maps (after Conv2D or "
            "MaxPooling2D). Put Flatten() before it.")


class Dropout(Layer):
    """``keras.layers.Dropout``: zeroes a ``rate`` of the inputs in training and scales the rest by
    1/(1 − rate); the identity outside training.  Each framework draws its own masks."""

    required = ("rate",)
    required_options = {"rate": Option(None, convert=rate, shown="a float in [0, 1)")}
    options = {"noise_shape": only(None), "seed": only(None)}


class AlphaDropout(Dropout):
    """``keras.layers.AlphaDropout``: dropout that keeps selu's mean and variance."""


class Activation(Layer):
    """``keras.layers.Activation``: the activation on its own."""

    required = ("activation",)
    required_options = {"activation": ACTIVATION}

    def compute_output_shape(self, input_shape, channels_first):
        if channels_first and len(input_shape) == 3:
            _no_softmax_over_maps(self, self.arguments["activation"])
        return input_shape


def windows_out(layer: Layer, input_shape: tuple, window: tuple, strides: tuple, what: str) -> tuple[int, int]:
    """Output (height, width) of a window sliding over images: ⌈size / stride⌉ with 'same' padding,
    ⌊(size − window) / stride⌋ + 1 with 'valid'."""
    if layer.arguments["padding"] == "same":
        return tuple(-(-n // s) for n, s in zip(input_shape[:2], strides))
    if any(n < k for n, k in zip(input_shape[:2], window)):
        raise DualBackendError(f"{type(layer).__name__} layer {layer.name!r}: its {window[0]}x{window[1]} {what} "
                               f"does not fit inputs of {input_shape[0]}x{input_shape[1]} with 'valid' padding.")
    return tuple((n - k) // s + 1 for n, k, s in zip(input_shape[:2], window, strides))


def _no_softmax_over_maps(layer: Layer, activation) -> None:
    if activation == "softmax":
        raise DualBackendError(
            f"{type(layer).__name__} layer {layer.name!r}: a softmax over the channels of convolution maps is not "
            "supported by dual-backend (the torch backend holds those maps channels first). Flatten, then Dense "
            "with the softmax.")


LAYERS = {kind.__name__: kind for kind in (Flatten, Dense, Conv2D, MaxPooling2D, AveragePooling2D,
                                           GlobalAveragePooling2D, BatchNormalization, Dropout, AlphaDropout,
                                           Activation, Reshape, Rescaling)}
# Layers a torch model may hold between a Flatten of convolution maps and the Dense that reads it:
# they keep each value in its place, so the Dense still gets Keras' weight order (torch_impl/keras/sequential.py).
ELEMENTWISE = (Dropout, AlphaDropout, Activation, Flatten, Rescaling)
# Layers after which the torch backend holds images channels first (NCHW).
CHANNELS_FIRST = (Conv2D, MaxPooling2D, GlobalAveragePooling2D)


def __getattr__(name: str):
    if name[:1].isupper():
        raise UnsupportedLayer(f"keras.layers.{name} is not supported by dual-backend on either backend. "
                               f"Supported layers: Input, {', '.join(LAYERS)}.")
    raise AttributeError(f"module 'dual_backend.keras.layers' has no attribute {name!r}")
