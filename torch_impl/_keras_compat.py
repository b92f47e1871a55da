"""Keras' defaults for PyTorch: the one module every port shares.

A port reads like its Keras twin because the pieces have Keras' names and,
more importantly, Keras' behaviour rather than PyTorch's defaults (see the
table at the end of LESSONS.md):

- ``Dense`` and friends initialise kernels with glorot-uniform and biases with zeros;
- ``Sequential([Input(shape), ...])`` infers every layer's shape, as Keras does;
- a model with convolutions computes in torch's NCHW layout (the front end turns
  Keras' NHWC arrays around at the door); shapes (``summary()``, ``build``) are
  reported in Keras' NHWC;
- ``compile`` takes Keras' optimizer, loss and metric strings with Keras' hyperparameters;
- the loss behind a softmax or sigmoid head is computed from the logits, as Keras does;
- epoch logs are sample-weighted means, accuracy follows Keras' rules
  (sparse categorical for integer labels, binary behind a sigmoid);
- on the CPU, denormal floats are flushed to zero while a model trains or
  predicts, as TensorFlow does on its threads (``denormals_flushed``);
- on Linux (glibc), memory freed between steps is kept for the next step
  instead of going back to the system (``freed_memory_kept``).

``Sequential`` is a ``LightningModule``: the Trainer owns the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torch.optim.optimizer as torch_optimizer
from torch import nn
from torch._prims_common import suggest_memory_format  # torch's rule: the layout a tensor's strides mean

from dual_backend import validation

ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "selu": F.selu,
    "softmax": lambda x: F.softmax(x, dim=-1),
}
# Heads whose loss Keras computes from the logits in front of them.
PROBABILITY_HEADS = ("softmax", "sigmoid")


# --------------------------------------------------------------------------- layers


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

    def build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x):
        return x.flatten(1)


def _activation(name):
    if name not in ACTIVATIONS:
        raise validation.DualBackendError(
            f"Unknown activation {name!r}. Valid activations: {', '.join(map(str, ACTIVATIONS))}."
        )
    return name


class Dense(Layer):
    """``keras.layers.Dense``: applied to the last axis, glorot-uniform kernel, zero bias."""

    keras_type = "Dense"

    def __init__(self, units: int, activation: str | None = None):
        super().__init__()
        self.units, self.activation = units, _activation(activation)

    def build(self, input_shape):
        self.linear = nn.Linear(input_shape[-1], self.units)
        nn.init.xavier_uniform_(self.linear.weight)  # Keras' glorot_uniform: same fan-in/fan-out rule
        nn.init.zeros_(self.linear.bias)
        return (*input_shape[:-1], self.units)

    def logits(self, x):
        return self.linear(x)

    def forward(self, x):
        return ACTIVATIONS[self.activation](self.linear(x))

    # Keras' kernel is (inputs, units), torch's weight (units, inputs).  After a Flatten
    # of convolution maps, the inputs also come in another order: Keras flattens
    # (height, width, channels), torch (channels, height, width).
    flattened_from: tuple | None = None  # (height, width, channels), set by Sequential

    def keras_tensors(self):
        return [self.linear.weight, self.linear.bias]

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


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2D(Layer):
    """``keras.layers.Conv2D``, 'valid' padding: glorot-uniform kernel, zero bias, NCHW inside.

    Shapes are given and reported as Keras' (height, width, channels).
    """

    keras_type = "Conv2D"

    def __init__(self, filters: int, kernel_size, activation: str | None = None, strides=1):
        super().__init__()
        self.filters, self.kernel_size, self.strides = filters, _pair(kernel_size), _pair(strides)
        self.activation = _activation(activation)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise validation.DualBackendError(
                f"Conv2D expects inputs of shape (height, width, channels), got {input_shape}: "
                "reshape the images to (N, height, width, 1), as the course does."
            )
        height, width, channels = input_shape
        self.conv = nn.Conv2d(channels, self.filters, self.kernel_size, stride=self.strides)
        # glorot_uniform on OIHW: fans are in/out channels times the window, as Keras counts them on HWIO.
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return ((height - kh) // sh + 1, (width - kw) // sw + 1, self.filters)

    def keras_tensors(self):
        return [self.conv.weight, self.conv.bias]

    def to_keras(self, index, array):
        return array.transpose(2, 3, 1, 0) if index == 0 else array  # OIHW → Keras' HWIO

    def from_keras(self, index, array):
        return array.transpose(3, 2, 0, 1) if index == 0 else array  # HWIO → OIHW

    def forward(self, x):
        # In place: a convolution does not need its output for its own backward pass.
        x = self.conv(x)
        return F.relu(x, inplace=True) if self.activation == "relu" else ACTIVATIONS[self.activation](x)


class MaxPooling2D(Layer):
    """``keras.layers.MaxPooling2D``: strides default to the pool size, 'valid' padding (floor)."""

    keras_type = "MaxPooling2D"

    def __init__(self, pool_size=(2, 2), strides=None):
        super().__init__()
        self.pool_size = _pair(pool_size)
        self.strides = _pair(strides) if strides is not None else self.pool_size

    def build(self, input_shape):
        height, width, channels = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return ((height - ph) // sh + 1, (width - pw) // sw + 1, channels)

    def forward(self, x):
        if x.device.type == "cpu" and x.is_contiguous() and torch.is_grad_enabled():
            return _ContiguousMaxPool.apply(x, list(self.pool_size), list(self.strides))
        if x.device.type == "cpu" and x.is_contiguous():
            return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), self.pool_size,
                                self.strides).contiguous()
        return F.max_pool2d(x, self.pool_size, self.strides)


class _ContiguousMaxPool(torch.autograd.Function):
    """``F.max_pool2d`` of a contiguous NCHW tensor on the CPU, with the very same outputs and gradients.

    torch's CPU max-pool kernel for contiguous NCHW is ~20x slower than its
    channels-last one (7.5 ms against 0.4 ms for fashion_cnn's 32x64x26x26
    maps here; a third of a whole Keras step).  A maximum is exact, so the
    forward pass pools a channels-last copy; the backward pass is torch's own
    NCHW max-pool backward with the indices found (the same: both kernels
    keep the first maximum of a window).  tests/test_parity.py checks outputs
    and gradients are bit-identical, ties included."""

    @staticmethod
    def forward(ctx, x, pool_size, strides):
        output, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), pool_size, strides)
        ctx.save_for_backward(x, indices)
        ctx.pool_size, ctx.strides = pool_size, strides
        return output.contiguous()

    @staticmethod
    def backward(ctx, grad_output):
        x, indices = ctx.saved_tensors
        grad = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_output.contiguous(), x, ctx.pool_size, ctx.strides, [0, 0], [1, 1], False, indices.contiguous())
        return grad, None, None


def conv_then_pool(conv: nn.Conv2d, pool: MaxPooling2D, x):
    """``pool(conv(x))``; on the CPU through oneDNN's own tensors when torch itself would
    convolve with oneDNN (``_OneDNNConvPool``), the very same outputs and gradients."""
    if _onednn_conv_pool_fits(conv, x):
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (x, conv.weight, conv.bias))
        return _OneDNNConvPool.apply(x, conv.weight, conv.bias, list(conv.stride), list(pool.pool_size),
                                     list(pool.strides), training)
    return pool(conv(x))


def _onednn_conv_pool_fits(conv: nn.Conv2d, x) -> bool:
    """Where torch's own convolution is oneDNN's on NCHW float32 on the CPU, 'valid' padding.

    torch picks the layout from the strides (``suggest_memory_format``): a
    one-channel batch permuted from Keras' NHWC arrays, as the front end
    feeds fashion_cnn, reads as channels-last, and torch convolves it (and the
    layers after it) in channels-last, with other sums; those go one by one,
    as do autocast, the ``--channels-last`` flag and ``torch.compile``.
    torch 2.14 also takes its native kernel (other sums again) for a single
    small image with a 3x3 window or less."""
    weight = conv.weight
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous() and weight.is_contiguous() and conv.bias is not None
            and suggest_memory_format(x) == suggest_memory_format(weight) == torch.contiguous_format
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and (len(x) > 1 or x.numel() > 20480 or min(weight.shape[-2:]) > 3))


class _OneDNNConvPool(torch.autograd.Function):
    """A convolution and the max-pooling after it, kept in oneDNN's blocked layout in between.

    torch convolves contiguous NCHW float32 tensors on the CPU with oneDNN,
    whose kernels write a blocked layout (16 channels innermost) that torch
    then reorders to NCHW; pooling NCHW needs another reorder (see
    ``_ContiguousMaxPool``), and the backward pass reorders the gradient back
    to blocked.  Here the convolution's output stays a oneDNN tensor, oneDNN
    pools it where it lies, keeping the window's first maximum (as torch does)
    in its workspace, and its backward pass hands the blocked gradient to
    torch's own ``convolution_backward``.  Same kernels, same sums: outputs
    and every gradient are bit-for-bit those of ``pool(conv(x))``
    (tests/test_parity.py, every lesson's convolution, ties included).
    Forward and backward on contiguous NCHW maps: horse_or_human's first pair
    18 against 36 ms (8 images), its second 37 against 50 ms, a 32x1x28x28
    batch's 1.2-1.3 against 2.8-3.0 ms (fashion_cnn's own batches are
    channels-last to torch and do not come here).  (A NaN is where the two
    differ: oneDNN's maximum skips it, torch's keeps it; the loss is NaN
    either way.)"""

    @staticmethod
    def forward(ctx, x, weight, bias, strides, pool_size, pool_strides, training):
        output = torch.mkldnn_convolution(x.to_mkldnn(), weight, bias, [0, 0], strides, [1, 1], 1)
        # oneDNN keeps the maxima's positions (its workspace) only when it pools for training,
        # which torch asks for when the input requires a gradient and gradients are on.
        with torch.enable_grad():
            pooled = torch.mkldnn_max_pool2d(output.requires_grad_(training), pool_size, pool_strides)
        output.requires_grad_(False)
        if training:
            ctx.save_for_backward(x, weight)
            ctx.output, ctx.pooled, ctx.shapes = output, pooled.detach(), (strides, pool_size, pool_strides)
        return pooled.to_dense()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled):
        x, weight = ctx.saved_tensors
        if not hasattr(ctx, "output"):  # freed by the first backward pass, as autograd frees saved tensors
            raise RuntimeError("Trying to backward through a Conv2D and MaxPooling2D pair a second time: its "
                               "oneDNN buffers were freed by the first pass. Run the forward pass again.")
        strides, pool_size, pool_strides = ctx.shapes
        grad_output = torch.ops.aten.mkldnn_max_pool2d_backward(
            grad_pooled.contiguous().to_mkldnn(), ctx.pooled, ctx.output, pool_size, pool_strides,
            [0, 0], [1, 1], False)
        del ctx.output, ctx.pooled
        # torch's oneDNN convolution takes the blocked gradient as it is (no reorder either way);
        # the input's gradient then comes back a oneDNN tensor too.
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_output, x, weight, [len(weight)], strides, [0, 0], [1, 1], False, [0, 0], 1,
            list(ctx.needs_input_grad[:3]))
        grad_x = grad_x.to_dense() if grad_x is not None else None
        return grad_x, grad_weight, grad_bias, None, None, None, None


class BatchNormalization(Layer):
    """``keras.layers.BatchNormalization``: momentum 0.99, ε 1e-3, Keras' moving statistics.

    Differences from ``nn.BatchNorm1d`` that change results: torch's momentum
    is the weight of the *new* batch (Keras 0.99 is torch 0.01), its ε is
    1e-5, and it updates the running variance with the unbiased batch
    variance while normalising with the biased one; Keras uses the biased
    variance for both.  The statistics are buffers named as Keras names them
    and count as non-trainable parameters, as in Keras' summary.
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


