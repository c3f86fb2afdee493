"""Training memory of a model under a method, measured two ways.

1. **What autograd keeps**: every tensor saved for backward during one forward
   pass and loss, seen through ``torch.autograd.graph.saved_tensors_hooks``,
   counted once per storage. The model's parameters and buffers and the input
   batch are excluded: they exist whether or not autograd references them.
2. **The paper's accounting** ([W] slide 14): the input of every weight layer
   (conv / fc), each distinct tensor once, at the method's activation precision.
   ResNet-18, 224x224: 1,831,936 values per image, i.e. 1.876 GB at 32 bits and
   55.9 MiB at 1 bit for a batch of 256.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..methods import get_method
from ..models import layers
from ..models.layers import Act, QConv2d, QLinear
from ..units import format_bytes


def _key(t: Tensor):
    st = t.untyped_storage()
    return (t.device.type, st.data_ptr())


def kind_of(t: Tensor) -> str:
    """Breakdown category of a saved tensor (tags set in :mod:`onebit.ops.functional`)."""
    k = getattr(t, "_onebit_kind", None)
    if k is not None:
        return k
    if t.dtype in (torch.int64, torch.int32):
        return "pool indices"
    if t.dtype == torch.bool or t.dtype == torch.uint8:
        return "masks"
    if t.dim() == 0:
        return "other"  # scalars, e.g. the loss's total weight
    if t.is_floating_point():
        return "float activations" if t.dim() >= 2 else "statistics"
    return "other"


@dataclass
class MemoryReport:
    arch: str
    method: str
    batch_size: int
    input_shape: list
    saved_bytes: int
    saved_breakdown: dict = field(default_factory=dict)
    paper_values_per_image: int = 0
    activation_bits: int = 32
    weight_bits: int = 32
    description: str = ""

    @property
    def saved_bytes_per_image(self) -> float:
        return self.saved_bytes / self.batch_size

    @property
    def paper_bytes(self) -> float:
        return self.paper_values_per_image * self.batch_size * self.activation_bits / 8

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            saved_bytes_per_image=self.saved_bytes_per_image,
            paper_bytes=self.paper_bytes,
            paper_bytes_per_image=self.paper_bytes / self.batch_size,
        )
        return d


def measure(model: nn.Module, x: Tensor, target: Tensor | None = None) -> MemoryReport:
    """One training-mode forward pass and cross-entropy loss of ``model`` on ``x``;
    returns both measurements. The backward is not run."""
    config = getattr(model, "onebit_config", {})
    method = get_method(config.get("method", "fp32"))
    model.train()
    if target is None:
        target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    excluded = {_key(t) for t in list(model.parameters()) + list(model.buffers()) + [x, target]}
    saved: dict = {}
    keep: list = []  # a recorded address must not be reused by another tensor

    def record(obj):
        for t in obj if isinstance(obj, tuple) else (obj,):
            if not isinstance(t, Tensor):
                continue
            k = _key(t)
            if k not in excluded and k not in saved and t.untyped_storage().nbytes():
                saved[k] = (t.untyped_storage().nbytes(), kind_of(t))
                keep.append(t)

    def pack(t: Tensor):
        record(t)
        return t

    # values are (count, tensor): holding the tensor keeps its address from being
    # reused by a later tensor once autograd no longer references it
    inputs: dict = {}

    def pre_hook(_mod, args):
        a = args[0].a if isinstance(args[0], Act) else args[0]
        inputs.setdefault(_key(a), (a.numel() // a.shape[0], a))

    hooks = [m.register_forward_pre_hook(pre_hook) for m in model.modules() if isinstance(m, (QConv2d, QLinear))]
    layers.OBSERVERS.append(record)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model(x)
            loss = F.cross_entropy(logits, target)
    finally:
        layers.OBSERVERS.remove(record)
        for h in hooks:
            h.remove()
    del loss, logits
    keep.clear()
    inputs_count = {k: n for k, (n, _) in inputs.items()}
    inputs.clear()
    breakdown: dict = defaultdict(int)
    for nbytes, kind in saved.values():
        breakdown[kind] += nbytes
    return MemoryReport(
        arch=config.get("arch", type(model).__name__),
        method=method.name,
        batch_size=x.shape[0],
        input_shape=list(x.shape[1:]),
        saved_bytes=sum(breakdown.values()),
        saved_breakdown=dict(sorted(breakdown.items())),
        paper_values_per_image=sum(inputs_count.values()),
        activation_bits=method.activation_bits,
        weight_bits=method.weight_bits,
        description=method.description,
    )


def activation_bytes_per_image(arch: str, image_size: int, in_channels: int = 3, **arch_kwargs) -> tuple[int, int]:
    """(bytes of every module output of one forward pass per image at 32 bits, number
    of parameters), counted on the meta device (no memory, no compute): a size
    estimate of what an exact training step keeps."""
    from ..models import create_model

    total = 0

    def count(_mod, _inp, out):
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            t = getattr(t, "a", t)  # an Act carries its float activation
            if isinstance(t, Tensor):
                total += t.numel() * 4

    with torch.device("meta"):
        model = create_model(arch, "fp32", in_channels=in_channels, **arch_kwargs)
        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.empty(1, in_channels, image_size, image_size))
        for h in hooks:
            h.remove()
        params = sum(p.numel() for p in model.parameters())
    return total, params


def job_memory_mb(spec: dict) -> int:
    """Memory (MB) to ask a scheduler for, for one ``onebit memory`` measurement
    (``spec``: its pipeline entry; an explicit ``mem_mb`` wins). On the CPU: three times
    the exact method's activations at the measured batch (the step peak of the methods,
    one at a time, stays below twice that) or, with a ``budget``, twice the budget (a
    probe of the largest-batch search may overshoot it), plus the model's weights,
    gradients and momentum. On a GPU the host holds only the inputs, which are made
    there: twice those of the largest batch the budget could allow. Plus 2 GB for the
    interpreter and libraries."""
    from .steps import parse_bytes

    if "mem_mb" in spec:
        return int(spec["mem_mb"])
    kw = {k: spec[k] for k in ("depth", "width") if k in spec}
    channels = spec.get("in_channels", 3)
    act, params = activation_bytes_per_image(spec["arch"], spec["image_size"], channels, **kw)
    budget = parse_bytes(spec["budget"]) if spec.get("budget") else 0
    if str(spec.get("device", "cpu")).startswith("cuda"):
        largest = max(spec["batch_size"], budget // max(act, 1))
        need = 2 * largest * channels * spec["image_size"] ** 2 * 4 + 3 * 4 * params
    else:
        need = max(3 * act * spec["batch_size"], 2 * budget) + 3 * 4 * params
    return int(need / 1e6) + 2000


def physical_memory(device) -> int:
    """Bytes of memory of a device: the machine's RAM for the CPU, the GPU's own memory."""
    import os

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def require_memory(arch: str, image_size: int, batch_size: int, device, in_channels: int = 3, **kw) -> None:
    """Refuse, before any allocation, a measurement whose exact training step could not
    fit the device (on Linux a too large allocation may succeed and then bring the
    out-of-memory killer instead of an error)."""
    act, params = activation_bytes_per_image(arch, image_size, in_channels, **kw)
    need = 2 * act * batch_size + batch_size * in_channels * image_size**2 * 4 + 16 * params
    have = physical_memory(device)
    if need > have:
        raise MemoryError(
            f"{arch} at {image_size}x{image_size}x{in_channels}, batch {batch_size} needs about "
            f"{format_bytes(need)} for a training step, the {torch.device(device).type} has "
            f"{format_bytes(have)}"
        )
