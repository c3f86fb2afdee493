"""onebit: 1-bit weights and compressed learning for deep residual networks.

Reproduces McDonnell, Wang & van Schaik (2017) and McDonnell (ICLR 2018).

Importing the package imports no PyTorch: what only reads tables (``onebit.grid``,
``onebit.report``, the registries' names and facts) stays light, and the names below are
imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

#: public name -> the module that defines it
_PUBLIC = {
    "METHODS": "onebit.methods",
    "Method": "onebit.methods",
    "get_method": "onebit.methods",
    "list_methods": "onebit.methods",
    "register_method": "onebit.methods",
    "MODELS": "onebit.models",
    "create_model": "onebit.models",
    "list_models": "onebit.models",
    "register_model": "onebit.models",
    "export_packed": "onebit.export",
    "load_packed": "onebit.export",
    "UnknownNameError": "onebit.errors",
}

__all__ = sorted(_PUBLIC)

TORCH_MISSING = (
    "onebit needs PyTorch >= 2.3, which is not installed. Install the build for your machine "
    "first: on a CPU-only machine `pip install torch --index-url https://download.pytorch.org/whl/cpu`, "
    "on a GPU machine `pip install torch` (or see pytorch.org), or `pip install 'onebit[torch]'`."
)


def require_torch() -> None:
    """Import PyTorch, or fail with what to install."""
    try:
        import torch  # noqa: F401
    except ImportError:  # not a dependency of the package on purpose (pyproject.toml)
        raise ImportError(TORCH_MISSING) from None


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'onebit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
