"""The torch backend behind the front end: a lesson's LightningModule, trained by Lightning's Trainer.

Mirror of ``keras_ref/backend.py``.  What Keras does inside ``fit`` is done
here with Lightning's pieces: the Trainer runs the loop, a Lightning callback
carries the user's Keras-style callbacks, and the batches are sliced from
tensors already on the target device, reshuffled every epoch as Keras does.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import shutil
import signal
import threading
import warnings
from collections import defaultdict
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from dual_backend.callbacks import (BATCH_HOOKS, BackupAndRestore, EarlyStopping, ModelCheckpoint, TensorBoard,
                                    TerminateOnNaN)
from dual_backend import validation
from dual_backend.environments import cuda_libraries_advice
from dual_backend.errors import DualBackendError, refused_code
from dual_backend.interrupts import atomic_write
from dual_backend.model import Model, order_logs
from torch_impl import process
from torch_impl.fast.chunks import StepChunk


def select_device(device: str) -> str:
    """``cpu``, ``gpu`` or ``auto`` (a GPU when torch sees one) → the device actually used."""
    if device == "gpu" and not torch.cuda.is_available():
        raise DualBackendError(
            "--device gpu was asked for, but torch sees no CUDA GPU. Use --device cpu or auto, "
            "or install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and (advice := cuda_libraries_advice("torch")):
        warnings.warn(advice, stacklevel=2)
    return device


def seed(value: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels (what Lightning's
    ``Trainer(deterministic=True)`` sets): two CPU runs with one seed give the same weights, bit for bit.
    On a GPU a kernel without a deterministic version warns instead of failing."""
    L.seed_everything(value, workers=True, verbose=False)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for reproducible sums
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, to expose reads of memory nothing
    # wrote: a debugging aid that changes no result and costs time on every step (docs/speed.md).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False


STEPS_PER_CHUNK = 32


def set_floatx(name: str) -> None:
    """torch's default dtype: the parameters, buffers and optimizer slots created after it."""
    torch.set_default_dtype(getattr(torch, name))


