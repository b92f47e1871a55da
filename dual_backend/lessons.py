"""The lesson registry: one spec per lesson, read by both backends, the CLI and the tests.

A spec says what LESSONS.md says: the data, its preprocessing, the model's
options, how the course compiles and fits it, the exercise variants, and the
ranges a run must land in.  Two ranges per lesson: ``full`` for the course's
own recipe (anchored on the figures the notes printed and on tf.keras runs)
and ``quick`` for the short CI profile (from runs of both backends with margin
for seed noise).  The runs behind each range: docs/verification.md.

No range holds what an untrained model scores (tests/lessons/test_training.py
evaluates one of every lesson and variant against its ranges), so a port
whose training does nothing cannot land inside one.  Where a quick run is
too short to leave chance, its spec says so and names a value it is judged
by instead (``quick_judged_by``), one that a broken training fails; where a
full run may stay at chance, ``full_holds_chance`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dual_backend.errors import DualBackendError


# quick_judged_by: the test loss (for lessons judged on training: the last epoch's training loss).
LOSS = "loss"
# quick_judged_by: the training loss of the first epoch minus that of the last.
LOSS_DROP = "loss drop"
# quick_judged_by: how far training moved the weights, |w - w0| / |w0| over all of them as one vector.
WEIGHT_CHANGE = "weight change"
# judged_epoch: the highest value of the course's metric over the epochs, not the last epoch's.
HIGHEST = "highest"


@dataclass(frozen=True)
class Range:
    """A closed interval a result must land in."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Stop:
    """The course's early-stop callback: stop when a training log crosses a threshold."""

    key: str
    below: float | None = None
    above: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Quick:
    """The short CI profile: train on the first ``train_samples`` images for ``epochs`` epochs.

    The test set is always the full one, so quick accuracies are comparable.
    """

    epochs: int
    train_samples: int | None = None
    steps_per_epoch: int | None = None


@dataclass(frozen=True)
class Variant:
    """An exercise of the lesson: changed model options and/or a changed recipe."""

    description: str
    options: dict = field(default_factory=dict)
    epochs: int | None = None
    dataset: str | None = None
    scale: float | None = None
    stop: Stop | None = None
    params: int | None = None
    full: Range | None = None
    quick: Range | None = None
    fails_with: str | None = None  # an error exercise: the words our error must contain
    standardize: bool | None = None
    callbacks: bool | None = None
    tolerance: float | None = None
    quick_judged_by: str | None = None  # see Lesson.quick_judged_by
    # Why the full range holds what an untrained model scores (a run that may stay at chance).
    full_holds_chance: str | None = None


@dataclass(frozen=True)
class Lesson:
    name: str
    title: str
    notes: str
    options: dict
    # What a run of the lesson does: "train" a model (fit, evaluate), or
    # "convolution", the lesson that filters and pools one image by hand.
    kind: str = "train"
    input_shape: tuple[int, ...] = ()
    epochs: int = 0
    quick: Quick = Quick(epochs=0)
    params: int = 0
    metric: str | None = None  # the key the course's metric shows up under, or None
    full: Range | None = None  # test accuracy, or for regression the prediction
    quick_range: Range | None = None
    # A quick run too short to leave chance is judged by another value, one an untrained model
    # or a training with learning rate 0 cannot reach: LOSS, LOSS_DROP or WEIGHT_CHANGE, with
    # ``quick_range`` (a variant's ``quick``) in its units.  None: the course's metric, as in the full profile.
    quick_judged_by: str | None = None
    tolerance: float = 0.0  # the largest difference allowed between the backends, same profile
    dataset: str | None = None
    scale: float | None = 1 / 255
    batch_size: int = 32
    stop: Stop | None = None
    # keras_basics: the first ``validation_samples`` training images become validation_data.
    validation_samples: int | None = None
    # keras_basics: scikit-learn's StandardScaler fitted on the training pixels as one column.
    standardize: bool = False
    # keras_basics: TensorBoard logs, keep-the-best checkpoint by val_loss, early stopping.
    callbacks: bool = False
    # Image folders read by each backend's own pipeline (horse_or_human): steps per epoch.
    steps_per_epoch: int | None = None
    # Judge the training metric instead of the test one (horse_or_human), of the last epoch or,
    # with judged_epoch HIGHEST, of the epoch that reached the most (full profile only).
    judge_training: bool = False
    judged_epoch: str = "last"
    # keras_basics: print predict(x_test[:n]) and its argmax classes, as the note does.
    show_predictions: int = 0
    variants: dict[str, Variant] = field(default_factory=dict)

    def variant(self, name: str | None) -> "Recipe":
        """The lesson's recipe with exercise ``name`` applied (``None`` or ``'default'``: as the course)."""
        if name in (None, "default"):
            return Recipe(self, "default", Variant("as the course writes it"))
        if name not in self.variants:
            raise DualBackendError(
                f"Unknown variant {name!r} of lesson {self.name!r}. "
                f"Valid variants: {', '.join(['default', *self.variants])}."
            )
        return Recipe(self, name, self.variants[name])


