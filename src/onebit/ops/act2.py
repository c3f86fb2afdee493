"""``act2``: ActNN-style 2-bit compression of every activation autograd keeps.

ActNN (Chen et al. 2021) stores each saved activation at 2 bits per element with
a per-group minimum and scale and stochastic rounding, and ReLU as a 1-bit mask;
it reports 12x less activation memory. Here, in pure PyTorch: a
``saved_tensors_hooks`` pair packs every saved floating-point tensor of at least
``MIN_NUMEL`` elements that is not a parameter into groups of ``GROUP`` values
of one channel (a group spanning channels of different scale would drown the
small ones, which batch norm's backward then amplifies),
``q = floor((x - min) / scale + u)``, ``u ~ U[0,1)``, ``scale = (max - min) / 3``,
four codes per byte; ``min`` and ``scale`` are kept per group (fp32). The
dequantized value is unbiased: ``E[min + q * scale] = x``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import reference
from .functional import tag

GROUP = 256
MIN_NUMEL = 4096  # small tensors (statistics, logits of a small batch) stay exact
_SHIFTS = torch.tensor([6, 4, 2, 0], dtype=torch.uint8, device="cpu")  # cpu even if imported under meta


def _rows(x: Tensor) -> Tensor:
    """One row per channel (dim 1), so that no group mixes channels of different scale."""
    if x.dim() < 2:
        return x.reshape(1, -1)
    return x.transpose(0, 1).reshape(x.shape[1], -1)


@reference
def quantize2(x: Tensor):
    rows = _rows(x.detach()).float()
    length = rows.shape[1]
    group = min(GROUP, length)
    pad = (-length) % group
    if pad:  # repeat the row's last value: it does not widen the group's range
        rows = torch.cat([rows, rows[:, -1:].expand(-1, pad)], 1)
    g = rows.reshape(-1, group)
    mn = g.amin(1, keepdim=True)
    scale = (g.amax(1, keepdim=True) - mn) / 3
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.floor((g - mn) / safe + torch.rand_like(g)).clamp_(0, 3).to(torch.uint8).reshape(-1)
    q = torch.cat([q, q.new_zeros((-q.numel()) % 4)])
    packed = (q.view(-1, 4) << _SHIFTS.to(q.device)).sum(1, dtype=torch.uint8)
    return (
        tag(packed, "2-bit activations"),
        tag(torch.cat([mn, scale], 1), "group statistics"),
        (tuple(x.shape), x.dtype, group, length),
    )


@reference
def dequantize2(packed: Tensor, stats: Tensor, meta) -> Tensor:
    shape, dtype, group, length = meta
    q = ((packed.unsqueeze(1) >> _SHIFTS.to(packed.device)) & 3).reshape(-1)
    n_groups = stats.shape[0]
    g = q[: n_groups * group].view(n_groups, group).float() * stats[:, 1:] + stats[:, :1]
    rows = g.reshape(-1, length + (-length) % group)[:, :length]
    if len(shape) < 2:
        return rows.reshape(shape).to(dtype)
    moved = (shape[1], shape[0], *shape[2:])
    return rows.reshape(moved).transpose(0, 1).contiguous().to(dtype)


class Act2Hooks(torch.autograd.graph.saved_tensors_hooks):
    """Pack saved float activations to 2 bits; parameters are passed through."""

    def __init__(self, params: "set[int] | None" = None):
        self.params = params or set()

        def pack(t: Tensor):
            if not t.is_floating_point() or t.numel() < MIN_NUMEL or t.untyped_storage().data_ptr() in self.params:
                return t
            return quantize2(t)

        def unpack(p):
            return dequantize2(*p) if isinstance(p, tuple) else p

        super().__init__(pack, unpack)
