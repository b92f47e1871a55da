"""Keras' callbacks on Lightning: the front end's callbacks in Lightning's hooks, Lightning's own
callbacks, logger and checkpoint files set to Keras' semantics, and Keras' rules where Lightning's differ
(``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``).

Mirror of ``keras_ref/callbacks.py``.
"""

from __future__ import annotations

import csv
import math
import operator
import shutil
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from dual_backend.callbacks import (BATCH_HOOKS, BackupAndRestore, Callback, CSVLogger, EarlyStopping,
                                    ModelCheckpoint, TensorBoard, TerminateOnNaN)
from dual_backend.errors import DualBackendError
from dual_backend.interrupts import atomic_write
from dual_backend.model import order_logs
from dual_backend.precision import floatx
from torch_impl.fast.chunks import StepChunk

if TYPE_CHECKING:  # the backend imports this module
    from torch_impl.backend import TorchModel


class KerasCallbacks(L.Callback):
    """Runs the front end's Keras-style callbacks from Lightning's hooks and records the History.

    Lightning's validation inside ``fit``, its ``validate`` and its ``predict``
    call Keras' ``on_test_*`` and ``on_predict_*`` hooks; Lightning counts epochs
    from 0, Keras from ``initial_epoch``.  The batch hooks run only when a
    callback overrides them (reading the running means is a host synchronisation).
    """

    def __init__(self, callbacks, front: "TorchModel", initial_epoch: int = 0):
        self.callbacks, self.front, self.initial_epoch = callbacks, front, initial_epoch
        self.wanted = {hook for hook in BATCH_HOOKS if callbacks.wants(hook)}
        self.history: dict[str, list[float]] = defaultdict(list)
        self.last_logs: dict = {}

    def _ordered(self, means, prefix: str = "") -> dict:
        return order_logs(means.compute(prefix), [f"{prefix}{key}" for key in self.front.log_keys])

    def on_train_start(self, trainer, module):
        if trainer.global_rank > 0:  # data-parallel: the other processes train and decide, rank 0 reports
            self.callbacks.callbacks = [c for c in self.callbacks.callbacks if not c.chief_only]
        self.callbacks.on_train_begin({})

    def on_train_epoch_start(self, trainer, module):
        self.callbacks.on_epoch_begin(self.initial_epoch + trainer.current_epoch, {})

    @staticmethod
    def _first_step(batch, batch_idx) -> int:
        return batch.last_step - len(batch) + 1 if isinstance(batch, StepChunk) else batch_idx

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if "on_train_batch_begin" in self.wanted:
            self.callbacks.on_train_batch_begin(self._first_step(batch, batch_idx), {})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if "on_train_batch_end" in self.wanted:
            step = batch.last_step if isinstance(batch, StepChunk) else batch_idx
            self.callbacks.on_train_batch_end(step, self._ordered(module.train_means))

    def on_train_epoch_end(self, trainer, module):
        # Lightning has already run this epoch's validation when this hook fires.
        logs = {**module.train_means.compute(across_processes=True), **module.val_means.compute("val_")}
        logs = order_logs(logs, self.front.log_keys)
        module.log_dict({k: v for k, v in logs.items() if not k.startswith("val_")})  # val_: by the module
        for key, value in logs.items():
            self.history[key].append(value)
        self.last_logs = logs
        self.callbacks.on_epoch_end(self.initial_epoch + trainer.current_epoch, logs)
        if self.front.stop_training:
            trainer.should_stop = True

    def on_train_end(self, trainer, module):
        self.callbacks.on_train_end(dict(self.last_logs))

    def on_validation_start(self, trainer, module):
        self.callbacks.on_test_begin({})

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        if "on_test_batch_begin" in self.wanted:
            self.callbacks.on_test_batch_begin(batch_idx, {})

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if "on_test_batch_end" in self.wanted:
            self.callbacks.on_test_batch_end(batch_idx, self._ordered(module.val_means))

    def on_validation_end(self, trainer, module):
        self.callbacks.on_test_end(self._ordered(module.val_means))

    def on_predict_start(self, trainer, module):
        self.callbacks.on_predict_begin({})

    def on_predict_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        if "on_predict_batch_begin" in self.wanted:
            self.callbacks.on_predict_batch_begin(batch_idx, {})

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if "on_predict_batch_end" in self.wanted:
            self.callbacks.on_predict_batch_end(batch_idx, {"outputs": outputs.detach().cpu().numpy()})

    def on_predict_end(self, trainer, module):
        self.callbacks.on_predict_end({})