# --------------------------------------------------------------------------- optimizers


class KerasOptimizer(torch.optim.Optimizer):
    """Shared plumbing of the Keras-rule optimizers: each writes only its update.

    torch's Adam would match Keras with its ε rescaled every step, but on the
    CPU it takes its per-tensor path and, under Lightning (which sets
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1``), asks NVML whether CUDA exists on every
    step; that cost 0.37 ms of a 2 ms step here.  So the updates are written
    out with torch's foreach kernels, exactly as Keras states them.

    ``step`` and ``zero_grad`` skip torch's profiler annotations while no
    profiler is recording: ``torch.optim.Optimizer`` opens a
    ``record_function`` around every ``step`` and ``zero_grad`` whether or not
    anyone records, two dispatched ops each: 60-130 µs of a 600-750 µs
    fashion_mlp step here (py-spy: 11 % of the torch backend's training time).  With a
    profiler on, or any step hook registered (torch's global ones or this
    optimizer's), ``step`` goes through torch's own wrapper as before.
    """

    def step(self, closure=None):
        if torch.autograd.profiler._is_profiler_enabled or self._optimizer_step_pre_hooks \
                or self._optimizer_step_post_hooks or torch_optimizer._global_optimizer_pre_hooks \
                or torch_optimizer._global_optimizer_post_hooks:
            return self._hooked_step(closure)
        return self._keras_step(closure)

    step.hooked = True  # torch's Optimizer.__init__ wraps a step only if this is unset

    @torch.no_grad()
    def _keras_step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                group["iterations"] = group.get("iterations", 0) + 1
                self.update(group, params, [p.grad for p in params])
        return loss

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_keras_step)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if torch.autograd.profiler._is_profiler_enabled or not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def slots(self, params, name):
        """One state tensor per parameter (Keras' optimizer "variables"), zeros at first."""
        for p in params:
            if name not in self.state[p]:
                self.state[p][name] = torch.zeros_like(p)
        return [self.state[p][name] for p in params]


