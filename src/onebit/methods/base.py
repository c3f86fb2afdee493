"""Methods: a registered name bundling how weights are quantized and what is kept
for backward.

Adding a method is one :func:`register_method` call; the architectures never
change. ``weight_quantizer`` maps the full-precision ``W`` to the weight used in
forward (its gradient is the straight-through estimator of that method);
``act_quantizer`` maps a non-negative activation ``A`` to the boolean copy kept,
packed one bit per element, for the weight gradient (compressed learning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..ops.functional import sign_he
from ..registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    weight_quantizer: Optional[Callable[[Tensor], Tensor]] = None
    act_quantizer: Optional[Callable[[Tensor], Tensor]] = None
    #: derive the ReLU and BN backward from the 1-bit copy too (``StrictBNReLU``)
    strict: bool = False
    #: bits per weight at deployment
    weight_bits: int = 32
    #: recompute each residual block in backward (torch.utils.checkpoint)
    checkpoint: bool = False
    #: factory of a ``saved_tensors_hooks`` context applied to the model's
    #: forward, given the data pointers of the model's parameters (``act2``)
    saved_hooks: Optional[Callable] = None
    #: ReLU keeps a 1-bit mask instead of its output (implied by act_quantizer)
    mask_relu: bool = False
    #: the BN unit outputs sign(BN(x)) (hard-tanh straight-through) instead of ReLU (BNN, XNOR-Net)
    binary_act: bool = False
    #: XNOR-Net's input scaling: each conv output is multiplied by K, the channel-mean of
    #: |BN(x)| averaged over the conv's window (needs binary_act)
    input_scaling: bool = False
    #: called with the model after every optimizer step (e.g. BinaryConnect's weight clipping)
    after_step: Optional[Callable] = None
    #: bits per element at which ``saved_hooks`` keep the weight layers' inputs (act2: 2)
    saved_bits: Optional[int] = None
    #: the method's own definition keeps the first and last weight layers at 32 bits (and the
    #: last layer's input a real activation), as XNOR-Net and BWN do
    fp32_first_last: bool = False

    @property
    def activation_bits(self) -> int:
        """Bits per element of the weight layers' inputs kept for backward."""
        if self.act_quantizer is not None:
            return 1
        return self.saved_bits if self.saved_bits is not None else 32

    @property
    def compressed(self) -> bool:
        return self.act_quantizer is not None

    def __post_init__(self):
        if self.strict and self.act_quantizer is None:
            raise ValueError(f"method {self.name!r}: strict needs an act_quantizer")
        if self.weight_bits == 1 and self.weight_quantizer is None:
            raise ValueError(f"method {self.name!r}: 1-bit weights need a weight_quantizer")
        if self.input_scaling and not self.binary_act:
            raise ValueError(f"method {self.name!r}: input_scaling needs binary_act")
        if self.binary_act and (self.act_quantizer is not None or self.strict):
            raise ValueError(f"method {self.name!r}: binary activations do not combine with "
                             "compressed learning")


METHODS: Registry[Method] = Registry("method")


def register_method(method: Method) -> Method:
    return METHODS.register(method.name, method)


def get_method(method: "str | Method") -> Method:
    return method if isinstance(method, Method) else METHODS.get(method)


def list_methods() -> list[str]:
    return METHODS.names()


#: how tables and figures order methods: the paper's own, the memory comparators, the
#: peers, the ablations; any other (plugins) after them, alphabetically
ORDER = ["fp32", "w1", "cl", "cl-strict", "w1+cl", "ckpt", "act2", "bc", "bwn", "xnor", "bnn",
         "cl-det", "cl-gauss"]


def ordered(names) -> list[str]:
    """``names`` (distinct) in :data:`ORDER`, others after them alphabetically."""
    names = list(dict.fromkeys(names))
    known = [m for m in ORDER if m in names]
    return known + sorted(set(names) - set(known))


def stochastic_binary(a: Tensor) -> Tensor:
    """``A_q = 1[A + u > 1]``, ``u ~ U[0, 1)`` drawn fresh at every call ([W] slide 13).

    For ``A >= 0`` this is Bernoulli(min(A, 1)): unbiased for ``A <= 1``."""
    return torch.rand_like(a).add_(a) > 1  # one float temporary, same draws as a + u > 1


register_method(Method("fp32", "32-bit baseline: exact forward and backward"))
register_method(Method(
    "w1", "1-bit weights c*sign(W), identity straight-through gradient [P eq. 1]",
    weight_quantizer=sign_he, weight_bits=1))
register_method(Method(
    "cl", "compressed learning: weight gradients from a stochastic 1-bit copy of "
    "each conv input; ReLU and BN backward exact [W]",
    act_quantizer=stochastic_binary))
register_method(Method(
    "cl-strict", "compressed learning keeping only the 1-bit copy per BN-ReLU-conv "
    "unit; ReLU and BN backward derived from it (inexact)",
    act_quantizer=stochastic_binary, strict=True))
register_method(Method(
    "w1+cl", "1-bit weights and compressed learning [W slide 18]",
    weight_quantizer=sign_he, act_quantizer=stochastic_binary, weight_bits=1))
register_method(Method(
    "ckpt", "activation checkpointing per residual block (torch.utils.checkpoint, non-reentrant): "
    "exact gradients, blocks recomputed in backward", checkpoint=True))


def _act2_hooks(params):
    from ..ops.act2 import Act2Hooks

    return Act2Hooks(params)


register_method(Method(
    "act2", "ActNN-style 2-bit per-group stochastic compression of every saved activation, "
    "1-bit ReLU masks", saved_hooks=_act2_hooks, mask_relu=True, saved_bits=2))
