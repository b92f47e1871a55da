"""The Keras surface both backends share: compile, fit, evaluate, predict, summary, save.

:class:`Model` does everything that does not depend on the framework once:
checking inputs, choosing the callbacks, timing epochs, shaping what is
returned.  ``keras_ref.backend.KerasModel`` and ``torch_impl.backend.TorchModel``
fill in the few methods that do: the abstract methods at the end of
:class:`Model` are the whole contract.  :class:`BackendModule` is the rest of
it, what each backend's module offers beside its model class.
"""

from __future__ import annotations

import abc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dual_backend import validation
from dual_backend.callbacks import (BackupAndRestore, BackupRecorder, CallbackList, EpochTimer, FrameworkCallback,
                                    TerminateOnNaN, as_callbacks)
from dual_backend.errors import DualBackendError, TrainingInterrupted
from dual_backend.interrupts import sigterm_as_keyboard_interrupt
from dual_backend.progress import ProgressBar, finished_line


# Set to a list by ``dual-backend exec`` (``dual_backend.script``): every fit's History and every evaluate's
# result is appended to it, as plain values.
recorded_calls: list[dict] | None = None


@dataclass
class History:
    """What ``fit`` returns: ``history`` maps each log key to one value per epoch, as in Keras."""

    history: dict[str, list[float]]
    epoch: list[int]
    seconds_per_epoch: list[float] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def terminated_on_nan(self) -> bool:
        """Whether training stopped because the loss became NaN or infinite (its last epoch's loss)."""
        losses = self.history.get("loss")
        return bool(losses) and not math.isfinite(losses[-1])


def steady_seconds(*runs: list[float]) -> float:
    """Steady seconds per epoch of one or more runs: the median of every epoch after each run's
    first, which carries start-up, tracing and cold caches (the first epochs themselves when no
    run has more than one; 0.0 when none has any).  The median, so that one epoch that waited on
    something else does not move it."""
    later = [seconds for run in runs for seconds in run[1:]] or [run[0] for run in runs if run]
    return statistics.median(later) if later else 0.0


def batches_in(samples: int, batch_size: int) -> int:
    """How many batches of ``batch_size`` hold ``samples`` samples, the last one possibly short."""
    return -(-samples // batch_size)


# The speed-up's precision (``--precision``): float32, or bfloat16 autocast.  Not the float type
# of float64 mode, which is ``dual_backend.precision.FLOAT_TYPES``.
MIXED_PRECISIONS = ("float32", "bf16")


@dataclass(frozen=True)
class SpeedUps:
    """Speed-ups that change the numbers a model computes, so all are off by default (parity
    and the accuracy ranges are measured without them).

    ``precision="bf16"``: bfloat16 autocast (Lightning's ``bf16-mixed``) on torch, the
    ``mixed_bfloat16`` policy on keras.  ``compile``: ``torch.compile`` on torch, XLA
    (``jit_compile=True``) on keras, which Keras already chooses by itself on a GPU.
    ``channels_last``: torch's convolutions in channels-last memory (keras computes NHWC anyway).
    """

    precision: str = "float32"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self):
        if self.precision not in MIXED_PRECISIONS:
            raise DualBackendError(f"Unknown precision {self.precision!r}. "
                                   f"Valid precisions: {', '.join(MIXED_PRECISIONS)}.")

    def flags(self) -> list[str]:
        """As command-line flags (empty: the default numerics)."""
        return ([f"--precision={self.precision}"] if self.precision != "float32" else []) + \
            (["--compile"] if self.compile else []) + (["--channels-last"] if self.channels_last else [])


def require_gpus(devices: int, seen: int, framework: str) -> None:
    """Refuse a data-parallel fit over more GPUs than ``framework`` sees, in the same words on both backends."""
    if seen < devices:
        raise DualBackendError(f"--devices {devices} asks for {devices} GPUs; {framework} sees {seen}.")