class TensorBatches:
    """Batches sliced from whole tensors, in a new random order every epoch.

    What a ``DataLoader`` over a ``TensorDataset`` yields, without indexing and
    collating one sample at a time: the data are already on the device.

    With ``steps_per_chunk`` > 1 it hands Lightning a :class:`StepChunk` of that
    many consecutive batches at a time, and the module takes one optimizer step
    per batch of the chunk (``Sequential.training_step``).  The batches, their
    order and the updates are the same as one at a time; what changes is that
    Lightning's per-batch machinery (hooks, progress tracking, optimizer
    wrappers: a large share of a small model's step, docs/speed.md) runs once per chunk.
    ``steps`` limits an epoch to its first batches (Keras' ``steps_per_epoch``).

    Under DDP every process walks the same permutation (rank 0 draws it and
    broadcasts it) and takes its share of each batch: ``batch_size`` stays the
    global batch, as in Keras' MirroredStrategy.
    """

    def __init__(self, *tensors, batch_size: int, shuffle, steps: int | None = None, steps_per_chunk: int = 1):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.size, self.epoch = len(tensors[0]), 0
        self.steps = min(steps or np.inf, -(-self.size // batch_size))
        self.steps_per_chunk = steps_per_chunk

    def __len__(self):
        return -(-self.steps // self.steps_per_chunk)

    def batches(self):
        for rows in self.rows():
            yield tuple(t[rows] for t in self.tensors)

    def rows(self):
        """Each step's rows of the tensors: an index tensor, or a slice when unshuffled."""
        device = self.tensors[0].device
        if isinstance(self.shuffle, list):  # the front end's permutations, one per epoch
            order = torch.as_tensor(self.shuffle[min(self.epoch, len(self.shuffle) - 1)], device=device)
            self.epoch += 1
        else:
            order = torch.randperm(self.size, device=device) if self.shuffle else None
        world, rank = data_parallel_world()
        if world > 1 and self.shuffle:
            order = order if order is not None else torch.arange(self.size, device=device)
            torch.distributed.broadcast(order, src=0)
        for start in range(0, self.steps * self.batch_size, self.batch_size):
            if order is None:
                yield slice(start, start + self.batch_size)
                continue
            index = order[start:start + self.batch_size]
            yield index.tensor_split(world)[rank] if world > 1 else index

    def __iter__(self):
        if self.steps_per_chunk == 1:
            yield from self.batches()
            return
        chunk = []
        for step, rows in enumerate(self.rows()):
            chunk.append(rows)
            if len(chunk) == self.steps_per_chunk or step == self.steps - 1:
                yield StepChunk(self.tensors, chunk, last_step=step)
                chunk = []


class Repeat:
    """``tf.data.Dataset.repeat()`` for a ``DataLoader``: its batches pass after pass without end,
    each pass shuffled anew and ending on its short last batch.

    ``fit(..., steps_per_epoch=N)`` reads it on from epoch to epoch (``epochs_of``),
    as Keras does with keras_ref's repeated tf.data pipeline and the course's
    ImageDataGenerator: horse_or_human's 1,027 pictures in batches of 128 make
    passes of eight full batches and one of three, and an epoch of 8 steps
    takes the stream's next eight.  (Starting the loader afresh every epoch
    would skip the short batch and begin every epoch on a new shuffle.)
    """

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        while True:
            yield from self.loader

    def epochs_of(self, steps: int) -> "StreamEpochs":
        return StreamEpochs(self, steps)


class StreamEpochs:
    """A stream's next ``steps`` batches at each ``iter()``: the epochs of one fit.  Its length
    tells Lightning where an epoch ends, so that no batch is fetched ahead and dropped.

    Under DDP each process takes its share of every batch (the batch size is global, as in
    Keras' MirroredStrategy); the processes walk the same stream when the pipeline is seeded
    (``run --seed N``), else each takes its share of its own shuffle."""

    def __init__(self, stream, steps: int):
        self.stream, self.steps, self.batches = stream, steps, None

    def __len__(self):
        return self.steps

    def __iter__(self):
        if self.batches is None:
            self.batches = iter(self.stream)
        world, rank = data_parallel_world()
        for _ in range(self.steps):
            batch = next(self.batches)
            yield tuple(t.tensor_split(world)[rank] for t in batch) if world > 1 else batch


class CheckedBatches:
    """A pipeline's batches, each given the front end's checks as it streams
    (``validation.check_batch``: shapes, dtypes, NaN, label range and form), and its labels then in
    the dtype the loss takes, as the arrays' are (``validation.as_targets``).

    Images are checked in Keras' layout, (N, height, width, channels): a convolutional
    model's pipeline yields torch's (N, channels, height, width), seen through a transposed view.
    Batches are counted from 0 at each ``iter()``: each epoch for a loader, across
    epochs for a :class:`Repeat` (one stream), as a ``tf.data`` pipeline counts them on keras."""

    def __init__(self, batches, front: "TorchModel", pipeline: str = "the data pipeline"):
        self.batches, self.front, self.pipeline = batches, front, pipeline

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        front = self.front
        sparse = front.loss == "sparse_categorical_crossentropy"
        for index, batch in enumerate(self.batches):
            tensors = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
            arrays = [t.detach().cpu().numpy() for t in tensors]
            if front.module.channels_first and arrays[0].ndim == 4:
                arrays[0] = arrays[0].transpose(0, 2, 3, 1)
            validation.check_batch(index, tuple(arrays), front.input_shape[1:], front.loss, front.output_shape,
                                   self.pipeline)
            if len(tensors) > 1 and front.loss is not None:
                labels = tensors[1]
                wanted = torch.int64 if sparse else torch.get_default_dtype()
                tensors = (tensors[0], labels if labels.dtype == wanted else labels.to(wanted), *tensors[2:])
            yield tensors


def data_parallel_world() -> tuple[int, int]:
    """``(processes, this one's rank)`` of a DDP fit; ``(1, 0)`` otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0




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


@contextlib.contextmanager
def interrupts_as_in_keras():
    """Ctrl-C during a Trainer's ``fit`` (or ``validate``, ``predict``) raises ``KeyboardInterrupt``, as it
    does in Keras.

    Lightning answers it with a graceful shutdown (the callbacks'
    ``on_exception``, the loggers closed), then ``sys.exit(1)``, and leaves
    Ctrl-C ignored for the rest of the process: in a notebook, no later cell
    could be interrupted.  Here the ``KeyboardInterrupt`` goes on after the
    shutdown, and Ctrl-C's handler is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):
            raise exit_.__context__ from None
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)


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


class TorchModel(Model):
    backend = "torch"

    def __init__(self, module, lesson, variant, options, device, devices=1):
        super().__init__(lesson, variant, options, select_device(device))
        self.devices = devices
        self.module = module
        self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        self.name = lesson or module.model_name
        self.input_shape, self.output_shape = module.input_shape, module.output_shape
        self.optimizer, self.loss, self.metrics = module.keras_optimizer, module.keras_loss, module.keras_metrics

    def _built_optimizer(self, description):
        from torch_impl.user_model import optimizer

        return optimizer(description)

    def _compile(self, optimizer, loss, metrics):
        self.module.compile(optimizer=optimizer, loss=loss, metrics=metrics, from_logits=self.from_logits)

    def _trainer(self, **settings) -> L.Trainer:
        precision = "bf16-mixed" if self.speedups.precision == "bf16" else "32-true"
        settings = {"logger": False, "enable_checkpointing": False, "devices": 1, "precision": precision, **settings}
        return L.Trainer(
            accelerator=self.device, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], **settings,
        )

    def _scale_out(self) -> dict:
        """Lightning's DDP over ``devices`` processes (gloo on the CPU, NCCL on GPUs).

        Lightning starts the other processes by running this program's command
        line again; they train with rank 0 and stop after ``fit``
        (``dual_backend.run`` returns at once in them)."""
        if self.devices == 1:
            return {}
        if self.device == "gpu" and torch.cuda.device_count() < self.devices:
            raise DualBackendError(f"--devices {self.devices} asks for {self.devices} GPUs; "
                                   f"torch sees {torch.cuda.device_count()}.")
        return {"devices": self.devices, "strategy": "ddp"}

    def _is_pipeline(self, x) -> bool:
        return isinstance(x, (torch.utils.data.DataLoader, Repeat))

    def _is_optimizer(self, optimizer) -> bool:
        # An optimizer before the parameters exist: a factory such as torch_impl.keras.RMSprop(...).
        return callable(optimizer)

    def _tensors(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device) for a in arrays]

    def _inputs(self, x):
        """Keras' NHWC images as the NCHW tensor a convolutional module computes on."""
        (x,) = self._tensors(x)
        return self.module.in_memory_format(x.permute(0, 3, 1, 2)) if self.module.channels_first and x.dim() == 4 \
            else x

    def _batches(self, x, y=None, batch_size=32, shuffle=False, sample_weight=None, **chunking):
        """The arrays as :class:`TensorBatches` of ``(x, y)``, or ``(x, y, sample_weight)``."""
        tensors = [self._inputs(x)] + ([] if y is None else self._tensors(y))
        if sample_weight is not None:
            tensors += self._tensors(sample_weight)
        return TensorBatches(*tensors, batch_size=batch_size, shuffle=shuffle, **chunking)

    @property
    def threads(self) -> int | None:
        """One intra-op thread for models without convolutions on the CPU.

        A Dense step at batch 32 is too small to split: two threads are no
        faster than one, and when anything else wants a core, torch's OpenMP
        threads wait on each other at every op (docs/speed.md).
        """
        return 1 if self.device == "cpu" and not self.module.channels_first else None

    @contextlib.contextmanager
    def _computing(self):
        """What every fit, evaluate and predict runs in: Keras' float environment (denormals flushed
        to zero on all of torch's threads, as TensorFlow does), freed memory kept for the next step,
        the thread count, Lightning's messages that do not apply here silenced, and Keras' handling
        of Ctrl-C and SIGTERM (``torch_impl.process``)."""
        layout, self.module.keras_layout_batches = self.module.keras_layout_batches, False  # NCHW batches here
        try:
            with process.denormals_flushed(), process.freed_memory_kept(), process.intra_op_threads(self.threads), \
                    process.lightning_quiet(), interrupts_as_in_keras():
                yield
        finally:
            self.module.keras_layout_batches = layout

    def to_lightning(self) -> L.LightningModule:
        """The model's own LightningModule, for your own ``lightning.Trainer``: its weights, Keras' loss,
        optimizer and metrics as compiled, one Keras step per batch.  A ``DataLoader`` of ``(x, y)``
        batches in Keras' layout (images NHWC, integer labels int64 for the sparse loss) trains it as
        ``fit`` would over the same batches.  It stays this model's module: what either trains, both have."""
        if self.loss is None:
            raise DualBackendError("The model must be compiled before to_lightning: call model.compile(...) first.")
        self.module.keras_layout_batches = True
        return self.module

    def _fit(self, *args, **settings):
        with self._computing():
            return self._fit_here(*args, **settings)

    def _fit_here(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle, steps_per_epoch, framework,
                  initial_epoch=0, sample_weight=None, validation_batch_size=None):
        if self.devices > 1 and batch_size % self.devices:
            raise DualBackendError(f"batch_size {batch_size} does not split evenly over {self.devices} devices: "
                                   f"choose a multiple of {self.devices}.")
        adapter = KerasCallbacks(callbacks, self, initial_epoch)
        logger, lightning_callbacks = lightning_counterparts(framework)
        trainer = self._trainer(**self._scale_out(), max_epochs=max(epochs - initial_epoch, 0),
                                callbacks=[adapter, *lightning_callbacks], logger=logger,
                                log_every_n_steps=1,  # only epoch logs are written; silences a warning
                                enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in framework),
                                limit_train_batches=(steps_per_epoch or 1.0) if self._is_pipeline(x) else 1.0,
                                limit_val_batches=1.0 if validation_data is not None else 0)
        # A callback that must see every batch gets Lightning's batches one step each; so does DDP,
        # whose gradient hooks expect one backward pass per Lightning step.
        chunk = 1 if callbacks.wants_every_batch or self.devices > 1 else STEPS_PER_CHUNK
        if isinstance(x, Repeat):  # Keras reads a repeated pipeline on across epochs
            train = StreamEpochs(CheckedBatches(x, self), steps_per_epoch)
        elif self._is_pipeline(x):
            train = CheckedBatches(x, self)
        else:
            train = self._batches(x, y, batch_size, shuffle, steps=steps_per_epoch, steps_per_chunk=chunk,
                                  sample_weight=sample_weight)
        val = validation_data
        if self._is_pipeline(validation_data):
            val = CheckedBatches(validation_data, self, "the validation pipeline")
        elif validation_data is not None:
            val = self._batches(*validation_data, batch_size=validation_batch_size or batch_size)
        self.module.val_means.reset()
        if epochs > initial_epoch:  # Keras trains nothing from an initial_epoch at or past epochs
            trainer.fit(self.module, train_dataloaders=train, val_dataloaders=val,
                        ckpt_path=backup_to_resume(framework), weights_only=True)
        self.rank = trainer.global_rank
        return dict(adapter.history)

    def _evaluate(self, x, y, batch_size, callbacks, sample_weight=None, steps=None):
        batches = CheckedBatches(x, self) if self._is_pipeline(x) else \
            self._batches(x, y, batch_size, sample_weight=sample_weight)
        trainer = self._trainer(callbacks=[KerasCallbacks(callbacks, self)], limit_val_batches=steps or 1.0)
        with self._computing():
            trainer.validate(self.module, batches, verbose=False)
        return self.module.val_means.compute()

    def _predict(self, x, batch_size, callbacks, steps=None):
        trainer = self._trainer(callbacks=[KerasCallbacks(callbacks, self)], limit_predict_batches=steps or 1.0)
        batches = CheckedBatches(x, self) if self._is_pipeline(x) else self._batches(x, batch_size=batch_size)
        with self._computing():
            batches = trainer.predict(self.module, batches)
        return torch.cat(batches).cpu().numpy()

    def _get_weights(self):
        return self.module.get_weights()

    def _set_weights(self, weights):
        self.module.set_weights(weights)

    def _layer_outputs(self, x):
        self.module.to(self.torch_device).eval()
        with torch.no_grad():
            return [output.cpu().numpy() for output in self.module.layer_outputs(self._inputs(x))]

    def layer_rows(self):
        module = self.module
        return [
            (name, layer.keras_type, shape, sum(t.numel() for t in (*layer.parameters(), *layer.buffers())))
            for name, layer, shape in zip(module.layer_names, module.body, module.output_shapes)
        ]

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def save(self, path) -> None:
        """A ``.pt`` file of tensors and plain values, loadable with ``weights_only=True``."""
        path = Path(path)
        if path.suffix != ".pt":
            raise DualBackendError(f"torch models are saved as .pt files, got {path}.")
        checkpoint = {
            "format": "dual-backend/torch/1", "lesson": self.lesson, "variant": self.variant,
            "options": self.options, "optimizer": self.optimizer if isinstance(self.optimizer, str) else None,
            "loss": self.loss, "from_logits": self.from_logits, "metrics": self.metrics,
            "definition": self.definition(),
            "state_dict": {k: v.cpu() for k, v in self.module.state_dict().items()},
        }
        atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))

    def _read_backup(self, path) -> dict:
        checkpoint = load_tensors(path, "a readable backup", fix="Delete it to start over.")
        if not isinstance(checkpoint, dict) or "dual_backend" not in checkpoint:
            raise DualBackendError(f"{path} is not a readable backup (no 'dual_backend' entry). "
                                   "Delete it to start over.")
        return checkpoint["dual_backend"]["record"]


