"""Keras' callbacks on Lightning: the front end's callbacks in Lightning's hooks, and Lightning's own
callbacks, logger and checkpoint files set to Keras' semantics.

Mirror of ``keras_ref/callbacks.py``.
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from dual_backend.callbacks import (BATCH_HOOKS, BackupAndRestore, EarlyStopping, ModelCheckpoint, TensorBoard,
                                    TerminateOnNaN)
from dual_backend.errors import DualBackendError
from dual_backend.interrupts import atomic_write
from dual_backend.model import order_logs
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
    """The front end's ``TensorBoard`` / ``ModelCheckpoint`` / ``EarlyStopping`` / ``TerminateOnNaN`` /
    ``BackupAndRestore`` as Lightning's logger and callbacks, set to Keras' semantics."""
    from lightning.pytorch import callbacks as lightning_callbacks
    from lightning.pytorch.loggers import TensorBoardLogger

    logger, chosen = False, []
    for callback in framework:
        if isinstance(callback, TensorBoard):
            logger = TensorBoardLogger(save_dir=callback.log_dir, name="", version="")
        elif isinstance(callback, ModelCheckpoint):
            path = Path(callback.filepath)
            # Keras' save_best_only keeps one file, overwritten on each improvement.
            chosen.append(lightning_callbacks.ModelCheckpoint(
                dirpath=path.parent, filename=path.stem, monitor=callback.monitor if callback.save_best_only else None,
                mode="min", save_top_k=1, enable_version_counter=False,
                auto_insert_metric_name=False))
        elif isinstance(callback, EarlyStopping):
            chosen.append(lightning_callbacks.EarlyStopping(
                monitor=callback.monitor, mode="min", patience=callback.patience, min_delta=callback.min_delta))
        elif isinstance(callback, TerminateOnNaN):
            chosen.append(LightningTerminateOnNaN())
        elif isinstance(callback, BackupAndRestore):
            chosen.append(LightningBackupAndRestore(callback))
        else:
            raise DualBackendError(f"No Lightning counterpart for {type(callback).__name__}.")
    return logger, chosen
