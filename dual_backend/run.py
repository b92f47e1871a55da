"""Running a lesson as the course runs it: load, preprocess, build, fit, evaluate, write the results.

One function for both backends; everything it needs comes from the lesson's
spec, so the CLI, the tests and the reports all train the same recipe.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import dual_backend
from dual_backend import data, lessons
from dual_backend.callbacks import StopTraining
from dual_backend.lessons import Recipe

PROFILES = ("quick", "full")


@dataclass
class Prepared:
    """A lesson's arrays after the course's preprocessing."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def prepare_data(recipe: Recipe, profile: str = "full") -> Prepared:
    """The lesson's data set, cut to the profile's training samples and scaled as the course scales it."""
    (x_train, y_train), (x_test, y_test) = data.load(recipe.dataset)
    samples = recipe.train_samples(profile)
    if samples:
        x_train, y_train = x_train[:samples], y_train[:samples]
    if recipe.scale is not None:
        x_train = x_train.astype(np.float32) * np.float32(recipe.scale)
        x_test = x_test.astype(np.float32) * np.float32(recipe.scale)
    return Prepared(x_train, y_train, x_test, y_test)


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


def headline(recipe: Recipe, test: dict) -> tuple[str, float]:
    """The number a lesson is judged by: test accuracy, or hello_world's prediction."""
    key = recipe.lesson.metric or "prediction"
    return key, test[key]


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
               options: dict | None = None, verbose: int = 1) -> dict:
    """Train one lesson on one backend; returns (and writes under ``out/<backend>/``) its metrics."""
    recipe = lessons.recipe(lesson, variant)
    if recipe.lesson.kind == "convolution":
        from dual_backend import convolution

        return convolution.run(recipe, backend, out=out, options=options or {}, device=device, verbose=verbose)
    prepared = prepare_data(recipe, profile)
    frontend = dual_backend.backend_package(backend)
    if seed is not None:
        frontend.seed(seed)
    model = dual_backend.build(lesson, backend=backend, variant=variant, device=device, **(options or {}))
    epochs = recipe.profile_epochs(profile) if epochs is None else epochs
    history = model.fit(prepared.x_train, prepared.y_train, epochs=epochs, batch_size=recipe.lesson.batch_size,
                        callbacks=course_callbacks(recipe), verbose=verbose)
    test = score(recipe, model, prepared)
    key, value = headline(recipe, test)
    expected = recipe.expected(profile)
    metrics = {
        "lesson": lesson, "variant": recipe.variant_name, "backend": backend, "device": model.device,
        "profile": profile, "seed": seed, "options": model.options,
        "epochs": epochs, "epochs_run": len(history.epoch), "params": model.count_params(),
        "seconds_per_epoch": history.seconds_per_epoch, "test": test,
        "judged_by": key, "expected": [expected.low, expected.high], "inside_expected": value in expected,
        "versions": versions(backend),
    }
    if out is not None:
        folder = Path(out) / backend
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "history.json").write_text(json.dumps(history.history, indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