@dataclass(frozen=True)
class Recipe:
    """A lesson with one variant applied: everything a run needs, no number typed twice."""

    lesson: Lesson
    variant_name: str
    variant: Variant

    @property
    def options(self) -> dict:
        return {**self.lesson.options, **self.variant.options}

    def model_options(self, overrides: dict) -> dict:
        unknown = sorted(set(overrides) - set(self.lesson.options))
        if unknown:
            valid = ", ".join(self.lesson.options) or "none"
            raise DualBackendError(
                f"Unknown option {', '.join(map(repr, unknown))} for lesson {self.lesson.name!r}. "
                f"Valid options: {valid}."
            )
        return {**self.options, **overrides}

    def _pick(self, name: str):
        value = getattr(self.variant, name)
        return getattr(self.lesson, name) if value is None else value

    @property
    def epochs(self) -> int:
        return self._pick("epochs")

    @property
    def dataset(self) -> str | None:
        return self._pick("dataset")

    @property
    def stop(self) -> Stop | None:
        return self._pick("stop")

    @property
    def params(self) -> int:
        return self._pick("params")

    @property
    def scale(self) -> float | None:
        # A variant turns normalisation off with scale=1.0 (raw 0-255 pixels).
        return self._pick("scale")

    @property
    def tolerance(self) -> float:
        return self._pick("tolerance")

    @property
    def standardize(self) -> bool:
        return self._pick("standardize")

    @property
    def callbacks(self) -> bool:
        return self._pick("callbacks")

    @property
    def fails_with(self) -> str | None:
        return self.variant.fails_with

    @property
    def reads_image_folders(self) -> bool:
        """Whether the data are folders of image files that each backend reads with its own
        pipeline (horse_or_human), rather than arrays the front end loads and prepares."""
        return self.dataset == "horse_or_human"

    def judged_by(self, profile: str) -> str:
        """What a run of ``profile`` is judged by: the course's metric (hello_world: its
        prediction for x = 10), or what the spec names for a quick run that cannot leave chance."""
        if profile == "quick" and self._pick("quick_judged_by"):
            return self._pick("quick_judged_by")
        return self.lesson.metric or "prediction"

    def judged_on(self, profile: str) -> str:
        """Whether the judged value comes from the "test" set or the "training" logs."""
        training = self.lesson.judge_training or self.judged_by(profile) in (LOSS_DROP, WEIGHT_CHANGE)
        return "training" if training else "test"

    def judged_epoch(self, profile: str) -> str:
        """Which epoch's training value a run of ``profile`` judged on training is judged by: ``"last"``,
        or :data:`HIGHEST` for a full run of a lesson that says so (horse_or_human: RMSprop's swings
        throw any one epoch's accuracy down, late ones included, on tf.keras as on torch)."""
        highest = profile == "full" and self.lesson.judged_epoch == HIGHEST and self.lesson.judge_training
        return HIGHEST if highest else "last"

    def judged_value(self, profile: str, test: dict, history: dict, weight_change: float | None = None) -> float:
        """The number a run of ``profile`` is judged by, from its test metrics and its History: a test
        metric, a training value (horse_or_human, whose point is overfitting: the highest epoch's in
        a full run), how far the training loss fell from the first epoch to the last, or how far
        training moved the weights (``weight_change``, :func:`weight_change`)."""
        key = self.judged_by(profile)
        if key == WEIGHT_CHANGE:
            return weight_change
        if key == LOSS_DROP:
            return history["loss"][0] - history["loss"][-1]
        if self.judged_on(profile) == "training":
            return max(history[key]) if self.judged_epoch(profile) == HIGHEST else history[key][-1]
        return test[key]

    def expected(self, profile: str) -> Range:
        if profile == "full":
            return self.variant.full or self.lesson.full
        return self.variant.quick or self.lesson.quick_range

    def profile_epochs(self, profile: str) -> int:
        if profile == "quick":
            return min(self.epochs, self.lesson.quick.epochs)
        return self.epochs

    def steps_per_epoch(self, profile: str) -> int | None:
        if profile == "quick" and self.lesson.quick.steps_per_epoch:
            return self.lesson.quick.steps_per_epoch
        return self.lesson.steps_per_epoch

    def train_samples(self, profile: str) -> int | None:
        return self.lesson.quick.train_samples if profile == "quick" else None


