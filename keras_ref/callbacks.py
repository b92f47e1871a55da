"""The front end's callbacks on Keras: its Keras-style callbacks in Keras' hooks, and Keras' own
callbacks for the front end's ``TensorBoard``, ``ModelCheckpoint``, ``EarlyStopping``,
``CSVLogger``, ``TerminateOnNaN`` and ``BackupAndRestore``.

Mirror of ``torch_impl/callbacks.py``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from dual_backend.callbacks import (BATCH_HOOKS, BackupAndRestore, CSVLogger, EarlyStopping, ModelCheckpoint,
                                    TensorBoard, TerminateOnNaN)
from dual_backend.errors import DualBackendError
from dual_backend.interrupts import atomic_write
from dual_backend.model import order_logs
from keras_ref import process

if TYPE_CHECKING:  # the backend imports this module
    from keras_ref.backend import KerasModel

with process.start_up_lines_hidden():
    import tensorflow as tf


class KerasCallbacks(tf.keras.callbacks.Callback):
    """Runs the front end's Keras-style callbacks from Keras' own hooks, logs in the front end's order."""

    def __init__(self, callbacks, front: "KerasModel"):
        super().__init__()
        self.callbacks, self.front = callbacks, front

    def _logs(self, logs) -> dict:
        return order_logs(logs or {}, self.front.log_keys)

    def on_train_begin(self, logs=None):
        self.callbacks.on_train_begin({})

    def on_epoch_begin(self, epoch, logs=None):
        self.callbacks.on_epoch_begin(epoch, {})

    def on_epoch_end(self, epoch, logs=None):
        self.callbacks.on_epoch_end(epoch, self._logs(logs))
        if self.front.stop_training:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.callbacks.on_train_end(self._logs(logs))

    def on_test_begin(self, logs=None):
        self.callbacks.on_test_begin({})

    def on_test_end(self, logs=None):
        self.callbacks.on_test_end(self._logs(logs))

    def on_predict_begin(self, logs=None):
        self.callbacks.on_predict_begin({})

    def on_predict_end(self, logs=None):
        self.callbacks.on_predict_end({})


def _batch_hook(hook: str):
    def forward(self, batch, logs=None):
        if hook == "on_predict_batch_end":
            logs = {"outputs": np.asarray(logs["outputs"])}
        elif hook.endswith("_end"):
            logs = self._logs(logs)
        else:
            logs = {}
        getattr(self.callbacks, hook)(batch, logs)

    return forward


def keras_callbacks(callbacks, front: "KerasModel") -> KerasCallbacks:
    """The adapter, with only the batch hooks some callback overrides: once a batch hook exists
    Keras turns the logs into Python numbers after every batch."""
    hooks = {hook: _batch_hook(hook) for hook in BATCH_HOOKS if callbacks.wants(hook)}
    return type("KerasCallbacks", (KerasCallbacks,), hooks)(callbacks, front) if hooks else \
        KerasCallbacks(callbacks, front)


class KerasBackupAndRestore(tf.keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore``, writing one file whole: ``last.npz`` holds every variable of the
    model and of its optimizer, and the front end's record (epochs done, History so far).

    Keras' own callback writes ``latest.weights.h5`` and then
    ``training_metadata.json``, each in place: an interrupt between the two
    pairs epoch k+1's weights with epoch k's number (the resumed fit would
    train epoch k+1 twice), and one during a write leaves a broken file.  The
    variables are written as plain arrays, not with ``save_weights``, which
    takes as long as one of hello_world's one-step epochs (docs/speed.md); they are
    read back with ``allow_pickle=False``.  Restoring goes Keras' way: the
    variables are set at the start of ``fit``, which then starts at the next epoch.
    """

    def __init__(self, backup: BackupAndRestore):
        super().__init__(str(backup.backup_dir), delete_checkpoint=backup.delete_checkpoint)
        self.backup = backup
        self.path = backup.path("keras")

    def _variables(self) -> list:
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return [*self.model.variables, *(optimizer.variables if optimizer is not None else [])]

    def _load_model(self):
        if not self.path.exists():
            return
        variables = self._variables()
        with np.load(self.path, allow_pickle=False) as stored:
            arrays = [stored[str(index)] for index in range(len(stored.files) - 1)]
        if [tuple(a.shape) for a in arrays] != [tuple(v.shape) for v in variables]:
            raise DualBackendError(f"{self.path} holds the variables of another model. Delete it to start over.")
        for variable, array in zip(variables, arrays):
            variable.assign(array)
        self.model._initial_epoch = self.backup.record["epochs"]

    def _save_model(self):
        arrays = {str(index): np.asarray(variable) for index, variable in enumerate(self._variables())}
        record = np.array(json.dumps(self.backup.record))
        atomic_write(self.path, lambda temporary: np.savez(temporary, record=record, **arrays))

    def on_epoch_end(self, epoch, logs=None):
        if self.backup.keep_epoch():
            super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # Keras leaves it set, and a later fit would start there too
        if self.backup.delete_at_end():
            super().on_train_end(logs)


def keras_callback(callback):
    """The front end's ``TensorBoard`` / ``ModelCheckpoint`` / ``EarlyStopping`` / ``CSVLogger`` /
    ``TerminateOnNaN`` / ``BackupAndRestore`` as Keras' own, given every argument."""
    if isinstance(callback, TerminateOnNaN):
        return tf.keras.callbacks.TerminateOnNaN()
    if isinstance(callback, BackupAndRestore):
        return KerasBackupAndRestore(callback)
    if isinstance(callback, TensorBoard):
        return tf.keras.callbacks.TensorBoard(callback.log_dir, write_graph=callback.write_graph)
    if isinstance(callback, ModelCheckpoint):
        return callback.implementation("keras", lambda: tf.keras.callbacks.ModelCheckpoint(
            callback.filepath, monitor=callback.monitor, verbose=callback.verbose,
            save_best_only=callback.save_best_only, save_weights_only=callback.save_weights_only,
            mode=callback.mode, save_freq=callback.save_freq,
            initial_value_threshold=callback.initial_value_threshold))
    if isinstance(callback, EarlyStopping):
        return callback.implementation("keras", lambda: tf.keras.callbacks.EarlyStopping(
            monitor=callback.monitor, min_delta=callback.min_delta, patience=callback.patience,
            verbose=callback.verbose, mode=callback.mode, baseline=callback.baseline,
            restore_best_weights=callback.restore_best_weights, start_from_epoch=callback.start_from_epoch))
    if isinstance(callback, CSVLogger):
        return tf.keras.callbacks.CSVLogger(callback.filename, separator=callback.separator, append=callback.append)
    raise DualBackendError(f"No Keras counterpart for {type(callback).__name__}.")
