"""The model registry: ``create_model(arch, method, **arch_kwargs)``."""

from __future__ import annotations

from torch import nn

from ..methods import get_method
from ..registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def has_depth_width(arch: str) -> bool:
    """Whether a registered architecture takes ``depth`` and ``width`` (the wide ResNets)."""
    import inspect

    params = inspect.signature(MODELS.get(arch)).parameters
    return "depth" in params and "width" in params


def create_model(arch: str, method="fp32", **arch_kwargs) -> nn.Module:
    """Build a registered architecture with a registered method.

    The same class serves every method and has the same ``state_dict`` keys; the
    resolved construction arguments are kept in ``model.onebit_config`` (used by
    checkpoints and the packed export).
    """
    factory = MODELS.get(arch)
    m = get_method(method)
    model = factory(method=m, **arch_kwargs)
    model.onebit_config = {"arch": arch, "method": m.name, **arch_kwargs}
    return model
