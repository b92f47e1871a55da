"""Keras' losses and its 'accuracy', computed from the logits, and Keras' epoch logs.

The loss behind a softmax or sigmoid head is computed from the logits in front
of it, and from clipped probabilities behind any other head, as Keras' TensorFlow
backend does; ``'accuracy'`` is the one Keras 3 picks from the shapes of labels and
outputs; epoch logs are sample-weighted means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dual_backend import validation
from torch_impl.keras.layers import ACTIVATIONS, PROBABILITY_HEADS


EPSILON = 1e-7  # keras.config.epsilon(): how far from 0 and 1 Keras clips probabilities in a loss


def keras_loss(name: str, logits, y, activation: str | None, sample_weight=None):
    """The loss Keras computes (TensorFlow backend, ``from_logits=False``) for a head with ``activation``.

    ``logits`` is what ``Sequential.logits`` returns: the input of a softmax or
    sigmoid head, else the head's output.  Keras' cross-entropies read the
    logits a softmax or sigmoid left on its output (``_keras_logits``), whichever
    of the two it was; behind any other head they take the output as
    probabilities, clipped to [ε, 1 − ε].  Mean squared error sees the output.

    With ``sample_weight`` (one weight per sample) the loss is Keras'
    ``sum(weight · sample's loss) / batch size``; without, the plain mean.
    """
    if sample_weight is not None:
        per_sample = _per_sample_loss(name, logits, y, activation)
        return (per_sample * sample_weight).sum() / len(per_sample)
    # The batch means in torch's own reductions: the step's cost on small models (the lessons' heads).
    if activation in PROBABILITY_HEADS and name == "sparse_categorical_crossentropy":
        return F.cross_entropy(logits, y if y.dim() == 1 else y.reshape(-1))
    if activation in PROBABILITY_HEADS and name == "binary_crossentropy":
        return F.binary_cross_entropy_with_logits(logits, y if y.shape == logits.shape else y.reshape(logits.shape))
    if activation in PROBABILITY_HEADS and name == "categorical_crossentropy":
        return -(y * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    if activation not in PROBABILITY_HEADS and name == "mean_squared_error":
        return F.mse_loss(logits, y if y.shape == logits.shape else y.reshape(logits.shape))
    return _per_sample_loss(name, logits, y, activation).mean()


def _per_sample_loss(name: str, logits, y, activation: str | None):
    """Each sample's loss by Keras' rules (``keras_loss``), the mean over its entries for MSE and binary."""
    from_logits = activation in PROBABILITY_HEADS
    outputs = ACTIVATIONS[activation](logits) if from_logits else logits
    if name == "mean_squared_error":
        return (outputs - y.reshape(outputs.shape)).square().reshape(len(y), -1).mean(-1)
    if name == "sparse_categorical_crossentropy":
        scores = logits if from_logits else outputs.clamp(EPSILON, 1 - EPSILON).log()
        return F.cross_entropy(scores, y.reshape(-1), reduction="none")
    if name == "categorical_crossentropy":
        if from_logits:
            return -(y * F.log_softmax(logits, dim=-1)).sum(-1)
        probabilities = (outputs / outputs.sum(-1, keepdim=True)).clamp(EPSILON, 1 - EPSILON)
        return -(y * probabilities.log()).sum(-1)
    y = y.reshape(logits.shape)
    if from_logits:
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)
    probabilities = outputs.clamp(EPSILON, 1 - EPSILON)
    return -(y * probabilities.log() + (1 - y) * (1 - probabilities).log()).mean(-1)


def correct_predictions(logits, y, activation: str | None):
    """How many samples Keras' ``'accuracy'`` counts as right: each sample's share of matching
    entries, summed (one per right sample for the categorical accuracies).

    Which accuracy is Keras 3's choice from the shapes of labels and outputs
    (``validation.accuracy_kind``); the binary one compares the output, as a
    probability, with 0.5.  A softmax keeps the order of its logits, so the
    argmax is taken from them; a sigmoid can round two logits to the same 1.0,
    so its argmax is taken from its output, as Keras does.
    """
    kind = validation.accuracy_kind(tuple(y.shape), tuple(logits.shape))
    if kind == "binary":
        outputs = ACTIVATIONS[activation](logits) if activation in PROBABILITY_HEADS else logits
        matches = (outputs > 0.5).to(y.dtype) == y.reshape(outputs.shape)
        return matches.to(outputs.dtype).mean(-1).sum()
    scores = torch.sigmoid(logits) if activation == "sigmoid" else logits
    labels = (y if y.dim() == 1 else y.reshape(-1)) if kind == "sparse_categorical" else y.argmax(-1)
    return (scores.argmax(-1) == labels).sum()


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