class LightningTerminateOnNaN(L.Callback):
    """Keras' ``TerminateOnNaN``, which Lightning lacks: stop when a batch's loss is NaN or infinite,
    with Keras' words.

    It reads the epoch's running loss sum (a NaN or infinite loss stays in it) once per
    Lightning batch: every step when steps go one at a time, once per chunk of 32 on the
    fast path (``TensorBatches``), so that the steps between need no host synchronisation;
    training then stops at the end of the chunk holding the bad step."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if not module.train_means.seen or math.isfinite(float(module.train_means.loss_sum)):
            return
        step = batch_idx
        if isinstance(batch, StepChunk):  # Keras names the first bad step: find it in the chunk
            finite = torch.isfinite(torch.stack(module.chunk_losses))
            step = batch.last_step - len(batch) + 1 + int((~finite).nonzero()[0, 0])
        print(f"Batch {step}: Invalid loss, terminating training")
        trainer.should_stop = True


class KerasMonitor(Callback):
    """Keras' ``MonitorCallback``, which Lightning's callbacks do not share: which way ``monitor``
    improves ('auto' from the model's metrics) and by how much a value must beat the best."""

    def __init__(self, kind: str, monitor: str, mode: str, baseline=None, min_delta=0):
        super().__init__()
        self.kind, self.monitor, self.mode = kind, monitor, mode
        self.best, self.min_delta, self.monitor_op = baseline, abs(min_delta), None

    def _set_monitor_op(self):
        metric_name = self.monitor.removeprefix("val_")
        if self.mode == "min" or (self.mode == "auto" and metric_name == "loss"):
            self.monitor_op = operator.lt
        elif self.mode == "max" or metric_name in self.model.metrics:  # Keras' accuracies go "up"
            self.monitor_op = operator.gt
        else:
            raise ValueError(
                f"{self.kind} callback received monitor={self.monitor}, but Keras isn't able to automatically "
                "determine whether that metric should be maximized or minimized. Pass `mode='max'` in order to "
                "monitor based on the highest metric value, or pass `mode='min'` in order to use the lowest value.")
        if self.monitor_op is operator.lt:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value, reference_value) -> bool:
        if reference_value is None:
            return True
        # keras.ops compares Python numbers as tensors of floatx: 1e-9 apart is equal in float32.
        as_floatx = np.dtype(floatx()).type
        return bool(self.monitor_op(as_floatx(monitor_value - self.min_delta), as_floatx(reference_value)))


class KerasEarlyStopping(KerasMonitor):
    """Keras 3's ``EarlyStopping`` rule (see ``dual_backend.callbacks.EarlyStopping``), line for line.

    Lightning's ``EarlyStopping`` has no ``baseline``, ``start_from_epoch``,
    ``restore_best_weights`` or 'auto' mode, stops on a NaN, and its state
    travels in Lightning's checkpoints, where Keras' starts afresh each ``fit``."""

    def __init__(self, settings: EarlyStopping):
        super().__init__("EarlyStopping", settings.monitor, settings.mode, min_delta=settings.min_delta)
        self.patience, self.verbose, self.baseline = settings.patience, settings.verbose, settings.baseline
        self.restore_best_weights, self.start_from_epoch = settings.restore_best_weights, settings.start_from_epoch
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(keras_order(logs))}", stacklevel=2)
        return value


def keras_order(logs: dict) -> list[str]:
    """The keys in Keras 3's order, in which its messages list them: the training ones sorted, then the ``val_`` ones."""
    return [*sorted(k for k in logs if not k.startswith("val_")), *sorted(k for k in logs if k.startswith("val_"))]


class KerasModelCheckpoint(KerasMonitor):
    """Keras 3's ``ModelCheckpoint`` at the end of each epoch (see ``dual_backend.callbacks.ModelCheckpoint``),
    writing Keras' own files (``dual_backend.keras_file``).

    Lightning's ``ModelCheckpoint`` keeps the top k files, deleting the rest,
    counts epochs from 0 in file names and knows no ``initial_value_threshold``;
    Keras writes a file at each improvement and deletes none."""

    chief_only = True  # data-parallel: one process writes

    def __init__(self, settings: ModelCheckpoint):
        super().__init__("ModelCheckpoint", settings.monitor, settings.mode, baseline=settings.initial_value_threshold)
        self.filepath, self.verbose = settings.filepath, settings.verbose
        self.save_best_only, self.save_weights_only = settings.save_best_only, settings.save_weights_only

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs or {}
        try:
            filepath = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}') from None
        if not self._should_save_model(epoch, logs, filepath):
            return
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _should_save_model(self, epoch, logs, filepath) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            return True
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {current:.5f}, "
                      f"saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False


