"""Peer methods of the paper's tables, on the suite's own networks ([SPEC 1]).

Registered through the public "add a method" path (``register_method``), as a
plugin would be:

* ``bc``: BinaryConnect (Courbariaux et al. 2015), deterministic: ``sign(W)``;
  straight-through gradient gated by ``|W| <= 1``; W clipped to [-1, 1] after each step.
* ``bwn``: Binary-Weight-Networks (Rastegari et al. 2016): ``alpha * sign(W)``,
  ``alpha`` the mean ``|W|`` per output channel, recomputed every step; the
  gradient is autograd's through ``alpha`` and the gated straight-through sign.
* ``xnor``: XNOR-Net (same paper): BWN weights and ``sign`` activations of the
  batch-normalised input (hard-tanh straight-through), each conv output scaled by
  ``K``: the channel mean of ``|input|`` averaged over the conv's window.
* ``bnn``: Binarized Neural Networks (Hubara, Courbariaux et al. 2016): ``sign``
  weights (clipped like BinaryConnect) and ``sign`` activations, hard-tanh
  straight-through.

Which layers stay at 32 bits follows each method's own paper and code: BinaryConnect
and BNN binarize the weights of every layer, the first and the last included (their
code: ``binary=True`` on every layer); XNOR-Net and BWN keep the first and the last
layer at 32 bits, with a real (ReLU) input to the last one (their code binarizes
layers ``2 .. n-1`` only). ``sign`` activations replace the ReLU of each other BN-ReLU
unit; the first layer's input (the normalised image) is never binarized.
"""

from __future__ import annotations

from .base import Method, Ref, register_method

binary_connect = Ref("onebit.methods.quantizers:binary_connect")
binary_weight_network = Ref("onebit.methods.quantizers:binary_weight_network")
clip_binary_weights = Ref("onebit.methods.quantizers:clip_binary_weights")


register_method(
    Method(
        "bc",
        "BinaryConnect: sign(W), straight-through gradient gated by |W| <= 1, W clipped to [-1, 1] after each step",
        weight_quantizer=binary_connect,
        weight_bits=1,
        after_step=clip_binary_weights,
        family="peer",
        color="#009E73",
    )
)
register_method(
    Method(
        "bwn",
        "Binary-Weight-Network: alpha * sign(W), alpha = mean |W| per output channel; first and last layer 32-bit",
        weight_quantizer=binary_weight_network,
        weight_bits=1,
        fp32_first_last=True,
        family="peer",
        color="#56B4E9",
    )
)
register_method(
    Method(
        "xnor",
        "XNOR-Net: BWN weights, sign activations (hard-tanh straight-through), conv outputs "
        "scaled by the window mean of |input|; first and last layer 32-bit",
        weight_quantizer=binary_weight_network,
        weight_bits=1,
        binary_act=True,
        input_scaling=True,
        fp32_first_last=True,
        family="peer",
        color="#2CA02C",
    )
)
register_method(
    Method(
        "bnn",
        "Binarized Neural Network: sign weights (clipped to [-1, 1]) and sign activations, hard-tanh straight-through",
        weight_quantizer=binary_connect,
        weight_bits=1,
        binary_act=True,
        after_step=clip_binary_weights,
        family="peer",
        color="#17BECF",
    )
)
