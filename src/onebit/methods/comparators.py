"""Memory comparators: other ways of keeping less for backward, exact or approximate."""

from __future__ import annotations

from .base import Method, Ref, register_method

register_method(
    Method(
        "ckpt",
        "activation checkpointing per residual block (torch.utils.checkpoint, non-reentrant): "
        "exact gradients, blocks recomputed in backward",
        checkpoint=True,
        family="comparator",
        color="#999999",
    )
)


register_method(
    Method(
        "act2",
        "ActNN-style 2-bit per-group stochastic compression of every saved activation, 1-bit ReLU masks",
        saved_hooks=Ref("onebit.ops.act2:Act2Hooks"),
        mask_relu=True,
        saved_bits=2,
        family="comparator",
        color="#8C564B",
    )
)
