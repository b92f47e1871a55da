"""The Keras surface both backends share: compile, fit, evaluate, predict, summary, save.

:class:`Model` does everything that does not depend on the framework once:
checking inputs, choosing the callbacks, timing epochs, shaping what is
returned.  ``keras_ref.backend.KerasModel`` and ``torch_impl.backend.TorchModel``
fill in the few methods that do (``_compile``, ``_fit``, ``_evaluate``,
``_predict``, ``layer_rows``, ``_save``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dual_backend import validation
from dual_backend.callbacks import (BackupAndRestore, BackupRecorder, CallbackList, EpochTimer, FrameworkCallback,
                                    TerminateOnNaN, as_callbacks)
from dual_backend.errors import DualBackendError, TrainingInterrupted
from dual_backend.interrupts import sigterm_as_keyboard_interrupt
from dual_backend.progress import ProgressBar


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


PRECISIONS = ("float32", "bf16")


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
        if self.precision not in PRECISIONS:
            raise DualBackendError(f"Unknown precision {self.precision!r}. Valid precisions: {', '.join(PRECISIONS)}.")

    def flags(self) -> list[str]:
        """As command-line flags (empty: the default numerics)."""
        return ([f"--precision={self.precision}"] if self.precision != "float32" else []) + \
            (["--compile"] if self.compile else []) + (["--channels-last"] if self.channels_last else [])


def order_logs(logs: dict, loss_and_metrics: list[str]) -> dict:
    """Logs in Keras 2's order, the same on both backends: loss, metrics, then their ``val_`` twins."""
    keys = [*loss_and_metrics, *(f"val_{key}" for key in loss_and_metrics)]
    return {key: float(logs[key]) for key in keys if key in logs}