def unsupported(**given: bool) -> None:
    """Refuse the Keras arguments the backends cannot give with Keras' meaning, naming them."""
    names = [name for name, used in given.items() if used]
    if names:
        raise DualBackendError(
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not supported by dual-backend on either "
            "backend: leave it out (the front end takes every other argument of Keras' compile, fit, evaluate "
            "and predict with Keras' meaning).")


def order_logs(logs: dict, loss_and_metrics: list[str]) -> dict:
    """Logs in Keras 2's order, the same on both backends: loss, metrics, then their ``val_`` twins."""
    keys = [*loss_and_metrics, *(f"val_{key}" for key in loss_and_metrics)]
    return {key: float(logs[key]) for key in keys if key in logs}


class Model(abc.ABC):
    backend = ""

    def __init__(self, lesson: str | None, variant: str | None, options: dict, device: str):
        self.lesson, self.variant, self.options, self.device = lesson, variant, options, device
        self.speedups = SpeedUps()
        self.devices = 1  # > 1: data-parallel fit (MirroredStrategy on keras, DDP on torch)
        self.rank = 0  # this process's rank in a data-parallel fit; only rank 0 reports and saves
        self.stop_training = False
        self.optimizer = self.loss = None
        self.optimizer_description = None  # a dual_backend.keras.optimizers description given to compile
        self.from_logits = False  # compiled with keras.losses.X(from_logits=True)
        self.metrics: list[str] = []

    # ------------------------------------------------------------------ Keras surface

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """As ``keras.Model.compile``; the lessons come compiled as the course compiles them.

        Every argument of Keras 3's ``compile`` is taken.  ``run_eagerly``,
        ``jit_compile`` (``"auto"`` or ``False``) and ``auto_scale_loss`` change
        no number here (torch runs eagerly; Keras scales losses only under
        float16 mixed precision).  What the backends cannot give with Keras'
        meaning raises :class:`DualBackendError` naming the argument:
        ``loss_weights`` and ``weighted_metrics`` (one output, unweighted
        metrics), ``steps_per_execution`` other than 1, ``jit_compile=True``
        (a speed-up that changes the numbers: ``dual_backend.build(..., compile=True)``)."""
        unsupported(loss_weights=loss_weights is not None, weighted_metrics=bool(weighted_metrics),
                    steps_per_execution=steps_per_execution != 1)
        if jit_compile is True:
            raise DualBackendError("jit_compile=True is not taken: XLA on keras and torch.compile on torch change "
                                   "the numbers computed. Ask for it with dual_backend.build(..., compile=True), "
                                   "or leave jit_compile out.")
        from dual_backend.keras.losses import Loss  # (the package imports this module)
        from dual_backend.keras.optimizers import Optimizer

        self.from_logits = isinstance(loss, Loss) and loss.from_logits  # the outputs are logits (keras.losses)
        self.loss = validation.loss_name(loss.name if isinstance(loss, Loss) else loss)
        self.metrics = validation.metric_names(metrics)
        self.optimizer_description = optimizer if isinstance(optimizer, Optimizer) else None  # (what save keeps)
        if isinstance(optimizer, Optimizer):  # keras.optimizers.Adam(...): the framework's own, with its settings
            optimizer = self._built_optimizer(optimizer)
        self.optimizer = optimizer if self._is_optimizer(optimizer) else validation.optimizer_name(optimizer)
        self._compile(self.optimizer, self.loss, self.metrics)
        return self

    @property
    def log_keys(self) -> list[str]:
        return ["loss", *self.metrics]

    def _check(self, x, y, batch_size: int):
        inputs = validation.as_inputs(x, self.input_shape[1:], pipeline_accepted=True)
        targets = validation.as_targets(y, len(inputs), self.loss, self.output_shape, batch_size)
        return inputs, targets

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch: int | None = None, validation_steps=None,
            validation_batch_size: int | None = None, validation_freq: int = 1,
            batch_order_seed: int | None = None) -> History:
        """As ``keras.Model.fit``.  ``x`` is an array (with labels ``y``) or the backend's own
        pipeline of ``(images, labels)`` batches: a ``tf.data.Dataset`` on keras, a
        ``DataLoader`` on torch (see ``horse_or_human``); ``steps_per_epoch`` limits an epoch.

        Keras' meanings: ``batch_size`` 32 when not given; ``validation_split``
        keeps the last fraction of the arrays for validation, taken before any
        shuffling (ignored when ``validation_data`` is given); ``class_weight``
        (``{class: weight}``) becomes a weight per sample by Keras' rule
        (``class_weight_to_sample_weights``), and a batch's loss is then
        ``sum(weight · loss) / batch size``, the metrics unweighted;
        ``initial_epoch`` starts the epoch count there (``History.epoch`` and
        the callbacks' epochs say so).  ``validation_steps`` and a
        ``validation_freq`` other than 1 raise :class:`DualBackendError`.

        ``batch_order_seed`` ("same order"): instead of each framework shuffling
        with its own generator, both take the samples in the permutations that
        ``numpy.random.default_rng(batch_order_seed)`` draws, one per epoch, so
        two backends see the very same batches.

        What can go wrong, the same on both backends: a loss that becomes NaN
        or infinite stops training at that batch (:class:`TerminateOnNaN`,
        always on; ``History.terminated_on_nan`` says so).  Ctrl-C or SIGTERM
        raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) saying
        what was kept; with a :class:`BackupAndRestore` callback that is the
        last finished epoch, and the next ``fit`` with it continues from there."""
        if self.loss is None:
            raise DualBackendError("The model must be compiled before fit: call model.compile(...) first.")
        unsupported(validation_steps=validation_steps is not None, validation_freq=validation_freq != 1)
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        epochs = validation.integer_argument("epochs", epochs, minimum=0)
        initial_epoch = validation.integer_argument("initial_epoch", initial_epoch, minimum=0, default=0)
        steps_per_epoch = validation.integer_argument("steps_per_epoch", steps_per_epoch, minimum=1)
        validation_batch_size = validation.integer_argument("validation_batch_size", validation_batch_size,
                                                            minimum=1, default=batch_size)
        callbacks = as_callbacks(callbacks)
        if class_weight is not None and sample_weight is not None:
            raise DualBackendError("Give class_weight or sample_weight, not both (as in Keras).")
        if self._is_pipeline(x):
            if y is not None:
                raise DualBackendError("A data pipeline yields its own labels: pass y=None.")
            for name, value in (("validation_split", validation_split), ("class_weight", class_weight),
                                ("sample_weight", sample_weight)):
                if value:
                    raise DualBackendError(f"{name} needs arrays x and y; a data pipeline was given. "
                                           f"Pass arrays, or leave {name} out.")
            try:
                steps = steps_per_epoch or len(x)
            except TypeError:  # tf.data's and torch_impl's repeat(): no length
                raise DualBackendError("This data pipeline repeats without end: pass steps_per_epoch "
                                       "(how many of its batches make an epoch).") from None
        else:
            x, y = self._check(x, y, batch_size)
            if class_weight is not None:
                sample_weight = validation.class_weights_per_sample(y, class_weight)
            if sample_weight is not None:
                sample_weight = validation.as_sample_weights(sample_weight, len(x))
            if validation_split and validation_data is None:
                x, y, sample_weight, validation_data = validation.split_off_validation(
                    x, y, sample_weight, validation_split)
            steps = min(steps_per_epoch or np.inf, batches_in(len(x), batch_size))
        if validation_data is not None and not self._is_pipeline(validation_data):
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise DualBackendError("validation_data must be a tuple (x_val, y_val) or a data pipeline.")
            try:
                validation_data = self._check(*validation_data, validation_batch_size)
            except DualBackendError as error:
                raise DualBackendError(f"In validation_data: {error}") from None
        framework_callbacks = [c for c in callbacks if isinstance(c, FrameworkCallback)]
        if not any(isinstance(c, TerminateOnNaN) for c in framework_callbacks):
            framework_callbacks.append(TerminateOnNaN())
        backup = next((c for c in framework_callbacks if isinstance(c, BackupAndRestore)), None)
        restored = backup.start(self) if backup else BackupAndRestore.empty_record({})
        # A backup's epochs come first, as Keras' BackupAndRestore overrides initial_epoch.
        if restored["epochs"]:
            initial_epoch = 0
        first_epoch = restored["epochs"] or initial_epoch
        timer = EpochTimer()
        chosen = [timer, *([ProgressBar()] if verbose else []),
                  *(c for c in callbacks if not isinstance(c, FrameworkCallback)),
                  *([BackupRecorder(backup, timer)] if backup else [])]
        callback_list = CallbackList(chosen, self, {"epochs": int(epochs), "steps": int(steps), "verbose": verbose})
        self.stop_training = False
        batch_orders = shuffle
        if batch_order_seed is not None:
            if self._is_pipeline(x):
                raise DualBackendError("batch_order_seed needs arrays: a pipeline decides its own order.")
            rng = np.random.default_rng(batch_order_seed)
            # Drawn for every epoch, so that a resumed fit takes the permutations the rest would have taken.
            batch_orders = [rng.permutation(len(x)) for _ in range(int(epochs))][first_epoch:]
        try:
            with sigterm_as_keyboard_interrupt():
                logs = self._fit(x, y, int(epochs), int(batch_size), validation_data, callback_list, batch_orders,
                                 steps_per_epoch, framework_callbacks, initial_epoch=initial_epoch,
                                 sample_weight=sample_weight, validation_batch_size=validation_batch_size)
        except KeyboardInterrupt as interrupt:
            raise self._interrupted(interrupt, backup, first_epoch + len(timer.seconds) + 1,
                                    int(epochs)) from None
        keys = [*restored["history"], *(key for key in logs if key not in restored["history"])]
        history = History(history={key: restored["history"].get(key, []) + logs.get(key, []) for key in keys},
                          epoch=list(range(initial_epoch, first_epoch + len(timer.seconds))),
                          seconds_per_epoch=restored["seconds_per_epoch"] + timer.seconds,
                          params={"epochs": int(epochs), "steps": int(steps)})
        if recorded_calls is not None:
            recorded_calls.append({"call": "fit", "model": self.name, "history": history.history,
                                   "seconds_per_epoch": history.seconds_per_epoch})
        return history

    def _interrupted(self, interrupt: KeyboardInterrupt, backup: BackupAndRestore | None, epoch: int,
                     epochs: int) -> TrainingInterrupted:
        """The :class:`TrainingInterrupted` to raise: which signal, which epoch, what the backup holds."""
        path = backup.path(self.backend) if backup else None
        kept = self._read_backup(path)["epochs"] if path is not None and path.exists() else 0
        error = TrainingInterrupted("", getattr(interrupt, "signal_name", "SIGINT"), min(epoch, epochs), epochs,
                                    path if kept else None, kept)
        message = f"Training was interrupted ({error.cause}) in epoch {error.epoch} of {epochs}. "
        if kept:
            message += (f"{path} holds the first {kept} epoch{'s' if kept > 1 else ''}: fit again with the same "
                        "BackupAndRestore to continue from there.")
        elif backup:
            message += "No epoch had finished, so there is no backup to continue from."
        else:
            message += ("Nothing was kept: give fit a dual_backend.BackupAndRestore(folder) callback "
                        "to be able to continue an interrupted fit.")
        error.args = (message,)
        return error

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None,
                 steps: int | None = None, callbacks=None, return_dict: bool = False, **kwargs):
        """As ``keras.Model.evaluate``: ``[loss, metric, ...]`` in compile order, the bare loss when
        compiled without metrics, or ``{"loss": ..., "accuracy": ...}`` with ``return_dict=True``.

        ``sample_weight`` weighs each sample's loss as in ``fit``; ``steps`` evaluates the first
        ``steps`` batches; ``callbacks`` get the ``on_test_*`` hooks; ``verbose`` ("auto", as Keras'
        default, or 1; 0 for silence) prints Keras' line for it: steps, seconds, the results."""
        unsupported(**{name: True for name in kwargs})
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        steps = validation.integer_argument("steps", steps, minimum=1)
        if self._is_pipeline(x):
            if y is not None:
                raise DualBackendError("A data pipeline yields its own labels: pass y=None.")
            if sample_weight is not None:
                raise DualBackendError("sample_weight needs arrays x and y; a data pipeline was given. "
                                       "Pass arrays, or leave sample_weight out.")
        else:
            x, y = self._check(x, y, batch_size)
            if sample_weight is not None:
                sample_weight = validation.as_sample_weights(sample_weight, len(x))
            if steps is not None:
                x, y = x[:steps * batch_size], y[:steps * batch_size]
                sample_weight = None if sample_weight is None else sample_weight[:steps * batch_size]
        callback_list = self._callback_list(callbacks, verbose, steps, x, batch_size)
        start = time.perf_counter()
        logs = self._evaluate(x, y, batch_size, callbacks=callback_list, sample_weight=sample_weight, steps=steps)
        logs = {key: float(logs[key]) for key in self.log_keys}
        if recorded_calls is not None:
            recorded_calls.append({"call": "evaluate", "model": self.name, "result": logs})
        if verbose:
            print(finished_line(callback_list.params["steps"], time.perf_counter() - start, logs), flush=True)
        if return_dict:
            return logs
        values = list(logs.values())
        return values if self.metrics else values[0]

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps: int | None = None,
                callbacks=None) -> np.ndarray:
        """As ``keras.Model.predict``: outputs as numpy, probabilities for softmax and sigmoid heads.
        ``steps`` predicts the first ``steps`` batches; ``callbacks`` get the ``on_predict_*`` hooks
        (``on_predict_batch_end``'s logs: ``{"outputs": the batch's predictions}``); ``verbose`` ("auto",
        as Keras' default, or 1; 0 for silence) prints Keras' line for it: steps and seconds."""
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        steps = validation.integer_argument("steps", steps, minimum=1)
        if not self._is_pipeline(x):
            x = validation.as_inputs(x, self.input_shape[1:], pipeline_accepted=True)
            if steps is not None:
                x = x[:steps * batch_size]
        callback_list = self._callback_list(callbacks, verbose, steps, x, batch_size)
        start = time.perf_counter()
        outputs = self._predict(x, batch_size, callbacks=callback_list, steps=steps if self._is_pipeline(x) else None)
        if verbose:
            print(finished_line(callback_list.params["steps"], time.perf_counter() - start), flush=True)
        return outputs

    def _callback_list(self, callbacks, verbose, steps, x, batch_size: int) -> CallbackList:
        """``evaluate``'s and ``predict``'s callbacks (Keras' own classes of them would train nothing here)."""
        chosen = as_callbacks(callbacks)
        framework = [type(c).__name__ for c in chosen if isinstance(c, FrameworkCallback)]
        if framework:
            raise DualBackendError(f"{', '.join(framework)} acts during fit only: give it to fit, not here.")
        if steps is None and not self._is_pipeline(x):
            steps = batches_in(len(x), batch_size)
        return CallbackList(chosen, self, {"epochs": 1, "steps": steps, "verbose": verbose})

    def summary(self, print_fn=print) -> None:
        print_fn(format_summary(self.name, self.layer_rows(), self.count_params(), self.trainable_params()))

    def count_params(self) -> int:
        return sum(params for *_, params in self.layer_rows())

    def get_weights(self) -> list[np.ndarray]:
        """Keras' ``model.get_weights()`` on both backends: the arrays in Keras' layout and order
        (Dense kernels (inputs, units), Conv2D kernels HWIO, BatchNormalization's four)."""
        return self._get_weights()

    def set_weights(self, weights) -> None:
        self._set_weights(list(weights))

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Keras 3's ``model.save_weights``: a ``.weights.h5`` file in Keras' own layout on both backends
        (the weights and the optimizer's variables), which ``load_weights`` reads on either.
        ``DualBackendError`` for another suffix (Keras' words), or for an existing file with
        ``overwrite=False`` (Keras would ask on the terminal)."""
        from pathlib import Path

        if not str(filepath).endswith(".weights.h5"):
            raise DualBackendError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
        if not overwrite and Path(filepath).exists():
            raise DualBackendError(f"{filepath} exists and overwrite=False: delete it, or save_weights(..., "
                                   "overwrite=True).")
        self._save_weights(filepath)

    def load_weights(self, filepath, skip_mismatch: bool = False) -> None:
        """Keras 3's ``model.load_weights`` of a ``.weights.h5`` file (from either backend, or tf.keras)
        into this model: each layer by its class and position, as Keras matches them; the
        optimizer's variables too when the file holds them.  ``DualBackendError`` naming the file and
        the layer when it does not fit; ``skip_mismatch=True`` is refused."""
        if skip_mismatch:
            raise DualBackendError("load_weights(skip_mismatch=True) is not supported by dual-backend on either "
                                   "backend: leave it out.")
        if not str(filepath).endswith(".weights.h5"):
            raise DualBackendError(f"load_weights reads .weights.h5 files (model.save_weights); got {filepath}. "
                                   "For a whole model file use keras.models.load_model.")
        self._load_weights(filepath)

    def definition(self) -> dict | None:
        """A ``dual_backend.keras`` model's layers as plain values, which a saved file keeps so that the
        model can be built again when it is loaded (``dual_backend.keras.models.from_definition``);
        None for a lesson, which is built again by name."""
        return None

    def layer_names(self) -> list[str]:
        return [name for name, *_ in self.layer_rows()]

    def layer_outputs(self, x) -> list[np.ndarray]:
        """Every layer's output for ``x``, images in Keras' (N, height, width, channels) layout
        on both backends: what the course's activation figures are drawn from."""
        return self._layer_outputs(validation.as_inputs(x, self.input_shape[1:]))

    # ------------------------------------------------------------------ what each backend implements

    name = "sequential"
    input_shape: tuple = ()  # Keras' (None, ...) shapes, set by the backend
    output_shape: tuple = ()

    def _is_pipeline(self, x) -> bool:
        """Whether ``x`` is the backend's own data pipeline rather than an array."""
        return False

    def _is_optimizer(self, optimizer) -> bool:
        """Whether ``optimizer`` is the backend's own optimizer object rather than a name."""
        return False

    @abc.abstractmethod
    def _built_optimizer(self, description):
        """The framework's optimizer (or, on torch, its factory) for a ``dual_backend.keras.optimizers``
        description, with Keras' update rule and the description's settings."""

    @abc.abstractmethod
    def _compile(self, optimizer, loss, metrics) -> None:
        """Set the framework's optimizer (a name from ``validation.optimizer_name``, or the backend's
        own object), loss and metrics up, as ``keras.Model.compile`` would."""

    @abc.abstractmethod
    def _fit(self, x, y, epochs, batch_size, validation_data, callbacks, batch_orders, steps_per_epoch,
             framework_callbacks, initial_epoch, sample_weight, validation_batch_size) -> dict:
        """Train, calling ``callbacks`` (a :class:`CallbackList`) as Keras calls its callbacks, and return
        each log key's per-epoch values.  ``x``, ``y`` and ``validation_data`` are checked arrays or the
        backend's own pipeline.  ``batch_orders``: True / False (shuffle with the framework's own
        generator or not), or one permutation of the samples per epoch still to train.
        ``framework_callbacks``: the :class:`FrameworkCallback` objects, ``TerminateOnNaN`` always
        among them, each to be handed to the framework's own implementation.  ``initial_epoch``: the
        number of the first epoch (0 when a backup is restored: the backend continues from it);
        ``sample_weight``: one weight per sample of ``x``, or None; ``validation_batch_size``: the
        batch size for array ``validation_data``."""

    @abc.abstractmethod
    def _evaluate(self, x, y, batch_size, callbacks, sample_weight, steps) -> dict:
        """The loss and metrics over ``x`` (arrays or a pipeline), keyed as ``log_keys``, calling
        ``callbacks``' ``on_test_*`` hooks; ``sample_weight`` for arrays, ``steps`` batches of a pipeline."""

    @abc.abstractmethod
    def _predict(self, x, batch_size, callbacks, steps) -> np.ndarray:
        """The model's outputs for checked inputs or a pipeline (its first ``steps`` batches), as numpy,
        calling ``callbacks``' ``on_predict_*`` hooks."""

    @abc.abstractmethod
    def _get_weights(self) -> list[np.ndarray]:
        """The weights in Keras' layout and order (see :meth:`get_weights`)."""

    @abc.abstractmethod
    def _set_weights(self, weights: list[np.ndarray]) -> None:
        """Take weights in Keras' layout and order."""

    @abc.abstractmethod
    def _layer_outputs(self, x) -> list[np.ndarray]:
        """Every layer's output for checked inputs, images NHWC (see :meth:`layer_outputs`)."""

    @abc.abstractmethod
    def layer_rows(self) -> list[tuple[str, str, tuple, int]]:
        """``(name, type, output shape with None batch, parameter count)`` per layer."""

    @abc.abstractmethod
    def trainable_params(self) -> int:
        """How many of the parameters training changes."""

    @abc.abstractmethod
    def _save_weights(self, path) -> None:
        """Write a ``.weights.h5`` file as Keras 3's ``save_weights`` does."""

    @abc.abstractmethod
    def _load_weights(self, path) -> None:
        """Read a ``.weights.h5`` file as Keras 3's ``load_weights`` does."""

    @abc.abstractmethod
    def save(self, path) -> None:
        """Write the model, with its lesson, variant and options, to ``path``, a file of the backend's
        ``FILE_FORMATS[backend].model`` kind, whole or not at all."""

    @abc.abstractmethod
    def _read_backup(self, path) -> dict:
        """The record a :class:`BackupAndRestore` file holds (epochs, History, identity), read without
        running anything from the file; ``DualBackendError`` when it is not a readable backup."""


class BackendModule(Protocol):
    """What ``keras_ref.backend`` and ``torch_impl.backend`` offer beside their :class:`Model`
    (``dual_backend.backend_package`` returns one)."""

    def build(self, program, recipe, options: dict, device: str, devices: int = 1,
              speedups: SpeedUps | None = None) -> Model:
        """The lesson's model from ``program`` (its ``keras_ref/`` or ``torch_impl/`` file), compiled."""

    def load(self, path, device: str) -> Model:
        """A model that ``Model.save`` wrote."""

    def seed(self, value: int) -> None:
        """Seed every generator the framework draws from, and ask for deterministic kernels."""

    def set_floatx(self, name: str) -> None:
        """The framework's float type for new models: "float32" or "float64"."""


def format_summary(name: str, rows, total: int, trainable: int) -> str:
    """A Keras-2-style summary table, identical in form on both backends."""
    width = 65
    lines = [f'Model: "{name}"', "_" * width, f"{' Layer (type)':<29}{'Output Shape':<26}Param #", "=" * width]
    for index, (layer, kind, shape, params) in enumerate(rows):
        shape_text = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        lines.append(f" {f'{layer} ({kind})':<28}{shape_text:<26}{params:,}")
        lines.append("_" * width if index < len(rows) - 1 else "=" * width)
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * width]
    return "\n".join(lines)
