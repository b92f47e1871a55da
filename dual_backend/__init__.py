"""dual-backend: the lessons of the TensorFlow introductory course on tf.keras and on PyTorch Lightning.

    import dual_backend
    model = dual_backend.build("fashion_mlp", backend="torch")   # or backend="keras"
    history = model.fit(x_train, y_train, epochs=5)

Your own model, written once with Keras' API (``dual_backend.keras``), on the
backend ``set_backend`` or ``DUAL_BACKEND`` chooses::

    from dual_backend import keras
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])

Importing this package imports neither TensorFlow nor torch: a backend is
imported when a model is built on it.
"""

from __future__ import annotations

import importlib

from dual_backend import data  # db.data.load_fashion_mnist() etc., as in the README
from dual_backend.callbacks import BackupAndRestore, Callback, CSVLogger, StopTraining, TerminateOnNaN
from dual_backend.errors import DataError, DualBackendError, TrainingDiverged, TrainingInterrupted
from dual_backend.formats import FILE_FORMATS, backend_of_model_file
from dual_backend.lessons import LESSONS
from dual_backend.model import History, Model, SpeedUps

BACKENDS = {"keras": "keras_ref", "torch": "torch_impl"}
DEVICES = ("cpu", "gpu", "auto")
STRATEGIES = {"keras": "mirrored", "torch": "ddp"}  # data-parallel training, each framework's own


def backend_package(backend: str):
    """The module that implements the front end on ``backend`` (``keras_ref.backend`` or
    ``torch_impl.backend``: ``build``, ``load``, ``seed``, ``set_floatx`` and its ``Model``), imported now,
    after the settings its framework reads as it starts (``<package>.process.before_framework_starts``)."""
    if backend not in BACKENDS:
        raise DualBackendError(f"Unknown backend {backend!r}. Valid backends: {', '.join(BACKENDS)}.")
    importlib.import_module(f"{BACKENDS[backend]}.process").before_framework_starts()
    return importlib.import_module(f"{BACKENDS[backend]}.backend")


def build(lesson: str, backend: str = "keras", variant: str | None = None, device: str = "auto",
          devices: int = 1, strategy: str = "auto", precision: str = "float32", compile: bool = False,
          channels_last: bool = False, **options) -> Model:
    """The lesson's model, compiled as the course compiles it, with the Keras surface on either backend.

    ``options`` are the lesson's model options (``dual-backend list`` shows them),
    e.g. ``build("fashion_mlp", backend="torch", hidden_units=512)``.

    ``devices`` > 1 trains data-parallel on the framework's own engine:
    ``tf.distribute.MirroredStrategy`` on keras (``strategy="mirrored"``),
    Lightning's DDP on torch (``strategy="ddp"``); ``"auto"`` picks the backend's
    own.  ``fit``'s ``batch_size`` is then the global batch, as in Keras: each of
    the N devices takes batch_size / N samples of every step, so the course's
    learning rates stay right.  See the README, "Scale-out".

    ``precision="bf16"``, ``compile=True`` and ``channels_last=True`` are speed-ups
    that change the numbers computed, off by default (:class:`dual_backend.model.SpeedUps`).
    """
    from dual_backend import lessons

    recipe = lessons.recipe(lesson, variant)
    if recipe.lesson.kind != "train":
        raise DualBackendError(f"Lesson {lesson!r} has no model to build: run it with "
                               f"`dual-backend run {lesson}` (or dual_backend.run.run_lesson).")
    chosen = recipe.model_options(options)
    if device not in DEVICES:
        raise DualBackendError(f"Unknown device {device!r}. Valid devices: {', '.join(DEVICES)}.")
    if not isinstance(devices, int) or devices < 1:
        raise DualBackendError(f"devices must be a positive integer, got {devices!r}.")
    backend_module = backend_package(backend)  # an unknown backend is named here
    strategy = STRATEGIES[backend] if strategy == "auto" else strategy
    if strategy != STRATEGIES[backend]:
        raise DualBackendError(f"The {backend} backend scales out with strategy {STRATEGIES[backend]!r} "
                               f"({'tf.distribute.MirroredStrategy' if backend == 'keras' else 'Lightning DDP'}), "
                               f"not {strategy!r}; or leave it 'auto'.")
    program = importlib.import_module(f"{BACKENDS[backend]}.{lesson}")
    speedups = SpeedUps(precision=precision, compile=bool(compile), channels_last=bool(channels_last))
    return backend_module.build(program, recipe, chosen, device, devices=devices, speedups=speedups)


def set_backend(name: str) -> None:
    """The backend that models of ``dual_backend.keras`` defined from now on are built on: ``"keras"``
    or ``"torch"`` (else the environment variable ``DUAL_BACKEND``, else ``"keras"``)."""
    from dual_backend.keras import config

    config.set_backend(name)


def copy_weights(source: Model, target: Model) -> None:
    """Give ``target`` the weights of ``source``, two models of one lesson and variant on either
    backend; a clear error names the first layer that differs.  See ``dual_backend.parity``."""
    from dual_backend.parity import copy_weights as copy

    copy(source, target)


def load_model(path, device: str = "auto", backend: str | None = None) -> Model:
    """A model saved with ``model.save(path)``, or any Keras model file, on ``backend``.

    ``backend`` None: the one whose ``Model.save`` writes files named like ``path`` (``FILE_FORMATS``:
    ``.keras`` keras, ``.pt`` torch; Keras' legacy ``.h5`` keras).  ``backend="torch"`` opens a
    ``.keras`` or ``.h5`` file written by tf.keras (or by the torch backend) without TensorFlow:
    ``dual_backend.keras_file`` reads it and the torch port is built from its layers.
    Raises ``DualBackendError`` naming the file (and the layer) when it cannot be read as it is.
    """
    from pathlib import Path

    from dual_backend import keras_file

    if backend is None:
        backend = "keras" if keras_file.is_keras_file(path) else backend_of_model_file(path)
    if not Path(path).is_file():
        what = "a folder, not a model file" if Path(path).is_dir() else "no such file"
        raise DualBackendError(f"No model at {path} ({what}): give the path of a file model.save wrote.")
    return backend_package(backend).load(path, device)


__all__ = ["BACKENDS", "FILE_FORMATS", "BackupAndRestore", "CSVLogger", "Callback", "DataError", "DualBackendError", "History", "LESSONS",
           "Model", "StopTraining", "TerminateOnNaN", "TrainingDiverged", "TrainingInterrupted", "build",
           "copy_weights", "load_model", "set_backend"]