class Model:
    backend = ""

    def __init__(self, lesson: str | None, variant: str | None, options: dict, device: str):
        self.lesson, self.variant, self.options, self.device = lesson, variant, options, device
        self.speedups = SpeedUps()
        self.devices = 1  # > 1: data-parallel fit (MirroredStrategy on keras, DDP on torch)
        self.rank = 0  # this process's rank in a data-parallel fit; only rank 0 reports and saves
        self.stop_training = False
        self.optimizer = self.loss = None
        self.metrics: list[str] = []

    # ------------------------------------------------------------------ Keras surface

    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """As ``keras.Model.compile``; the lessons come compiled as the course compiles them."""
        self.loss = validation.loss_name(loss)
        self.metrics = validation.metric_names(metrics)
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

    def fit(self, x, y=None, epochs: int = 1, batch_size: int | None = 32, validation_data=None,
            callbacks=None, verbose="auto", shuffle: bool = True, steps_per_epoch: int | None = None,
            batch_order_seed: int | None = None) -> History:
        """As ``keras.Model.fit``.  ``x`` is an array (with labels ``y``) or the backend's own
        pipeline of ``(images, labels)`` batches: a ``tf.data.Dataset`` on keras, a
        ``DataLoader`` on torch (see ``horse_or_human``); ``steps_per_epoch`` limits an epoch.

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
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        epochs = validation.integer_argument("epochs", epochs, minimum=0)
        steps_per_epoch = validation.integer_argument("steps_per_epoch", steps_per_epoch, minimum=1)
        callbacks = as_callbacks(callbacks)
        if self._is_pipeline(x):
            if y is not None:
                raise DualBackendError("A data pipeline yields its own labels: pass y=None.")
            try:
                steps = steps_per_epoch or len(x)
            except TypeError:  # tf.data's and torch_impl's repeat(): no length
                raise DualBackendError("This data pipeline repeats without end: pass steps_per_epoch "
                                       "(how many of its batches make an epoch).") from None
        else:
            x, y = self._check(x, y, batch_size)
            steps = min(steps_per_epoch or np.inf, -(-len(x) // batch_size))
        if validation_data is not None and not self._is_pipeline(validation_data):
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise DualBackendError("validation_data must be a tuple (x_val, y_val) or a data pipeline.")
            try:
                validation_data = self._check(*validation_data, batch_size)
            except DualBackendError as error:
                raise DualBackendError(f"In validation_data: {error}") from None
        framework = [c for c in callbacks if isinstance(c, FrameworkCallback)]
        if not any(isinstance(c, TerminateOnNaN) for c in framework):
            framework.append(TerminateOnNaN())
        backup = next((c for c in framework if isinstance(c, BackupAndRestore)), None)
        restored = backup.start(self) if backup else BackupAndRestore.empty_record({})
        timer = EpochTimer()
        chosen = [timer, *([ProgressBar()] if verbose else []),
                  *(c for c in callbacks if not isinstance(c, FrameworkCallback)),
                  *([BackupRecorder(backup, timer)] if backup else [])]
        callback_list = CallbackList(chosen, self, {"epochs": int(epochs), "steps": int(steps), "verbose": verbose})
        self.stop_training = False
        if batch_order_seed is not None:
            if self._is_pipeline(x):
                raise DualBackendError("batch_order_seed needs arrays: a pipeline decides its own order.")
            rng = np.random.default_rng(batch_order_seed)
            # Drawn for every epoch, so that a resumed fit takes the permutations the rest would have taken.
            shuffle = [rng.permutation(len(x)) for _ in range(int(epochs))][restored["epochs"]:]
        try:
            with sigterm_as_keyboard_interrupt():
                logs = self._fit(x, y, int(epochs), int(batch_size), validation_data, callback_list, shuffle,
                                 steps_per_epoch, framework)
        except KeyboardInterrupt as interrupt:
            raise self._interrupted(interrupt, backup, restored["epochs"] + len(timer.seconds) + 1,
                                    int(epochs)) from None
        keys = [*restored["history"], *(key for key in logs if key not in restored["history"])]
        return History(history={key: restored["history"].get(key, []) + logs.get(key, []) for key in keys},
                       epoch=list(range(restored["epochs"] + len(timer.seconds))),
                       seconds_per_epoch=restored["seconds_per_epoch"] + timer.seconds,
                       params={"epochs": int(epochs), "steps": int(steps)})

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

    def evaluate(self, x, y=None, batch_size: int | None = 32, verbose=0):
        """``[loss, metric, ...]`` in compile order, or the bare loss when compiled without metrics."""
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        if self._is_pipeline(x):
            if y is not None:
                raise DualBackendError("A data pipeline yields its own labels: pass y=None.")
        else:
            x, y = self._check(x, y, batch_size)
        logs = self._evaluate(x, y, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {logs[k]:.4f}" for k in self.log_keys))
        values = [float(logs[key]) for key in self.log_keys]
        return values if self.metrics else values[0]

    def predict(self, x, batch_size: int | None = 32) -> np.ndarray:
        """Outputs as numpy: probabilities for softmax and sigmoid heads."""
        batch_size = validation.integer_argument("batch_size", batch_size, minimum=1, default=32)
        return self._predict(validation.as_inputs(x, self.input_shape[1:]), batch_size)

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

    def layer_names(self) -> list[str]:
        return [name for name, *_ in self.layer_rows()]

    def layer_outputs(self, x) -> list[np.ndarray]:
        """Every layer's output for ``x``, images in Keras' (N, height, width, channels) layout
        on both backends: what the course's activation figures are drawn from."""
        return self._layer_outputs(validation.as_inputs(x, self.input_shape[1:]))

    # ------------------------------------------------------------------ for the backends

    name = "sequential"
    input_shape: tuple = ()
    output_shape: tuple = ()

    def trainable_params(self) -> int:
        raise NotImplementedError

    def layer_rows(self) -> list[tuple[str, str, tuple, int]]:
        """``(name, type, output shape with None batch, parameter count)`` per layer."""
        raise NotImplementedError

    def _is_pipeline(self, x) -> bool:
        """Whether ``x`` is the backend's own data pipeline rather than an array."""
        return False

    def _is_optimizer(self, optimizer) -> bool:
        """Whether ``optimizer`` is the backend's own optimizer object rather than a name."""
        return False

    def _compile(self, optimizer, loss, metrics): raise NotImplementedError
    def _fit(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle, steps_per_epoch,
             framework) -> dict: raise NotImplementedError
    def _layer_outputs(self, x) -> list[np.ndarray]: raise NotImplementedError
    def _get_weights(self) -> list[np.ndarray]: raise NotImplementedError
    def _set_weights(self, weights) -> None: raise NotImplementedError
    def _evaluate(self, x, y, batch_size) -> dict: raise NotImplementedError
    def _predict(self, x, batch_size) -> np.ndarray: raise NotImplementedError
    def save(self, path) -> None: raise NotImplementedError

    def _read_backup(self, path) -> dict:
        """The record a :class:`BackupAndRestore` file holds (epochs, History, identity), read without
        running anything from the file; ``DualBackendError`` when it is not a readable backup."""
        raise NotImplementedError


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
