"""Running a lesson as the course runs it: load, preprocess, build, fit, evaluate, write the results.

One function for both backends; everything it needs comes from the lesson's
spec, so the CLI, the tests and the reports all train the same recipe.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import dual_backend
from dual_backend import data, lessons
from dual_backend.callbacks import BackupAndRestore, EarlyStopping, ModelCheckpoint, StopTraining, TensorBoard
from dual_backend.environments import python_for
from dual_backend.errors import DualBackendError, TrainingDiverged
from dual_backend.formats import FILE_FORMATS
from dual_backend.lessons import Recipe
from dual_backend.model import SpeedUps
from dual_backend.precision import floatx, using

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class RunSettings:
    """What one run of a lesson on one backend is: everything that decides its result.

    ``run`` trains it, ``argv`` gives the ``dual-backend run`` command line that
    makes the same run in another process (``--backend both``, ``compare``).
    ``init_from="keras"`` starts the model from the initial weights of the keras
    model built with the same seed; ``same_order`` makes the batches come in the
    permutations the front end draws from the seed.  Together: the same run on
    two frameworks.  ``devices`` > 1 trains data-parallel (MirroredStrategy on
    keras, Lightning DDP on torch).  ``speedups``: bf16, compiling,
    channels-last, off by default.  ``floatx="float64"`` builds, trains and
    evaluates in float64 on every backend the run touches (``dual_backend.precision``).
    """

    lesson: str
    backend: str
    variant: str | None = None
    epochs: int | None = None  # None: the profile's
    profile: str = "full"
    seed: int | None = None
    device: str = "auto"
    options: dict = field(default_factory=dict)  # the lesson's model options, over the variant's
    init_from: str | None = None
    same_order: bool = False
    devices: int = 1
    strategy: str = "auto"
    speedups: SpeedUps = SpeedUps()
    floatx: str | None = None  # None: the float type in force

    def argv(self) -> list[str]:
        """The ``dual-backend run`` arguments for this run (``--out`` and ``--resume`` are the caller's)."""
        argv = ["run", self.lesson, "--backend", self.backend, "--profile", self.profile, "--device", self.device]
        for flag, value in (("--variant", self.variant), ("--epochs", self.epochs), ("--seed", self.seed),
                            ("--init-from", self.init_from)):
            if value is not None:
                argv += [flag, str(value)]
        if self.devices != 1:
            argv += ["--devices", str(self.devices)]
        if self.strategy != "auto":
            argv += ["--strategy", self.strategy]
        if self.same_order:
            argv.append("--same-order")
        argv += self.speedups.flags()
        if self.floatx == "float64":
            argv.append("--float64")
        for name, value in self.options.items():
            argv += ["--option", f"{name}={value!r}"]
        return argv

    def command(self, out: Path, resume: bool = False) -> list[str]:
        """The command that makes this run in a process of the backend's own python (docs/gpu.md)."""
        return [python_for(self.backend), "-m", "dual_backend.cli", *self.argv(), "--out", str(out),
                *(["--resume"] if resume else [])]


@dataclass
class Prepared:
    """A lesson's arrays after the course's preprocessing (``x_valid`` only when the lesson holds some out)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None

    @property
    def validation_data(self):
        return None if self.x_valid is None else (self.x_valid, self.y_valid)


def standardize(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """The note's StandardScaler: fitted on every training pixel as one column (one mean, one std)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    shape = x_train.shape[1:]
    fitted = scaler.fit_transform(x_train.astype(np.float32).reshape(-1, 1)).reshape(-1, *shape)
    return [fitted, *(scaler.transform(x.astype(np.float32).reshape(-1, 1)).reshape(-1, *shape) for x in others)]


def prepare_data(recipe: Recipe, profile: str = "full") -> Prepared:
    """The lesson's data set as the course prepares it: held-out validation images, the
    profile's training samples, scaling or standardisation, and a channel axis for convolutions."""
    (x_train, y_train), (x_test, y_test) = data.load(recipe.dataset)
    x_valid = y_valid = None
    held_out = recipe.lesson.validation_samples
    if held_out:
        x_valid, x_train = x_train[:held_out], x_train[held_out:]
        y_valid, y_train = y_train[:held_out], y_train[held_out:]
    samples = recipe.train_samples(profile)
    if samples:
        x_train, y_train = x_train[:samples], y_train[:samples]
    images = [x for x in (x_train, x_valid, x_test) if x is not None]
    if recipe.standardize:
        images = standardize(*images)
    elif recipe.scale is not None:
        images = [x.astype(np.float32) * np.float32(recipe.scale) for x in images]
    shape = recipe.lesson.input_shape
    if len(shape) == 3:  # the course's reshape(60000, 28, 28, 1)
        images = [x.reshape(len(x), *shape) for x in images]
    x_train, *rest = images
    x_valid, x_test = rest if held_out else (None, rest[0])
    return Prepared(x_train, y_train, x_test, y_test, x_valid, y_valid)


def course_callbacks(recipe: Recipe) -> list:
    stop = recipe.stop
    if stop is None:
        return []
    return [StopTraining(stop.key, below=stop.below, above=stop.above, message=stop.message)]


def score(recipe: Recipe, model, prepared: Prepared) -> dict:
    """The test metrics, with Keras' names; hello_world adds its prediction for x = 10."""
    results = model.evaluate(prepared.x_test, prepared.y_test, verbose=0)
    values = results if isinstance(results, list) else [results]
    test = dict(zip(model.log_keys, values))
    if recipe.lesson.metric is None:
        test["prediction"] = float(model.predict(prepared.x_test, verbose=0)[0][0])
    return test


def peak_memory_mb(backend: str, device: str) -> dict:
    """The process's peak resident memory, and on CUDA the torch allocator's peak, in MiB."""
    import resource

    peak = {"resident": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    if backend == "torch" and device == "gpu":
        import torch

        peak["gpu"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def hardware() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "system": platform.system()}


def versions(backend: str) -> dict:
    found = {"python": platform.python_version(), "numpy": np.__version__}
    if backend == "keras":
        import tensorflow as tf

        found.update(tensorflow=tf.__version__, keras=tf.keras.__version__)
    else:
        import lightning
        import torch

        found.update(torch=torch.__version__, lightning=lightning.__version__)
    return found


def run_lesson(lesson: str, backend: str, *, out: Path | None = None, resume: bool = False, verbose: int = 1,
               callbacks: list | None = None, **settings) -> dict:
    """``run`` of ``RunSettings(lesson, backend, **settings)``."""
    return run(RunSettings(lesson, backend, **settings), out=out, resume=resume, verbose=verbose,
               callbacks=callbacks)


def same_order_refused(lesson: str) -> str:
    """Why ``--same-order`` is refused for a lesson whose pictures each framework reads from folders."""
    return (f"--same-order is for lessons trained on arrays; {lesson}'s pictures are read from their folders by "
            "each framework's own pipeline, in its own order. Leave --same-order out (--init-from still gives "
            "both backends the same start).")


def run(settings: RunSettings, out: Path | None = None, resume: bool = False, verbose: int = 1,
        callbacks: list | None = None) -> dict:
    """Train one lesson on one backend; returns (and writes under ``out/<backend>/``) its metrics,
    its History, the trained model and the lesson's figures.

    With ``out``, every finished epoch is backed up in ``out/<backend>/backup/``
    (:class:`BackupAndRestore`), and the backup is deleted when the run ends.
    An interrupted run (Ctrl-C, SIGTERM) leaves it there; ``resume=True``
    continues from it, and without ``resume`` a run refuses to start over it.
    A loss that becomes NaN or infinite raises :class:`TrainingDiverged`;
    nothing is saved then, and the backup keeps the last good epoch.

    In a data-parallel run Lightning's extra DDP processes run this same
    function: they return ``{"rank": r}`` after ``fit`` and write nothing.
    ``callbacks``: more front-end callbacks, after the lesson's own."""
    if settings.floatx is not None and settings.floatx != floatx():
        with using(settings.floatx, [settings.backend, *([settings.init_from] if settings.init_from else [])]):
            return run(settings, out=out, resume=resume, verbose=verbose, callbacks=callbacks)
    lesson, backend, variant, seed = settings.lesson, settings.backend, settings.variant, settings.seed
    profile, options, init_from = settings.profile, settings.options or {}, settings.init_from
    recipe = lessons.recipe(lesson, variant)
    if settings.same_order and recipe.reads_image_folders:
        raise DualBackendError(same_order_refused(lesson))
    if recipe.lesson.kind == "convolution":
        from dual_backend import convolution

        return convolution.run(recipe, backend, out=out, options=options, device=settings.device, verbose=verbose)
    folder = None if out is None else Path(out) / backend
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        dual_backend.backend_package(backend).seed(seed)
    speedups = settings.speedups
    model = dual_backend.build(lesson, backend=backend, variant=variant, device=settings.device,
                               devices=settings.devices, strategy=settings.strategy, precision=speedups.precision,
                               compile=speedups.compile, channels_last=speedups.channels_last, **options)
    if init_from is not None and init_from != backend:
        dual_backend.backend_package(init_from).seed(seed or 0)
        start = dual_backend.build(lesson, backend=init_from, variant=variant, device="cpu", **options)
        dual_backend.copy_weights(start, model)
    order_seed = (seed or 0) if settings.same_order else None
    epochs = recipe.profile_epochs(profile) if settings.epochs is None else settings.epochs
    callbacks = course_callbacks(recipe) + framework_callbacks(recipe, folder) + list(callbacks or [])
    # What this run is, as metrics.json records it (and as --resume recognises a finished run by).
    recorded = {"lesson": lesson, "variant": recipe.variant_name, "backend": backend, "device": model.device,
                "profile": profile, "seed": seed, "options": model.options, "init_from": init_from,
                "same_order": settings.same_order, "devices": settings.devices,
                "speedups": dataclasses.asdict(speedups), "floatx": floatx(), "epochs": epochs}
    backup = None
    model_file = None if folder is None else folder / f"model{FILE_FORMATS[backend].model}"
    if folder is not None:
        backup = BackupAndRestore(folder / "backup", identity={"profile": profile, "seed": seed,
                                                               "init_from": init_from,
                                                               "same_order": settings.same_order})
        if resume and not backup.path(backend).exists():
            finished = finished_run(model_file, recorded)
            if finished is not None:
                if verbose:
                    print(f"{folder} holds a finished run with these settings; not trained again "
                          f"(delete {folder / 'metrics.json'} to train anew).")
                return finished
        check_backup(backup.path(backend), resume, verbose)
        callbacks.append(backup)
    start = model.get_weights() if recipe.judged_by(profile) == lessons.WEIGHT_CHANGE else None
    if recipe.reads_image_folders:
        prepared = None
        train, test_set = image_folders(recipe, backend, seed)
        history = model.fit(train, epochs=epochs, steps_per_epoch=recipe.steps_per_epoch(profile),
                            callbacks=callbacks, verbose=verbose)
    else:
        prepared = prepare_data(recipe, profile)
        history = model.fit(prepared.x_train, prepared.y_train, epochs=epochs,
                            batch_size=recipe.lesson.batch_size, validation_data=prepared.validation_data,
                            callbacks=callbacks, verbose=verbose, batch_order_seed=order_seed)
    if model.rank > 0:  # a DDP helper process: rank 0 evaluates, reports and saves
        return {"rank": model.rank}
    if history.terminated_on_nan:
        raise diverged(history, epochs, backup.path(backend) if backup else None)
    if prepared is None:
        test = dict(zip(model.log_keys, _as_list(model.evaluate(test_set, verbose=0))))
    else:
        test = score(recipe, model, prepared)
    moved = None if start is None else lessons.weight_change(start, model.get_weights())
    value = recipe.judged_value(profile, test, history.history, moved)
    predictions = show_predictions(recipe, model, prepared, verbose)
    expected = recipe.expected(profile)
    metrics = {
        **recorded, "epochs_run": len(history.epoch), "params": model.count_params(),
        "seconds_per_epoch": history.seconds_per_epoch, "test": test,
        "final_training": {k: v[-1] for k, v in history.history.items()} if history.epoch else {},
        "judged_by": recipe.judged_by(profile), "judged_on": recipe.judged_on(profile),
        "judged_epoch": recipe.judged_epoch(profile), "judged_value": value,
        **({} if moved is None else {"weight_change": moved}),
        "expected": [expected.low, expected.high], "inside_expected": value in expected,
        "versions": versions(backend), "hardware": hardware(), "peak_memory_mb": peak_memory_mb(backend, model.device),
    }
    if predictions:
        metrics["predictions"] = predictions
    if folder is not None:
        (folder / "history.json").write_text(json.dumps(history.history, indent=2))
        model.save(model_file)
        from dual_backend import figures

        metrics["figures"] = [p.name for p in figures.lesson_figures(recipe, model, history, prepared, folder,
                                                                     seed=seed)]
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def finished_run(model_file: Path, settings: dict) -> dict | None:
    """The metrics a finished run left beside ``model_file`` if it ran with ``settings``, else None.

    What ``--resume`` gives for a backend that had finished: ``run --backend both``
    interrupted in its second backend resumes that one and keeps the first."""
    try:
        metrics = json.loads((model_file.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not model_file.exists():
        return None
    same = json.loads(json.dumps(settings)) == {key: metrics.get(key) for key in settings}
    return metrics if same else None


def check_backup(path: Path, resume: bool, verbose) -> None:
    """A backup is continued only when asked (``--resume``), and never silently overwritten."""
    if path.exists() and not resume:
        raise DualBackendError(f"{path} holds the backup of an interrupted run: continue it with --resume "
                               f"(and the same settings), or delete {path.parent} to start over.")
    if resume and not path.exists() and verbose:
        print(f"Nothing to resume in {path.parent}: training from epoch 1.")


def diverged(history, epochs: int, backup: Path | None) -> TrainingDiverged:
    loss = history.history["loss"][-1]
    kept = f"; {backup} still holds the epochs before" if backup is not None and backup.exists() else ""
    return TrainingDiverged(
        f"The loss became {loss} in epoch {len(history.epoch)} of {epochs}, and training stopped there "
        f"(as Keras' TerminateOnNaN stops it). The model was not saved{kept}. Lower the learning rate, "
        "or check the inputs' scale (pixel values divided by 255).")


def show_predictions(recipe: Recipe, model, prepared: Prepared | None, verbose) -> dict | None:
    """keras_basics' ``model.predict(x_test[:3])``: the probabilities and their argmax classes."""
    count = recipe.lesson.show_predictions
    if not count or prepared is None:
        return None
    probabilities = model.predict(prepared.x_test[:count], verbose=0)
    classes = probabilities.argmax(axis=-1)
    if verbose:
        print(f"predict(x_test[:{count}]):")
        print(np.array2string(probabilities, precision=2, suppress_small=True))
        print("classes:", classes.tolist(), [data.FASHION_MNIST_CLASS_NAMES[c] for c in classes])
    return {"probabilities": probabilities.round(6).tolist(), "classes": classes.tolist()}


def framework_callbacks(recipe: Recipe, folder: Path | None) -> list:
    """keras_basics' three callbacks: TensorBoard logs, the best model by val_loss, early stopping."""
    if not recipe.callbacks:
        return []
    if folder is None:
        raise dual_backend.DualBackendError(f"{recipe.lesson.name}/{recipe.variant_name} writes TensorBoard logs "
                                            "and a checkpoint: give it an output folder (--out).")
    return [TensorBoard(folder / "logs"),
            ModelCheckpoint(folder / "best_model.keras", save_best_only=True),  # Keras' archive on both backends
            EarlyStopping(patience=5, min_delta=1e-3)]


def image_folders(recipe: Recipe, backend: str, seed: int | None):
    """horse_or_human: the backend's own pipelines over the train and validation folders."""
    program = importlib.import_module(f"{dual_backend.BACKENDS[backend]}.{recipe.lesson.name}")
    train_dir, validation_dir = data.horse_or_human_dirs()
    batch_size = recipe.lesson.batch_size
    return (program.training_data(train_dir, batch_size=batch_size, seed=seed),
            program.validation_data(validation_dir, batch_size=batch_size))


def _as_list(values) -> list:
    return values if isinstance(values, list) else [values]
