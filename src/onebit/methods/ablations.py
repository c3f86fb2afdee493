"""Ablations of compressed learning: how the 1-bit copy ``A_q`` is drawn.

The workshop says that "without stochastic binarization the method is far less
effective". Two registered ablations test that, through the same "add a method"
path a user's plugin takes (docs/adding-a-method.md uses ``cl-gauss`` as its
worked example):

* ``cl-det``: a deterministic threshold, ``A_q = 1[A > 0.5]``.
* ``cl-gauss``: Gaussian instead of uniform noise with the same mean and variance,
  ``A_q = 1[A + g > 1]``, ``g ~ N(1/2, 1/12)``. ``P(A_q = 1) = Phi((A - 1/2) sqrt(12))``
  is not linear in ``A``, so, unlike the uniform draw, the copy is biased.
"""

from __future__ import annotations

from .base import Method, Ref, register_method

deterministic_binary = Ref("onebit.methods.quantizers:deterministic_binary")
gaussian_binary = Ref("onebit.methods.quantizers:gaussian_binary")


register_method(
    Method(
        "cl-det",
        "compressed learning with a deterministic threshold 1[A > 0.5] (ablation)",
        act_quantizer=deterministic_binary,
        family="ablation",
        color="#F0E442",
    )
)


register_method(
    Method(
        "cl-gauss",
        "compressed learning with Gaussian noise 1[A + g > 1], g ~ N(1/2, 1/12) (ablation)",
        act_quantizer=gaussian_binary,
        family="ablation",
        color="#7F7F00",
    )
)
