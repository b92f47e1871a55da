"""The ``convolution`` lesson (course note 003, section 3): filter and pool one image, on either backend.

The course scans the 512x512 grayscale 'ascent' image with a 3x3 filter in a
plain Python loop, then halves it with a 2x2 max-pooling loop, to show what a
convolution layer and a pooling layer do.  Both loops are kept here as the
reference.  Each backend does the same two steps with its own layers
(``keras_ref/convolution.py``, ``torch_impl/convolution.py``) and must give
the very same pixels.

Importing this module imports neither TensorFlow nor torch: the chosen
backend's file is imported by ``run``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from pathlib import Path

import numpy as np

import dual_backend
from dual_backend import data, figures
from dual_backend.errors import DualBackendError
from dual_backend.lessons import Recipe

# Named as the note names them.  The note's loop multiplies f[a][b] with
# i[x+b-1, y+a-1], that is, it applies each filter transposed: "horizontal"
# therefore brightens where the image gets brighter from left to right
# (vertical lines) and "vertical" where it gets brighter downwards.  The
# pixels are the loop's, whatever the names say.
FILTERS = {
    "horizontal": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "edge": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "vertical": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
}

# On a GPU, one 512x512 image costs more in launches and copies than in
# arithmetic, so "auto" means the CPU.
DEVICES = {"cpu": "cpu", "gpu": "gpu", "auto": "cpu"}


def filter_named(name: str) -> list[list[int]]:
    if name not in FILTERS:
        raise DualBackendError(f"Unknown filter {name!r} of lesson 'convolution'. "
                               f"Valid filters: {', '.join(FILTERS)} (e.g. --option filter=edge).")
    return FILTERS[name]


def checked_weight(weight) -> float | int:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise DualBackendError(f"The weight must be a number (1, or e.g. 0.1 for a filter whose values add up "
                               f"to 10), got {weight!r}.")
    return weight


# --------------------------------------------------------------------------
# The course's loops


def course_filter_image(image: np.ndarray, filter, weight) -> np.ndarray:
    """The note's convolution loop: every interior pixel from its 3x3 neighbourhood, the border kept."""
    # The pixels as Python ints: the note was written for NumPy 1, where
    # np.uint8 * -1 became a wider integer; NumPy 2 keeps np.uint8 and raises
    # OverflowError for -1 (and wraps 200 * 2 round to 144).  Python ints do
    # the exact arithmetic the note meant, and are faster to index.
    i = image.tolist()
    i_transformed = np.copy(image)
    size_x, size_y = image.shape
    for x in range(1, size_x - 1):
        for y in range(1, size_y - 1):
            convolution = 0.0
            convolution = convolution + (i[x - 1][y - 1] * filter[0][0])
            convolution = convolution + (i[x][y - 1] * filter[0][1])
            convolution = convolution + (i[x + 1][y - 1] * filter[0][2])
            convolution = convolution + (i[x - 1][y] * filter[1][0])
            convolution = convolution + (i[x][y] * filter[1][1])
            convolution = convolution + (i[x + 1][y] * filter[1][2])
            convolution = convolution + (i[x - 1][y + 1] * filter[2][0])
            convolution = convolution + (i[x][y + 1] * filter[2][1])
            convolution = convolution + (i[x + 1][y + 1] * filter[2][2])
            convolution = convolution * weight
            if convolution < 0:
                convolution = 0
            if convolution > 255:
                convolution = 255
            # Stored into a uint8 array: a fraction (weight 0.1) is cut off, 12.7 -> 12.
            i_transformed[x, y] = convolution
    return i_transformed


