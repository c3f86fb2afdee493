"""Worked example: compressed learning with a deterministic threshold.

The workshop says that "without stochastic binarization the method is far less
effective". This plugin registers the ablation ``cl-det``: the 1-bit copy kept
for backward is ``1[A > 0.5]`` instead of ``1[A + u > 1]``.
"""

from onebit import Method, register_method
from onebit.methods import METHODS


def deterministic_binary(a):
    return a > 0.5


if "cl-det" not in METHODS:
    register_method(Method(
        "cl-det", "compressed learning with a deterministic threshold 1[A > 0.5] (ablation)",
        act_quantizer=deterministic_binary))
