"""Methods: a registered name bundling how weights are quantized and what is kept for backward.

``base`` holds :class:`Method` and its registry; each family registers its methods in a file
of its own: the papers' (``base``), the peers (``peers``), the ablations (``ablations``).
"""

from .base import METHODS, Method, get_method, list_methods, ordered, register_method, stochastic_binary
from . import ablations, peers  # noqa: E402,F401  (registrations: cl-det, cl-gauss, bc, bwn, xnor, bnn)

__all__ = ["METHODS", "Method", "get_method", "list_methods", "ordered", "register_method", "stochastic_binary"]
