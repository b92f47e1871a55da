"""Image files → the arrays a model predicts on, the same for both backends.

The course's prediction cell does ``load_img(path, target_size=(300, 300))``,
``img_to_array`` and divides by 255.  Doing it once here, with Pillow, means
the keras and torch models see identical pixels when they are asked about
the same file.

``check_image_folder`` looks at a folder of class folders before either
backend's pipeline reads it, so that both read the same images or neither
does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dual_backend.errors import DataError, DataWarning, DualBackendError

# Read as images by both Keras' image_dataset_from_directory and torchvision's ImageFolder.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png")
# Read by only one of them (.gif by Keras; .ppm, .pgm, .tif, .tiff, .webp by torchvision).
ONE_BACKEND_SUFFIXES = (".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
LISTED = 10  # the most file names one message lists


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


def check_image_folder(directory, classes: int) -> dict[str, int]:
    """Check ``directory`` before a pipeline reads it: the number of images in each class folder.

    The two pipelines agree on what they read only up to a point, and fail late
    (mid-epoch, in a worker process) on a file they cannot decode, so this
    scan, the same for both backends, decides first:

    - ``directory`` must hold exactly ``classes`` class folders, each with at
      least one image.  A missing class, a third one or a hidden folder such as
      ``.ipynb_checkpoints`` (a class to torchvision, not to Keras) would change
      the labels: refused, naming the folders found.
    - A file neither pipeline reads (``notes.txt``, ``.DS_Store``, a file beside
      the class folders) is skipped by both: a ``DataWarning`` names and counts them.
    - An image Pillow cannot read (truncated, empty, not really an image) or one
      in a format only one pipeline reads (``.gif``, ``.webp``, ``.tif``, ...) is
      refused: a ``DataError`` lists them, to be converted or removed.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give the folder that holds one subfolder of images per class.")
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if len(found) != classes:
        raise DataError(
            f"{folder} must hold {classes} class folders, one per class (the labels are their names, in "
            f"alphabetical order), but holds {len(found)}: {', '.join(found) or 'none'}. "
            + ("Remove the hidden ones. " if any(name.startswith(".") for name in found) else "")
            + "Add the missing ones or move the extra ones out."
        )
    skipped = [path for path in folder.iterdir() if path.is_file()]
    unreadable, one_sided, counts = [], [], {}
    for name in found:
        counts[name] = 0
        for path in sorted(p for p in (folder / name).rglob("*") if p.is_file()):
            suffix = path.suffix.lower()
            if suffix in ONE_BACKEND_SUFFIXES:
                one_sided.append(path)
            elif suffix not in IMAGE_SUFFIXES:
                skipped.append(path)
            else:
                try:
                    with Image.open(path) as image:
                        image.verify()  # the file's structure and checksums, without decoding the pixels
                    counts[name] += 1
                except UnidentifiedImageError:
                    unreadable.append(f"{path.relative_to(folder)} (not an image Pillow can read)")
                except Exception as error:  # noqa: BLE001 - Pillow raises many kinds for a damaged file
                    unreadable.append(f"{path.relative_to(folder)} ({error})")
    if unreadable or one_sided:
        raise DataError(
            f"{folder} holds files that the pipelines would fail on, or that only one backend would read:"
            + _listed("unreadable images", unreadable)
            + _listed(f"images in formats only one backend reads (both read {', '.join(IMAGE_SUFFIXES)})",
                      [str(path.relative_to(folder)) for path in one_sided])
            + "\nConvert them to PNG or move them out of the folder."
        )
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise DataError(f"{folder}: the class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                        f"hold{'' if len(empty) > 1 else 's'} no images ({', '.join(IMAGE_SUFFIXES)}).")
    if skipped:
        warnings.warn(
            f"Skipping {len(skipped)} file{'s' if len(skipped) > 1 else ''} in {folder} that "
            f"{'are' if len(skipped) > 1 else 'is'} not {'images' if len(skipped) > 1 else 'an image'} "
            "(both pipelines skip them):" + _listed("", [str(path.relative_to(folder)) for path in skipped]),
            DataWarning, stacklevel=2)
    return counts


def _listed(what: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = "".join(f"\n  - {item}" for item in items[:LISTED])
    more = f"\n  ... and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return (f"\n{what}:" if what else "") + shown + more
