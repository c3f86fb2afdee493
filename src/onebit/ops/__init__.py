"""Ops: bit packing and the autograd Functions that keep only what each method keeps.

The element-wise ops (``pack_bits``, ``unpack_bits``, ``binarize_and_pack``, ``quantize2``,
``dequantize2``, ``avg_pool_pad`` and its backward) are pure-PyTorch references dispatched
through :mod:`onebit.ops.dispatch`, where a fused kernel for a device is registered beside
its reference."""
