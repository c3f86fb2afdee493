"""Example plugin: 1-bit weights with the deterministic-threshold ablation of
compressed learning, a combination the suite does not register itself.

It reuses the registered pieces: ``sign_he`` (the paper's 1-bit weights) and
``deterministic_binary`` (``1[A > 0.5]``, from the ``cl-det`` ablation).
"""

from onebit import Method, register_method
from onebit.methods.quantizers import deterministic_binary, sign_he

register_method(
    Method(
        "w1+cl-det",
        "1-bit weights and compressed learning with the deterministic threshold 1[A > 0.5]",
        weight_quantizer=sign_he,
        weight_bits=1,
        act_quantizer=deterministic_binary,
    )
)
