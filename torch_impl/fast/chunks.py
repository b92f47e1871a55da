"""Chunked steps: several Keras steps in one Lightning batch.

``TensorBatches`` (torch_impl/batches.py) hands Lightning a ``StepChunk`` of
consecutive batches, and ``Sequential.training_step`` takes one optimizer
step per batch of it (``train_chunk``).  The batches, their order and the
updates are those of one batch at a time; Lightning's per-batch machinery
(hooks, progress tracking, optimizer wrappers) runs once per chunk.

A chunk only comes on one device without loss scaling, where
``manual_backward`` and ``LightningOptimizer.step`` add nothing but hooks this
project does not use (``on_before_backward``, ``on_after_backward``,
``on_before_optimizer_step``): its steps call ``loss.backward()`` and the
optimizer's own ``step`` directly, between the two calls with which
Lightning's wrapper counts a step (``global_step``, which checkpoints go by)
and times it for Lightning's profiler.  On a GPU a chunk's steps are replays
of one CUDA graph where ``StepGraph.fits`` (``torch_impl/fast/cuda_graph.py``).
"""

from __future__ import annotations

from torch_impl.fast import cuda_graph


class StepChunk:
    """Consecutive steps handed to Lightning as one (an object Lightning moves as is): the data
    tensors and each step's rows, gathered into a batch only when the step comes (on a GPU the
    gathering is part of the step's CUDA graph, ``StepGraph``)."""

    def __init__(self, tensors: tuple, rows: list, last_step: int):
        self.tensors, self.rows, self.last_step = tensors, rows, last_step

    def batches(self):
        for rows in self.rows:
            yield tuple(t[rows] for t in self.tensors)

    def __len__(self):
        return len(self.rows)


def train_chunk(module, optimizer, chunk: StepChunk) -> None:
    """One training step of ``module`` per batch of ``chunk``; ``optimizer`` is Lightning's wrapper."""
    module.chunk_losses = []  # on the device; read only if the chunk's loss turns out NaN (TerminateOnNaN)
    if module.step_graph is None and cuda_graph.StepGraph.fits(module, optimizer.optimizer):
        module.step_graph = cuda_graph.StepGraph(module, optimizer.optimizer)
    if module.step_graph is not None:
        for rows in chunk.rows:
            optimizer._on_before_step()
            loss = module.step_graph(chunk.tensors, rows)
            optimizer._on_after_step()
            module.chunk_losses.append(loss.clone())  # the graph's loss is overwritten at the next step
        return
    for step in chunk.batches():
        loss = module._step(step, module.train_means)
        optimizer.zero_grad()
        loss.backward()
        optimizer._on_before_step()
        optimizer.optimizer.step()
        optimizer._on_after_step()
        module.chunk_losses.append(loss.detach())
