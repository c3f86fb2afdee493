"""The quantizers every method is made of: weight quantizers ``W -> W_hat`` (their
gradient is the method's straight-through estimator) and activation quantizers
``A -> bool`` (the 1-bit copy of a conv input kept for the weight gradient).

The straight-through estimators themselves are autograd Functions in
:mod:`onebit.ops.functional`; this file names what the methods use, and the one hook a
method runs after each step (BinaryConnect's clipping). The family files name these by
:class:`~onebit.methods.base.Ref`, so that registering them imports no PyTorch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops.functional import SignHardTanh, SignHe


def sign_he(w: Tensor) -> Tensor:
    """``c * sign(W)``, ``c`` the He constant of the layer's fan-in, identity gradient [P eq. 1]."""
    return SignHe.apply(w)


def stochastic_binary(a: Tensor) -> Tensor:
    """``A_q = 1[A + u > 1]``, ``u ~ U[0, 1)`` drawn fresh at every call ([W] slide 13).

    For ``A >= 0`` this is Bernoulli(min(A, 1)): unbiased for ``A <= 1``."""
    return torch.rand_like(a).add_(a) > 1  # one float temporary, same draws as a + u > 1


def deterministic_binary(a: Tensor) -> Tensor:
    return a > 0.5


def gaussian_binary(a: Tensor) -> Tensor:
    """``1[A + g > 1]``, ``g ~ N(1/2, 1/12)`` drawn fresh at every call."""
    return torch.randn_like(a).mul_(1 / math.sqrt(12)).add_(a) > 0.5


def binary_connect(w: Tensor) -> Tensor:
    """``sign(W)``, gradient ``grad * 1[|W| <= 1]``."""
    return SignHardTanh.apply(w)


def binary_weight_network(w: Tensor) -> Tensor:
    """``alpha * sign(W)``, ``alpha = mean |W|`` over each output channel's weights."""
    alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return alpha * SignHardTanh.apply(w)


@torch.no_grad()
def clip_binary_weights(model: nn.Module) -> None:
    """BinaryConnect's clipping of the real-valued weights to [-1, 1] after a step."""
    from ..models.layers import QConv2d, QLinear

    for m in model.modules():
        if isinstance(m, (QConv2d, QLinear)) and m.weight_quantizer is not None:
            m.weight.clamp_(-1, 1)
