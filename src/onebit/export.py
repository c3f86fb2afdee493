"""Packed deployment format: one bit per binary weight ([P] 2; SPEC.md 1).

Each binary weight layer is stored as its sign bits (``pack_bits(W_hat >= 0)``)
plus one scale per output channel (for ``w1`` the fixed He constant ``c``, so
``w = (2b - 1) * c``); every other tensor (BN statistics, 32-bit layers, biases)
is stored as is. The file is written with ``torch.save`` and read back with
``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .models.layers import QConv2d, QLinear
from .ops.bits import pack_bits, unpack_bits

FORMAT = "onebit-packed-v1"


def _binary_layers(model: nn.Module):
    for name, mod in model.named_modules():
        if isinstance(mod, (QConv2d, QLinear)) and mod.weight_quantizer is not None:
            yield name, mod


def export_packed(model: nn.Module, path: "str | os.PathLike") -> int:
    """Write ``model`` (a trained 1-bit-weight model) to ``path``; returns its size in bytes."""
    config = getattr(model, "onebit_config", None)
    if config is None:
        raise UserError("export needs a model built by onebit.create_model")
    layers = dict(_binary_layers(model))
    if not layers:
        raise UserError(
            f"method {config['method']!r} has no binary weights: nothing to pack; "
            "export a model trained with a 1-bit-weight method such as 'w1'"
        )
    binary = {}
    with torch.no_grad():
        for name, mod in layers.items():
            w_hat = mod.weight_quantizer(mod.weight).float()
            scale = w_hat.abs().flatten(1).amax(1)
            rebuilt = torch.where(w_hat >= 0, 1.0, -1.0) * scale.view(-1, *[1] * (w_hat.dim() - 1))
            # the forward weight must be +-scale per output channel to be packed
            if not torch.equal(rebuilt, w_hat):
                raise UserError(
                    f"layer {name!r}: the weight quantizer of "
                    f"{config['method']!r} is not a per-channel sign; cannot pack"
                )
            binary[name + ".weight"] = {"bits": pack_bits(w_hat >= 0), "shape": list(w_hat.shape), "scale": scale}
    rest = {k: v for k, v in model.state_dict().items() if k not in binary}
    blob = {"format": FORMAT, "config": dict(config), "binary": binary, "tensors": rest}
    import io

    from .runio import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(Path(path), buf.getvalue())  # a unique temporary name, fsynced, renamed
    return Path(path).stat().st_size


def load_packed(path: "str | os.PathLike", map_location="cpu") -> nn.Module:
    """Rebuild the model written by :func:`export_packed` (in eval mode)."""
    from .models import create_model

    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, or not written by torch.save
        raise UserError(
            f"{path}: not a onebit packed model, or a truncated one "
            f"({type(e).__name__}); export it again with 'onebit export'"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path}: not a onebit packed model (expected format {FORMAT!r})")
    config = dict(blob["config"])
    model = create_model(config.pop("arch"), config.pop("method"), **config)
    state = dict(blob["tensors"])
    for name, b in blob["binary"].items():
        signs = unpack_bits(b["bits"], b["shape"]) * 2 - 1
        state[name] = signs * b["scale"].view(-1, *[1] * (len(b["shape"]) - 1))
    model.load_state_dict(state)
    for name, mod in _binary_layers(model):  # the stored +-scale weights are the forward weights:
        mod.quantize_weight = False  # no quantizer re-applied (exact for every method)
    return model.eval()