class KerasCSVLogger(Callback):
    """Keras' ``CSVLogger`` (see ``dual_backend.callbacks.CSVLogger``): Lightning's ``CSVLogger`` writes
    its own layout (a ``step`` column, one row per logging call)."""

    chief_only = True

    def __init__(self, settings: CSVLogger):
        super().__init__()
        self.filename, self.separator, self.append = settings.filename, settings.separator, settings.append
        self.csv_file = self.writer = self.keys = None

    def on_train_begin(self, logs=None):
        self.append_header = True
        if self.append and Path(self.filename).exists():
            with open(self.filename) as existing:
                self.append_header = not existing.readline()
        self.csv_file = open(self.filename, "a" if self.append else "w")
        self.writer = self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        if self.writer is None:
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], delimiter=self.separator)
            if self.append_header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{key: logs.get(key, "NA") for key in self.keys}})
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        self.csv_file.close()
        self.writer = None


def random_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}


def set_random_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class LightningBackupAndRestore(L.Callback):
    """The torch half of the front end's ``BackupAndRestore``: Lightning's own checkpoint of the whole
    training state (weights, optimizer, loop counters, callbacks' states) after every finished
    epoch, which ``trainer.fit(ckpt_path=...)`` continues from.

    It adds what Lightning leaves out: the random generators' states, so that
    the next epoch's batch order and dropout masks are those an uninterrupted
    run would draw, and the front end's record (epochs done, History so far).
    (Lightning's ``ModelCheckpoint(save_last=True)`` would also back up the
    epoch whose loss went NaN.)
    """

    def __init__(self, backup: BackupAndRestore):
        self.backup = backup

    def on_train_epoch_end(self, trainer, module):
        if self.backup.keep_epoch():
            trainer.save_checkpoint(self.backup.path("torch"))  # whole or not at all: AtomicCheckpointIO

    def on_save_checkpoint(self, trainer, module, checkpoint):
        checkpoint["dual_backend"] = {"record": self.backup.record, "random_state": random_state()}

    def on_load_checkpoint(self, trainer, module, checkpoint):
        set_random_state(checkpoint["dual_backend"]["random_state"])

    def on_train_end(self, trainer, module):
        if self.backup.delete_at_end():
            shutil.rmtree(self.backup.backup_dir, ignore_errors=True)


def backup_to_resume(framework) -> str | None:
    """The backup ``trainer.fit`` continues from, when the front end's ``BackupAndRestore`` found one."""
    for callback in framework:
        if isinstance(callback, BackupAndRestore) and callback.path("torch").exists():
            return str(callback.path("torch"))
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint files, written whole or not at all and read without running code.

    Lightning stages a checkpoint in the system's temporary folder and moves it
    into place, which is a copy, not an atomic rename, when that folder is on
    another file system; here it is written beside its final name and renamed.
    Reading always passes ``weights_only=True``: tensors and plain values only,
    where an unrestricted unpickle would run whatever code the file holds.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def lightning_counterparts(framework) -> tuple:
    """The front end's ``TensorBoard`` / ``ModelCheckpoint`` / ``EarlyStopping`` / ``CSVLogger`` /
    ``TerminateOnNaN`` / ``BackupAndRestore`` on Lightning: ``(logger, Lightning callbacks, Keras-rule
    callbacks)``, the last run with the front end's callbacks, after them, on the epoch logs Keras' see."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger, chosen, rules = False, [], []
    for callback in framework:
        if isinstance(callback, TensorBoard):
            logger = TensorBoardLogger(save_dir=callback.log_dir, name="", version="")
        elif isinstance(callback, ModelCheckpoint):
            rules.append(callback.implementation("torch", lambda: KerasModelCheckpoint(callback)))
        elif isinstance(callback, EarlyStopping):
            rules.append(callback.implementation("torch", lambda: KerasEarlyStopping(callback)))
        elif isinstance(callback, CSVLogger):
            rules.append(KerasCSVLogger(callback))
        elif isinstance(callback, TerminateOnNaN):
            chosen.append(LightningTerminateOnNaN())
        elif isinstance(callback, BackupAndRestore):
            chosen.append(LightningBackupAndRestore(callback))
        else:
            raise DualBackendError(f"No Lightning counterpart for {type(callback).__name__}.")
    return logger, chosen, rules