FASHION_STOP = Stop(key="loss", below=0.4, message="Reached 60% accuracy so cancelling training!")
MNIST_STOP = Stop(key="accuracy", above=0.99, message="Reached 99% accuracy so cancelling training!")

LESSONS: dict[str, Lesson] = {}


def _register(lesson: Lesson) -> None:
    LESSONS[lesson.name] = lesson


_register(Lesson(
    name="hello_world",
    title="One neuron learns y = 3x + 1",
    notes="course note 003 (also 000)",
    dataset="hello_world",
    input_shape=(1,),
    options={},
    epochs=500,
    # The lesson is 500 one-step epochs; there is nothing shorter that still
    # shows the line being learned, so the quick profile is the full recipe.
    quick=Quick(epochs=500),
    params=2,
    metric=None,
    full=Range(30.9, 31.1),
    quick_range=Range(30.9, 31.1),
    tolerance=0.1,
    scale=None,
))

_register(Lesson(
    name="fashion_mlp",
    title="The first computer-vision model: Fashion-MNIST with one hidden layer",
    notes="course notes 000-003",
    dataset="fashion_mnist",
    input_shape=(28, 28),
    options={"hidden_units": 128, "extra_hidden_units": None, "flatten": True, "output_units": 10},
    epochs=5,
    # Quick: 10,000 training images, 2 epochs, full test set.
    quick=Quick(epochs=2, train_samples=10_000),
    params=101_770,
    metric="accuracy",
    full=Range(0.86, 0.89),
    quick_range=Range(0.77, 0.85),
    tolerance=0.02,
    variants={
        "width_512": Variant("hidden layer of 512 units: slower, a little more accurate",
                             options={"hidden_units": 512}, params=407_050, full=Range(0.86, 0.90)),
        "width_1024": Variant("hidden layer of 1024 units", options={"hidden_units": 1024},
                              params=814_090, full=Range(0.86, 0.90)),
        "extra_layer": Variant("an extra hidden layer: 512 -> 256 -> 10",
                               options={"hidden_units": 512, "extra_hidden_units": 256},
                               params=535_818, full=Range(0.86, 0.90)),
        "epochs_15": Variant("15 epochs: training loss keeps falling", epochs=15, full=Range(0.87, 0.90)),
        "epochs_30": Variant("30 epochs: test loss stops falling (overfitting)", epochs=30,
                             full=Range(0.87, 0.90)),
        "no_normalization": Variant("raw 0-255 pixels, no scaling by 1/255", scale=1.0,
                                    full=Range(0.70, 0.88),
                                    # Raw pixels make Adam's first steps huge: a seed moves the quick run a lot.
                                    quick=Range(0.55, 0.85), tolerance=0.1),
        "mnist": Variant("the same model on MNIST digits, width 512 (the note: 0.9776)", dataset="mnist",
                         options={"hidden_units": 512}, params=407_050,
                         full=Range(0.97, 0.99), quick=Range(0.92, 0.97)),
        "stop_callback": Variant("width 512, stop when the epoch's training loss < 0.4 (the note: after epoch 2)",
                                 options={"hidden_units": 512}, stop=FASHION_STOP, params=407_050,
                                 full=Range(0.84, 0.89)),
        "no_flatten": Variant("error exercise: no Flatten() first", options={"flatten": False, "hidden_units": 64},
                              params=2_506, fails_with="Flatten()"),
        "five_outputs": Variant("error exercise: last layer with 5 units for 10 classes",
                                options={"output_units": 5, "hidden_units": 64}, params=50_565,
                                fails_with="Received a label value of 9 which is outside the valid range of [0, 5)"),
    },
))

