"""One training step, the same for the trainer, the memory and step-time benchmark
(:mod:`onebit.measure.steps`), ``onebit bench`` and ``benchmarks/train_speed.py``."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import NonFiniteLoss  # noqa: F401  (raised here)
from .methods import Method, get_method


def method_of(model: nn.Module) -> Method:
    return get_method(getattr(model, "onebit_config", {}).get("method", "fp32"))


def autocast(device: torch.device, amp: bool):
    """bf16 autocast when ``amp``; the custom autograd Functions follow it."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    method: "Method | None" = None,
    amp: bool = False,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor]:
    """Forward, cross-entropy, backward, SGD step and the method's ``after_step``
    (e.g. BinaryConnect's clipping); returns the (detached) loss and logits.

    ``model`` may be a wrapper (DDP, compiled) whose ``onebit_config`` lives on the
    inner module: pass ``method`` then. Raises :class:`NonFiniteLoss` before the
    backward when the loss is not finite."""
    method = method or method_of(model)
    optimizer.zero_grad(set_to_none=True)
    with autocast(x.device, amp):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    if check_finite and not torch.isfinite(loss):
        raise NonFiniteLoss(f"the training loss became {loss.item()}")
    loss.backward()
    optimizer.step()
    if method.after_step is not None:
        method.after_step(getattr(model, "module", model))
    return loss.detach(), logits.detach()
