"""Packing boolean tensors 8 elements per byte, on any device.

This is what makes compressed learning's memory saving real: the tensor kept for
backward is a ``uint8`` tensor with ``ceil(numel / 8)`` elements.
"""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # MSB first, like numpy.packbits


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean (or 0/1) tensor into a flat ``uint8`` tensor, 8 per byte."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = _SHIFTS.to(flat.device)
    return (flat.view(-1, 8) << shifts).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size | tuple[int, ...],
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a tensor of ``shape`` with 0/1 values."""
    numel = 1
    for s in shape:
        numel *= s
    shifts = _SHIFTS.to(packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1
    return bits.reshape(-1)[:numel].reshape(shape).to(dtype)