_register(Lesson(
    name="mnist_callback",
    title="Train MNIST to 99% and stop with a callback",
    notes="course note 000, exercise",
    dataset="mnist",
    input_shape=(28, 28),
    options={"hidden_units": 128},
    epochs=10,
    stop=MNIST_STOP,
    # Quick: 10,000 training images, at most 10 epochs.  Whether 99 % is reached within them
    # differs from run to run, so the quick profile does not assert the stop epoch.
    quick=Quick(epochs=10, train_samples=10_000),
    params=101_770,
    metric="accuracy",
    full=Range(0.97, 0.99),
    quick_range=Range(0.92, 0.97),
    tolerance=0.02,
    variants={
        "width_256": Variant("hidden layer of 256 units (the note tries it too)", options={"hidden_units": 256},
                             params=203_530),
    },
))

_register(Lesson(
    name="convolution",
    title="Convolution and pooling by hand: filter the 'ascent' image, then 2x2 max pooling",
    notes="course note 003, section 3",
    kind="convolution",
    dataset="ascent",
    # The filters are named here; their 3x3 values live in dual_backend.convolution.FILTERS.
    options={"filter": "horizontal", "weight": 1},
    variants={
        "edge": Variant("the note's edge filter: only sharp edges and straight lines pass",
                        options={"filter": "edge"}),
        "vertical": Variant("the note's third filter, the 'vertical' twin of the default",
                            options={"filter": "vertical"}),
    },
))