def keras_step_size(lr, beta_1, beta_2, t, dtype):
    """Adam's ``lr·√(1−β2ᵗ)/(1−β1ᵗ)`` computed as Keras computes it: in the weights' dtype, with
    β1 and β2 rounded to float32 on the way (``ops.cast(0.999, dtype)`` goes through a float32
    tensor), so even in float64 β2 is 0.99900001287.  With exact betas the first steps were
    6.7e-6 (relative) longer than Keras', in float32 and float64 alike."""
    real = np.float64 if dtype == torch.float64 else np.float32
    beta_1, beta_2, t = real(np.float32(beta_1)), real(np.float32(beta_2)), real(t)
    return real(lr) * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)


def _dense_on_cpu(weight) -> bool:
    return weight.device.type == "cpu" and (
        weight.is_contiguous() or weight.is_contiguous(memory_format=torch.channels_last))


def laid_out_as(weight, gradient):
    """``gradient`` in ``weight``'s memory layout on the CPU (a copy where it is not): a convolution
    computed channels-last (fashion_cnn's, see README "Layout") hands back its kernel's gradient
    channels-last for a contiguous kernel.  The update is elementwise, so only the fused kernel,
    which walks both as flat arrays, cares; 576 floats copied cost far less than the foreach ops
    the whole model would otherwise take (a fashion_cnn optimizer step: 107 against 250 µs)."""
    if gradient.stride() == weight.stride() or not _dense_on_cpu(weight):
        return gradient
    return torch.empty_like(weight).copy_(gradient)


def fused_kernel_fits(weight, *alike) -> bool:
    """Whether torch's fused CPU Adam kernel can update ``weight``: it walks the weight, its gradient
    and its state as flat arrays, so all must be on the CPU, dense, and laid out alike (a gradient
    assigned by hand, or state loaded from another layout, may not be)."""
    return _dense_on_cpu(weight) and all(t.stride() == weight.stride() for t in alike)


def steps_on_device(weight) -> bool:
    """Whether Adam's step size is computed on the weight's device (GPUs: ``_update_on_device``)."""
    return weight.device.type == "cuda"


