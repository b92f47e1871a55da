"""Keras-style callbacks that run unchanged on both backends.

Subclass :class:`Callback` once, exactly as you would subclass
``tf.keras.callbacks.Callback``; the keras backend adapts it into a Keras
callback and the torch backend into a Lightning callback.  ``self.model`` is
the front-end model, so ``self.model.stop_training = True`` works on both.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

from dual_backend.errors import DualBackendError
from dual_backend.formats import FILE_FORMATS


class Callback:
    """Override any of Keras' hooks; ``logs`` is a dict of floats keyed like Keras' logs.

    Every hook of ``keras.callbacks.Callback`` is called as Keras calls it, with
    the same keys and values on both backends: the batch hooks of ``fit``
    (``on_train_batch_end``: the epoch's running means so far), ``evaluate``
    and the validation inside ``fit`` (``on_test_*``), ``predict``
    (``on_predict_batch_end``: ``{"outputs": the batch's predictions}``), the
    epoch hooks (``on_epoch_end``: the epoch's logs, ``val_`` ones included) and
    ``on_train_end`` (the last epoch's logs).  Begin hooks get ``{}``.

    A callback that only samples the running logs (a progress bar) may set
    ``every_batch = False``: the torch backend then calls its training batch
    hooks once per chunk of steps (see ``torch_impl/backend.py``), which keeps
    Lightning's per-step overhead away.
    """

    every_batch = True
    chief_only = False  # True: in a data-parallel fit, only the process of rank 0 runs it (printing)

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        """``{'epochs': ..., 'steps': ..., 'verbose': ...}``, as Keras gives its callbacks."""
        self.params = params

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None): ...

    def on_train_batch_end(self, batch, logs=None): ...

    def on_test_begin(self, logs=None): ...

    def on_test_end(self, logs=None): ...

    def on_test_batch_begin(self, batch, logs=None): ...

    def on_test_batch_end(self, batch, logs=None): ...

    def on_predict_begin(self, logs=None): ...

    def on_predict_end(self, logs=None): ...

    def on_predict_batch_begin(self, batch, logs=None): ...

    def on_predict_batch_end(self, batch, logs=None): ...


# Called once per batch: the backends call them only when a callback overrides them (a host
# synchronisation per batch on torch; Keras turns the logs into Python numbers per batch).
BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
               "on_predict_batch_begin", "on_predict_batch_end")


class CallbackList:
    """Dispatches each hook to every callback in order; what the backends adapt."""

    def __init__(self, callbacks, model, params: dict):
        self.callbacks, self.model, self.params = list(callbacks), model, params
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook``."""
        return any(getattr(type(cb), hook) is not getattr(Callback, hook) for cb in self.callbacks)

    @property
    def wants_batches(self) -> bool:
        """Whether any callback overrides a training batch hook."""
        return self.wants("on_train_batch_begin") or self.wants("on_train_batch_end")

    @property
    def wants_every_batch(self) -> bool:
        """Whether a callback must see each training batch, not a sample of them (``Callback.every_batch``)."""
        return any(cb.every_batch and any(getattr(type(cb), hook) is not getattr(Callback, hook)
                                          for hook in ("on_train_batch_begin", "on_train_batch_end"))
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

    ``StopTraining("loss", below=0.4, message=...)`` is course note 000's Fashion-MNIST
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
    """A callback Keras ships: the keras backend hands it to the ``tf.keras.callbacks`` class of the same
    name, given every argument; the torch backend to Lightning's own where Lightning's rule is Keras',
    otherwise to Keras' rule written out in ``torch_impl/callbacks.py``.

    The arguments are Keras 3's, by name and default.  One that a backend
    cannot honour as Keras does is refused as the callback is made, in the
    same words on both backends.  Each backend's object is made once per
    front-end object and kept, so a callback given to several ``fit`` calls
    carries its state from one to the next as Keras' does (``ModelCheckpoint``'s
    best value).
    """

    def implementation(self, backend: str, make):
        """The backend's object for this callback: ``make()`` the first time, the same object after."""
        made = self.__dict__.setdefault("_implementations", {})
        if backend not in made:
            made[backend] = make()
        return made[backend]


def refused(call: str, argument: str, value, supported: str) -> DualBackendError:
    return DualBackendError(f"{call}({argument}={value!r}) is not supported by dual-backend on either backend "
                            f"({supported}).")


def known_mode(kind: str, mode: str) -> str:
    """Keras' ``MonitorCallback``: a mode other than 'auto', 'min' or 'max' is warned about and taken as 'auto'."""
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{kind} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
        return "auto"
    return mode


class TensorBoard(FrameworkCallback):
    """Epoch logs as TensorBoard event files under ``log_dir``
    (Keras' ``TensorBoard``; Lightning's ``TensorBoardLogger``).

    Each framework writes its own layout: Keras ``train/`` and ``validation/``
    folders of ``epoch_loss``..., Lightning one folder of ``loss``, ``val_loss``...
    Keras' default ``write_graph=True`` draws the model's graph on keras only.
    Any other argument away from Keras' default is refused (DualBackendError).
    """

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        for argument, value, default in (("histogram_freq", histogram_freq, 0), ("write_images", write_images, False),
                                         ("write_steps_per_second", write_steps_per_second, False),
                                         ("update_freq", update_freq, "epoch"), ("profile_batch", profile_batch, 0),
                                         ("embeddings_freq", embeddings_freq, 0),
                                         ("embeddings_metadata", embeddings_metadata, None)):
            if value != default:
                raise refused("TensorBoard", argument, value, f"epoch logs only; leave {argument} at {default!r}")
        self.log_dir, self.write_graph = str(log_dir), write_graph


class ModelCheckpoint(FrameworkCallback):
    """Keras 3's ``ModelCheckpoint``: save the model, or its weights, at the end of every epoch.

    ``filepath`` is formatted with the epoch counted from 1 and the epoch's
    logs (``"best_{epoch:02d}_{val_loss:.2f}.keras"``); a placeholder the logs
    lack raises Keras' ``KeyError('Failed to format this callback filepath: ...')``.
    With ``save_best_only`` a file is written only when ``monitor`` improved on
    the best value so far (strictly; ``initial_value_threshold`` the first
    best), and when ``monitor`` is not in the logs Keras warns ``Can save best
    model only with val_loss available.`` and saves.  ``mode`` 'auto': a loss
    is minimised, accuracy maximised, any other name raises Keras' ValueError
    at the first epoch's end.  The best value is kept across ``fit`` calls
    with the same callback.

    What is written: Keras' own files on both backends, the file ``filepath``
    names: ``model.save``'s ``.keras`` archive (or legacy ``.h5``), or with
    ``save_weights_only`` ``save_weights``' ``.weights.h5``; on torch written by
    ``dual_backend.keras_file``, so either backend (and tf.keras) reads them.

    Keras' ValueErrors, on both backends as the callback is made: a
    ``filepath`` not ending in ``.keras`` (or ``.h5``), one not ending in
    ``.weights.h5`` with ``save_weights_only=True``, a ``save_freq`` neither
    'epoch' nor an integer.  Refused (DualBackendError): an integer
    ``save_freq`` (saving every so many batches).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        self.filepath = str(filepath)
        self.monitor, self.verbose, self.mode = monitor, verbose, known_mode("ModelCheckpoint", mode)
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.save_freq, self.initial_value_threshold = save_freq, initial_value_threshold
        if save_freq != "epoch" and not isinstance(save_freq, int):
            raise DualBackendError(f"Unrecognized save_freq: {save_freq}. "
                                   "Expected save_freq are 'epoch' or integer values")
        if save_freq != "epoch":
            raise refused("ModelCheckpoint", "save_freq", save_freq, "saving at the end of each epoch: 'epoch'")
        if save_weights_only:
            if not self.filepath.endswith(".weights.h5"):
                raise DualBackendError("When using `save_weights_only=True` in `ModelCheckpoint`, the filepath "
                                       "provided must end in `.weights.h5` (Keras weights format). Received: "
                                       f"filepath={self.filepath}")
        elif not self.filepath.endswith((".keras", ".h5")):
            raise DualBackendError("The filepath provided must end in `.keras` (Keras model format). Received: "
                                   f"filepath={self.filepath}")


class EarlyStopping(FrameworkCallback):
    """Keras 3's ``EarlyStopping``: stop training when ``monitor`` has stopped improving.

    Keras' rule, epoch by epoch from ``start_from_epoch`` on (earlier epochs
    and epochs whose logs lack ``monitor`` are skipped; a missing ``monitor``
    gets Keras' warning ``Early stopping conditioned on metric `val_loss` which
    is not available. Available metrics are: ...``): a value improves when it
    beats the best so far by more than ``|min_delta|`` (``value - min_delta <
    best`` for 'min', ``value + min_delta > best`` for 'max'; the first value
    always does, and the comparison is in the float type of the model).  Each
    monitored epoch adds one to ``wait``; an improvement sets it back to 0 when
    it also beats ``baseline`` (if given).  Training stops at the end of an
    epoch that is not an improvement once ``wait >= patience`` (never after
    epoch 0: ``patience=0`` stops at the first epoch without improvement).
    ``mode`` 'auto': a loss is minimised, accuracy maximised, any other name
    raises Keras' ValueError at the first epoch's end; an unknown mode is
    warned about and taken as 'auto'.

    ``restore_best_weights``: at the end of training, stopped early or not,
    the weights of the best epoch (the first monitored one when none beat it)
    are set back, as Keras 3 does.  ``verbose=1`` prints Keras' lines,
    ``Epoch 5: early stopping`` and ``Restoring model weights from the end of
    the best epoch: 3.``  The same rule on both backends: Keras' own callback
    on keras, the rule written out on torch (``torch_impl.callbacks.KerasEarlyStopping``).
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, min_delta, patience, verbose
        self.mode, self.baseline = known_mode("EarlyStopping", mode), baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch


class CSVLogger(FrameworkCallback):
    """Keras' ``CSVLogger``: each epoch's logs as one row of ``filename``.

    The columns are Keras': ``epoch`` (counted from 0, ``initial_epoch`` on),
    then the logs' keys sorted, and when no ``val_`` key is logged the
    ``val_`` twin of each, written ``NA``; ``separator`` between fields, values
    as Python prints them.  ``append=True`` adds rows to an existing file,
    with the header only when the file is empty.  Keras' own callback on
    keras, the same writer on torch (``torch_impl.callbacks.KerasCSVLogger``).
    """

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = str(filename), separator, append


class TerminateOnNaN(FrameworkCallback):
    """Stop training at the first batch whose loss is NaN or infinite (Keras' ``TerminateOnNaN``;
    on torch a Lightning callback that does the same, since Lightning has none).

    Both print Keras' line, ``Batch 17: Invalid loss, terminating training``;
    the epoch ends at that batch and its logs, loss NaN or inf, are the last of
    the History.  ``Model.fit`` always adds one.
    """


BACKUP_FILES = {backend: f"last{formats.backup}" for backend, formats in FILE_FORMATS.items()}


class BackupAndRestore(FrameworkCallback):
    """Keras' ``BackupAndRestore`` on both backends: an interrupted ``fit`` continues where it stopped.

    After every finished epoch the training state goes to one file in
    ``backup_dir``: ``last.npz`` on keras (the model's and the optimizer's
    variables, which Keras' own callback saves) or ``last.ckpt`` on torch
    (Lightning's checkpoint: weights, optimizer, loop counters, callbacks and
    the random generator's state), with the epochs done and the History so far
    inside.  The file is written beside its final name and renamed into place,
    so an interrupt leaves the previous epoch's backup whole.  (Keras' own
    callback writes the weights and the epoch number to two files, one after
    the other; Lightning stages its checkpoints in the system's temporary
    folder, which may be another file system.)

    A ``fit`` given a ``BackupAndRestore`` whose folder holds a backup starts
    from it, after its last epoch, and returns the History of every epoch; on
    torch with a seed the result is bit for bit that of an uninterrupted fit.
    A backup written by another model or run is refused with the settings
    that differ: ``identity`` holds the run's own settings to check (``dual-backend
    run`` gives its seed and profile), besides the model's lesson, variant and
    options.

    An epoch whose loss is not finite is not backed up, and then the backup of
    the last good epoch is kept; otherwise it is deleted when ``fit`` finishes,
    unless ``delete_checkpoint=False`` (as in Keras).
    """

    def __init__(self, backup_dir, delete_checkpoint: bool = True, identity: dict | None = None):
        self.backup_dir = Path(backup_dir)
        self.delete_checkpoint = delete_checkpoint
        self.identity = dict(identity or {})
        self.record = self.empty_record({})

    @staticmethod
    def empty_record(identity: dict) -> dict:
        """What a backup holds beside the framework's state: plain numbers and strings (JSON)."""
        return {"epochs": 0, "history": {}, "seconds_per_epoch": [], "identity": identity}

    def path(self, backend: str) -> Path:
        return self.backup_dir / BACKUP_FILES[backend]

    def start(self, model) -> dict:
        """Read the model's backup, if there is one, and check that this model and run wrote it.

        Returns the record the backup holds (an empty one without a backup);
        training then goes on from ``record["epochs"]``."""
        identity = json.loads(json.dumps({"backend": model.backend, "lesson": model.lesson,
                                          "variant": model.variant, "options": model.options, **self.identity}))
        path = self.path(model.backend)
        self.record = self.empty_record(identity)
        if path.exists():
            record = model._read_backup(path)
            written = record.get("identity", {})
            differing = [key for key in identity if written.get(key) != identity[key]]
            if differing:
                raise DualBackendError(
                    f"{path} is the backup of another run ("
                    + ", ".join(f"{key}={written.get(key)!r}" for key in differing) + "), not of this one ("
                    + ", ".join(f"{key}={identity[key]!r}" for key in differing) + "). Continue it with "
                    "the same settings, or delete it to start over.")
            self.record = record
        return json.loads(json.dumps(self.record))

    def keep_epoch(self) -> bool:
        """Whether the epoch just finished goes into the backup: not when its loss is NaN or infinite."""
        losses = self.record["history"].get("loss")
        return not losses or math.isfinite(losses[-1])

    def delete_at_end(self) -> bool:
        """Whether a finished ``fit`` deletes the backup: not when it stopped on a NaN loss."""
        return self.delete_checkpoint and self.keep_epoch()


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


class BackupRecorder(Callback):
    """Keeps a :class:`BackupAndRestore`'s record of the History up to date, epoch by epoch,
    before the backend writes the backup of that epoch."""

    def __init__(self, backup: BackupAndRestore, timer: EpochTimer):
        super().__init__()
        self.backup, self.timer = backup, timer

    def on_epoch_end(self, epoch, logs=None):
        record = self.backup.record
        record["epochs"] = epoch + 1
        for key, value in (logs or {}).items():
            record["history"].setdefault(key, []).append(float(value))
        record["seconds_per_epoch"].append(self.timer.seconds[-1])
