"""Keras' kernel and bias initialisers in torch: the same distributions, with the fans Keras counts.

The rule is Keras 3's ``VarianceScaling`` (``keras/src/initializers/random_initializers.py``);
the names and their (scale, mode, distribution) are ``dual_backend.keras.initializers``'.
torch's own ``xavier_*_`` and ``kaiming_*_`` would count the fans on torch's layout and draw
an untruncated normal, so they are not used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dual_backend import validation
from dual_backend.keras.initializers import CONSTANTS, TRUNCATED_NORMAL_STDDEV, VARIANCE_SCALING, compute_fans

NAMES = (*VARIANCE_SCALING, *CONSTANTS)


def initializer(name: str) -> str:
    if name not in NAMES:
        raise validation.DualBackendError(f"Unknown initializer {name!r}. Valid initializers: {', '.join(NAMES)}.")
    return name


@torch.no_grad()
def initialize(weight: torch.Tensor, name: str, keras_shape: tuple) -> None:
    """Fill ``weight`` (in torch's layout) as Keras' initialiser ``name`` fills a weight of ``keras_shape``.

    A variance-scaling initialiser divides its scale by n, the fan its mode names on Keras'
    shape (at least 1), and draws uniformly within ±sqrt(3·scale/n), or from a normal cut at
    two standard deviations, σ = sqrt(scale/n) / 0.8796…, so that the cut draws keep
    sqrt(scale/n) as TensorFlow's ``truncated_normal`` does.
    """
    if name in CONSTANTS:
        weight.fill_(CONSTANTS[name])
        return
    scale, mode, distribution = VARIANCE_SCALING[name]
    fan_in, fan_out = compute_fans(keras_shape)
    scale /= max(1.0, {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode])
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale)
        nn.init.uniform_(weight, -limit, limit)
    else:
        sigma = math.sqrt(scale) / TRUNCATED_NORMAL_STDDEV
        nn.init.trunc_normal_(weight, mean=0.0, std=sigma, a=-2 * sigma, b=2 * sigma)
