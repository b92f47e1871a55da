"""Proof that the port is the same model: weight transfer and the parity checks.

Accuracy ranges cannot show that two models are the same; equal numbers can.
``copy_weights`` moves a model's weights to its twin on the other backend
(Keras' layout on both sides: ``Model.get_weights``), and ``checks`` measures,
for one lesson and variant:

- forward: the outputs of both models on real test inputs after a transfer,
  in both directions;
- one step: the weights (BatchNormalization's moving statistics included)
  after one training step from the same weights on the same batch, for each
  optimizer asked for;
- N steps (``steps``): the per-step losses of N steps with the same start and
  the same batch order (1e-3 in float32; in float64, ``dual_backend.precision``,
  where training has no rounding to amplify, 1e-9).

``definition_checks`` does the forward and one-step checks for a model of
your own, written once with ``dual_backend.keras``.

Both frameworks are imported in one process here, which works (see
``torch_impl.process.before_framework_starts``); ``dual-backend parity`` is the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import dual_backend
from dual_backend import lessons
from dual_backend.callbacks import Callback
from dual_backend.errors import DualBackendError
from dual_backend.formats import model_file_kinds

# fp32 on the CPU: the same operations in another order differ by a few ulps.
FORWARD_TOLERANCE = 1e-5
STEP_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-3
# float64 (``dual_backend.precision``): nothing for training to amplify, so a difference above
# rounding's is the port's (docs/verification.md).
FLOAT64_LOSS_TOLERANCE = 1e-9


def copy_weights(source, target) -> None:
    """Give ``target`` the weights of ``source``: two models of the same lesson and variant,
    on either backend (keras → torch, torch → keras, or the same backend)."""
    source_rows, target_rows = source.layer_rows(), target.layer_rows()
    for index, (mine, theirs) in enumerate(zip(source_rows, target_rows)):
        if mine[1:] != theirs[1:]:
            raise DualBackendError(
                f"Not the same architecture: layer {index} is {mine[1]} {mine[2]} with {mine[3]:,} params "
                f"in the {source.backend} model but {theirs[1]} {theirs[2]} with {theirs[3]:,} params "
                f"in the {target.backend} model.")
    if len(source_rows) != len(target_rows):
        raise DualBackendError(f"Not the same architecture: {len(source_rows)} layers in the {source.backend} "
                               f"model, {len(target_rows)} in the {target.backend} model.")
    target.set_weights(source.get_weights())


@dataclass
class Check:
    name: str
    difference: float | None
    tolerance: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.difference is None or self.difference <= self.tolerance

    def line(self) -> str:
        if self.difference is None:
            return f"SKIP  {self.name}: {self.note}"
        verdict = "ok  " if self.passed else "FAIL"
        note = f" ({self.note})" if self.note else ""
        return f"{verdict}  {self.name}: max |difference| {self.difference:.3g} (tolerance {self.tolerance:g}){note}"


def max_difference(first, second) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(first, second))


def outputs_apart(keras_model, torch_model, x) -> float:
    """The largest difference between the two models' predictions for ``x`` (predicted silently)."""
    return max_difference([keras_model.predict(x, verbose=0)], [torch_model.predict(x, verbose=0)])


class StepLosses(Callback):
    """Each step's own loss, recovered from the running epoch mean both backends report
    (the mean starts again with each epoch)."""

    def __init__(self):
        super().__init__()
        self.epochs: list[list[float]] = []

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0 or not self.epochs:
            self.epochs.append([])
        self.epochs[-1].append(float(logs["loss"]))

    def losses(self) -> list[float]:
        found = []
        for means in map(np.asarray, self.epochs):
            totals = means * np.arange(1, len(means) + 1)
            found.extend(np.diff(totals, prepend=0.0))
        return found


def sample_data(recipe, count: int):
    """Real inputs for the checks: test images (and training images with labels for the steps)."""
    from dual_backend import data
    from dual_backend.images import load_images
    from dual_backend.run import prepare_data

    if recipe.reads_image_folders:
        train_dir, validation_dir = data.horse_or_human_dirs()
        # 32 images of 300x300, both classes: every 8th of the 256 sorted validation files.
        files = sorted(validation_dir.glob("*/*.png"))[::8][:32]
        x = load_images(files, recipe.lesson.input_shape[:2])
        y = np.array([[float(f.parent.name == "humans")] for f in files], dtype=np.float32)
        return x, x, y
    prepared = prepare_data(recipe, "quick")
    return prepared.x_test[:count], prepared.x_train[:max(count, 32)], prepared.y_train[:max(count, 32)]


def build_pair(lesson: str, variant: str | None, seed: int):
    keras_model = _seeded("keras", lesson, variant, seed)
    torch_model = _seeded("torch", lesson, variant, seed + 1)  # different draws, so a transfer shows
    return keras_model, torch_model