_register(Lesson(
    name="fashion_cnn",
    title="Convolutions improve Fashion-MNIST",
    notes="course note 003, section 4",
    dataset="fashion_mnist",
    input_shape=(28, 28, 1),
    # Exercises as options: ``filters`` of the first convolution (the second keeps 64),
    # ``conv_layers`` convolution+pooling blocks, and ``drop_last_conv`` which deletes
    # the second Conv2D line but keeps its pooling, as the exercise literally asks.
    options={"filters": 64, "conv_layers": 2, "drop_last_conv": False},
    epochs=5,
    # Quick: 5,000 training images, 1 epoch, full test set.
    quick=Quick(epochs=1, train_samples=5_000),
    params=243_786,
    metric="accuracy",
    # The course: "up to about 93%" training accuracy.
    full=Range(0.89, 0.93),
    quick_range=Range(0.70, 0.85),
    tolerance=0.04,
    variants={
        "filters_16": Variant("16 filters in the first convolution", options={"filters": 16}, params=215_658,
                              quick=Range(0.69, 0.84)),
        "filters_32": Variant("32 filters in the first convolution, as the note's step-by-step text",
                              options={"filters": 32}, params=225_034, quick=Range(0.68, 0.84)),
        "filters_64": Variant("64 filters in the first convolution (the default, named for the exercise)",
                              options={"filters": 64}),
        "drop_last_conv": Variant("the last Conv2D removed (its pooling kept): conv, pool, pool",
                                  options={"drop_last_conv": True}, params=296_970, full=Range(0.87, 0.92),
                                  quick=Range(0.70, 0.85)),
        "add_conv": Variant("a third convolution+pooling block", options={"conv_layers": 3}, params=84_106,
                            full=Range(0.85, 0.92), quick=Range(0.60, 0.80)),
        "only_first_conv": Variant("all convolutions but the first removed", options={"conv_layers": 1},
                                   params=1_386_506, full=Range(0.89, 0.93),
                                   quick=Range(0.74, 0.88)),
        "stop_callback": Variant("stop when the epoch's training loss < 0.4 (the previous lesson's callback)",
                                 stop=FASHION_STOP, full=Range(0.84, 0.93)),
    },
))

_register(Lesson(
    name="horse_or_human",
    title="A CNN on real 300x300 colour images",
    notes="course note 003, sections 5-6",
    dataset="horse_or_human",
    input_shape=(300, 300, 3),
    options={},
    epochs=15,
    batch_size=128,
    steps_per_epoch=8,
    # Quick: 1 epoch of 2 steps of 128 images, enough to see the pipelines and the model work,
    # not to learn (a few steps stay at chance accuracy, and after RMSprop's first jump the loss may
    # land anywhere, ln 2 included).  It is judged by how far the steps moved the weights, which
    # an untrained model or learning rate 0 leaves at 0: that checks that steps happen, not that
    # they learn (shuffled labels pass it); learning is the full profile's range.
    quick=Quick(epochs=1, steps_per_epoch=2),
    judge_training=True,
    params=8_450_145,
    metric="acc",
    # The course judges training accuracy (above 99%, then mistakes on new images);
    # the validation accuracy is reported, the full range is for training accuracy, of the
    # epoch that reached the most: with RMSprop at 0.001 any epoch may dip, the last one too,
    # on either framework (docs/verification.md).
    judged_epoch=HIGHEST,
    full=Range(0.95, 1.0),
    quick_range=Range(0.005, 1.0),
    quick_judged_by=WEIGHT_CHANGE,
    tolerance=0.10,
))

