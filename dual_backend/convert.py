"""``dual-backend convert``: a trained model moved between the frameworks' files, and checked.

``.keras`` or legacy ``.h5`` (tf.keras' files) → ``.pt`` (the torch backend's) or ``.ckpt`` (Lightning's
checkpoint, with the optimizer's state, which a user's own Trainer resumes from), and ``.pt`` or ``.ckpt``
→ ``.keras``.  No direction needs TensorFlow: ``dual_backend.keras_file`` reads and writes Keras' archive
itself.  ``check`` then runs both models, each on its own framework (tf.keras loading the ``.keras`` file
in its safe mode, torch the ``.pt`` or ``.ckpt``), and compares their outputs on real
test images of the lesson's data set when the input shape is one of the course's, seeded random
inputs in [0, 1) otherwise, against ``parity.forward_tolerance`` (1e-5 times the inputs' range).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dual_backend import keras_file
from dual_backend.errors import DualBackendError

DIRECTIONS = "IN.keras or IN.h5 → OUT.pt or OUT.ckpt, or IN.pt or IN.ckpt → OUT.keras"
TORCH_FILES = (".pt", ".ckpt")  # the torch backend's own file, and Lightning's checkpoint


@dataclass
class Checked:
    """The outputs of the source model (on its framework) and the converted one, on ``inputs``."""

    inputs: str
    count: int
    difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.difference <= self.tolerance

    def line(self) -> str:
        verdict = "the same" if self.passed else "DIFFERENT"
        return (f"largest difference of the two models' outputs on {self.count} {self.inputs}: "
                f"{self.difference:.2e} (tolerance {self.tolerance:.0e}): {verdict}")


def backends_of(source, target) -> tuple[str, str]:
    """The backend each file belongs to; ``DualBackendError`` for any other pair of names."""
    if keras_file.is_keras_file(source) and Path(target).suffix in TORCH_FILES:
        return "keras", "torch"
    if Path(source).suffix in TORCH_FILES and Path(target).suffix == ".keras":
        return "torch", "keras"
    raise DualBackendError(f"Cannot convert {source} to {target}: dual-backend converts {DIRECTIONS}.")


def convert(source, target) -> str:
    """Write the model in ``source`` to ``target`` in the other framework's format, whole or not at all;
    return a line saying what was converted.  Raises ``DualBackendError`` naming the file (and the
    layer) when ``source`` cannot be read, or the pair of names is not a conversion."""
    import dual_backend

    source_backend, target_backend = backends_of(source, target)
    if not Path(source).is_file():
        raise DualBackendError(f"No model at {source}.")
    if Path(source).resolve() == Path(target).resolve():
        raise DualBackendError(f"{source} would be overwritten: give another OUT.")
    if Path(target).is_dir():
        raise DualBackendError(f"{target} is a folder: give OUT as a file path, such as {Path(target) / 'model'}"
                               f"{Path(target).suffix or '.pt'}.")
    model = dual_backend.load_model(source, device="cpu", backend="torch")  # reads either file without TensorFlow
    try:
        model.save(target)
    except OSError as error:  # a folder in OUT's path that is a file, no permission, a full disk
        raise DualBackendError(f"Cannot write {target} ({error}); nothing was written.") from None
    what = f"the {model.lesson} lesson's model" if model.lesson else f"model {model.name!r}"
    return (f"{source} ({source_backend}) → {target} ({target_backend}): {what}, {len(model.layer_rows())} layers, "
            f"{model.count_params():,} parameters")


def check(source, target, count: int, seed: int = 0) -> Checked:
    """Both files' models on their own frameworks, on ``count`` inputs (see the module's docstring)."""
    import dual_backend
    from dual_backend import parity

    source_backend, target_backend = backends_of(source, target)
    models = {}
    for path, backend in ((source, source_backend), (target, target_backend)):
        try:
            models[backend] = dual_backend.load_model(path, device="cpu", backend=backend)
        except ImportError as error:
            raise DualBackendError(f"--check runs the {backend} model, and {backend}'s framework is not installed "
                                   f"({error}). Install it (pip install '.[keras,torch]'), or convert without "
                                   "--check.") from None
    x, described = check_inputs(models["torch"], count, seed)
    outputs = [models[backend].predict(x, batch_size=32, verbose=0) for backend in (source_backend, target_backend)]
    return Checked(described, len(x), parity.max_difference([outputs[0]], [outputs[1]]),
                   parity.forward_tolerance(x))


def check_inputs(model, count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` inputs for ``model`` and what they are: the test images of its lesson's data set
    (prepared as the lesson prepares them), or of Fashion-MNIST (scaled to [0, 1]) for a model of
    28x28 inputs, horse-or-human's validation pictures for 300x300x3; else seeded uniform [0, 1)."""
    from dual_backend import data, lessons, parity

    shape = tuple(model.input_shape[1:])
    if model.lesson:
        recipe = lessons.recipe(model.lesson, model.variant)
        x = parity.sample_data(recipe, count)[0][:count]
        return x, f"{recipe.dataset.replace('_', '-')} test inputs"
    if shape in ((28, 28), (28, 28, 1)):
        (_, _), (x_test, _) = data.load("fashion_mnist")
        return (x_test[:count].astype(np.float32) / np.float32(255)).reshape(-1, *shape), \
            "Fashion-MNIST test images"
    if shape == (300, 300, 3):
        from dual_backend.images import load_images

        _, validation_dir = data.horse_or_human_dirs()
        files = sorted(validation_dir.glob("*/*.png"))
        files = files[::max(1, len(files) // count)][:count]
        return load_images(files, shape[:2]), "horse-or-human validation pictures"
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32), "seeded random inputs in [0, 1)"
