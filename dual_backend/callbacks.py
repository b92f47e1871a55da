"""Keras-style callbacks that run unchanged on both backends.

Subclass :class:`Callback` once, exactly as you would subclass
``tf.keras.callbacks.Callback``; the keras backend adapts it into a Keras
callback and the torch backend into a Lightning callback.  ``self.model`` is
the front-end model, so ``self.model.stop_training = True`` works on both.
"""

from __future__ import annotations

import time

from dual_backend.errors import DualBackendError


class Callback:
    """Override any of the hooks; ``logs`` is a dict of floats keyed like Keras' logs.

    ``on_train_batch_end`` runs after every batch, as in Keras.  A callback that
    only samples the running logs (a progress bar) may set ``every_batch = False``:
    the torch backend then calls it once per chunk of steps (see
    ``torch_impl/_model.py``), which keeps Lightning's per-step overhead away.
    """

    every_batch = True
    chief_only = False  # True: in a data-parallel fit, only the process of rank 0 runs it (printing)

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        """``{'epochs': ..., 'steps': ...}``, as Keras gives its callbacks."""
        self.params = params

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_end(self, batch, logs=None): ...


class CallbackList:
    """Dispatches each hook to every callback in order; what the backends adapt."""

    def __init__(self, callbacks, model, params: dict):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    @property
    def wants_batches(self) -> bool:
        """Whether any callback overrides the per-batch hook (it costs a sync per call on torch)."""
        return any(type(cb).on_train_batch_end is not Callback.on_train_batch_end for cb in self.callbacks)

    @property
    def wants_every_batch(self) -> bool:
        """Whether a callback must see each batch, not a sample of them (``Callback.every_batch``)."""
        return any(type(cb).on_train_batch_end is not Callback.on_train_batch_end and cb.every_batch
                   for cb in self.callbacks)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def dispatch(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)

        return dispatch


class StopTraining(Callback):
    """The course's ``myCallback``: stop when an epoch's log crosses a threshold.

    ``StopTraining("loss", below=0.4, message=...)`` is seed 000's Fashion-MNIST
    exercise, ``StopTraining("accuracy", above=0.99, message=...)`` its MNIST one.
    """

    def __init__(self, key: str, below: float | None = None, above: float | None = None, message: str = ""):
        super().__init__()
        self.key, self.below, self.above, self.message = key, below, above, message

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.key)
        if value is None:
            return
        if (self.below is not None and value < self.below) or (self.above is not None and value > self.above):
            print(f"\n{self.message}")
            self.model.stop_training = True


class FrameworkCallback:
    """A callback both frameworks already ship: each backend hands it to its own implementation.

    The keras side builds the ``tf.keras.callbacks`` class of the same name;
    the torch side Lightning's logger or callback, set to the same semantics.
    """


class TensorBoard(FrameworkCallback):
    """Epoch logs as TensorBoard event files under ``log_dir``
    (Keras' ``TensorBoard``; Lightning's ``TensorBoardLogger``)."""

    def __init__(self, log_dir):
        self.log_dir = str(log_dir)


class ModelCheckpoint(FrameworkCallback):
    """Save the model after an epoch; with ``save_best_only`` only when ``monitor`` improved.

    Keras writes ``filepath`` (``.keras``); Lightning writes ``filepath`` with
    the suffix ``.ckpt`` (a Lightning checkpoint whose ``state_dict`` holds the weights).
    """

    def __init__(self, filepath, monitor: str = "val_loss", save_best_only: bool = False):
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, save_best_only


class EarlyStopping(FrameworkCallback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Keras' and Lightning's rules agree: an improvement is ``value < best - min_delta``
    (for a loss), and training stops once ``patience`` epochs in a row are not one.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta


class EpochTimer(Callback):
    """Wall-clock seconds of each epoch, validation included, as Keras' progress bar counts them."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def as_callbacks(callbacks) -> list:
    """``fit``'s ``callbacks`` as a list (one callback alone is taken, as Keras 3 takes it), each one
    the front end's: a :class:`Callback` runs on both backends, a framework's own would run on one."""
    if callbacks is None:
        return []
    chosen = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    for callback in chosen:
        if not isinstance(callback, (Callback, FrameworkCallback)):
            raise DualBackendError(
                f"callbacks must be dual_backend.Callback subclasses or dual_backend.TensorBoard, ModelCheckpoint, "
                f"EarlyStopping; got {type(callback).__module__}.{type(callback).__name__}. Write it once against "
                "dual_backend.Callback (on_epoch_end(self, epoch, logs)) and it runs on both backends."
            )
    return chosen