def _seeded(backend, lesson, variant, seed):
    dual_backend.backend_package(backend).seed(seed)
    return dual_backend.build(lesson, backend=backend, variant=variant, device="cpu")


def nudge(weights: list, relative: float = 1e-7, seed: int = 0) -> list:
    """The weights moved by about one float32 ulp each, at random."""
    rng = np.random.default_rng(seed)
    return [(w * (1 + relative * rng.standard_normal(w.shape))).astype(np.float32) for w in weights]


def has_random_training_layers(model) -> bool:
    return any(kind in ("AlphaDropout", "Dropout") for _, kind, *_ in model.layer_rows())


def checks(lesson: str, variant: str | None = None, steps: int = 0, seed: int = 0, inputs: int = 1000,
           optimizers: list[str] | None = None) -> list[Check]:
    recipe = lessons.recipe(lesson, variant)
    if recipe.lesson.kind != "train":
        raise DualBackendError(f"Lesson {lesson!r} has no model; its parity is `dual-backend run {lesson}` "
                               "(both backends against the course's loop).")
    x_test, x_train, y_train = sample_data(recipe, inputs)
    found = forward_checks(lesson, variant, x_test, seed)
    keras_model = found.pop()

    for optimizer in optimizers or [keras_model.optimizer if isinstance(keras_model.optimizer, str)
                                    else "rmsprop"]:
        keras_model, torch_model = build_pair(lesson, variant, seed)
        name = f"one {optimizer} step on 32 training images: weights"
        if any(kind == "BatchNormalization" for _, kind, *_ in keras_model.layer_rows()):
            name += " and BatchNormalization's moving statistics"
        if has_random_training_layers(keras_model):
            found.append(Check(name, None, STEP_TOLERANCE,
                               "AlphaDropout draws its mask from each framework's own generator"))
            continue
        if recipe.fails_with:
            found.append(error_exercise_check(recipe, (keras_model, torch_model), x_train, y_train))
            continue
        nudged = _seeded("torch", lesson, variant, seed + 2)
        for model in (keras_model, torch_model, nudged):
            model.compile(optimizer=optimizer, loss=model.loss, metrics=model.metrics)
        found.append(one_step_check(name, (keras_model, torch_model, nudged), x_train[:32], y_train[:32]))

    if steps and not recipe.fails_with:
        found.append(same_start_same_order(lesson, variant, steps, seed))
    return found


def one_step_check(name: str, models, x, y) -> Check:
    """One step on ``x, y`` of compiled ``(keras, torch, nudged torch)`` models from the keras model's
    weights, the third ~1 ulp away from them: the keras and torch weights after it compared."""
    keras_model, torch_model, nudged = models
    copy_weights(keras_model, torch_model)
    nudged.set_weights(nudge(keras_model.get_weights()))
    for model in models:
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    # How far the model itself carries float32 rounding in one step: torch against torch
    # from weights nudged by ~1 ulp.  A well-conditioned model stays far below 1e-5; a
    # chaotic one (20 relu+BatchNorm layers) does not, and is held to its own noise, as is
    # Adam's first step on a weight whose gradient is rounding alone (a bias before BatchNormalization).
    floor = max_difference(torch_model.get_weights(), nudged.get_weights())
    tolerance = max(STEP_TOLERANCE, floor)
    note = f"tolerance raised to the model's own float32 sensitivity, {floor:.2g}" if floor > STEP_TOLERANCE else ""
    return Check(name, max_difference(keras_model.get_weights(), torch_model.get_weights()), tolerance, note)


def definition_checks(define, x, y=None, loss: str | None = None, optimizers=("sgd",), seed: int = 0) -> list[Check]:
    """The checks of :func:`checks` for a model of your own: ``define()`` returns its layers
    (``dual_backend.keras``), built on both backends for the shape of ``x``.

    Forward: the outputs on ``x`` after a keras → torch and a torch → keras transfer.  With ``y`` and
    ``loss``: one step per optimizer (a name or a ``keras.optimizers`` description) on the first 32
    samples from the same weights, weights and moving statistics compared, to 1e-5 or the model's own
    float32 sensitivity (``one_step_check``; skipped for models with Dropout or AlphaDropout, whose
    masks each framework draws)."""
    from dual_backend.keras import Sequential, config

    def built(backend, seed_value):
        dual_backend.backend_package(backend).seed(seed_value)
        with config.defining_on(backend):
            model = Sequential(define())
        model.build((None, *np.shape(x)[1:]))
        return model

    return twin_checks(built, x, None if y is None else (x, y), loss, optimizers, seed)