def course_max_pool(image: np.ndarray) -> np.ndarray:
    """The note's 2x2 max-pooling loop: each 2x2 block becomes its largest pixel, 512x512 -> 256x256."""
    size_x, size_y = image.shape
    new_image = np.zeros((size_x // 2, size_y // 2), dtype=np.uint8)
    for x in range(0, size_x, 2):
        for y in range(0, size_y, 2):
            pixels = [image[x, y], image[x + 1, y], image[x, y + 1], image[x + 1, y + 1]]
            new_image[x // 2, y // 2] = max(pixels)
    return new_image


# --------------------------------------------------------------------------
# A run on one backend


def compared(result: np.ndarray, expected: np.ndarray) -> tuple[bool, int | None]:
    """Whether ``result`` equals ``expected`` pixel for pixel, and the largest difference (None: other shape)."""
    if result.shape != expected.shape:
        return False, None
    # As int16: uint8 differences would wrap round (3 - 5 = 254).
    difference = np.abs(result.astype(np.int16) - expected.astype(np.int16))
    return bool(np.array_equal(result, expected)), int(difference.max())


def fingerprint(image: np.ndarray) -> str:
    """A SHA-256 of the pixels, so that two backends' metrics tell whether their images are equal."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def run(recipe: Recipe, backend: str, out: str | Path | None = None, options: dict | None = None,
        verbose: int = 1, device: str = "cpu") -> dict:
    """Filter and pool the 'ascent' image on ``backend``, check it against the note's loops, return the metrics.

    With ``out``, writes ``out/<backend>/``: ``filtered.npy``, ``pooled.npy``,
    ``metrics.json`` and ``convolution.png``.
    """
    chosen = recipe.model_options(options or {})
    filter = filter_named(chosen["filter"])
    weight = checked_weight(chosen["weight"])
    if backend not in dual_backend.BACKENDS:
        raise DualBackendError(f"Unknown backend {backend!r}. Valid backends: {', '.join(dual_backend.BACKENDS)}.")
    if device not in DEVICES:
        raise DualBackendError(f"Unknown device {device!r}. Valid devices: {', '.join(DEVICES)}.")
    dual_backend.backend_package(backend)  # its framework started as the backend starts it (process settings)
    program = importlib.import_module(f"{dual_backend.BACKENDS[backend]}.convolution")
    image = data.load_ascent()

    start = time.perf_counter()
    expected_filtered = course_filter_image(image, filter, weight)
    expected_pooled = course_max_pool(expected_filtered)
    loop_seconds = time.perf_counter() - start

    start = time.perf_counter()
    filtered = program.filter_image(image, filter, weight, device=DEVICES[device])
    pooled = program.max_pool(filtered, device=DEVICES[device])
    seconds = time.perf_counter() - start

    filtered_equal, filtered_difference = compared(filtered, expected_filtered)
    pooled_equal, pooled_difference = compared(pooled, expected_pooled)
    metrics = {
        "lesson": recipe.lesson.name, "variant": recipe.variant_name, "backend": backend,
        "device": DEVICES[device], "filter": chosen["filter"], "kernel": filter, "weight": weight,
        "shapes": {"original": list(image.shape), "filtered": list(filtered.shape), "pooled": list(pooled.shape)},
        "equal_to_loop": {"filtered": filtered_equal, "pooled": pooled_equal},
        "max_difference": {"filtered": filtered_difference, "pooled": pooled_difference},
        "sha256": {"filtered": fingerprint(filtered), "pooled": fingerprint(pooled)},
        "seconds": seconds, "loop_seconds": loop_seconds,
    }
    if out is not None:
        folder = Path(out) / backend
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "filtered.npy", filtered)
        np.save(folder / "pooled.npy", pooled)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        figures.convolution_figure(image, filtered, pooled, folder / "convolution.png",
                                   f"{backend}: filter {chosen['filter']} {filter}, weight {weight}")
        if verbose:
            print(f"{backend}: wrote filtered.npy, pooled.npy, metrics.json and convolution.png to {folder}")
    return metrics


# --------------------------------------------------------------------------
# Printing


def shape(metrics: dict, name: str) -> str:
    return "x".join(map(str, metrics["shapes"][name]))


def yes_no(flag: bool) -> str:
    return "yes" if flag else "NO"


def print_result(metrics: dict) -> None:
    """One line for a run on one backend."""
    equal, difference = metrics["equal_to_loop"], metrics["max_difference"]
    print(f"{metrics['backend']}: filter {metrics['filter']}, weight {metrics['weight']:g}: "
          f"filtered {shape(metrics, 'filtered')}, pooled {shape(metrics, 'pooled')}; equal to the note's loop: "
          f"filtered {yes_no(equal['filtered'])}, pooled {yes_no(equal['pooled'])} "
          f"(max difference {difference['filtered']}, {difference['pooled']}); {metrics['seconds']:.3f} s")


def print_side_by_side(results: list[dict]) -> None:
    """One row per backend, then whether the backends' images equal each other."""
    first = results[0]
    print(f"\n{first['lesson']} ({first['variant']}): filter {first['filter']} {first['kernel']}, "
          f"weight {first['weight']:g}, on the {shape(first, 'original')} ascent image")
    print(f"{'backend':<8}{'device':<8}{'filtered':>10}{'pooled':>9}{'equal to loop':>15}"
          f"{'max difference':>16}{'seconds':>9}")
    for result in results:
        equal, difference = result["equal_to_loop"], result["max_difference"]
        equal_text = f"{yes_no(equal['filtered'])} / {yes_no(equal['pooled'])}"
        difference_text = f"{difference['filtered']} / {difference['pooled']}"
        print(f"{result['backend']:<8}{result['device']:<8}{shape(result, 'filtered'):>10}"
              f"{shape(result, 'pooled'):>9}{equal_text:>15}{difference_text:>16}{result['seconds']:>9.3f}")
    if len(results) == 2:
        same = {name: results[0]["sha256"][name] == results[1]["sha256"][name] for name in ("filtered", "pooled")}
        print(f"{results[0]['backend']} and {results[1]['backend']} give the same pixels: "
              f"filtered {yes_no(same['filtered'])}, pooled {yes_no(same['pooled'])}")