_register(Lesson(
    name="keras_basics",
    title="The tf.keras workflow end to end",
    notes="course note 004",
    dataset="fashion_mnist",
    input_shape=(28, 28),
    options={"hidden_units": (300, 100), "activation": "sigmoid", "batch_norm": False, "alpha_dropout": None},
    epochs=10,
    validation_samples=5_000,
    scale=None,  # baseline trains on raw, unscaled pixels
    show_predictions=3,
    # Quick: 10,000 of the 55,000 training images, 2 epochs.  The deep variants are noisy after 2
    # epochs, their tolerances say so; deep_relu's and deep_batchnorm's quick runs do not leave
    # chance by test accuracy, so they are judged otherwise (below; runs: docs/verification.md).
    quick=Quick(epochs=2, train_samples=10_000),
    params=266_610,
    metric="accuracy",
    # The course printed 0.7997.
    full=Range(0.70, 0.86),
    quick_range=Range(0.62, 0.79),
    tolerance=0.06,
    variants={
        "baseline": Variant("Dense 300 -> 100 sigmoid, sgd, raw pixels"),
        "standardized": Variant("inputs standardised with StandardScaler (one mean and std)", standardize=True,
                                full=Range(0.80, 0.88), quick=Range(0.52, 0.76), tolerance=0.10),
        "callbacks": Variant("standardised, with TensorBoard, best checkpoint by val_loss, early stopping",
                             standardize=True, callbacks=True, full=Range(0.80, 0.88), quick=Range(0.52, 0.76),
                             tolerance=0.10),
        # A quick run stays at chance (vanishing gradients), so it is judged by how far the training
        # loss falls from the first epoch to the second, which a learning rate of 0 cannot pass:
        # the gradients reach the weights, not that they learn (shuffled labels fall as far).
        "deep_relu": Variant("20 x Dense(10, relu): a slow start (vanishing gradients)", standardize=True,
                             options={"hidden_units": (10,) * 20, "activation": "relu"}, params=10_050,
                             full=Range(0.10, 0.88), quick=Range(0.00002, 0.5), quick_judged_by=LOSS_DROP,
                             tolerance=0.10,
                             full_holds_chance="some initial weights never leave chance in the 10 epochs, "
                                               "on either backend (docs/verification.md)"),
        "deep_batchnorm": Variant("20 x Dense(10, relu) + BatchNormalization", standardize=True,
                                  options={"hidden_units": (10,) * 20, "activation": "relu", "batch_norm": True},
                                  # quick: judged by test loss, where chance and a quick run lie apart
                                  params=10_850, full=Range(0.60, 0.88), quick=Range(1.40, 2.15),
                                  quick_judged_by=LOSS, tolerance=0.20),
        "deep_selu": Variant("20 x Dense(10, selu)", standardize=True,
                             options={"hidden_units": (10,) * 20, "activation": "selu"}, params=10_050,
                             full=Range(0.60, 0.88), quick=Range(0.40, 0.80), tolerance=0.20),
        "deep_alphadropout": Variant("20 x Dense(10, selu), AlphaDropout(0.5), softmax", standardize=True,
                                     options={"hidden_units": (10,) * 20, "activation": "selu",
                                              "alpha_dropout": 0.5},
                                     params=10_050, full=Range(0.40, 0.88), quick=Range(0.25, 0.65),
                                     tolerance=0.20),
        "deep_full": Variant("20 x Dense(100, selu), AlphaDropout(0.5), sgd, standardised, the three callbacks",
                             standardize=True, callbacks=True,
                             options={"hidden_units": (100,) * 20, "activation": "selu", "alpha_dropout": 0.5},
                             params=271_410, full=Range(0.75, 0.90), quick=Range(0.60, 0.86),
                             tolerance=0.12),
    },
))


def get(name: str) -> Lesson:
    if name not in LESSONS:
        raise DualBackendError(f"Unknown lesson {name!r}. Valid lessons: {', '.join(LESSONS)}.")
    return LESSONS[name]


def recipe(lesson: str, variant: str | None = None) -> Recipe:
    return get(lesson).variant(variant)


def weight_change(before: list, after: list) -> float:
    """|w - w0| / |w0|: how far training moved the weights, all arrays of ``get_weights()`` taken as one
    vector (Euclidean norms, in float64).  0 for a model whose steps did not move it."""
    moved = sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2)) for a, b in zip(after, before))
    return (moved / sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in before)) ** 0.5


def judged_label(metrics: dict) -> str:
    """What a finished run is judged by, in words: ``"test accuracy"``, ``"training loss"``,
    ``"training acc (highest epoch)"``."""
    highest = " (highest epoch)" if metrics.get("judged_epoch") == HIGHEST else ""
    return f"{metrics['judged_on']} {metrics['judged_by']}{highest}"


def judged_value(metrics: dict) -> float:
    """The number a finished run is judged by, as its ``metrics.json`` records it (a file written
    before the value was recorded: its test metric, or its last epoch's for a lesson judged on training)."""
    if "judged_value" in metrics:
        return metrics["judged_value"]
    source = metrics["final_training"] if metrics.get("judged_on") == "training" else metrics["test"]
    return source[metrics["judged_by"]]


