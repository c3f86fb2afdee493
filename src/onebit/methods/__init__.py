"""Methods: a registered name bundling how weights are quantized and what is kept for backward.

:mod:`.base` holds :class:`Method` and its registry, :mod:`.quantizers` every quantizer the
methods are made of; each family registers its methods in a file of its own: the papers'
(:mod:`.paper`), the memory comparators (:mod:`.comparators`), the peers (:mod:`.peers`) and
the ablations (:mod:`.ablations`). A method's ``family`` orders and groups it everywhere.
"""

from . import paper, comparators, peers, ablations  # noqa: E402,F401  # isort: skip  (the registrations, in family order)
from .base import FAMILIES, METHODS, Method, get_method, list_methods, ordered, register_method

__all__ = ["FAMILIES", "METHODS", "Method", "get_method", "list_methods", "ordered", "register_method"]