def load_tensors(path, what: str, fix: str = "Delete it, or save it again."):
    """``torch.load`` with ``weights_only=True``: tensors and plain values, never code.

    An unrestricted unpickle would run whatever a booby-trapped file asks for;
    here such a file is refused, naming the function it asks for.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        raise refused_code(path, what, f" ({found.group(1)})" if found else "") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DualBackendError(f"{path} is not {what} ({error}). {fix}") from None


def build(program, recipe, options, device, devices=1, speedups=None) -> TorchModel:
    module = program.build_model(input_shape=recipe.lesson.input_shape, **options)
    model = TorchModel(module, recipe.lesson.name, recipe.variant_name, options, device, devices)
    if speedups is not None:
        model.speedups = speedups
        module.use_channels_last(speedups.channels_last)
        if speedups.compile:
            module.compile_steps()
    return model


def load(path, device) -> TorchModel:
    import dual_backend

    checkpoint = load_tensors(path, "a readable dual-backend torch checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "dual-backend/torch/1":
        raise DualBackendError(f"{path} is not a dual-backend torch checkpoint (no 'format' entry).")
    optimizer = checkpoint["optimizer"] or "rmsprop"
    if checkpoint.get("definition"):  # a dual_backend.keras model: built again from its layers
        from dual_backend.keras.models import from_definition

        model, description = from_definition(checkpoint["definition"], "torch")
        optimizer = description or optimizer
    else:
        model = dual_backend.build(checkpoint["lesson"], backend="torch", variant=checkpoint["variant"],
                                   device=device, **checkpoint["options"])
    model.module.load_state_dict(checkpoint["state_dict"])
    if checkpoint["loss"] is not None:
        from dual_backend.keras.losses import Loss

        loss = checkpoint["loss"]
        if checkpoint.get("from_logits"):
            loss = next(kind for kind in Loss.__subclasses__() if kind.name == loss)(from_logits=True)
        model.compile(optimizer=optimizer, loss=loss, metrics=checkpoint["metrics"])
    return model