def twin_checks(built, x, train=None, loss=None, optimizers=("sgd",), seed: int = 0, start=None) -> list[Check]:
    """The forward checks on ``x`` and, with ``train`` (inputs and targets) and ``loss``, the one-step
    checks on its first 32 samples, of two models ``built(backend, seed)`` makes from one definition;
    each check starts from ``start`` (Keras' weights list) when given, else from the source model's draw."""
    def pair(seed_value):
        return built("keras", seed_value), built("torch", seed_value + 1)  # different draws, so a transfer shows

    found, tolerance = [], forward_tolerance(x)
    for direction, offset in (("keras → torch", 0), ("torch → keras", 10)):
        keras_model, torch_model = pair(seed + offset)
        source, target = (keras_model, torch_model) if offset == 0 else (torch_model, keras_model)
        if start is not None:
            source.set_weights(start)
        copy_weights(source, target)
        found.append(Check(f"forward {direction} on {len(x)} inputs",
                           outputs_apart(keras_model, torch_model, x), tolerance))
    if train is None or train[1] is None or loss is None:
        return found
    x_train, y_train = train
    for optimizer in optimizers:
        keras_model, torch_model = pair(seed)
        name = f"one {optimizer} step on {min(len(x_train), 32)} samples: weights and moving statistics"
        if has_random_training_layers(keras_model):
            found.append(Check(name, None, STEP_TOLERANCE, "dropout draws its mask from each framework's own generator"))
            continue
        if start is not None:
            keras_model.set_weights(start)
        models = (keras_model, torch_model, built("torch", seed + 2))
        for model in models:
            model.compile(optimizer=optimizer, loss=loss)
        found.append(one_step_check(name, models, x_train[:32], y_train[:32]))
    return found


def model_file_checks(path, optimizers=None, seed: int = 0, inputs: int = 1000) -> tuple[list[Check], str]:
    """The checks of :func:`definition_checks` for a saved model of your own (``model.save`` of a
    ``dual_backend.keras`` model, or any file ``dual_backend.load_model`` returns with a ``definition()``):
    its definition built on both backends, each check starting from the file's weights.  Also returns
    a line saying which inputs were used.

    Inputs: a course data set's test images (and training images with their labels for the steps)
    when the model's input shape is a lesson's, as :func:`checks` takes them; else seeded random inputs
    in [0, 1) and random targets for the model's loss.  Optimizers: those asked for, else the one the
    file was compiled with, else ``'rmsprop'``; no steps for a model saved without a loss.

    Raises :class:`DualBackendError` for a missing file, a file of another kind, and a lesson's model."""
    from pathlib import Path

    from dual_backend.keras.models import from_definition, optimizer_of

    path = Path(path)
    if not path.is_file():
        raise DualBackendError(f"No model at {path}: give a file that model.save wrote ({model_file_kinds()}).")
    saved = dual_backend.load_model(path, device="cpu")
    definition = saved.definition()
    if definition is None and saved.lesson is None:
        raise DualBackendError(f"{path} holds a model without a dual_backend.keras definition to build on both "
                               "backends: define it with `from dual_backend import keras` and save it with model.save.")
    if definition is None:
        lesson = f"{saved.lesson}" + (f" --variant {saved.variant}" if saved.variant else "")
        raise DualBackendError(f"{path} holds the {saved.lesson!r} lesson's model, not a model of your own: "
                               f"its parity is `dual-backend parity {lesson}`.")

    def built(backend, seed_value):
        dual_backend.backend_package(backend).seed(seed_value)
        return from_definition(definition, backend)[0]

    x, train, source = file_sample_data(saved, inputs, seed)
    loss = saved_loss(saved)
    if optimizers is None:
        optimizers = [optimizer_of(definition) or (saved.optimizer if isinstance(saved.optimizer, str) else "rmsprop")]
    found = twin_checks(built, x, train, loss, optimizers, seed, start=saved.get_weights())
    if loss is None:
        found.append(Check("one step per optimizer", None, STEP_TOLERANCE,
                           "the model was saved without a loss (compile it before save)"))
    return found, source


def saved_loss(model):
    """The loss a loaded model was compiled with, as ``compile`` takes it (None if it was not compiled)."""
    from dual_backend.keras.losses import Loss

    if model.loss is None or not model.from_logits:
        return model.loss
    return next(kind for kind in Loss.__subclasses__() if kind.name == model.loss)(from_logits=True)


