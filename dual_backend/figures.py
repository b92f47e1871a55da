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
from matplotlib.ticker import MaxNLocator


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


def lesson_figures(recipe, model, history, prepared, folder: Path, seed: int | None = None) -> list[Path]:
    """The figures of a trained lesson, written into ``folder``; returns their paths."""
    lesson = recipe.lesson.name
    written = []
    if lesson == "fashion_cnn":
        written.append(activations_figure(model, prepared.x_test, folder / "activations.png"))
    elif lesson == "horse_or_human":
        written.append(intermediate_representations_figure(model, folder / "intermediate_representations.png",
                                                           seed=seed))
    elif lesson == "keras_basics":
        written.append(image_grid_figure(recipe, folder / "training_images.png"))
        written.append(learning_curves_figure(history.history, folder / "learning_curves.png"))
    return written


# The course's choices for the fashion_cnn activation figure.
FIRST_IMAGE, SECOND_IMAGE, THIRD_IMAGE = 0, 7, 26
CONVOLUTION_NUMBER = 1


def activations_figure(model, x_test: np.ndarray, path: Path) -> Path:
    """fashion_cnn: feature map ``CONVOLUTION_NUMBER`` of the first four layers for three test
    images, a 3x4 grid in 'inferno'.  ``layer_outputs`` gives NHWC on both backends, so
    ``[..., CONVOLUTION_NUMBER]`` is the same channel on both."""
    images = x_test[[FIRST_IMAGE, SECOND_IMAGE, THIRD_IMAGE]]
    outputs = [output for output in model.layer_outputs(images)[:4] if output.ndim == 4]
    figure = Figure(figsize=(3 * len(outputs), 9), layout="constrained")
    figure.suptitle(f"feature map {CONVOLUTION_NUMBER} of the first layers, test images "
                    f"{FIRST_IMAGE}, {SECOND_IMAGE}, {THIRD_IMAGE}")
    grid = figure.subplots(3, len(outputs), squeeze=False)
    for row in range(3):
        for column, output in enumerate(outputs):
            grid[row, column].imshow(output[row, :, :, CONVOLUTION_NUMBER], cmap="inferno")
            grid[row, column].grid(False)
    figure.savefig(path)
    return path


def visible_feature_map(feature: np.ndarray) -> np.ndarray:
    """The course's post-processing: centre, scale by the std, ×64 + 128, clip to 0-255."""
    feature = feature - feature.mean()
    std = feature.std()
    if std > 0:  # a dead (all-equal) map stays flat grey instead of becoming NaN
        feature = feature / std
    return np.clip(feature * 64 + 128, 0, 255).astype("uint8")


def intermediate_representations_figure(model, path: Path, seed: int | None = None) -> Path:
    """horse_or_human: every conv and pool layer's feature maps for one random training image,
    each layer a row of tiles, 'viridis'."""
    import random

    from dual_backend import data
    from dual_backend.images import load_images

    train_dir, _ = data.horse_or_human_dirs()
    files = sorted(train_dir.glob("horses/*.png")) + sorted(train_dir.glob("humans/*.png"))
    chosen = random.Random(seed).choice(files)
    maps = [output for output in model.layer_outputs(load_images([chosen], model.input_shape[1:3]))
            if output.ndim == 4]
    figure = Figure(figsize=(20, 1.6 * len(maps)), layout="constrained")
    figure.suptitle(f"intermediate representations of {chosen.parent.name}/{chosen.name}")
    for axes, name, feature_map in zip(figure.subplots(len(maps), 1), model.layer_names(), maps):
        size, features = feature_map.shape[1], feature_map.shape[-1]
        tiles = [visible_feature_map(feature_map[0, :, :, i]) for i in range(features)]
        axes.imshow(np.concatenate(tiles, axis=1), aspect="auto", cmap="viridis")
        axes.set_title(f"{name}: {features} maps of {size}x{size}", fontsize=9)
        axes.grid(False)
        axes.set_axis_off()
    figure.savefig(path)
    return path


def image_grid_figure(recipe, path: Path, n_rows: int = 3, n_cols: int = 5) -> Path:
    """keras_basics: the first training images (after the held-out validation ones), titled by class."""
    from dual_backend import data

    (x_train, y_train), _ = data.load(recipe.dataset)
    held_out = recipe.lesson.validation_samples or 0
    x_train, y_train = x_train[held_out:], y_train[held_out:]
    figure = Figure(figsize=(n_cols * 1.4, n_rows * 1.6), layout="constrained")
    for index, axes in enumerate(figure.subplots(n_rows, n_cols).flat):
        axes.imshow(x_train[index], cmap="binary", interpolation="nearest")
        axes.set_axis_off()
        axes.set_title(data.FASHION_MNIST_CLASS_NAMES[y_train[index]])
    figure.savefig(path)
    return path


def epoch_axis(axes, first: int, last: int) -> None:
    """An x axis of epochs: ticks on whole epochs only, and half an epoch of room either side.

    Left to matplotlib, one epoch is one point on an axis from 0.945 to 1.055 with ticks at
    0.96, 0.98, ...: ``MaxNLocator(integer=True)`` gives up on whole numbers when fewer than
    two of them are in view."""
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlim(first - 0.5, last + 0.5)


def learning_curves_figure(history: dict, path: Path) -> Path:
    """The note's ``pd.DataFrame(history.history).plot()``: every series on one axis, y from 0 to 1, grid."""
    figure = Figure(figsize=(10, 5), layout="constrained")
    axes = figure.subplots()
    for key, values in history.items():
        # pandas draws lines only; a one-epoch history is a single point, which needs a marker to be seen
        axes.plot(range(len(values)), values, label=key, marker="o" if len(values) == 1 else None)
    axes.set_ylim(0, 1)  # as the note: a loss above 1 runs off the top
    epoch_axis(axes, 0, max(map(len, history.values()), default=1) - 1)  # the note's index: epoch 0 first
    axes.grid(True)
    axes.legend()
    axes.set_xlabel("epoch")
    figure.savefig(path)
    return path
