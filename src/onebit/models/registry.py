"""The model registry: ``create_model(arch, method, **arch_kwargs)``.

Each entry carries its facts (display label, whether it takes ``depth`` and ``width``); the
built-in networks are registered by :class:`~onebit.methods.base.Ref`, so that reading the
registry imports no PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserError
from ..methods import get_method
from ..methods.base import Ref

if TYPE_CHECKING:
    from torch import nn
from ..registry import Registry

MODELS: Registry = Registry("model")
#: arch -> its display label, a format string of its construction arguments
LABELS: dict[str, str] = {}
#: arch -> whether it takes ``depth`` and ``width`` (the wide ResNets)
DEPTH_WIDTH: dict[str, bool] = {}


def register_model(name: str, factory=None, *, label: str | None = None, depth_width: bool | None = None):
    """``register_model(name, factory)`` or ``@register_model(name, label=...)``; ``label`` is
    the network's name in tables and figures, formatted with its arguments (e.g.
    ``"WRN-{depth}-{width:g}"``); without one, the registered name. ``depth_width`` says
    whether it takes ``depth`` and ``width`` (read from the factory's signature if not given;
    needed for a :class:`Ref`)."""
    add = MODELS.register(name)

    def register(obj):
        if depth_width is None and isinstance(obj, Ref):
            raise UserError(f"model {name!r}: a model registered by reference must say depth_width")
        obj = add(obj)
        LABELS[name] = label or name
        if depth_width is None:
            import inspect

            params = inspect.signature(obj).parameters
            DEPTH_WIDTH[name] = "depth" in params and "width" in params
        else:
            DEPTH_WIDTH[name] = depth_width
        return obj

    return register(factory) if factory is not None else register


def model_label(arch: str, **kwargs) -> str:
    """The display label of a registered architecture built with ``kwargs``."""
    return LABELS[arch].format(**kwargs)


def list_models() -> list[str]:
    return MODELS.names()


def has_depth_width(arch: str) -> bool:
    """Whether a registered architecture takes ``depth`` and ``width`` (the wide ResNets)."""
    MODELS.get(arch)  # an unknown name: the known ones listed
    return DEPTH_WIDTH[arch]


def create_model(arch: str, method="fp32", **arch_kwargs) -> "nn.Module":
    """Build a registered architecture with a registered method.

    The same class serves every method and has the same ``state_dict`` keys; the
    resolved construction arguments are kept in ``model.onebit_config`` (used by
    checkpoints and the packed export).
    """
    factory = MODELS.get(arch)
    m = get_method(method).resolve()
    model = factory(method=m, **arch_kwargs)
    model.onebit_config = {"arch": arch, "method": m.name, **arch_kwargs}
    return model
