"""Optimizer steps without torch's profiler annotations while no profiler records.

``torch.optim.Optimizer`` opens a ``record_function`` around every ``step``
and ``zero_grad`` whether or not anyone records, two dispatched ops each, a
noticeable share of a small model's step (docs/speed.md).  With a profiler
on, or any step hook registered (torch's global ones or this optimizer's),
``step`` goes through torch's own wrapper; tests/front_end/test_parity.py checks both
ways step alike.
"""

from __future__ import annotations

import torch
import torch.optim.optimizer as torch_optimizer


def annotations_wanted(optimizer) -> bool:
    """Whether a profiler records, or a step hook is registered: torch's own ``step`` wrapper then."""
    return bool(torch.autograd.profiler._is_profiler_enabled or optimizer._optimizer_step_pre_hooks
                or optimizer._optimizer_step_post_hooks or torch_optimizer._global_optimizer_pre_hooks
                or torch_optimizer._global_optimizer_post_hooks)


class UnannotatedSteps(torch.optim.Optimizer):
    """An optimizer whose ``step`` runs ``take_step`` directly unless ``annotations_wanted``."""

    def step(self, closure=None):
        if annotations_wanted(self):
            return torch.optim.Optimizer.profile_hook_step(type(self).take_step)(self, closure)
        return self.take_step(closure)

    step.hooked = True  # torch's Optimizer.__init__ wraps a step only if this is unset

    def take_step(self, closure=None):
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        if torch.autograd.profiler._is_profiler_enabled or not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
