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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import dual_backend
from dual_backend import data, lessons
from dual_backend.callbacks import BackupAndRestore, EarlyStopping, ModelCheckpoint, StopTraining, TensorBoard
from dual_backend.errors import DualBackendError, TrainingDiverged
from dual_backend.lessons import Recipe
from dual_backend.model import SpeedUps
from dual_backend.precision import floatx, using

PROFILES = ("quick", "full")


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
    results = model.evaluate(prepared.x_test, prepared.y_test)
    values = results if isinstance(results, list) else [results]
    test = dict(zip(model.log_keys, values))
    if recipe.lesson.metric is None:
        test["prediction"] = float(model.predict(prepared.x_test)[0][0])
    return test


def headline(recipe: Recipe, profile: str, test: dict, history: dict) -> float:
    """The number a run is judged by (``recipe.judged_by(profile)``): test accuracy, hello_world's
    prediction, for horse_or_human (whose point is overfitting) the last epoch's training value,
    or for a quick run too short to leave chance the test loss or how far the training loss fell."""
    key = recipe.judged_by(profile)
    if key == lessons.LOSS_DROP:
        return history["loss"][0] - history["loss"][-1]
    if recipe.judged_on(profile) == "training":
        return history[key][-1]
    return test[key]


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


def run_lesson(lesson: str, backend: str, variant: str | None = None, epochs: int | None = None,
               profile: str = "full", seed: int | None = None, device: str = "auto", out: Path | None = None,
               options: dict | None = None, verbose: int = 1, init_from: str | None = None,
               same_order: bool = False, resume: bool = False, devices: int = 1, strategy: str = "auto",
               speedups=None, precision: str | None = None, callbacks: list | None = None) -> dict:
    """Train one lesson on one backend; returns (and writes under ``out/<backend>/``) its metrics,
    its History, the trained model and the lesson's figures.

    ``init_from="keras"`` starts the model from the initial weights of the keras
    model built with the same seed; ``same_order`` makes the batches come in the
    permutations the front end draws from the seed.  Together: the same run on
    two frameworks.

    With ``out``, every finished epoch is backed up in ``out/<backend>/backup/``
    (:class:`BackupAndRestore`), and the backup is deleted when the run ends.
    An interrupted run (Ctrl-C, SIGTERM) leaves it there; ``resume=True``
    continues from it, and without ``resume`` a run refuses to start over it.
    A loss that becomes NaN or infinite raises :class:`TrainingDiverged`;
    nothing is saved then, and the backup keeps the last good epoch.

    ``devices`` > 1 trains data-parallel (MirroredStrategy on keras, Lightning DDP
    on torch, whose extra processes run this same function: they return
    ``{"rank": r}`` after ``fit`` and write nothing).  ``speedups``
    (:class:`dual_backend.model.SpeedUps`): bf16, compiling, channels-last; off by default.

    ``precision="float64"`` builds, trains and evaluates in float64 on both
    (``dual_backend.precision``).  ``callbacks``: more front-end callbacks, after the lesson's own."""
    if precision is not None and precision != floatx():
        with using(precision, [backend, *([init_from] if init_from else [])]):
            return run_lesson(lesson, backend, variant=variant, epochs=epochs, profile=profile, seed=seed,
                              device=device, out=out, options=options, verbose=verbose, init_from=init_from,
                              same_order=same_order, resume=resume, devices=devices, strategy=strategy,
                              speedups=speedups, callbacks=callbacks)
    recipe = lessons.recipe(lesson, variant)
    if recipe.lesson.kind == "convolution":
        from dual_backend import convolution

        return convolution.run(recipe, backend, out=out, options=options or {}, device=device, verbose=verbose)
    folder = None if out is None else Path(out) / backend
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    frontend = dual_backend.backend_package(backend)
    if seed is not None:
        frontend.seed(seed)
    speedups = speedups or SpeedUps()
    model = dual_backend.build(lesson, backend=backend, variant=variant, device=device, devices=devices,
                               strategy=strategy, precision=speedups.precision, compile=speedups.compile,
                               channels_last=speedups.channels_last, **(options or {}))
    if init_from is not None and init_from != backend:
        dual_backend.backend_package(init_from).seed(seed or 0)
        start = dual_backend.build(lesson, backend=init_from, variant=variant, device="cpu", **(options or {}))
        dual_backend.copy_weights(start, model)
    order_seed = (seed or 0) if same_order else None
    epochs = recipe.profile_epochs(profile) if epochs is None else epochs
    callbacks = course_callbacks(recipe) + framework_callbacks(recipe, backend, folder) + list(callbacks or [])
    # What this run is, as metrics.json records it (and as --resume recognises a finished run by).
    settings = {"lesson": lesson, "variant": recipe.variant_name, "backend": backend, "device": model.device,
                "profile": profile, "seed": seed, "options": model.options, "init_from": init_from,
                "same_order": same_order, "devices": devices, "speedups": dataclasses.asdict(speedups),
                "precision": floatx(), "epochs": epochs}
    backup = None
    if folder is not None:
        backup = BackupAndRestore(folder / "backup", identity={"profile": profile, "seed": seed,
                                                               "init_from": init_from, "same_order": same_order})
        if resume and not backup.path(backend).exists():
            finished = finished_run(folder / f"model{MODEL_SUFFIX[backend]}", settings)
            if finished is not None:
                if verbose:
                    print(f"{folder} holds a finished run with these settings; not trained again "
                          f"(delete {folder / 'metrics.json'} to train anew).")
                return finished
        check_backup(backup.path(backend), resume, verbose)
        callbacks.append(backup)
    if recipe.dataset == "horse_or_human":
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
        test = dict(zip(model.log_keys, _as_list(model.evaluate(test_set))))
    else:
        test = score(recipe, model, prepared)
    value = headline(recipe, profile, test, history.history)
    predictions = show_predictions(recipe, model, prepared, verbose)
    expected = recipe.expected(profile)
    metrics = {
        **settings, "epochs_run": len(history.epoch), "params": model.count_params(),
        "seconds_per_epoch": history.seconds_per_epoch, "test": test,
        "final_training": {k: v[-1] for k, v in history.history.items()} if history.epoch else {},
        "judged_by": recipe.judged_by(profile), "judged_on": recipe.judged_on(profile), "judged_value": value,
        "expected": [expected.low, expected.high], "inside_expected": value in expected,
        "versions": versions(backend), "hardware": hardware(), "peak_memory_mb": peak_memory_mb(backend, model.device),
    }
    if predictions:
        metrics["predictions"] = predictions
    if folder is not None:
        (folder / "history.json").write_text(json.dumps(history.history, indent=2))
        model.save(folder / f"model{MODEL_SUFFIX[backend]}")
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
    probabilities = model.predict(prepared.x_test[:count])
    classes = probabilities.argmax(axis=-1)
    if verbose:
        print(f"predict(x_test[:{count}]):")
        print(np.array2string(probabilities, precision=2, suppress_small=True))
        print("classes:", classes.tolist(), [data.FASHION_MNIST_CLASS_NAMES[c] for c in classes])
    return {"probabilities": probabilities.round(6).tolist(), "classes": classes.tolist()}


MODEL_SUFFIX = {"keras": ".keras", "torch": ".pt"}
CHECKPOINT_SUFFIX = {"keras": ".keras", "torch": ".ckpt"}


def framework_callbacks(recipe: Recipe, backend: str, folder: Path | None) -> list:
    """keras_basics' three callbacks: TensorBoard logs, the best model by val_loss, early stopping."""
    if not recipe.callbacks:
        return []
    if folder is None:
        raise dual_backend.DualBackendError(f"{recipe.lesson.name}/{recipe.variant_name} writes TensorBoard logs "
                                            "and a checkpoint: give it an output folder (--out).")
    return [TensorBoard(folder / "logs"),
            ModelCheckpoint(folder / f"best_model{CHECKPOINT_SUFFIX[backend]}", save_best_only=True),
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