def file_sample_data(model, count: int, seed: int):
    """Inputs and targets for a model of your own, and a line saying which (``model_file_checks``)."""
    from dual_backend import validation

    shape = tuple(model.input_shape[1:])
    lesson = next((lesson for lesson in lessons.LESSONS.values()
                   if lesson.kind == "train" and tuple(lesson.input_shape) == shape), None)
    rng = np.random.default_rng(seed)
    if lesson is not None:
        x, x_train, y_train = sample_data(lessons.recipe(lesson.name, None), count)
        source = f"{len(x)} {lesson.dataset} test images, as lesson {lesson.name} takes them"
        try:  # the data set's own labels, when they fit the model's output and loss
            if model.loss is not None:
                validation.as_targets(y_train, len(y_train), model.loss, model.output_shape, 32)
            return x, (x_train, y_train), source
        except DualBackendError:
            return x, (x_train, random_targets(model, len(x_train), rng)), source + ", random targets"
    x = rng.random((count, *shape), dtype=np.float32)
    return x, (x, random_targets(model, count, rng)), f"{count} seeded random inputs in [0, 1) of shape {shape}"


def random_targets(model, count: int, rng) -> np.ndarray | None:
    """Targets the model's loss takes, drawn at random: class numbers, one-hot rows, 0/1 or real values."""
    units = model.output_shape[-1]
    if model.loss is None:
        return None
    if model.loss == "sparse_categorical_crossentropy":
        return rng.integers(0, units, count)
    if model.loss == "categorical_crossentropy":
        return np.eye(units, dtype=np.float32)[rng.integers(0, units, count)]
    if model.loss == "binary_crossentropy":
        return rng.integers(0, 2, (count, units)).astype(np.float32)
    return rng.standard_normal((count, units)).astype(np.float32)


def forward_tolerance(x) -> float:
    """1e-5 for inputs in [0, 1]; rounding grows with the inputs, so raw 0-255 pixels
    (fashion_mlp/no_normalization, keras_basics/baseline) get 1e-5 times their largest value."""
    return FORWARD_TOLERANCE * max(1.0, float(np.abs(x).max()))


def forward_checks(lesson: str, variant: str | None, x_test, seed: int = 0) -> list:
    """Outputs on ``x_test`` after a keras → torch and a torch → keras transfer (two Checks),
    followed by the last keras model built (for the callers' further checks)."""
    found = []
    tolerance = forward_tolerance(x_test)
    keras_model, torch_model = build_pair(lesson, variant, seed)
    copy_weights(keras_model, torch_model)
    found.append(Check(f"forward keras → torch on {len(x_test)} test inputs",
                       outputs_apart(keras_model, torch_model, x_test),
                       tolerance))
    keras_model, torch_model = build_pair(lesson, variant, seed + 10)
    copy_weights(torch_model, keras_model)
    found.append(Check(f"forward torch → keras on {len(x_test)} test inputs",
                       outputs_apart(keras_model, torch_model, x_test),
                       tolerance))
    return [*found, keras_model]


def error_exercise_check(recipe, models, x_train, y_train) -> Check:
    """An error exercise trains on nothing: both backends must stop with the same clear error."""
    stopped = 0
    for model in models:
        try:
            model.fit(x_train[:32], y_train[:32], epochs=1, verbose=0)
        except DualBackendError as error:
            stopped += recipe.fails_with in str(error)
    return Check("training stops before the first step with the expected error on both backends",
                 0.0 if stopped == len(models) else float("inf"), 0.0, f"'{recipe.fails_with}'")


def same_start_same_order(lesson: str, variant: str | None, steps: int, seed: int = 0, epochs: int = 1) -> Check:
    """N steps (per epoch) with the keras model's initial weights and one batch order on both backends."""
    from dual_backend.run import prepare_data

    from dual_backend.precision import floatx

    recipe = lessons.recipe(lesson, variant)
    tolerance = FLOAT64_LOSS_TOLERANCE if floatx() == "float64" else LOSS_TOLERANCE
    name = f"{steps} steps{f' x {epochs} epochs' if epochs > 1 else ''}, same start and same order: per-step loss"
    keras_model, torch_model = build_pair(lesson, variant, seed)
    if has_random_training_layers(keras_model):
        return Check(name, None, tolerance, "AlphaDropout draws its mask from each framework's own generator")
    prepared = prepare_data(recipe, "full")
    batch_size = recipe.lesson.batch_size
    x, y = prepared.x_train[:steps * batch_size], prepared.y_train[:steps * batch_size]
    copy_weights(keras_model, torch_model)
    recorded = []
    for model in (keras_model, torch_model):
        recorder = StepLosses()
        model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=[recorder], verbose=0,
                  batch_order_seed=seed)
        recorded.append(recorder.losses())
    keras_losses, torch_losses = map(np.asarray, recorded)
    drift = np.abs(keras_losses - torch_losses)
    quarter = max(1, len(drift) // 4)
    note = (f"first {quarter} steps {drift[:quarter].max():.2g}, last {quarter} {drift[-quarter:].max():.2g}; "
            f"final weights differ by {max_difference(keras_model.get_weights(), torch_model.get_weights()):.2g}")
    return Check(name, float(drift.max()), tolerance, note)
