"""onebit: 1-bit weights and compressed learning for deep residual networks.

Reproduces McDonnell, Wang & van Schaik (2017) and McDonnell (ICLR 2018).
"""

try:
    import torch  # noqa: F401
except ImportError:  # not a dependency of the package on purpose (pyproject.toml)
    raise ImportError(
        "onebit needs PyTorch >= 2.3, which is not installed. Install the build for your machine "
        "first: on a CPU-only machine `pip install torch --index-url https://download.pytorch.org/whl/cpu`, "
        "on a GPU machine `pip install torch` (or see pytorch.org), or `pip install 'onebit[torch]'`."
    ) from None

from .export import export_packed, load_packed
from .methods import METHODS, Method, get_method, list_methods, register_method
from .models import MODELS, create_model, list_models, register_model
from .registry import UnknownNameError

__version__ = "0.2.0"

__all__ = [
    "METHODS", "MODELS", "Method", "UnknownNameError", "create_model", "export_packed",
    "get_method", "list_methods", "list_models", "load_packed", "register_method",
    "register_model",
]