class KerasAdam(KerasOptimizer):
    """Adam as Keras 3 applies it: ``lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``, ε 1e-7.

    (torch's Adam divides by ``√v/√(1−β2ᵗ) + ε``: the same update with a
    different ε, which matters early in training and for tiny gradients.)

    On the CPU the update goes through torch's fused Adam kernel
    (``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` runs),
    given the learning rate and ε that make its update Keras': with
    ``c1 = 1−β1ᵗ`` and ``c2 = 1−β2ᵗ`` as the kernel computes them,
    ``lr' = α·c1/√c2`` and ``ε' = ε/√c2`` turn ``(lr'/c1)·m / (√v/√c2 + ε')``
    into ``α·m / (√v + ε)``.  One pass over the weights instead of six foreach
    ops, each a loop of per-tensor kernels on the CPU: a whole fashion_mlp
    ``step`` takes 68-81 µs here, against 161-174 µs with the foreach ops and
    101-106 µs through the public ``torch.optim.adam.adam(fused=True)``, whose
    grouping of tensors and foreach increment of per-weight step counters cost
    the difference (the kernel only reads the step, so one tensor holding ``t``
    serves every weight).  The same formula, another rounding; in float64 both
    ways are Keras' rule written out to 1e-15 (tests/test_parity.py, which also
    fails if the kernel's signature changes).  A gradient laid out unlike its
    weight is copied into the weight's layout (``laid_out_as``); state laid
    out unlike its weight takes the foreach update below.  GPUs: ``_update_on_device``.
    """

    def __init__(self, params, lr=1e-3, beta_1=0.9, beta_2=0.999, eps=1e-7):
        super().__init__(params, {"lr": lr, "beta_1": beta_1, "beta_2": beta_2, "eps": eps})

    def update(self, group, params, grads):
        beta_1, beta_2, t = group["beta_1"], group["beta_2"], group["iterations"]
        momentums, velocities = self.slots(params, "momentum"), self.slots(params, "velocity")
        if steps_on_device(params[0]):
            self._update_on_device(group, params, grads, momentums, velocities)
            return
        alpha = float(keras_step_size(group["lr"], beta_1, beta_2, t, params[0].dtype))
        grads = [laid_out_as(p, g) for p, g in zip(params, grads)]
        if all(fused_kernel_fits(p, g, m, v) for p, g, m, v in zip(params, grads, momentums, velocities)):
            # The kernel's (1 − β) are Keras' (Python floats); α carries Keras' float32-rounded betas.
            c1, c2 = 1 - beta_1 ** t, 1 - beta_2 ** t
            steps = [torch.tensor(float(t))] * len(params)  # the kernel reads t (from each)
            torch._fused_adam_(
                params, grads, momentums, velocities, [], steps, amsgrad=False, maximize=False,
                beta1=beta_1, beta2=beta_2, lr=alpha * c1 / math.sqrt(c2), weight_decay=0.0,
                eps=group["eps"] / math.sqrt(c2))
            return
        torch._foreach_lerp_(momentums, grads, 1 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - beta_2)
        denominators = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_addcdiv_(params, momentums, denominators, value=-alpha)

    def _update_on_device(self, group, params, grads, momentums, velocities):
        """On a GPU the step size is computed where the weights are, as Keras computes it (float32
        ops on the iteration count: ``lr·√(1−β2ᵗ)/(1−β1ᵗ)``), and the update is Keras' own
        ``m·α / (√v + ε)``: no value that changes from step to step comes from the host, so a
        CUDA graph can replay the step (``StepGraph``).  The count lives beside ``iterations`` in
        the group (and in checkpoints with it); one on another device is made again from it.

        The update runs on one buffer for all of the group's m and one for v (each weight's slot
        is a view into it, ``_flat_slots``), the gradients joined into one, as elementwise
        kernels: torch's foreach kernels over fashion_mlp's four tensors took 8-18 µs each on an
        H100 (they give each block 65,536 values to walk), and the epoch went from 0.33 to 0.22 s."""
        weight = params[0]
        t = group.get("iterations_on_device")
        if not isinstance(t, torch.Tensor) or t.device != weight.device:
            t = group["iterations_on_device"] = torch.tensor(float(group["iterations"] - 1), dtype=weight.dtype,
                                                             device=weight.device)
        t.add_(1)
        beta_1, beta_2 = float(np.float32(group["beta_1"])), float(np.float32(group["beta_2"]))
        alpha = (1 - torch.pow(beta_2, t)).sqrt_().mul_(group["lr"]).div_(1 - torch.pow(beta_1, t))
        m, v = self._flat_slots(group, params, momentums, velocities)
        g = torch.cat([grad.reshape(-1) for grad in grads])
        m.lerp_(g, 1 - group["beta_1"])
        v.mul_(group["beta_2"]).addcmul_(g, g, value=1 - group["beta_2"])
        updates = m.mul(alpha).div_(v.sqrt().add_(group["eps"]))
        torch._foreach_sub_(params, [u.view(p.shape) for u, p in zip(updates.split([p.numel() for p in params]),
                                                                     params)])

    def _flat_slots(self, group, params, momentums, velocities):
        """m and v of ``params`` as one buffer each, every weight's slot a view into it (what
        checkpoints save); made again from the slots' values when they are not such views (the
        first step, a loaded checkpoint, another set of weights with gradients)."""
        joined_slots = self.__dict__.setdefault("joined_slots", {})  # per group
        flat = joined_slots.get(id(group))
        if flat is not None and len(flat[0]) == len(params) and all(
                a is b and m._base is flat[1] and v._base is flat[2]
                for a, b, m, v in zip(flat[0], params, momentums, velocities)):
            return flat[1], flat[2]
        joined = [torch.cat([s.reshape(-1) for s in slots]) for slots in (momentums, velocities)]
        for name, buffer in zip(("momentum", "velocity"), joined):
            for p, view in zip(params, buffer.split([p.numel() for p in params])):
                self.state[p][name] = view.view(p.shape)
        joined_slots[id(group)] = (list(params), *joined)
        return joined


class KerasRMSprop(KerasOptimizer):
    """RMSprop as Keras applies it: ``v = ρv + (1−ρ)g²``, ``p −= lr·g / √(v + ε)``.

    Keras puts ε inside the square root; torch's RMSprop adds it outside
    (``√v + ε``), which no setting of torch's class can express.
    """

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    def update(self, group, params, grads):
        velocities = self.slots(params, "velocity")
        torch._foreach_mul_(velocities, group["rho"])
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - group["rho"])
        denominators = torch._foreach_add(velocities, group["eps"])
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])


class RMSprop:
    """``keras.optimizers.RMSprop(learning_rate=...)``: the settings now, the optimizer once
    the model's parameters exist (in ``configure_optimizers``)."""

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7):
        self.settings = {"lr": learning_rate, "rho": rho, "eps": epsilon}

    def __call__(self, parameters):
        return KerasRMSprop(parameters, **self.settings)


def make_optimizer(name: str, parameters):
    """Keras' optimizer strings with Keras' default hyperparameters."""
    if name == "adam":
        return KerasAdam(parameters)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=0.01)
    if name == "rmsprop":
        return KerasRMSprop(parameters)
    raise validation.DualBackendError(
        f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(validation.OPTIMIZERS)}."
    )


