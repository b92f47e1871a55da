"""Convolution and pooling by hand (course note 003, section 3), ported to PyTorch.

The note scans the 512x512 grayscale 'ascent' image with a 3x3 filter, pixel
by pixel, then halves it with 2x2 max pooling, to show what the layers of a
convolutional network do before it trains one.  Here the same two steps are
the torch layers themselves: an ``nn.Conv2d`` whose one kernel is the note's
filter, fixed rather than learned, and an ``nn.MaxPool2d``.  Both must give
the note's loop pixel for pixel (``dual_backend/convolution.py`` keeps it).

The pixels are small integers and every filter value is a small integer, so
all sums are whole numbers far below 2**24: exact in float32, whatever order
the kernel adds them in.
"""

import numpy as np
import torch

DEVICE_NAMES = {"cpu": "cpu", "gpu": "cuda"}


def filter_image(image, filter, weight, device="cpu"):
    """The 512x512 uint8 ``image`` through the 3x3 ``filter``, times ``weight``, clipped to 0-255.

    Returns a uint8 image of the same size whose 1-pixel border keeps the
    original values, as the note's loop leaves it.
    """
    # The note's loop multiplies f[a][b] with i[x+b-1, y+a-1]; Conv2d computes
    # out[x, y] = sum of k[p, q] * i[x+p-1, y+q-1] (a cross-correlation, the
    # kernel is not flipped).  So the kernel is the filter transposed.
    kernel = np.asarray(filter, dtype=np.float32).T
    with torch.no_grad():
        # Build the layer: one 3x3 filter, no bias, its weights set, not learned.
        conv = torch.nn.Conv2d(1, 1, (3, 3), bias=False, device=DEVICE_NAMES[device]).requires_grad_(False)
        conv.weight.copy_(torch.from_numpy(kernel)[None, None])  # (out, in, height, width)
        # Convolve: a batch of one 1-channel image, channels first (NCHW).
        pixels = torch.from_numpy(image).to(DEVICE_NAMES[device], torch.float32)[None, None]
        sums = conv(pixels)[0, 0]  # 510x510: no padding leaves out the border, as the loop does
        # Weight and clip: the weight is applied in float64, as the note's Python
        # floats apply it, so that a weight like 0.1 rounds the same way.
        scaled = torch.clamp(sums.to(torch.float64) * weight, 0.0, 255.0)
        # The cast cuts a fraction off, as storing into the loop's uint8 array does.
        interior = scaled.to(torch.uint8).cpu().numpy()
    filtered = np.copy(image)
    filtered[1:-1, 1:-1] = interior
    return filtered


def max_pool(image, device="cpu"):
    """2x2 max pooling of the uint8 ``image``: each 2x2 block becomes its largest pixel, 512x512 -> 256x256."""
    with torch.no_grad():
        # Build the layer: 2x2 windows, stride 2.
        pool = torch.nn.MaxPool2d((2, 2))
        # Pool: a batch of one 1-channel image, channels first (NCHW).
        pixels = torch.from_numpy(image).to(DEVICE_NAMES[device], torch.float32)[None, None]
        pooled = pool(pixels)[0, 0]
        return pooled.to(torch.uint8).cpu().numpy()
