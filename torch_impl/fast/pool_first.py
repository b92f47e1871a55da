"""Pool before the ReLU: ``Conv2D(..., activation='relu')`` then ``MaxPooling2D``, computed as pool, then ReLU.

The maximum of ReLUs is the ReLU of the maximum, exactly; the window's first
maximum is the same element whenever it is positive, and the gradient is zero
both ways when it is not, so outputs and gradients are bit-for-bit those of
the layer-by-layer order (tests/front_end/test_parity.py).  The ReLU and its backward
pass then touch a quarter of the values (docs/speed.md).
``Sequential.layer_outputs`` still goes layer by layer.
"""

from __future__ import annotations

import torch.nn.functional as F

from torch_impl.fast.cpu_kernels import conv_then_pool
from torch_impl.keras.layers import Conv2D, MaxPooling2D


def hidden_layers(layers, x):
    """``x`` through ``layers`` in turn, each ReLU convolution followed by a pooling pooled first."""
    index = 0
    while index < len(layers):
        layer = layers[index]
        pool = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, Conv2D) and layer.activation == "relu" and isinstance(pool, MaxPooling2D) \
                and not layer.pads and not pool.pads:
            x = F.relu(conv_then_pool(layer, pool, x))
            index += 2
        else:
            x = layer(x)
            index += 1
    return x