# --------------------------------------------------------------------------- losses and metrics


EPSILON = 1e-7  # keras.config.epsilon(): how far from 0 and 1 Keras clips probabilities in a loss


def keras_loss(name: str, logits, y, activation: str | None, sample_weight=None):
    """The loss Keras computes (TensorFlow backend, ``from_logits=False``) for a head with ``activation``.

    ``logits`` is what ``Sequential.logits`` returns: the input of a softmax or
    sigmoid head, else the head's output.  Keras' cross-entropies read the
    logits a softmax or sigmoid left on its output (``_keras_logits``), whichever
    of the two it was; behind any other head they take the output as
    probabilities, clipped to [ε, 1 − ε].  Mean squared error sees the output.

    With ``sample_weight`` (one weight per sample) the loss is Keras'
    ``sum(weight · sample's loss) / batch size``; without, the plain mean.
    """
    per_sample = _per_sample_loss(name, logits, y, activation)
    if sample_weight is None:
        return per_sample.mean()
    return (per_sample * sample_weight).sum() / len(per_sample)


def _per_sample_loss(name: str, logits, y, activation: str | None):
    """Each sample's loss by Keras' rules (``keras_loss``), the mean over its entries for MSE and binary."""
    from_logits = activation in PROBABILITY_HEADS
    outputs = ACTIVATIONS[activation](logits) if from_logits else logits
    if name == "mean_squared_error":
        return (outputs - y.reshape(outputs.shape)).square().reshape(len(y), -1).mean(-1)
    if name == "sparse_categorical_crossentropy":
        scores = logits if from_logits else outputs.clamp(EPSILON, 1 - EPSILON).log()
        return F.cross_entropy(scores, y.reshape(-1), reduction="none")
    if name == "categorical_crossentropy":
        if from_logits:
            return -(y * F.log_softmax(logits, dim=-1)).sum(-1)
        probabilities = (outputs / outputs.sum(-1, keepdim=True)).clamp(EPSILON, 1 - EPSILON)
        return -(y * probabilities.log()).sum(-1)
    y = y.reshape(logits.shape)
    if from_logits:
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)
    probabilities = outputs.clamp(EPSILON, 1 - EPSILON)
    return -(y * probabilities.log() + (1 - y) * (1 - probabilities).log()).mean(-1)


def correct_predictions(logits, y, activation: str | None):
    """How many samples Keras' ``'accuracy'`` counts as right: each sample's share of matching
    entries, summed (one per right sample for the categorical accuracies).

    Which accuracy is Keras 3's choice from the shapes of labels and outputs
    (``validation.accuracy_kind``); the binary one compares the output, as a
    probability, with 0.5.  A softmax keeps the order of its logits, so the
    argmax is taken from them; a sigmoid can round two logits to the same 1.0,
    so its argmax is taken from its output, as Keras does.
    """
    kind = validation.accuracy_kind(tuple(y.shape), tuple(logits.shape))
    outputs = logits if activation not in PROBABILITY_HEADS else ACTIVATIONS[activation](logits)
    if kind == "binary":
        matches = (outputs > 0.5).to(y.dtype) == y.reshape(outputs.shape)
        return matches.to(outputs.dtype).mean(-1).sum()
    scores = logits if activation == "softmax" else outputs
    labels = y.reshape(-1) if kind == "sparse_categorical" else y.argmax(-1)
    return (scores.argmax(-1) == labels).sum()


def _writable(value) -> bool:
    """A tensor that may be changed in place here: not one made under ``torch.inference_mode``
    (Lightning evaluates in it) unless that mode is on now."""
    return isinstance(value, torch.Tensor) and (not value.is_inference() or torch.is_inference_mode_enabled())


class EpochMeans:
    """Keras' epoch logs, accumulated on the device.

    Loss is the batch-size-weighted mean, accuracy correct/seen.  The sums stay
    tensors so that no step waits for the host (torchmetrics' MeanMetric checks
    for NaN with a host-side ``if`` on every update, which would).
    """

    def __init__(self, metrics: list[str]):
        self.metrics = metrics
        self.loss_sum = self.correct = 0.0
        self.seen = 0

    def reset(self):
        """Zeros, in place once the sums are tensors: a training step captured as a CUDA graph
        (``StepGraph``) adds into these very tensors at every replay."""
        for name in ("loss_sum", "correct"):
            value = getattr(self, name)
            setattr(self, name, value.zero_() if _writable(value) else 0.0)
        self.seen = 0

    def update(self, loss, correct, batch_size: int):
        self.loss_sum = self._add(self.loss_sum, loss.detach() * batch_size)
        if self.metrics:
            self.correct = self._add(self.correct, correct)
        self.seen += batch_size

    @staticmethod
    def _add(total, value):
        """``total + value`` (a float sum, as ``0.0 + value``), into ``total`` where it is a tensor."""
        if _writable(total) and total.device == value.device:
            return total.add_(value)
        return total + value

    def compute(self, prefix: str = "", across_processes: bool = False) -> dict[str, float]:
        """The means so far; ``across_processes``: summed over the processes of a DDP fit first
        (every process must call it then)."""
        if not self.seen:
            return {}
        sums = [self.loss_sum, self.correct, self.seen]
        if across_processes and torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.loss_sum.device) for v in sums])
            torch.distributed.all_reduce(sums)
        loss_sum, correct, seen = (float(v) for v in sums)
        logs = {f"{prefix}loss": loss_sum / seen}
        for metric in self.metrics:
            logs[f"{prefix}{metric}"] = correct / seen
        return logs


# --------------------------------------------------------------------------- the float environment


