"""Keras' layers in torch: Keras' initialisers, Keras' weight layout, plain ``nn`` ops.

- ``Dense`` and ``Conv2D`` initialise kernels and biases as Keras' initialisers of the
  same names do (``initializers.py``), glorot-uniform kernels and zero biases by default;
- a layer learns its input shape when ``Sequential`` builds it, as in Keras;
- images compute in torch's NCHW layout, while shapes (``build``, the summary)
  and weights (``get_weights``/``set_weights``) are Keras' NHWC and HWIO;
- a layer's weights carry Keras' variable names (``kernel``, ``bias``, ``gamma``,
  ``beta``, ``moving_mean``, ``moving_variance``) in torch's layout: a Dense
  kernel is (units, inputs) as ``F.linear`` takes it, a Conv2D kernel OIHW as
  ``F.conv2d`` takes it.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dual_backend import validation
from torch_impl.fast import cpu_kernels
from torch_impl.keras.initializers import initialize, initializer

ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "selu": F.selu,
    "elu": F.elu,  # alpha 1.0, Keras' default
    "softmax": lambda x: F.softmax(x, dim=-1),
}
# Heads whose loss Keras computes from the logits in front of them.
PROBABILITY_HEADS = ("softmax", "sigmoid")


class Input:
    """``keras.Input(shape)``: not a layer, the shape the next layers are built for."""

    def __init__(self, shape):
        self.shape = tuple(shape)


class Layer(nn.Module):
    """A layer that, like Keras', learns its input shape when it is built."""

    keras_type = "Layer"

    def build(self, input_shape: tuple) -> tuple:
        """Create the weights for ``input_shape`` (no batch axis); return the output shape."""
        return input_shape

    def logits(self, x):
        return self(x)

    # Keras' ``layer.get_weights()`` / ``set_weights()``: numpy arrays in Keras' own layout
    # and order, so that weights move between the two frameworks (``dual_backend.copy_weights``).
    def keras_tensors(self) -> list:
        return []

    def get_weights(self) -> list:
        # Copies: a numpy view of a CPU tensor would change as the model trains.
        return [np.array(self.to_keras(i, t.detach().cpu().numpy())) for i, t in enumerate(self.keras_tensors())]

    @torch.no_grad()
    def set_weights(self, arrays) -> None:
        tensors = self.keras_tensors()
        if len(arrays) != len(tensors):
            raise validation.DualBackendError(
                f"{self.keras_type} holds {len(tensors)} weight arrays, got {len(arrays)}.")
        for index, (tensor, array) in enumerate(zip(tensors, arrays)):
            converted = self.from_keras(index, np.asarray(array, dtype=_numpy_dtype(tensor)))
            if tuple(converted.shape) != tuple(tensor.shape):
                raise validation.DualBackendError(
                    f"{self.keras_type} weight {index} has shape {tuple(tensor.shape)} here, "
                    f"got {np.asarray(array).shape} in Keras' layout.")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(converted)))

    def to_keras(self, index: int, array):
        return array

    def from_keras(self, index: int, array):
        return array


def _numpy_dtype(tensor) -> np.dtype:
    return np.float64 if tensor.dtype == torch.float64 else np.float32


class Flatten(Layer):
    keras_type = "Flatten"
    keras_order = False  # NCHW maps flattened in Keras' (height, width, channels) order; set by Sequential

    def build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x):
        if self.keras_order and x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.flatten(1)


def _activation(name):
    if name not in ACTIVATIONS:
        raise validation.DualBackendError(
            f"Unknown activation {name!r}. Valid activations: {', '.join(map(str, ACTIVATIONS))}."
        )
    return name


