"""Methods: a registered name bundling how weights are quantized and what is kept
for backward.

Adding a method is one :func:`register_method` call; the architectures never
change. ``weight_quantizer`` maps the full-precision ``W`` to the weight used in
forward (its gradient is the straight-through estimator of that method);
``act_quantizer`` maps a non-negative activation ``A`` to the boolean copy kept,
packed one bit per element, for the weight gradient (compressed learning).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from torch import Tensor

from ..errors import UserError
from ..registry import Registry


class Ref:
    """A callable named by its import path (``"module:name"``), imported when first needed:
    the built-in methods are registered, with their names and facts, without importing
    PyTorch (``onebit.grid`` and ``onebit.report`` read them). :func:`onebit.create_model`
    resolves a method's references before it builds a network."""

    __slots__ = ("path", "_fn")

    def __init__(self, path: str):
        self.path = path
        self._fn = None

    def resolve(self) -> Callable:
        if self._fn is None:
            module, _, name = self.path.partition(":")
            self._fn = getattr(importlib.import_module(module), name)
        return self._fn

    def __call__(self, *args, **kwargs):
        fn = self._fn if self._fn is not None else self.resolve()
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


#: the families, in the order tables and figures list them, with their titles
FAMILIES = {
    "paper": "the papers' methods",
    "comparator": "memory comparators",
    "peer": "peers (their own definitions)",
    "ablation": "ablations",
    "plugin": "added methods",
}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    #: where the method comes from, which orders and groups it in tables and figures:
    #: "paper" (the papers' own), "comparator" (other memory savers), "peer" (other 1-bit
    #: methods, on the suite's networks), "ablation", or "plugin" (a user's)
    family: str = "plugin"
    #: its colour in every figure (hex); None: one of the plugin hues
    color: Optional[str] = None
    weight_quantizer: Optional[Callable[[Tensor], Tensor]] = None
    act_quantizer: Optional[Callable[[Tensor], Tensor]] = None
    #: derive the ReLU and BN backward from the 1-bit copy too (``StrictBNReLU``)
    strict: bool = False
    #: bits per weight at deployment
    weight_bits: int = 32
    #: recompute each residual block in backward (torch.utils.checkpoint)
    checkpoint: bool = False
    #: factory of a ``saved_tensors_hooks`` context applied to the model's
    #: forward, given the data pointers of the model's parameters (``act2``)
    saved_hooks: Optional[Callable] = None
    #: ReLU keeps a 1-bit mask instead of its output (implied by act_quantizer)
    mask_relu: bool = False
    #: the BN unit outputs sign(BN(x)) (hard-tanh straight-through) instead of ReLU (BNN, XNOR-Net)
    binary_act: bool = False
    #: XNOR-Net's input scaling: each conv output is multiplied by K, the channel-mean of
    #: |BN(x)| averaged over the conv's window (needs binary_act)
    input_scaling: bool = False
    #: called with the model after every optimizer step (e.g. BinaryConnect's weight clipping)
    after_step: Optional[Callable] = None
    #: bits per element at which ``saved_hooks`` keep the weight layers' inputs (act2: 2)
    saved_bits: Optional[int] = None
    #: the method's own definition keeps the first and last weight layers at 32 bits (and the
    #: last layer's input a real activation), as XNOR-Net and BWN do
    fp32_first_last: bool = False

    def resolve(self) -> "Method":
        """Import what the method's :class:`Ref` fields name (before a network is built)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Ref):
                value.resolve()
        return self

    @property
    def activation_bits(self) -> int:
        """Bits per element of the weight layers' inputs kept for backward."""
        if self.act_quantizer is not None:
            return 1
        return self.saved_bits if self.saved_bits is not None else 32

    @property
    def compressed(self) -> bool:
        return self.act_quantizer is not None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise UserError(f"method {self.name!r}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.strict and self.act_quantizer is None:
            raise UserError(f"method {self.name!r}: strict needs an act_quantizer")
        if self.weight_bits == 1 and self.weight_quantizer is None:
            raise UserError(f"method {self.name!r}: 1-bit weights need a weight_quantizer")
        if self.input_scaling and not self.binary_act:
            raise UserError(f"method {self.name!r}: input_scaling needs binary_act")
        if self.binary_act and (self.act_quantizer is not None or self.strict):
            raise UserError(f"method {self.name!r}: binary activations do not combine with compressed learning")


METHODS: Registry[Method] = Registry("method")
_RANK: dict[str, tuple[int, int]] = {}


def register_method(method: Method) -> Method:
    METHODS.register(method.name, method)
    _RANK[method.name] = (list(FAMILIES).index(method.family), len(_RANK))
    return method


def get_method(method: "str | Method") -> Method:
    return method if isinstance(method, Method) else METHODS.get(method)


def list_methods() -> list[str]:
    return METHODS.names()


def ordered(names) -> list[str]:
    """``names`` (distinct) by family (:data:`FAMILIES`), then in the order they were
    registered; names not registered in this process after them, alphabetically."""
    names = list(dict.fromkeys(names))
    known = sorted((m for m in names if m in _RANK), key=_RANK.__getitem__)
    return known + sorted(set(names) - set(known))