@contextlib.contextmanager
def denormals_flushed():
    """Compute with denormal floats flushed to zero on the CPU, as TensorFlow does; then restore.

    TensorFlow sets the processor's flush-to-zero and denormals-are-zero
    flags on the threads that run its kernels, so under Keras a float32
    below 1.2e-38 is 0: ``tf.constant(1e-38) * 0.5`` gives 0.0.  torch keeps
    denormals.  The flags belong to each thread, and ``torch.set_flush_denormal``
    sets the calling thread's only, so torch's intra-op threads get them too
    (``_set_flush_denormal_everywhere``).  CUDA kernels are not affected.
    """
    before = flushing_denormals()
    _set_flush_denormal_everywhere(True)
    try:
        yield
    finally:
        _set_flush_denormal_everywhere(before)


def flushing_denormals() -> bool:
    """Whether torch's CPU kernels flush denormals to zero now, on every intra-op thread.

    torch has no getter: a multiplication that gives denormals, split over the
    threads, is asked, and its bits are counted as integers (a denormals-are-zero
    thread would count denormals as zeros)."""
    halves = torch.full((1 << 20,), 1e-38, dtype=torch.float32).mul_(0.5)
    return int(torch.count_nonzero(halves.view(torch.int32))) == 0


def _set_flush_denormal_everywhere(on: bool) -> None:
    """``torch.set_flush_denormal(on)`` for this thread and torch's OpenMP threads.

    A new thread starts with its creator's flags.  So after setting this
    thread's, torch's OpenMP thread pool is let go (``omp_pause_resource_all``,
    hard: libgomp ends the pool's threads) and the next parallel region starts
    new ones, which copy this thread's flags.  Without libgomp (another
    parallel backend) only this thread is set."""
    torch.set_flush_denormal(on)
    gomp = _torch_libgomp()
    if gomp is not None:
        gomp.omp_pause_resource_all(ctypes.c_int(2))  # omp_pause_hard


@functools.cache
def _torch_libgomp():
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    for library in (Path(torch.__file__).parent / "lib").glob("libgomp*.so*"):
        return ctypes.CDLL(str(library))
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


# --------------------------------------------------------------------------- memory

# glibc's mallopt parameters (malloc.h) and the values glibc settles on by itself: its mmap
# threshold climbs to 32 MiB (the most it accepts on 64-bit systems), the trim threshold to twice that.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20
GLIBC_TRIM_THRESHOLD_SETTLED = 2 * GLIBC_MMAP_THRESHOLD_MAX
GLIBC_MMAP_MAX_DEFAULT = 65536
_kept_depth = 0


@contextlib.contextmanager
def freed_memory_kept():
    """Keep the memory freed between training steps for the next step; give it back at the end.

    A CPU step allocates its activations and gradients afresh (torch has no
    caching allocator on the CPU) and frees them.  With glibc's defaults a
    freed block of more than 32 MiB, or a freed top of the heap beyond the trim
    threshold, goes back to the system, and the next step faults every page of
    it in again, zero-filled by the kernel: ~3,000 page faults per fashion_cnn
    step (14.6-19.4 against 10.0-12.7 ms/step here) and ~2.5 million per
    horse_or_human step of 128 images (7.2-8.6 s a step with only the
    thresholds raised; 2.3-2.7 s with mmap off too and huge pages on).  The
    same steps, the same results: the faults are kernel time.

    Inside this block every block comes from the heap (no mmap) and nothing
    is trimmed, so a step reuses the last step's pages.  (Trimming is off, not
    just raised: with a 1 GiB threshold horse_or_human's step freed more than
    that at the top of the heap, and in 3 processes of 6 glibc gave it back
    every step: 310,000-925,000 faults and 2.9-5.2 s a step, against none and
    1.9-2.4 s with trimming off, in 9 processes of 9.)  This is PyTorch's own
    advice for CPU training (its performance-tuning guide: a caching malloc
    such as jemalloc or tcmalloc) done with glibc's ``mallopt`` instead of a
    preloaded library.  On the way out mmap is allowed again, the thresholds
    are left where glibc's dynamic ones settle, and the free memory is handed
    back (``malloc_trim``).  Other C libraries, other systems: nothing
    changes.  Re-entrant.

    The price is memory: the heap keeps what it served, fragments included
    (horse_or_human's peak resident memory went from 3.4 to 7.5 GB).  With
    ``DUAL_BACKEND_FREED_MEMORY=return`` glibc's own behaviour is kept.
    """
    global _kept_depth
    libc = _glibc()
    if libc is None or not _keeping_freed_memory():
        yield
        return
    if _kept_depth == 0:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, -1)  # glibc: -1 disables trimming
    _kept_depth += 1
    try:
        yield
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX_DEFAULT)
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD_SETTLED)
            libc.malloc_trim(0)


FREED_MEMORY_VARIABLE = "DUAL_BACKEND_FREED_MEMORY"


def _keeping_freed_memory() -> bool:
    value = os.environ.get(FREED_MEMORY_VARIABLE, "keep")
    if value not in ("keep", "return"):
        raise validation.DualBackendError(
            f"{FREED_MEMORY_VARIABLE}={value!r}: use 'keep' (the default: memory freed between steps is reused) "
            "or 'return' (glibc gives it back to the system at once: slower, less resident memory).")
    return value == "keep"


