"""Keras' losses and its 'accuracy', computed from the logits, and Keras' epoch logs.

The loss behind a softmax or sigmoid head is computed from the logits in front
of it, as Keras does; epoch logs are sample-weighted means, and accuracy
follows Keras' rules (sparse categorical for integer labels, binary behind a sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keras_loss(name: str, logits, y):
    """The loss Keras computes, from the logits behind a softmax or sigmoid head."""
    if name == "sparse_categorical_crossentropy":
        return F.cross_entropy(logits, y)
    if name == "categorical_crossentropy":
        return -(y * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    if name == "binary_crossentropy":
        return F.binary_cross_entropy_with_logits(logits, y)
    return F.mse_loss(logits, y)


def correct_predictions(loss: str, logits, y):
    """How many predictions Keras' ``'accuracy'`` counts as right, for this loss."""
    if loss == "sparse_categorical_crossentropy":
        return (logits.argmax(-1) == y).sum()
    if loss == "categorical_crossentropy":
        return (logits.argmax(-1) == y.argmax(-1)).sum()
    # Binary accuracy: probability > 0.5, i.e. logit > 0.
    return ((logits > 0).to(y.dtype) == y).sum()


def _writable(value) -> bool:
    """A tensor that may be changed in place here: not one made under ``torch.inference_mode``
    (Lightning evaluates in it) unless that mode is on now."""
    return isinstance(value, torch.Tensor) and (not value.is_inference() or torch.is_inference_mode_enabled())


class EpochMeans:
    """Keras' epoch logs, accumulated on the device.

    Loss is the batch-size-weighted mean, accuracy correct/seen.  The sums stay
    tensors so that no step waits for the host (torchmetrics' MeanMetric checks
    for NaN with a host-side ``if`` on every update, which would).
    """

    def __init__(self, metrics: list[str]):
        self.metrics = metrics
        self.loss_sum = self.correct = 0.0
        self.seen = 0

    def reset(self):
        """Zeros, in place once the sums are tensors: a training step captured as a CUDA graph
        (``StepGraph``) adds into these very tensors at every replay."""
        for name in ("loss_sum", "correct"):
            value = getattr(self, name)
            setattr(self, name, value.zero_() if _writable(value) else 0.0)
        self.seen = 0

    def update(self, loss, correct, batch_size: int):
        self.loss_sum = self._add(self.loss_sum, loss.detach() * batch_size)
        if self.metrics:
            self.correct = self._add(self.correct, correct)
        self.seen += batch_size

    @staticmethod
    def _add(total, value):
        """``total + value`` (a float sum, as ``0.0 + value``), into ``total`` where it is a tensor."""
        if _writable(total) and total.device == value.device:
            return total.add_(value)
        return total + value

    def compute(self, prefix: str = "", across_processes: bool = False) -> dict[str, float]:
        """The means so far; ``across_processes``: summed over the processes of a DDP fit first
        (every process must call it then)."""
        if not self.seen:
            return {}
        sums = [self.loss_sum, self.correct, self.seen]
        if across_processes and torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.loss_sum.device) for v in sums])
            torch.distributed.all_reduce(sums)
        loss_sum, correct, seen = (float(v) for v in sums)
        logs = {f"{prefix}loss": loss_sum / seen}
        for metric in self.metrics:
            logs[f"{prefix}{metric}"] = correct / seen
        return logs
