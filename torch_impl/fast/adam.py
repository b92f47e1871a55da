"""Keras' Adam, fast: torch's fused CPU kernel, and one flat buffer per slot on a GPU.

``torch_impl.keras.optimizers.KerasAdam`` states the rule and asks the
predicates here which path computes it: ``steps_on_device`` (a GPU),
``fused_kernel_fits`` (the CPU's fused kernel), else its own foreach ops.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _dense_on_cpu(weight) -> bool:
    return weight.device.type == "cpu" and (
        weight.is_contiguous() or weight.is_contiguous(memory_format=torch.channels_last))


def laid_out_as(weight, gradient):
    """``gradient`` in ``weight``'s memory layout on the CPU (a copy where it is not): a convolution
    computed channels-last (fashion_cnn's, see README "Layout") hands back its kernel's gradient
    channels-last for a contiguous kernel.  The update is elementwise, so only the fused kernel,
    which walks both as flat arrays, cares; copying the few floats of a kernel costs far less
    than the foreach ops the whole model would otherwise take (docs/speed.md)."""
    if gradient.stride() == weight.stride() or not _dense_on_cpu(weight):
        return gradient
    return torch.empty_like(weight).copy_(gradient)


def fused_kernel_fits(weight, *alike) -> bool:
    """Whether torch's fused CPU Adam kernel can update ``weight``: it walks the weight, its gradient
    and its state as flat arrays, so all must be on the CPU, dense, and laid out alike (a gradient
    assigned by hand, or state loaded from another layout, may not be)."""
    return _dense_on_cpu(weight) and all(t.stride() == weight.stride() for t in alike)


def steps_on_device(weight) -> bool:
    """Whether Adam's step size is computed on the weight's device (GPUs: ``update_on_device``)."""
    return weight.device.type == "cuda"


def fused_update(group, params, grads, momentums, velocities, alpha):
    """Keras' Adam step through torch's fused CPU kernel (``torch._fused_adam_``, what
    ``torch.optim.Adam(fused=True)`` runs), given the learning rate and ε that make its update
    Keras': with ``c1 = 1−β1ᵗ`` and ``c2 = 1−β2ᵗ`` as the kernel computes them, ``lr' = α·c1/√c2``
    and ``ε' = ε/√c2`` turn ``(lr'/c1)·m / (√v/√c2 + ε')`` into ``α·m / (√v + ε)``.

    One pass over the weights instead of six foreach ops, each a loop of per-tensor kernels on
    the CPU.  It is called directly rather than through ``torch.optim.adam.adam(fused=True)``,
    whose grouping of tensors and per-weight step counters cost more than the update (the kernel
    only reads the step, so one tensor holding ``t`` serves every weight).  The same formula,
    another rounding: tests/front_end/test_parity.py holds it to Keras' rule in float64, and fails if the
    kernel's signature changes."""
    beta_1, beta_2, t = group["beta_1"], group["beta_2"], group["iterations"]
    # The kernel's (1 − β) are Keras' (Python floats); α carries Keras' float32-rounded betas.
    c1, c2 = 1 - beta_1 ** t, 1 - beta_2 ** t
    steps = [torch.tensor(float(t))] * len(params)  # the kernel reads t (from each)
    torch._fused_adam_(
        params, grads, momentums, velocities, [], steps, amsgrad=False, maximize=False,
        beta1=beta_1, beta2=beta_2, lr=alpha * c1 / math.sqrt(c2), weight_decay=0.0,
        eps=group["eps"] / math.sqrt(c2))


def update_on_device(optimizer, group, params, grads, momentums, velocities):
    """On a GPU the step size is computed where the weights are, as Keras computes it (float32
    ops on the iteration count: ``lr·√(1−β2ᵗ)/(1−β1ᵗ)``), and the update is Keras' own
    ``m·α / (√v + ε)``: no value that changes from step to step comes from the host, so a
    CUDA graph can replay the step (``StepGraph``).  The count lives beside ``iterations`` in
    the group (and in checkpoints with it); one on another device is made again from it.

    The update runs on one buffer for all of the group's m and one for v (each weight's slot
    is a view into it, ``_flat_slots``), the gradients joined into one, as elementwise
    kernels: torch's foreach kernels give each GPU block 65,536 values to walk, so over a small
    model's few tensors each launch costs more than the whole update (docs/speed.md)."""
    weight = params[0]
    t = group.get("iterations_on_device")
    if not isinstance(t, torch.Tensor) or t.device != weight.device:
        t = group["iterations_on_device"] = torch.tensor(float(group["iterations"] - 1), dtype=weight.dtype,
                                                         device=weight.device)
    t.add_(1)
    beta_1, beta_2 = float(np.float32(group["beta_1"])), float(np.float32(group["beta_2"]))
    alpha = (1 - torch.pow(beta_2, t)).sqrt_().mul_(group["lr"]).div_(1 - torch.pow(beta_1, t))
    m, v = _flat_slots(optimizer, group, params, momentums, velocities)
    g = torch.cat([grad.reshape(-1) for grad in grads])
    m.lerp_(g, 1 - group["beta_1"])
    v.mul_(group["beta_2"]).addcmul_(g, g, value=1 - group["beta_2"])
    updates = m.mul(alpha).div_(v.sqrt().add_(group["eps"]))
    torch._foreach_sub_(params, [u.view(p.shape) for u, p in zip(updates.split([p.numel() for p in params]),
                                                                 params)])


def _flat_slots(optimizer, group, params, momentums, velocities):
    """m and v of ``params`` as one buffer each, every weight's slot a view into it (what
    checkpoints save); made again from the slots' values when they are not such views (the
    first step, a loaded checkpoint, another set of weights with gradients)."""
    joined_slots = optimizer.__dict__.setdefault("joined_slots", {})  # per group
    flat = joined_slots.get(id(group))
    if flat is not None and len(flat[0]) == len(params) and all(
            a is b and m._base is flat[1] and v._base is flat[2]
            for a, b, m, v in zip(flat[0], params, momentums, velocities)):
        return flat[1], flat[2]
    joined = [torch.cat([s.reshape(-1) for s in slots]) for slots in (momentums, velocities)]
    for name, buffer in zip(("momentum", "velocity"), joined):
        for p, view in zip(params, buffer.split([p.numel() for p in params])):
            optimizer.state[p][name] = view.view(p.shape)
    joined_slots[id(group)] = (list(params), *joined)
    return joined
