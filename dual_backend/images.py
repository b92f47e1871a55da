"""Image files → the arrays a model predicts on, the same for both backends.

The course's prediction cell does ``load_img(path, target_size=(300, 300))``,
``img_to_array`` and divides by 255.  Doing it once here, with Pillow, means
the keras and torch models see identical pixels when they are asked about
the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dual_backend.errors import DualBackendError


def load_images(paths, size: tuple[int, int]) -> np.ndarray:
    """RGB images resized to ``size`` (height, width) and scaled to [0, 1]: float32, (N, h, w, 3)."""
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path in map(Path, paths):
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
                if rgb.size != (size[1], size[0]):
                    # Keras' load_img resizes with nearest-neighbour unless told otherwise.
                    rgb = rgb.resize((size[1], size[0]), Image.NEAREST)
                arrays.append(np.asarray(rgb, dtype=np.float32) / 255.0)
        except FileNotFoundError:
            raise DualBackendError(f"No such image file: {path}.") from None
        except (UnidentifiedImageError, OSError) as error:
            raise DualBackendError(f"{path} is not an image Pillow can read ({error}).") from None
    return np.stack(arrays)
