"""Packing boolean tensors 8 elements per byte, on any device.

This is what makes compressed learning's memory saving real: the tensor kept for
backward is a ``uint8`` tensor with ``ceil(numel / 8)`` elements.
"""

from __future__ import annotations

import torch

from .dispatch import reference

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8, device="cpu")  # MSB first, like numpy.packbits; cpu
# even when first imported inside a `with torch.device("meta")` block (a model built for a check)


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether a 4-d tensor is laid out NHWC (``torch.channels_last``) rather than NCHW."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


@reference
def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean (or 0/1) tensor into a flat ``uint8`` tensor, 8 per byte, in
    memory order: NHWC for a channels-last tensor (no copy to NCHW first); unpack
    it with ``channels_last=is_channels_last(mask)``."""
    if is_channels_last(mask):
        mask = mask.permute(0, 2, 3, 1)
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = _SHIFTS.to(flat.device)
    return (flat.view(-1, 8) << shifts).sum(dim=1, dtype=torch.uint8)


@reference
def unpack_bits(
    packed: torch.Tensor,
    shape: torch.Size | tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a tensor of ``shape`` with 0/1 values (laid out
    channels-last when it was packed from such a tensor)."""
    numel = 1
    for s in shape:
        numel *= s
    shifts = _SHIFTS.to(packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1
    bits = bits.reshape(-1)[:numel]
    if channels_last:
        n, c, h, w = shape
        return bits.reshape(n, h, w, c).to(dtype).permute(0, 3, 1, 2)
    return bits.reshape(shape).to(dtype)


def unpack_batch_slice(
    packed: torch.Tensor,
    shape: torch.Size | tuple[int, ...],
    start: int,
    stop: int,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Images ``start:stop`` of the tensor of ``shape`` packed by :func:`pack_bits`,
    unpacking only their bytes (each image's bits are contiguous in either layout;
    for a part of the batch, its bit count must be a multiple of 8)."""
    if (start, stop) == (0, shape[0]):
        return unpack_bits(packed, shape, dtype, channels_last)
    per_image = 1
    for s in shape[1:]:
        per_image *= s
    if per_image % 8:
        raise ValueError(f"an image of shape {tuple(shape[1:])} does not fill whole bytes")
    nbytes = per_image // 8
    return unpack_bits(packed[start * nbytes : stop * nbytes], (stop - start, *shape[1:]), dtype, channels_last)
