"""A lesson's model trained by a plain PyTorch loop: no Lightning, no front end.

The torch a Keras reader should read first.  ``model.fit(x, y, epochs=5)`` is,
written out: every epoch a new random order of the samples, then for every
batch of it the forward pass, the loss, ``zero_grad``, ``backward`` and the
optimizer's ``step``; ``model.evaluate`` counts the right predictions with
gradients off.  The model, its optimizer and its loss are the port's own
(``torch_impl/<lesson>.py``), so the numbers are the torch backend's.

``dual-backend bench`` times this loop as its "plain-torch" system, the floor
the Lightning backend is measured against; tests/front_end/test_bench.py checks it
trains the backend's weights.

    module = build("fashion_mlp", input_shape=(28, 28))
    optimizer = module.configure_optimizers()
    x, y = as_tensors(module, x_train, y_train, "cpu", batch_size=32)
    correct, seen = train_epoch(module, optimizer, shuffled_batches(module, x, y, batch_size=32))
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np
import torch

from dual_backend import validation
from torch_impl.keras import correct_predictions, keras_loss


def build(lesson: str, input_shape, device="cpu", **options):
    """The port's model on ``device``, compiled as the lesson compiles it (its optimizer comes from
    ``module.configure_optimizers()``, once the weights are where they will train)."""
    program = importlib.import_module(f"torch_impl.{lesson}")
    return program.build_model(input_shape=input_shape, **options).to(device)


def as_tensors(module, x, y, device, batch_size):
    """Arrays checked and shaped by the front end's rules, as device tensors (images NCHW)."""
    x = validation.as_inputs(x, module.input_shape[1:])
    y = validation.as_targets(y, len(x), module.keras_loss, module.output_shape, batch_size)
    x_tensor = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if module.channels_first:
        x_tensor = x_tensor.permute(0, 3, 1, 2)
    return x_tensor, torch.from_numpy(y).to(device)


def shuffled_batches(module, x, y, batch_size, samples=None, shuffle=True):
    """The epoch's batches: the first ``samples`` of a new random order (Keras' ``shuffle=True``)."""
    samples = len(x) if samples is None else samples
    order = torch.randperm(len(x), device=x.device) if shuffle else torch.arange(len(x), device=x.device)
    for start in range(0, samples, batch_size):
        index = order[start:start + batch_size]
        yield module.in_memory_format(x[index]), y[index]


def train_epoch(module, optimizer, batches, autocast=contextlib.nullcontext()):
    """One epoch of Keras steps over ``batches``: the epoch's correct predictions and samples seen."""
    module.train()
    loss_name, head = module.keras_loss, module.head_activation
    correct, seen = torch.zeros((), device=next(module.parameters()).device), 0
    for x, y in batches:
        seen += len(y)
        with autocast:
            logits = module.step_logits(x)
            loss = keras_loss(loss_name, logits, y, head)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        correct = correct + correct_predictions(logits, y, head)
    return float(correct), seen  # one host synchronisation per epoch


def accuracy(module, x, y, batch_size=1000) -> float:
    """The share of right predictions, as Keras' ``'accuracy'`` counts them, gradients off."""
    module.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int(correct_predictions(module.logits(x[start:start + batch_size]),
                                               y[start:start + batch_size], module.head_activation))
    return correct / len(x)
