"""The figures the lessons draw, written to files.

Each function draws one figure on its own ``matplotlib.figure.Figure`` and
saves it.  Pyplot is never imported: it keeps a global list of open figures
and a global backend, and a library that writes files should touch neither
(a Figure saved to a ``.png`` is rendered by Agg without any backend being
selected).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def grayscale(axes, image: np.ndarray, title: str) -> None:
    """``image`` in gray, 0 black to 255 white, with the axes kept so its size shows (512 vs 256)."""
    axes.imshow(image, cmap="gray", vmin=0, vmax=255)
    axes.set_title(title)


def convolution_figure(original: np.ndarray, filtered: np.ndarray, pooled: np.ndarray, path: str | Path,
                       title: str) -> None:
    """The ``convolution`` lesson: the image, the filtered image and the pooled one, side by side."""
    figure = Figure(figsize=(15, 5.4), layout="constrained")
    figure.suptitle(title)
    panels = figure.subplots(1, 3)
    for axes, image, name in zip(panels, (original, filtered, pooled), ("original", "filtered", "max-pooled 2x2")):
        grayscale(axes, image, f"{name}, {image.shape[0]}x{image.shape[1]}")
    figure.savefig(path)
