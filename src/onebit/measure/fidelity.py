"""Gradient fidelity: how far each approximate-gradient method's weight gradients
are from exact backprop, per layer, on one fixed network and batch.

For a method whose forward equals ``fp32``'s (compressed learning and its
ablations, ``act2``; ``ckpt`` as an exact control) the exact gradient ``g`` of
each weight layer is computed once with ``fp32``; the method's gradient ``g_d`` is
drawn ``draws`` times (fresh noise each time, one seeded generator). Per layer,
relative to ``||g||``:

* ``bias``: ``||mean_d g_d - g||``, the systematic error;
* ``std``: ``sqrt(sum over elements of var_d g_d)``, the spread of one draw;
* ``rmse``: ``sqrt(mean_d ||g_d - g||^2)``, one draw's total error;
* ``noise_floor``: ``std / sqrt(draws)``, the bias a finite number of draws shows
  even for an unbiased method: a bias near it is indistinguishable from zero.

This is the measurement behind the workshop's "without stochastic binarization
the method is far less effective": a deterministic threshold has no variance but
a bias that averaging over steps cannot remove.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..methods import METHODS, get_method
from ..models.layers import QConv2d, QLinear


def same_forward_methods() -> list[str]:
    """Registered methods whose forward is fp32's (their gradients can be compared)."""
    return [
        n
        for n in METHODS.names()
        if n != "fp32" and METHODS.get(n).weight_quantizer is None and not METHODS.get(n).binary_act
    ]


def check_methods(methods: list) -> None:
    """Refuse an unknown method, or one that changes the forward pass (its gradient has no
    exact reference), before anything is measured."""
    for method in methods:
        m = get_method(method)
        if m.weight_quantizer is not None or m.binary_act:
            raise UserError(
                f"method {method!r} changes the forward pass: its gradient has no exact "
                f"reference; choose among {', '.join(same_forward_methods())}"
            )


def _weight_grads(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {
        name: m.weight.grad.detach().double().clone()
        for name, m in model.named_modules()
        if isinstance(m, (QConv2d, QLinear))
    }


def gradient_fidelity(
    make_model,
    methods: list,
    x: Tensor,
    y: Tensor,
    draws: int = 32,
    seed: int = 0,
    state: "dict | None" = None,
    log=None,
) -> list[dict]:
    """Rows ``{method, layer, index, params, exact_norm, bias, std, rmse, noise_floor}``.
    ``make_model(method)`` builds the network; ``state`` (a state dict) fixes its
    weights, else fp32's seeded initialisation does."""
    check_methods(methods)  # before the exact gradients are computed
    torch.manual_seed(seed)
    exact_model = make_model("fp32").train()
    if state is not None:
        exact_model.load_state_dict(state)
    state = {k: v.clone() for k, v in exact_model.state_dict().items()}
    exact = _weight_grads(exact_model, x, y)
    rows = []
    for i, method in enumerate(methods):
        if log is not None:
            log(f"fidelity: {method} ({i + 1}/{len(methods)}), {draws} draws")
        model = make_model(method).train()
        torch.manual_seed(seed)
        total = {k: torch.zeros_like(v) for k, v in exact.items()}
        square = {k: torch.zeros_like(v) for k, v in exact.items()}
        sq_err = dict.fromkeys(exact, 0.0)
        for _ in range(draws):
            model.load_state_dict(state)  # BN running statistics move in each forward
            for k, g in _weight_grads(model, x, y).items():
                total[k] += g
                square[k] += g * g
                sq_err[k] += float(((g - exact[k]) ** 2).sum())
        for i, (k, g) in enumerate(exact.items()):
            norm = float(g.norm())
            mean = total[k] / draws
            var = (square[k] / draws - mean * mean).clamp_min(0) * draws / max(draws - 1, 1)
            std = float(var.sum().sqrt()) / norm
            rows.append(
                {
                    "method": method,
                    "layer": k,
                    "index": i,
                    "params": g.numel(),
                    "exact_norm": norm,
                    "bias": float((mean - g).norm()) / norm,
                    "std": std,
                    "rmse": (sq_err[k] / draws) ** 0.5 / norm,
                    "noise_floor": std / draws**0.5,
                    "draws": draws,
                    "seed": seed,
                }
            )
    return rows
