"""onebit: 1-bit weights and compressed learning for deep residual networks.

Reproduces McDonnell, Wang & van Schaik (2017) and McDonnell (ICLR 2018).
"""

from .export import export_packed, load_packed
from .methods import METHODS, Method, get_method, list_methods, register_method
from .models import MODELS, create_model, list_models, register_model
from .registry import UnknownNameError
from . import ablations, peers  # noqa: E402,F401  (registrations: cl-det, cl-gauss, bc, bwn, xnor, bnn)

__version__ = "0.1.0"

__all__ = [
    "METHODS", "MODELS", "Method", "UnknownNameError", "create_model", "export_packed",
    "get_method", "list_methods", "list_models", "load_packed", "register_method",
    "register_model",
]
