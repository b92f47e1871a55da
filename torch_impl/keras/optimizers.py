"""Keras' optimizers in torch: Keras' update rules and Keras' default hyperparameters.

``KerasAdam`` and ``KerasRMSprop`` state their rule as Keras does; what makes
Adam fast lives apart, in ``torch_impl/fast/adam.py``, as Keras keeps
``optimizers/adam.py`` apart from ``backend/torch/optimizers/torch_adam.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from dual_backend import validation
from torch_impl.fast import adam, optimizer_steps


class KerasOptimizer(optimizer_steps.UnannotatedSteps):
    """Shared plumbing of the Keras-rule optimizers: each writes only its update.

    torch's Adam would match Keras with its ε rescaled every step, but on the
    CPU it takes its per-tensor path and, under Lightning (which sets
    ``PYTORCH_NVML_BASED_CUDA_CHECK=1``), asks NVML whether CUDA exists on every
    step.  So the updates are written out as Keras states them.  (``step`` and
    ``zero_grad`` skip torch's profiler annotations when nobody records:
    ``torch_impl.fast.optimizer_steps``.)
    """

    @torch.no_grad()
    def take_step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                group["iterations"] = group.get("iterations", 0) + 1
                self.update(group, params, [p.grad for p in params])
        return loss

    def slots(self, params, name):
        """One state tensor per parameter (Keras' optimizer "variables"), zeros at first."""
        for p in params:
            if name not in self.state[p]:
                self.state[p][name] = torch.zeros_like(p)
        return [self.state[p][name] for p in params]


def keras_step_size(lr, beta_1, beta_2, t, dtype):
    """Adam's ``lr·√(1−β2ᵗ)/(1−β1ᵗ)`` computed as Keras computes it: in the weights' dtype, with
    β1 and β2 rounded to float32 on the way (``ops.cast(0.999, dtype)`` goes through a float32
    tensor), so even in float64 β2 is 0.99900001287; with exact betas the first steps would
    come out measurably longer than Keras' (tests/front_end/test_parity.py)."""
    real = np.float64 if dtype == torch.float64 else np.float32
    beta_1, beta_2, t = real(np.float32(beta_1)), real(np.float32(beta_2)), real(t)
    return real(lr) * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)


class KerasAdam(KerasOptimizer):
    """Adam as Keras 3 applies it: ``lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``, ε 1e-7.

    (torch's Adam divides by ``√v/√(1−β2ᵗ) + ε``: the same update with a
    different ε, which matters early in training and for tiny gradients.)

    The rule is written out below with torch's foreach ops.  Where a faster
    path computes the same formula (torch's fused CPU kernel, or one flat
    buffer on a GPU), ``torch_impl.fast.adam`` takes the step instead; each
    path is chosen by a named predicate and checked against this rule in
    float64 by tests/front_end/test_parity.py.
    """

    def __init__(self, params, lr=1e-3, beta_1=0.9, beta_2=0.999, eps=1e-7):
        super().__init__(params, {"lr": lr, "beta_1": beta_1, "beta_2": beta_2, "eps": eps})

    def update(self, group, params, grads):
        beta_1, beta_2, t = group["beta_1"], group["beta_2"], group["iterations"]
        momentums, velocities = self.slots(params, "momentum"), self.slots(params, "velocity")
        if adam.steps_on_device(params[0]):
            adam.update_on_device(self, group, params, grads, momentums, velocities)
            return
        alpha = float(keras_step_size(group["lr"], beta_1, beta_2, t, params[0].dtype))
        grads = [adam.laid_out_as(p, g) for p, g in zip(params, grads)]
        if all(adam.fused_kernel_fits(p, g, m, v) for p, g, m, v in zip(params, grads, momentums, velocities)):
            adam.fused_update(group, params, grads, momentums, velocities, alpha)
            return
        torch._foreach_lerp_(momentums, grads, 1 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - beta_2)
        denominators = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_addcdiv_(params, momentums, denominators, value=-alpha)


class KerasRMSprop(KerasOptimizer):
    """RMSprop as Keras applies it: ``v = ρv + (1−ρ)g²``, ``p −= lr·g / √(v + ε)``; with momentum,
    ``m = momentum·m + lr·g / √(v + ε)``, ``p −= m``.

    Keras puts ε inside the square root; torch's RMSprop adds it outside
    (``√v + ε``), which no setting of torch's class can express.
    """

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7, momentum=0.0):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "momentum": momentum})

    def update(self, group, params, grads):
        velocities = self.slots(params, "velocity")
        torch._foreach_mul_(velocities, group["rho"])
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - group["rho"])
        denominators = torch._foreach_add(velocities, group["eps"])
        torch._foreach_sqrt_(denominators)
        if not group["momentum"]:
            torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
            return
        # Keras' order of operations: (lr·g) / √(v + ε), then the momentum.
        increments = torch._foreach_mul(grads, group["lr"])
        torch._foreach_div_(increments, denominators)
        momentums = self.slots(params, "momentum")
        torch._foreach_mul_(momentums, group["momentum"])
        torch._foreach_add_(momentums, increments)
        torch._foreach_sub_(params, momentums)


class KerasSGD(KerasOptimizer):
    """SGD as Keras applies it: ``p −= g·lr``; with momentum, ``m = momentum·m − g·lr``, then
    ``p += m``, or with Nesterov ``p += momentum·m − g·lr``.

    torch's SGD keeps ``b = momentum·b + g`` and takes ``p −= lr·b`` (Nesterov:
    ``p −= lr·(g + momentum·b)``): the same steps while the learning rate is
    constant (``m = −lr·b``), rounded in another order.  Keras' order is kept here.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov})

    def update(self, group, params, grads):
        scaled = torch._foreach_mul(grads, group["lr"])
        if not group["momentum"]:
            torch._foreach_sub_(params, scaled)
            return
        momentums = self.slots(params, "momentum")
        torch._foreach_mul_(momentums, group["momentum"])
        torch._foreach_sub_(momentums, scaled)
        if group["nesterov"]:
            step = torch._foreach_mul(momentums, group["momentum"])
            torch._foreach_sub_(step, scaled)
            torch._foreach_add_(params, step)
        else:
            torch._foreach_add_(params, momentums)


class RMSprop:
    """``keras.optimizers.RMSprop(learning_rate=...)``: the settings now, the optimizer once
    the model's parameters exist (in ``configure_optimizers``)."""

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7):
        self.settings = {"lr": learning_rate, "rho": rho, "eps": epsilon}

    def __call__(self, parameters):
        return KerasRMSprop(parameters, **self.settings)


def make_optimizer(name: str, parameters):
    """Keras' optimizer strings with Keras' default hyperparameters."""
    if name == "adam":
        return KerasAdam(parameters)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=0.01)
    if name == "rmsprop":
        return KerasRMSprop(parameters)
    raise validation.DualBackendError(
        f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(validation.OPTIMIZERS)}."
    )
