"""A real training step, measured: its peak memory, its time, and the largest batch
that fits a memory budget.

* **Peak** of one step (forward, loss, backward, SGD step) above what existed
  before it: the model, the optimizer state and the input batch. Gradients are set
  to ``None`` first, so the peak includes the new gradients, as in training.

  - On a GPU: ``torch.cuda.max_memory_allocated`` after a reset, minus the bytes
    allocated before the step.
  - On CPU: every allocation and free of PyTorch's CPU allocator during the step,
    as reported to the profiler (``profile_memory=True``); the peak of their running
    sum. This is the allocator's own record, including temporaries inside ops.
* **Step time**: methods alternate step by step in one process (a busy machine
  slows all of them alike); the median over steps.
* **Largest batch** for a budget (bytes of model + optimizer state + input + step
  peak): grow the batch by doubling from a guess until a step does not fit, then
  bisect; every probe is a measured step. On a GPU a probe also fails on an
  out-of-memory error.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..step import train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer (SGD, momentum 0.9, weight decay 5e-4)."""
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)


def state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Bytes of parameters, buffers and optimizer state (each storage once)."""
    seen = {}
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [v for s in opt.state.values() for v in s.values() if isinstance(v, Tensor)]
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


@contextlib.contextmanager
def _quiet_profiler_log():
    """Drop the profiler library's start/stop lines, which it writes to file
    descriptor 2 directly; everything else written there is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(("USDT:", "INFO:")):
                    sys.stderr.write(line)


def _cpu_peak(fn: Callable[[], None]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_profiler_log(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def step_peak(
    model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, method=None, amp: bool = False
) -> int:
    """Peak bytes allocated by one training step above what existed before it."""
    opt.zero_grad(set_to_none=True)
    device = x.device
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        train_step(model, opt, x, y, method, amp)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _cpu_peak(lambda: train_step(model, opt, x, y, method, amp))
    opt.zero_grad(set_to_none=True)
    return peak


def step_times(runs: dict, steps: int, amp: bool = False) -> dict:
    """Median seconds per training step for each ``name -> (model, opt, x, y[, method])``;
    one warm-up round, then methods alternate step by step."""
    times: dict = {name: [] for name in runs}
    for it in range(steps + 1):
        for name, (model, opt, x, y, *method) in runs.items():
            opt.zero_grad(set_to_none=True)
            _sync(x.device)
            t0 = time.perf_counter()
            train_step(model, opt, x, y, *method, amp=amp)
            _sync(x.device)
            if it:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def fits_budget(
    model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, budget: int, method=None, amp: bool = False
) -> tuple[bool, int]:
    """Whether state + input + the step's peak stay within ``budget`` bytes; also the total
    (-1 on a GPU out-of-memory error)."""
    try:
        if not opt.state:  # warm-up: the optimizer state is part of the budget
            train_step(model, opt, x, y, method, amp)
            opt.zero_grad(set_to_none=True)
        total = state_bytes(model, opt) + x.untyped_storage().nbytes() + step_peak(model, opt, x, y, method, amp)
    except torch.OutOfMemoryError:
        opt.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return False, -1
    return total <= budget, total


def largest_batch(
    fits: Callable[[int], bool], guess: int = 8, limit: int = 1 << 16, grow: float = 2.0, rel_tol: float = 0.0
) -> int:
    """The largest ``b <= limit`` with ``fits(b)``, assuming ``fits`` is monotone;
    0 if not even ``b = 1`` fits. Grows (or shrinks) by ``grow`` from ``guess``, then
    bisects until the bracket is within ``rel_tol`` of its lower end (0: exact)."""
    guess = max(1, min(guess, limit))
    if fits(guess):
        lo, hi = guess, None
        while hi is None:
            b = min(max(int(lo * grow), lo + 1), limit)
            if b == lo:
                return lo
            if fits(b):
                lo = b
            else:
                hi = b
    else:
        hi, lo = guess, None
        while lo is None:
            if hi == 1:
                return 0
            b = max(min(int(hi / grow), hi - 1), 1)
            if fits(b):
                lo = b
            else:
                hi = b
    while hi - lo > max(1, rel_tol * lo):
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """``"512MiB"``, ``"1.5GB"``, ``"2e9"`` -> bytes."""
    import re

    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise ConfigError(f"not a byte size: {text!r} (examples: 512MiB, 1.5GB, 2e9)")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ConfigError(f"a byte size must be positive, got {text!r}")
    return int(value)


def benchmark(
    make_model: Callable[[str], nn.Module],
    methods: list,
    batch_size: int,
    input_shape: tuple,
    num_classes: int,
    device: str = "cpu",
    seed: int = 0,
    steps: int = 5,
    peak: bool = True,
    budget: int | None = None,
    max_batch: int = 4096,
    amp: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    rel_tol: float = 0.0,
) -> dict:
    """Peak, step time and largest batch per method: ``{method: {...}}``.

    ``amp``: bf16 autocast; ``channels_last``: model and input in NHWC; ``compile``:
    ``torch.compile`` the model (a method it fails on gets ``compile_error`` and no
    numbers). The largest-batch search starts from the batch the measured peak per
    image predicts, and stops within ``rel_tol``."""
    from ..step import method_of

    device = torch.device(device)
    out: dict = {m: {} for m in methods}
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def inputs(n):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *input_shape, generator=g).to(device).contiguous(memory_format=fmt)
        return x, torch.randint(0, num_classes, (n,), generator=g).to(device)

    def fresh(m, compiled=False):
        torch.manual_seed(seed)
        model = make_model(m).to(device).train().to(memory_format=fmt)
        opt = make_optimizer(model)
        method = method_of(model)
        return (torch.compile(model) if compiled else model), opt, method

    x, y = inputs(batch_size)
    if peak or steps:
        runs = {}
        for m in methods:
            model, opt, method = fresh(m, compile)
            try:
                train_step(model, opt, x, y, method, amp)  # optimizer state exists before the measurement
            except Exception as e:  # noqa: BLE001  (compilation: reported, not fatal)
                if not compile:
                    raise
                out[m]["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            runs[m] = (model, opt, x, y, method)
            if peak:
                out[m]["peak_bytes"] = step_peak(model, opt, x, y, method, amp)
                out[m]["state_bytes"] = state_bytes(model, opt)
        if steps:
            for m, t in step_times(runs, steps, amp).items():
                out[m]["step_seconds"] = t
        del runs
    if budget:
        for m in methods:
            model, opt, method = fresh(m)
            probes = {}

            def fits(b):
                ok, total = fits_budget(model, opt, *inputs(b), budget, method, amp)
                probes[b] = total
                return ok

            guess = batch_size
            if out[m].get("peak_bytes"):  # state + b * (peak + input) per image, from the measurement
                per_image = (out[m]["peak_bytes"] + x.untyped_storage().nbytes()) / batch_size
                guess = int(max(1, (budget - out[m]["state_bytes"]) / per_image))
            out[m]["largest_batch"] = largest_batch(
                fits, guess=guess, limit=max_batch, grow=1.25 if rel_tol else 2.0, rel_tol=rel_tol
            )
            out[m]["budget_bytes"] = budget
            out[m]["batch_probes"] = len(probes)
            del model, opt
    return out
