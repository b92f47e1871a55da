"""``keras.preprocessing.image.ImageDataGenerator(rescale=...).flow_from_directory(...)``: the course's
image folders (course note 003, horse-or-human), as each backend's own pipeline.

A flow is a description until ``fit``, ``evaluate`` or ``predict`` gets it:
then it becomes a tf.data pipeline on keras (``keras_ref/user_model.py``) or a
torchvision ``ImageFolder`` in a ``DataLoader`` on torch
(``torch_impl/user_model.py``), reading the same pixels with the same labels
(class folders in alphabetical order).  ``fit(..., steps_per_epoch=N)`` reads
the flow on from epoch to epoch, as Keras 2 (the course's) reads a
``DirectoryIterator``; without it, an epoch is one pass.  (tf.keras 2.21,
Keras 3, instead ends every other epoch after the one batch left of a pass,
warning "Your input ran out of data": docs/differences.md.)  Only ``rescale`` is taken of the
generator's arguments (augmentation draws from each framework's own
generator); images are not resized (each framework resizes with its own
filter), so ``target_size`` must be the images' own size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from dual_backend.errors import DualBackendError
from dual_backend.images import IMAGE_SUFFIXES, check_image_folder

# ImageDataGenerator's arguments with Keras' defaults: all but rescale are taken at them only.
GENERATOR_DEFAULTS = {
    "featurewise_center": False, "samplewise_center": False, "featurewise_std_normalization": False,
    "samplewise_std_normalization": False, "zca_whitening": False, "zca_epsilon": 1e-6, "rotation_range": 0,
    "width_shift_range": 0.0, "height_shift_range": 0.0, "brightness_range": None, "shear_range": 0.0,
    "zoom_range": 0.0, "channel_shift_range": 0.0, "fill_mode": "nearest", "cval": 0.0, "horizontal_flip": False,
    "vertical_flip": False, "preprocessing_function": None, "data_format": None, "validation_split": 0.0,
    "interpolation_order": 1, "dtype": None,
}
CLASS_MODES = ("binary", "categorical", "sparse")


def _refused(call: str, argument: str, value, takes: str) -> DualBackendError:
    return DualBackendError(f"{call}({argument}={value!r}) is not supported by dual-backend on either backend. "
                            f"{call} takes: {takes}.")


class ImageDataGenerator:
    """``ImageDataGenerator(rescale=1/255)``: the pixels times ``rescale`` (None: as read, 0-255)."""

    def __init__(self, rescale: float | None = None, **kwargs):
        for argument, value in kwargs.items():
            if argument not in GENERATOR_DEFAULTS:
                raise DualBackendError(f"ImageDataGenerator has no argument {argument!r}.")
            if value != GENERATOR_DEFAULTS[argument] and not (argument == "dtype" and value == "float32"):
                raise _refused("ImageDataGenerator", argument, value, "rescale")
        if rescale is not None and (isinstance(rescale, bool) or not isinstance(rescale, (int, float))):
            raise DualBackendError(f"ImageDataGenerator(rescale=...) must be a number, got {rescale!r}.")
        self.rescale = None if rescale is None else float(rescale)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None, **kwargs):
        call = "flow_from_directory"
        takes = "directory, target_size (the images' own size), color_mode ('rgb'), class_mode " \
                f"({', '.join(CLASS_MODES)}), batch_size, shuffle, seed"
        for argument, value in {"classes": classes, **kwargs}.items():
            if value not in (None, "png", "", False) or argument not in ("classes", "save_to_dir", "save_prefix",
                                                                         "save_format", "follow_links", "subset",
                                                                         "interpolation", "keep_aspect_ratio"):
                if not (argument == "interpolation" and value == "nearest"):
                    raise _refused(call, argument, value, takes)
        if color_mode != "rgb":
            raise _refused(call, "color_mode", color_mode, takes)
        if class_mode not in CLASS_MODES:
            raise _refused(call, "class_mode", class_mode, takes)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DualBackendError(f"{call}(batch_size=...) must be a positive integer, got {batch_size!r}.")
        return DirectoryFlow(Path(directory), tuple(target_size), class_mode, batch_size, bool(shuffle), seed,
                             self.rescale)


class DirectoryFlow:
    """A folder of class folders to read in batches: what ``flow_from_directory`` describes."""

    def __init__(self, directory: Path, target_size: tuple, class_mode: str, batch_size: int, shuffle: bool,
                 seed, rescale):
        classes = sorted(entry.name for entry in directory.iterdir() if entry.is_dir()) if directory.is_dir() else []
        self.counts = check_image_folder(directory, max(len(classes), 1))
        self.directory, self.target_size, self.class_mode = directory, target_size, class_mode
        self.batch_size, self.shuffle, self.seed, self.rescale = batch_size, shuffle, seed, rescale
        self._check_sizes()

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    @property
    def image_shape(self) -> tuple:
        return (*self.target_size, 3)

    def __len__(self):
        return -(-self.samples // self.batch_size)

    def _check_sizes(self) -> None:
        from PIL import Image

        height, width = self.target_size
        for path in sorted(self.directory.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(path) as image:
                    if image.size != (width, height):
                        raise DualBackendError(
                            f"flow_from_directory(target_size={self.target_size}) would resize {path} "
                            f"({image.size[1]}x{image.size[0]}): each framework resizes with its own filter, so "
                            "dual-backend reads images at their own size only. Give target_size=(height, width) "
                            "of the images, or resize the files beforehand.")


image = SimpleNamespace(ImageDataGenerator=ImageDataGenerator)
# Keras' import path too: `from tensorflow.keras.preprocessing.image import ImageDataGenerator`.
sys.modules[f"{__name__}.image"] = image