@functools.cache
def _glibc():
    """The process's C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- the model


class Sequential(L.LightningModule):
    """``keras.Sequential`` as a LightningModule: Keras' layers and compile, Lightning's loop."""

    def __init__(self, layers, name: str = "sequential"):
        super().__init__()
        first, *rest = layers
        if not isinstance(first, Input):
            raise validation.DualBackendError("A Sequential model starts with Input(shape=...).")
        shape, self.output_shapes = first.shape, []
        for previous, layer in zip([None, *rest], rest):
            if isinstance(layer, Dense) and isinstance(previous, Flatten) and len(self.output_shapes) > 1 \
                    and len(self.output_shapes[-2]) == 4:
                layer.flattened_from = self.output_shapes[-2][1:]
            shape = layer.build(shape)
            self.output_shapes.append((None, *shape))
        self.body = nn.ModuleList(rest)
        # Images go in as NCHW; Keras' (height, width, channels) shapes stay the public ones.
        self.channels_first = any(isinstance(layer, Conv2D) for layer in rest)
        self.memory_format = torch.contiguous_format  # see use_channels_last
        self.step_logits = self.logits  # see compile_steps
        self.layer_names = _keras_names(rest)
        self.model_name = name
        self.input_shape, self.output_shape = (None, *first.shape), (None, *shape)
        self.keras_optimizer = self.keras_loss = None
        self.keras_metrics: list[str] = []
        self.automatic_optimization = False  # see training_step
        self.step_graph: StepGraph | None = None  # see training_step

    def get_weights(self) -> list:
        """Keras' ``model.get_weights()``: every layer's arrays, in Keras' layout and order."""
        return [array for layer in self.body for array in layer.get_weights()]

    def set_weights(self, arrays) -> None:
        arrays = list(arrays)
        for layer in self.body:
            count = len(layer.keras_tensors())
            layer.set_weights(arrays[:count])
            arrays = arrays[count:]
        if arrays:
            raise validation.DualBackendError(f"{len(arrays)} weight arrays left over: not the same model.")

    # Keras' compile, deliberately shadowing nn.Module.compile (torch.compile(model) still works).
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        self.keras_optimizer = optimizer if not isinstance(optimizer, str) else validation.optimizer_name(optimizer)
        self.keras_loss = validation.loss_name(loss)
        self.keras_metrics = validation.metric_names(metrics)
        self.train_means = EpochMeans(self.keras_metrics)
        self.val_means = EpochMeans(self.keras_metrics)

    def use_channels_last(self, enabled: bool = True) -> None:
        """Compute convolutions in channels-last memory (tensors still NCHW-shaped): oneDNN's fast
        layout on CPUs, 1.7x faster per horse_or_human step here than contiguous NCHW.  Its
        kernels sum in another order (outputs differ by ~1e-7), so it is a flag, off by default."""
        if self.channels_first:
            self.memory_format = torch.channels_last if enabled else torch.contiguous_format
            self.to(memory_format=self.memory_format)

    def compile_steps(self) -> None:
        """Train and evaluate through ``torch.compile`` (fused kernels; another rounding): a flag."""
        self.step_logits = torch.compile(self.logits)

    def in_memory_format(self, x):
        return x.contiguous(memory_format=self.memory_format) if self.channels_first and x.dim() == 4 else x

    def forward(self, x):
        return self.body[-1](self.hidden(x))

    def layer_outputs(self, x) -> list:
        """Every layer's output, images back in Keras' NHWC layout (for the activation figures)."""
        outputs, x = [], self.in_memory_format(x)
        for layer in self.body:
            x = layer(x)
            outputs.append(x.permute(0, 2, 3, 1) if x.dim() == 4 else x)
        return outputs

    @property
    def head_activation(self) -> str | None:
        """The last layer's activation: it decides how Keras computes the loss and the accuracy."""
        return getattr(self.body[-1], "activation", None)

    def logits(self, x):
        """The output before a softmax or sigmoid head: what Keras computes the loss from."""
        head = self.body[-1]
        if self.head_activation in PROBABILITY_HEADS:
            return head.logits(self.hidden(x))
        return head(self.hidden(x))

    def hidden(self, x):
        """Every layer but the last, with one rearrangement: a ``Conv2D(..., activation='relu')``
        followed by ``MaxPooling2D`` pools first and applies the ReLU after.

        The maximum of ReLUs is the ReLU of the maximum, exactly; the window's
        first maximum is the same element whenever it is positive, and the
        gradient is zero both ways when it is not, so outputs and gradients are
        bit-for-bit those of the layer-by-layer order (tests/test_parity.py).
        The ReLU and its backward pass then touch a quarter of the values:
        fashion_cnn's step is 1.23x faster (measured in one process, the two
        orders alternating).  ``layer_outputs`` still goes layer by layer.
        """
        layers, x = list(self.body)[:-1], self.in_memory_format(x)  # (slicing a ModuleList builds a new one)
        index = 0
        while index < len(layers):
            layer = layers[index]
            pool = layers[index + 1] if index + 1 < len(layers) else None
            if isinstance(layer, Conv2D) and layer.activation == "relu" and isinstance(pool, MaxPooling2D):
                x = F.relu(conv_then_pool(layer.conv, pool, x))
                index += 2
            else:
                x = layer(x)
                index += 1
        return x

    def _step(self, batch, means: EpochMeans):
        x, y, *sample_weight = batch  # (x, y) or (x, y, sample_weight)
        logits = self.step_logits(x)
        loss = keras_loss(self.keras_loss, logits, y, self.head_activation, *sample_weight)
        correct = correct_predictions(logits, y, self.head_activation) if self.keras_metrics else None
        means.update(loss, correct, len(x))
        return loss

    def training_step(self, batch, batch_idx):
        """One Keras step per batch: a batch, or each batch of a chunk (``TensorBatches``).

        Optimization is manual (``automatic_optimization = False``) so that one
        Lightning batch can carry several steps.  A single batch takes Lightning's
        own zero_grad / ``manual_backward`` / ``step`` (what DDP and callbacks need).
        A chunk only comes on one device without loss scaling, where
        ``manual_backward`` and ``LightningOptimizer.step`` add nothing but hooks
        this project does not use (``on_before_backward``, ``on_after_backward``,
        ``on_before_optimizer_step``) at ~10 % of a Dense step: its steps call
        ``loss.backward()`` and the optimizer's own ``step`` directly, between the
        two calls with which Lightning's wrapper counts a step (``global_step``,
        which checkpoints go by) and times it for Lightning's profiler.  On a GPU
        a chunk's steps are replays of one CUDA graph where ``StepGraph.fits``.
        """
        chunk = batch if hasattr(batch, "rows") else None  # a StepChunk
        optimizer = self.optimizers()
        if chunk is None:
            loss = self._step(batch, self.train_means)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return
        self.chunk_losses = []  # on the device; read only if the chunk's loss turns out NaN (TerminateOnNaN)
        if self.step_graph is None and StepGraph.fits(self, optimizer.optimizer):
            self.step_graph = StepGraph(self, optimizer.optimizer)
        if self.step_graph is not None:
            for rows in chunk.rows:
                optimizer._on_before_step()
                loss = self.step_graph(chunk.tensors, rows)
                optimizer._on_after_step()
                self.chunk_losses.append(loss.clone())  # the graph's loss is overwritten at the next step
            return
        for step in chunk.batches():
            loss = self._step(step, self.train_means)
            optimizer.zero_grad()
            loss.backward()
            optimizer._on_before_step()
            optimizer.optimizer.step()
            optimizer._on_after_step()
            self.chunk_losses.append(loss.detach())

    def train_step_eagerly(self, batch, optimizer):
        """One training step, op by op: forward, loss and epoch sums, backward, update."""
        loss = self._step(batch, self.train_means)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()  # holding the autograd graph past the step would keep its nodes alive

    def on_train_start(self):
        self.step_graph = None  # a graph per fit: its buffers are this fit's optimizer state

    def on_train_end(self):
        self.step_graph = None  # frees the graph's memory pool

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_means)

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def on_train_epoch_start(self):
        self.train_means.reset()

    def on_validation_epoch_start(self):
        self.val_means.reset()

    def on_validation_epoch_end(self):
        # Logged here, before Lightning's EarlyStopping and ModelCheckpoint look at val_loss.
        if self.trainer.training or self.trainer.state.fn == "fit":
            self.log_dict(self.val_means.compute("val_"))

    def configure_optimizers(self):
        if isinstance(self.keras_optimizer, str):
            return make_optimizer(self.keras_optimizer, self.parameters())
        return self.keras_optimizer(self.parameters())


