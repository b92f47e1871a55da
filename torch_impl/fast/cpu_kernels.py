"""CPU kernel substitutes: the same outputs and gradients as torch's own ops, bit for bit, faster.

Each is chosen by one predicate and checked against the plain op by
tests/front_end/test_parity.py (outputs and gradients, ties included).  The reasons are
in each docstring; the timings in docs/speed.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format  # torch's rule: the layout a tensor's strides mean


def contiguous_on_cpu(x) -> bool:
    """Where ``max_pool2d`` below replaces ``F.max_pool2d``: a contiguous (NCHW) tensor on the CPU,
    whose max-pool kernel in torch is much slower than its channels-last one."""
    return x.device.type == "cpu" and x.is_contiguous()


def max_pool2d(x, pool_size, strides):
    """``F.max_pool2d`` of a contiguous NCHW tensor on the CPU, pooled in channels-last."""
    if torch.is_grad_enabled():
        return _ContiguousMaxPool.apply(x, list(pool_size), list(strides))
    return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), pool_size, strides).contiguous()


class _ContiguousMaxPool(torch.autograd.Function):
    """``F.max_pool2d`` of a contiguous NCHW tensor on the CPU, with the very same outputs and gradients.

    torch's CPU max-pool kernel for contiguous NCHW is many times slower than
    its channels-last one (docs/speed.md).  A maximum is exact, so the
    forward pass pools a channels-last copy; the backward pass is torch's own
    NCHW max-pool backward with the indices found (the same: both kernels
    keep the first maximum of a window).  tests/front_end/test_parity.py checks outputs
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


def conv_then_pool(conv, pool, x):
    """``pool(conv.convolve(x))`` for a ``Conv2D`` layer ``conv`` (its activation left out); on the CPU
    through oneDNN's own tensors when torch itself would convolve with oneDNN (``_OneDNNConvPool``),
    the very same outputs and gradients."""
    if _onednn_conv_pool_fits(conv, x):
        training = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                   for t in (x, conv.kernel, conv.bias))
        return _OneDNNConvPool.apply(x, conv.kernel, conv.bias, list(conv.strides), list(pool.pool_size),
                                     list(pool.strides), training)
    return pool(conv.convolve(x))


def _onednn_conv_pool_fits(conv, x) -> bool:
    """Where torch's own convolution is oneDNN's on NCHW float32 on the CPU, no padding.

    torch picks the layout from the strides (``suggest_memory_format``): a
    one-channel batch permuted from Keras' NHWC arrays, as the front end
    feeds fashion_cnn, reads as channels-last, and torch convolves it (and the
    layers after it) in channels-last, with other sums; those go one by one,
    as do autocast, the ``--channels-last`` flag and ``torch.compile``.
    torch 2.14 also takes its native kernel (other sums again) for a single
    small image with a 3x3 window or less."""
    weight = conv.kernel
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous() and weight.is_contiguous()
            and suggest_memory_format(x) == suggest_memory_format(weight) == torch.contiguous_format
            and not conv.pads
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
    (tests/front_end/test_parity.py, every lesson's convolution, ties included), with
    the reorders saved (docs/speed.md).  fashion_cnn's own batches are
    channels-last to torch and do not come here.  (A NaN is where the two
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
