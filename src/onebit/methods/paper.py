"""The papers' own methods: 32-bit, 1-bit weights [P], compressed learning [W] and both."""

from __future__ import annotations

from .base import Method, Ref, register_method

sign_he = Ref("onebit.methods.quantizers:sign_he")
stochastic_binary = Ref("onebit.methods.quantizers:stochastic_binary")

register_method(Method("fp32", "32-bit baseline: exact forward and backward", family="paper", color="#000000"))
register_method(
    Method(
        "w1",
        "1-bit weights c*sign(W), identity straight-through gradient [P eq. 1]",
        weight_quantizer=sign_he,
        weight_bits=1,
        family="paper",
        color="#0072B2",
    )
)
register_method(
    Method(
        "cl",
        "compressed learning: weight gradients from a stochastic 1-bit copy of "
        "each conv input; ReLU and BN backward exact [W]",
        act_quantizer=stochastic_binary,
        family="paper",
        color="#E69F00",
    )
)
register_method(
    Method(
        "cl-strict",
        "compressed learning keeping only the 1-bit copy per BN-ReLU-conv "
        "unit; ReLU and BN backward derived from it (inexact)",
        act_quantizer=stochastic_binary,
        strict=True,
        family="paper",
        color="#D55E00",
    )
)
register_method(
    Method(
        "w1+cl",
        "1-bit weights and compressed learning [W slide 18]",
        weight_quantizer=sign_he,
        act_quantizer=stochastic_binary,
        weight_bits=1,
        family="paper",
        color="#CC79A7",
    )
)