class StepGraph:
    """The training step on a GPU, captured once as a CUDA graph and replayed for every batch.

    A Dense step at batch 32 is some forty small kernels, each a few microseconds
    on an H100, and as many dispatches from Python, each tens of microseconds:
    the GPU waits on the host.  A graph replays the same kernels, in the same
    order, on the same memory, with one call: the same math, bit for bit, as the
    op-by-op step (tests/test_gpu.py).

    The step gathers its batch from the data tensors on the device by an index
    (``StepChunk``), so a replay needs one copy: the batch's rows into the
    graph's index buffer.  The first ``WARMUP`` steps run op by op on a side
    stream (torch's recipe: lazily made state, the optimizer's slots among it,
    exists before capture), the next is captured and replayed, and every later
    step of that batch size replays it.  A step of another size (a short last
    batch) runs op by op, the same ops.  What a replay skips is Python's
    bookkeeping, redone by hand: the optimizer's iteration count and the
    epoch's sample count.
    """

    WARMUP = 3

    def __init__(self, module: "Sequential", optimizer):
        self.module, self.optimizer = module, optimizer
        self.graph = self.sources = self.rows = self.loss = None
        self.warm_steps = 0
        self.side = torch.cuda.Stream()

    @staticmethod
    def fits(module: "Sequential", optimizer) -> bool:
        """A GPU; an optimizer whose update reads no host value that changes from step to step
        (this project's Keras optimizers, torch's SGD with a number for its learning rate);
        default numerics (no autocast, no ``torch.compile``); no random layer (a replay draws
        fresh numbers, but not the op-by-op step's); not turned off with
        ``DUAL_BACKEND_CUDA_GRAPHS=0``."""
        fixed_update = isinstance(optimizer, KerasOptimizer) or (
            type(optimizer) is torch.optim.SGD
            and not any(isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups))
        return (os.environ.get("DUAL_BACKEND_CUDA_GRAPHS", "1") != "0"
                and getattr(next(module.parameters(), None), "is_cuda", False) and fixed_update
                and module.step_logits == module.logits
                and not torch.is_autocast_enabled("cuda")
                and not any(isinstance(layer, AlphaDropout) for layer in module.body))

    def __call__(self, tensors: tuple, rows):
        """One training step on ``tuple(t[rows] for t in tensors)``; its loss (detached)."""
        if isinstance(rows, slice):  # unshuffled: the same rows as an index
            rows = torch.arange(rows.start, min(rows.stop, len(tensors[0])), device=tensors[0].device)
        if self.graph is not None and tensors is self.sources and rows.shape == self.rows.shape:
            self.rows.copy_(rows)
            self.graph.replay()
            self.module.train_means.seen += len(rows)
            for group in self.optimizer.param_groups:
                if "iterations" in group:
                    group["iterations"] += 1
            return self.loss
        if self.graph is None and self.warm_steps >= self.WARMUP:
            return self._capture(tensors, rows)
        if self.graph is None:
            self.warm_steps += 1
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            loss = self.module.train_step_eagerly(tuple(t[rows] for t in tensors), self.optimizer)
        torch.cuda.current_stream().wait_stream(self.side)
        return loss

    def _capture(self, tensors, rows):
        """Records this step (recording runs nothing on the GPU), then replays it once."""
        self.sources, self.rows = tensors, rows.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are made inside the graph's memory
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self.module.train_step_eagerly(tuple(t[self.rows] for t in tensors), self.optimizer)
        self.graph.replay()  # the bookkeeping of this step ran while recording
        return self.loss


def _keras_names(layers) -> list[str]:
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