class Dense(Layer):
    """``keras.layers.Dense``: applied to the last axis, glorot-uniform kernel and zero bias by default.

    ``kernel`` is (units, inputs), torch's layout for ``F.linear`` (Keras' is
    (inputs, units): ``get_weights`` gives that); ``bias`` is (units,), or None with ``use_bias=False``.
    """

    keras_type = "Dense"

    def __init__(self, units: int, activation: str | None = None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", use_bias: bool = True):
        super().__init__()
        self.units, self.activation, self.use_bias = units, _activation(activation), use_bias
        self.kernel_initializer, self.bias_initializer = initializer(kernel_initializer), initializer(bias_initializer)

    def build(self, input_shape):
        self.kernel = nn.Parameter(torch.empty(self.units, input_shape[-1]))
        initialize(self.kernel, self.kernel_initializer, (input_shape[-1], self.units))  # Keras' (inputs, units)
        self.bias = _bias(self.use_bias, self.units, self.bias_initializer)
        return (*input_shape[:-1], self.units)

    def logits(self, x):
        return F.linear(x, self.kernel, self.bias)

    def forward(self, x):
        return ACTIVATIONS[self.activation](self.logits(x))

    # Keras' kernel is (inputs, units), this one (units, inputs).  After a Flatten
    # of convolution maps, the inputs also come in another order: Keras flattens
    # (height, width, channels), torch (channels, height, width).
    flattened_from: tuple | None = None  # (height, width, channels), set by Sequential

    def keras_tensors(self):
        return [self.kernel] + ([self.bias] if self.use_bias else [])

    def to_keras(self, index, array):
        if index == 1:
            return array
        if self.flattened_from:
            height, width, channels = self.flattened_from
            array = array.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(len(array), -1)
        return array.T

    def from_keras(self, index, array):
        if index == 1:
            return array
        array = array.T
        if self.flattened_from:
            height, width, channels = self.flattened_from
            array = array.reshape(-1, height, width, channels).transpose(0, 3, 1, 2).reshape(len(array), -1)
        return array


def _bias(use_bias: bool, units: int, bias_initializer) -> nn.Parameter | None:
    """A Dense or Conv2D layer's bias, drawn as Keras draws it, or None (``use_bias=False``: no bias added)."""
    if not use_bias:
        return None
    bias = nn.Parameter(torch.empty(units))
    initialize(bias, bias_initializer, (units,))
    return bias


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


PADDINGS = ("valid", "same")


def _padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise validation.DualBackendError(f"Unknown padding {padding!r}. Valid paddings: {', '.join(PADDINGS)}.")
    return padding


def same_padding(size: tuple, window: tuple, strides: tuple) -> tuple[int, int, int, int] | None:
    """TensorFlow's 'same' padding for a (height, width) input, as ``F.pad`` takes it (left, right, top,
    bottom), or None when none is needed.  The output keeps ⌈size / stride⌉; of an odd total the extra
    row or column goes after (bottom, right), which torch's symmetric ``padding=`` cannot say."""
    pads = []
    for n, k, s in zip(size, window, strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom) if any((top, bottom, left, right)) else None


def windows_out(size: tuple, window: tuple, strides: tuple, padding: str) -> tuple[int, int]:
    """Output (height, width) of a window sliding over ``size``: Keras' rule for 'valid' and 'same'."""
    if padding == "same":
        return tuple(-(-n // s) for n, s in zip(size, strides))
    return tuple((n - k) // s + 1 for n, k, s in zip(size, window, strides))


class Conv2D(Layer):
    """``keras.layers.Conv2D``: glorot-uniform kernel and zero bias by default, NCHW inside; 'valid'
    padding, or 'same' as TensorFlow pads (``same_padding``).

    Shapes are given and reported as Keras' (height, width, channels).  ``kernel`` is
    (filters, channels, height, width), torch's OIHW for ``F.conv2d`` (Keras' is HWIO:
    ``get_weights`` gives that); ``bias`` is (filters,), or None with ``use_bias=False``.
    """

    keras_type = "Conv2D"
    pads = None  # F.pad's (left, right, top, bottom) for 'same' padding, set by build

    def __init__(self, filters: int, kernel_size, activation: str | None = None, strides=1, padding="valid",
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", use_bias: bool = True):
        super().__init__()
        self.filters, self.kernel_size, self.strides = filters, _pair(kernel_size), _pair(strides)
        self.activation, self.padding, self.use_bias = _activation(activation), _padding(padding), use_bias
        self.kernel_initializer, self.bias_initializer = initializer(kernel_initializer), initializer(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise validation.DualBackendError(
                f"Conv2D expects inputs of shape (height, width, channels), got {input_shape}: "
                "reshape the images to (N, height, width, 1), as the course does."
            )
        height, width, channels = input_shape
        self.kernel = nn.Parameter(torch.empty(self.filters, channels, *self.kernel_size))
        initialize(self.kernel, self.kernel_initializer, (*self.kernel_size, channels, self.filters))  # Keras' HWIO
        self.bias = _bias(self.use_bias, self.filters, self.bias_initializer)
        if self.padding == "same":
            self.pads = same_padding((height, width), self.kernel_size, self.strides)
        return (*windows_out((height, width), self.kernel_size, self.strides, self.padding), self.filters)

    def keras_tensors(self):
        return [self.kernel] + ([self.bias] if self.use_bias else [])

    def to_keras(self, index, array):
        return array.transpose(2, 3, 1, 0) if index == 0 else array  # OIHW → Keras' HWIO

    def from_keras(self, index, array):
        return array.transpose(3, 2, 0, 1) if index == 0 else array  # HWIO → OIHW

    def convolve(self, x):
        """The convolution alone, before the activation: (N, C, H, W) → (N, filters, H', W')."""
        return F.conv2d(F.pad(x, self.pads) if self.pads else x, self.kernel, self.bias, self.strides)

    def forward(self, x):
        # In place: a convolution does not need its output for its own backward pass.
        x = self.convolve(x)
        return F.relu(x, inplace=True) if self.activation == "relu" else ACTIVATIONS[self.activation](x)


class Pooling2D(Layer):
    """Keras' 2-D poolings: strides default to the pool size; 'valid' padding (floor), or 'same' as
    TensorFlow pads (``same_padding``)."""

    pads = None  # F.pad's (left, right, top, bottom) for 'same' padding, set by build

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid"):
        super().__init__()
        self.pool_size = _pair(pool_size)
        self.strides = _pair(strides) if strides is not None else self.pool_size
        self.padding = _padding(padding)

    def build(self, input_shape):
        height, width, channels = input_shape
        if self.padding == "same":
            self.pads = same_padding((height, width), self.pool_size, self.strides)
        return (*windows_out((height, width), self.pool_size, self.strides, self.padding), channels)


class MaxPooling2D(Pooling2D):
    """``keras.layers.MaxPooling2D``; with 'same' padding, the padding never wins (−∞)."""

    keras_type = "MaxPooling2D"

    def forward(self, x):
        if self.pads:
            x = F.pad(x, self.pads, value=-math.inf)
        if cpu_kernels.contiguous_on_cpu(x):
            return cpu_kernels.max_pool2d(x, self.pool_size, self.strides)
        return F.max_pool2d(x, self.pool_size, self.strides)


class AveragePooling2D(Pooling2D):
    """``keras.layers.AveragePooling2D``: the mean of each window; with 'same' padding, of the window's
    cells inside the image, as TensorFlow counts them (torch's symmetric padding would count the
    padding, or pad on the other side)."""

    keras_type = "AveragePooling2D"

    def forward(self, x):
        if not self.pads:
            return F.avg_pool2d(x, self.pool_size, self.strides)
        sums = F.avg_pool2d(F.pad(x, self.pads), self.pool_size, self.strides, divisor_override=1)
        inside = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), self.pads), self.pool_size, self.strides,
                              divisor_override=1)
        return sums / inside


class GlobalAveragePooling2D(Layer):
    """``keras.layers.GlobalAveragePooling2D``: each channel's mean over height and width."""

    keras_type = "GlobalAveragePooling2D"

    def build(self, input_shape):
        return input_shape[-1:]

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Reshape(Layer):
    """``keras.layers.Reshape``: Keras reshapes its NHWC values; in a model that holds images as NCHW
    (``channels_first``, set by Sequential) images are turned to NHWC before and back after, so that the
    values land where Keras puts them."""

    keras_type = "Reshape"
    channels_first = False

    def __init__(self, target_shape):
        super().__init__()
        self.target_shape = tuple(target_shape)

    def build(self, input_shape):
        known = math.prod(d for d in self.target_shape if d != -1)
        self.output = tuple(math.prod(input_shape) // known if d == -1 else d for d in self.target_shape)
        return self.output

    def forward(self, x):
        if self.channels_first and x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        x = x.reshape(len(x), *self.output)
        return x.permute(0, 3, 1, 2) if self.channels_first and x.dim() == 4 else x


class Rescaling(Layer):
    """``keras.layers.Rescaling``: ``x · scale + offset``."""

    keras_type = "Rescaling"

    def __init__(self, scale: float, offset: float = 0.0):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x):
        return x * self.scale + self.offset


class BatchNormalization(Layer):
    """``keras.layers.BatchNormalization``: momentum 0.99, ε 1e-3, Keras' moving statistics.

    Differences from ``nn.BatchNorm1d`` that change results: torch's momentum
    is the weight of the *new* batch (Keras 0.99 is torch 0.01), its ε is
    1e-5, and it updates the running variance with the unbiased batch
    variance while normalising with the biased one; Keras uses the biased
    variance for both.  The statistics are buffers named as Keras names them
    and count as non-trainable parameters, as in Keras' summary; torch's
    ``num_batches_tracked`` has no Keras counterpart (the momentum is always
    given), so there is none.  Every tensor is (features,).
    """

    keras_type = "BatchNormalization"

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3):
        super().__init__()
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, input_shape):
        features = input_shape[-1]
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("moving_mean", torch.zeros(features))
        self.register_buffer("moving_variance", torch.ones(features))
        return input_shape

    def keras_tensors(self):
        return [self.gamma, self.beta, self.moving_mean, self.moving_variance]

    def forward(self, x):
        # Features are Keras' last axis: dim 1 in torch's layout, for flat and NCHW inputs alike.
        axes = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            variance, mean = torch.var_mean(x, dim=axes, correction=0)
            with torch.no_grad():
                self.moving_mean.lerp_(mean, 1 - self.momentum)
                self.moving_variance.lerp_(variance, 1 - self.momentum)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma * torch.rsqrt(variance + self.epsilon)
        return x * scale.view(shape) + (self.beta - mean * scale).view(shape)


class AlphaDropout(Layer):
    """``keras.layers.AlphaDropout``: keeps selu's mean and variance; identity outside training.

    torch's ``F.alpha_dropout`` draws the same mask and applies the same affine
    correction (a = ((1−p)(1+p·α′²))^−½, b = −a·α′·p with α′ = −λα), so it is used as is.
    """

    keras_type = "AlphaDropout"

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        return F.alpha_dropout(x, self.rate, self.training)


class Dropout(Layer):
    """``keras.layers.Dropout``: inverted dropout, as Keras' (kept values scaled by 1/(1 − rate) in
    training, the identity outside it).  The masks come from torch's generator, so they differ from
    TensorFlow's draws."""

    keras_type = "Dropout"

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        return F.dropout(x, self.rate, self.training)


class Activation(Layer):
    """``keras.layers.Activation``: the activation alone; a softmax or sigmoid one is a head whose
    loss Keras computes from its input (``logits``)."""

    keras_type = "Activation"

    def __init__(self, activation: str | None):
        super().__init__()
        self.activation = _activation(activation)

    def logits(self, x):
        return x

    def forward(self, x):
        return ACTIVATIONS[self.activation](x)


def keras_names(layers) -> list[str]:
    """Keras' automatic layer names: ``dense``, ``dense_1``, ... per layer type."""
    seen: dict[str, int] = {}
    names = []
    for layer in layers:
        # Keras' to_snake_case: MaxPooling2D → max_pooling2d, BatchNormalization → batch_normalization.
        base = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", layer.keras_type)
        base = re.sub("([a-z])([A-Z])", r"\1_\2", base).lower()
        count = seen.get(base, 0)
        names.append(base if count == 0 else f"{base}_{count}")
        seen[base] = count + 1
    return names
