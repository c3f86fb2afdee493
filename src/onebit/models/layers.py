"""Layers that take a :class:`~onebit.methods.Method` as an argument.

Architectures are written once with these layers; the method decides the
forward weight and what autograd keeps. Parameter and buffer names are those of
``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` whatever the method, so
``state_dict`` moves between methods.

Activations between a ``BNReLU`` and the weight layers that read it travel as an
:class:`Act`: the float ``A`` for forward plus, under compressed learning, its
packed 1-bit copy ``aq``, drawn once and shared by every layer reading ``A``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from ..methods import Method, get_method
from ..ops.functional import CompactMaxPool, MaskReLU, QConvFn, SignHardTanh, StrictBNReLU, binarize_and_pack, tag


class Act(NamedTuple):
    a: Tensor
    aq: Optional[Tensor] = None
    #: XNOR-Net input scaling: channel-mean of |input| before binarization, (N, 1, H, W)
    scale: Optional[Tensor] = None


def as_act(x: "Tensor | Act") -> Act:
    return x if isinstance(x, Act) else Act(x)


def compress(a: Tensor, method: Method) -> Act:
    """Attach the packed 1-bit copy of ``a`` when the method keeps one."""
    if method.compressed and torch.is_grad_enabled() and a.requires_grad:
        with torch.no_grad():
            return Act(a, tag(binarize_and_pack(method.act_quantizer, a), "packed activation"))
    return Act(a)


class _MethodMixin:
    def _init_method(self, method, quantize_weight: bool):
        self.method = get_method(method)
        #: False keeps this layer's weight at 32 bits (e.g. first and last layer)
        self.quantize_weight = quantize_weight

    @property
    def weight_quantizer(self):
        return self.method.weight_quantizer if self.quantize_weight else None

    def _inputs(self, x: "Tensor | Act"):
        """``(A, A_q, quantizer, w)``: ``w`` is the forward weight when the stock op
        serves (no gradient, or nothing to quantize or compress), else None."""
        act = as_act(x)
        a, aq = act.a, act.aq
        q = self.weight_quantizer
        w = None
        if not torch.is_grad_enabled() or (q is None and aq is None):
            w = self.weight if q is None else q(self.weight)
        return a, aq, q, w

    def extra_repr(self) -> str:
        q = "32-bit" if self.weight_quantizer is None else "1-bit"
        return f"{super().extra_repr()}, method={self.method.name}, weight={q}"


class QConv2d(_MethodMixin, nn.Conv2d):
    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, method="fp32", quantize_weight=True
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self._init_method(method, quantize_weight)

    def forward(self, x: "Tensor | Act") -> Tensor:
        a, aq, q, w = self._inputs(x)
        if w is not None:
            y = F.conv2d(a, w, None, self.stride, self.padding)
        else:
            y = QConvFn.apply(a, aq, self.weight, q, self.stride, self.padding)
        scale = as_act(x).scale
        if scale is not None:  # XNOR-Net: K = mean_c |I| averaged over each window (zero padding)
            y = y * F.avg_pool2d(scale, self.kernel_size, self.stride, self.padding, count_include_pad=True)
        return y


class QLinear(_MethodMixin, nn.Linear):
    """A fully connected layer computed as a 1x1 conv, so it shares ``QConvFn``."""

    def __init__(self, in_features, out_features, *, method="fp32", quantize_weight=True):
        super().__init__(in_features, out_features, bias=True)
        self._init_method(method, quantize_weight)

    def forward(self, x: "Tensor | Act") -> Tensor:
        a, aq, q, w = self._inputs(x)
        if w is not None:
            return F.linear(a, w, self.bias)
        w = self.weight[:, :, None, None]
        y = QConvFn.apply(a[:, :, None, None], aq, w, q, (1, 1), (0, 0))
        return y.flatten(1) + self.bias


class BNReLU(nn.BatchNorm2d):
    """``A = relu(BN(x) [+ BN_s(x_s)] [+ residual])``, returned as an :class:`Act`.

    * exact methods: stock ``batch_norm`` and ``relu`` (which keeps ``A``);
    * ``cl``: stock ``batch_norm`` (keeps ``x``), a ReLU keeping a 1-bit mask, and
      the packed ``A_q`` for the next weight layers;
    * ``cl-strict``: one :class:`~onebit.ops.functional.StrictBNReLU` keeping only
      ``A_q`` and per-channel statistics.

    ``shortcut=(bn_s, x_s)`` adds a second batch-normalised input (the ResNet
    projection shortcut) inside the same unit.
    """

    def __init__(
        self, num_features, *, method="fp32", affine=False, eps=1e-5, momentum=0.1, binary_act: Optional[bool] = None
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.method = get_method(method)
        #: sign instead of ReLU (default: the method's); False keeps a real activation where a
        #: method's own definition does (the input of a 32-bit last layer)
        self.binary_act = self.method.binary_act if binary_act is None else binary_act

    def forward(
        self, x: Tensor, residual: Optional[Tensor] = None, shortcut: Optional[tuple[nn.BatchNorm2d, Tensor]] = None
    ) -> Act:
        m = self.method
        if m.strict and self.training and torch.is_grad_enabled():
            groups = [self, x, self.weight, self.bias]
            if shortcut is not None:
                bn_s, x_s = shortcut
                groups += [bn_s, x_s, bn_s.weight, bn_s.bias]
            for bn in groups[0::4]:
                if bn.track_running_stats:
                    bn.num_batches_tracked.add_(1)
            a, aq = StrictBNReLU.apply(m.act_quantizer, residual, *groups)
            return Act(a, aq)
        y = super().forward(x)
        if shortcut is not None:
            y = y + shortcut[0](shortcut[1])
        if residual is not None:
            y = y + residual
        if self.binary_act:
            scale = y.abs().mean(1, keepdim=True) if m.input_scaling else None
            return Act(SignHardTanh.apply(y), None, scale)
        if (m.compressed or m.mask_relu) and torch.is_grad_enabled():
            return compress(MaskReLU.apply(y), m)
        return Act(F.relu(y))


def max_pool_act(act: Act, method: Method) -> Act:
    """The ResNet stem's 3x3/2 max pool on an activation. Compressed methods use
    :class:`CompactMaxPool` (``F.max_pool2d`` would keep the float input alive)."""
    if (method.compressed or method.mask_relu) and torch.is_grad_enabled():
        return compress(CompactMaxPool.apply(act.a), method)
    return Act(F.max_pool2d(act.a, 3, 2, 1))


# Callables that see every tensor kept for backward where saved_tensors_hooks
# cannot (a method's own hooks shadow outer ones; checkpoint keeps block inputs
# outside them). Set by onebit.measure.memory.measure.
OBSERVERS: list = []


def _observe(obj) -> None:
    for fn in OBSERVERS:
        fn(obj)


def method_scope(method: Method, model: nn.Module):
    """The context a model's forward runs in: the method's saved-tensor hooks, if any."""
    if method.saved_hooks is None or not torch.is_grad_enabled():
        return nullcontext()
    hooks = method.saved_hooks({p.untyped_storage().data_ptr() for p in model.parameters()})
    if not OBSERVERS:
        return hooks

    def pack(t):
        packed = hooks.pack_hook(t)
        _observe(packed)
        return packed

    return torch.autograd.graph.saved_tensors_hooks(pack, hooks.unpack_hook)


@contextmanager
def frozen_bn_stats(module: nn.Module):
    """BN running statistics unchanged inside (a checkpointed block's recomputation
    must not update them a second time)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, n) in zip(bns, saved):
            m.momentum = momentum
            if n is not None:
                m.num_batches_tracked.copy_(n)


def run_block(block: nn.Module, fn, x: Tensor) -> Tensor:
    """``fn(x)``, recomputed in backward (activation checkpointing) when the
    block's method asks for it; only ``x`` is kept."""
    if block.method.checkpoint and block.training and torch.is_grad_enabled():
        _observe(x)
        return torch.utils.checkpoint.checkpoint(
            fn, x, use_reentrant=False, context_fn=lambda: (nullcontext(), frozen_bn_stats(block))
        )
    return fn(x)
