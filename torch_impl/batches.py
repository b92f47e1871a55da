"""The batches the torch backend trains on: sliced from tensors on the device, or read from a pipeline.

Mirror of ``keras_ref/batches.py``.  Arrays become :class:`TensorBatches`
(Keras' reshuffle every epoch, without a ``DataLoader``'s per-sample
collation); a repeated pipeline is read on across epochs as Keras reads
``tf.data``'s ``repeat()``; a pipeline's batches get the front end's checks as
they stream (:class:`CheckedBatches`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from dual_backend import validation
from dual_backend.model import batches_in
from torch_impl.fast.chunks import StepChunk

if TYPE_CHECKING:  # the backend imports this module
    from torch_impl.backend import TorchModel


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
    ``batch_orders``: True or False (a new random order every epoch, or none), or
    the front end's permutations, one per epoch.

    Under DDP every process walks the same permutation (rank 0 draws it and
    broadcasts it) and takes its share of each batch: ``batch_size`` stays the
    global batch, as in Keras' MirroredStrategy.
    """

    def __init__(self, *tensors, batch_size: int, batch_orders, steps: int | None = None,
                 steps_per_chunk: int = 1):
        self.tensors, self.batch_size, self.batch_orders = tensors, batch_size, batch_orders
        self.size, self.epoch = len(tensors[0]), 0
        self.steps = min(steps or np.inf, batches_in(self.size, batch_size))
        self.steps_per_chunk = steps_per_chunk

    def __len__(self):
        return batches_in(self.steps, self.steps_per_chunk)

    def release(self) -> None:
        """Let go of the tensors once a ``fit``, ``evaluate`` or ``predict`` is over.  Lightning's Trainer
        and its loops refer to each other, so the Trainer that read these batches is freed only at
        Python's next full garbage collection: without this, every ``fit`` on new arrays would keep
        a copy of them until then."""
        self.tensors = ()

    def batches(self):
        for rows in self.rows():
            yield tuple(t[rows] for t in self.tensors)

    def rows(self):
        """Each step's rows of the tensors: an index tensor, or a slice when unshuffled."""
        device = self.tensors[0].device
        if isinstance(self.batch_orders, list):  # the front end's permutations, one per epoch
            order = torch.as_tensor(self.batch_orders[min(self.epoch, len(self.batch_orders) - 1)], device=device)
            self.epoch += 1
        else:
            order = torch.randperm(self.size, device=device) if self.batch_orders else None
        world, rank = data_parallel_world()
        if world > 1 and self.batch_orders:
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


def released(*batches) -> None:
    """:meth:`TensorBatches.release` for each of ``batches`` that is one (others are the caller's own)."""
    for each in batches:
        if isinstance(each, TensorBatches):
            each.release()


class Repeat:
    """``tf.data.Dataset.repeat()`` for a ``DataLoader``: its batches pass after pass without end,
    each pass shuffled anew and ending on its short last batch.

    ``fit(..., steps_per_epoch=N)`` reads it on from epoch to epoch (``epochs_of``),
    as Keras does with keras_ref's repeated tf.data pipeline and Keras 2 with the
    course's ImageDataGenerator: horse_or_human's 1,027 pictures in batches of 128 make
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
