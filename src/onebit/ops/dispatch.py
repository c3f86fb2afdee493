"""One dispatch point for the element-wise ops of compressed learning.

Each op is written once in pure PyTorch (the reference, on any device) and decorated with
:func:`reference`. A fused kernel for a device type (``"cuda"``, ``"cpu"``) is plugged in
beside it with :func:`register_fused`; a call then runs the kernel registered for the device
of its first tensor argument, or the reference when there is none. ``ONEBIT_KERNELS=reference``
in the environment, or :func:`references_only` around a block, runs the references only (to
compare a kernel against its reference, or to rule one out)::

    from onebit.ops.dispatch import register_fused

    @register_fused("pack_bits", "cuda")
    def pack_bits_triton(mask): ...
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Iterator

import torch

from ..errors import ConfigError

_FUSED: dict[str, dict[str, Callable]] = {}
_REFERENCES: dict[str, Callable] = {}
_MODE = os.environ.get("ONEBIT_KERNELS", "")
if _MODE not in ("", "fused", "reference"):
    raise ConfigError(
        f"ONEBIT_KERNELS must be 'reference' (the pure-PyTorch references only) or 'fused' (the "
        f"default: a registered kernel where there is one), got {_MODE!r}; unset it or fix its value"
    )
_enabled = [_MODE != "reference"]


def reference(fn: Callable) -> Callable:
    """Make ``fn`` (a pure-PyTorch op) the reference of the op of its name, dispatched."""
    name = fn.__name__
    if name in _REFERENCES:
        raise ValueError(f"an op named {name!r} is already dispatched")
    _REFERENCES[name] = fn
    fused = _FUSED.setdefault(name, {})

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        if fused and _enabled[0]:
            t = next((a for a in args if isinstance(a, torch.Tensor)), None)
            kernel = fused.get(t.device.type) if t is not None else None
            if kernel is not None:
                return kernel(*args, **kwargs)
        return fn(*args, **kwargs)

    dispatch.reference = fn
    return dispatch


def register_fused(name: str, device_type: str, fn: Callable | None = None):
    """Register ``fn`` as the fused kernel of op ``name`` on ``device_type`` (usable as a
    decorator). It takes the reference's arguments and must return what the reference does."""
    ops()  # every op registered
    if name not in _REFERENCES:
        raise ConfigError(
            f"no op named {name!r} to register a fused kernel for; the ops are: {', '.join(sorted(_REFERENCES))}"
        )

    try:
        valid = torch.device(device_type).type == device_type
    except (RuntimeError, TypeError):
        valid = False
    if not valid:
        raise ConfigError(
            f"a fused kernel is registered for a device type such as 'cuda' or 'cpu', got {device_type!r}"
        )

    def add(f: Callable) -> Callable:
        _FUSED[name][device_type] = f
        return f

    return add(fn) if fn is not None else add


def unregister_fused(name: str, device_type: str) -> None:
    _FUSED.get(name, {}).pop(device_type, None)


def ops() -> dict[str, list[str]]:
    """Every dispatched op and the device types it has a fused kernel for."""
    from . import act2, bits, functional  # noqa: F401  (each registers its ops)

    return {name: sorted(_FUSED[name]) for name in sorted(_REFERENCES)}


@contextlib.contextmanager
def references_only() -> Iterator[None]:
    """Within the block, every op runs its pure-PyTorch reference."""
    before, _enabled[0] = _enabled[0], False
    try:
        yield
    finally:
        _enabled[0] = before
