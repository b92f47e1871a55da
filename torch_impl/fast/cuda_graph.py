"""The training step on a GPU as a CUDA graph (``StepGraph``): the same kernels, one launch."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from torch_impl.keras import layers, optimizers

if TYPE_CHECKING:  # Sequential imports this module
    from torch_impl.keras.sequential import Sequential


class StepGraph:
    """The training step on a GPU, captured once as a CUDA graph and replayed for every batch.

    A small model's step is some forty small kernels, each much shorter than its
    dispatch from Python: the GPU waits on the host (docs/speed.md).  A graph
    replays the same kernels, in the same order, on the same memory, with one
    call: the same math, bit for bit, as the op-by-op step (tests/torch_impl/test_gpu.py).

    The step gathers its batch from the data tensors on the device by an index
    (``StepChunk``), so a replay needs one copy: the batch's rows into the
    graph's index buffer.  The first ``WARMUP`` steps run op by op on a side
    stream (torch's recipe: lazily made state, the optimizer's slots among it,
    exists before capture), the next is captured and replayed, and every later
    step of that batch size replays it.  A step of another size (a short last
    batch) runs op by op, the same ops.  What a replay skips is Python's
    bookkeeping, redone by hand: the optimizer's iteration count and the
    epoch's sample count.
    """

    WARMUP = 3

    def __init__(self, module: "Sequential", optimizer):
        self.module, self.optimizer = module, optimizer
        self.graph = self.sources = self.rows = self.loss = None
        self.warm_steps = 0
        self.side = torch.cuda.Stream()

    @staticmethod
    def fits(module: "Sequential", optimizer) -> bool:
        """A GPU; an optimizer whose update reads no host value that changes from step to step
        (this project's Keras optimizers, torch's SGD with a number for its learning rate);
        default numerics (no autocast, no ``torch.compile``); no random layer (a replay draws
        fresh numbers, but not the op-by-op step's); not turned off with
        ``DUAL_BACKEND_CUDA_GRAPHS=0``."""
        fixed_update = isinstance(optimizer, optimizers.KerasOptimizer) or (
            type(optimizer) is torch.optim.SGD
            and not any(isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups))
        return (os.environ.get("DUAL_BACKEND_CUDA_GRAPHS", "1") != "0"
                and getattr(next(module.parameters(), None), "is_cuda", False) and fixed_update
                and module.step_logits == module.logits
                and not torch.is_autocast_enabled("cuda")
                and not any(isinstance(layer, (layers.AlphaDropout, layers.Dropout)) for layer in module.body))

    def __call__(self, tensors: tuple, rows):
        """One training step on ``tuple(t[rows] for t in tensors)``; its loss (detached)."""
        if isinstance(rows, slice):  # unshuffled: the same rows as an index
            rows = torch.arange(rows.start, min(rows.stop, len(tensors[0])), device=tensors[0].device)
        if self.graph is not None and tensors is self.sources and rows.shape == self.rows.shape:
            self.rows.copy_(rows)
            self.graph.replay()
            self.module.train_means.seen += len(rows)
            for group in self.optimizer.param_groups:
                if "iterations" in group:
                    group["iterations"] += 1
            return self.loss
        if self.graph is None and self.warm_steps >= self.WARMUP:
            return self._capture(tensors, rows)
        if self.graph is None:
            self.warm_steps += 1
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            loss = self.module.train_step_eagerly(tuple(t[rows] for t in tensors), self.optimizer)
        torch.cuda.current_stream().wait_stream(self.side)
        return loss

    def _capture(self, tensors, rows):
        """Records this step (recording runs nothing on the GPU), then replays it once."""
        self.sources, self.rows = tensors, rows.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are made inside the graph's memory
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self.module.train_step_eagerly(tuple(t[self.rows] for t in tensors), self.optimizer)
        self.graph.replay()  # the bookkeeping of this step ran while recording
        return self.loss
