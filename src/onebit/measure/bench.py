"""``onebit bench``: every method proved and timed on this machine's accelerator.

Four parts, one command (``onebit bench --json`` for all numbers):

1. **Correctness on the device**: each registered method's forward and backward
   on the device (fp32, bf16 autocast, channels_last) against the same network on
   the CPU in fp32. A method whose backward draws noise (its gradient differs
   between two draws on the CPU) is compared by the mean of several draws, within
   a tolerance computed from their spread.
2. **Speed and memory** of the paper's networks (WRN-20-4, WRN-20-10, 32x32,
   batch 125; bf16 and channels_last on a GPU): images/s, step time against fp32
   (methods alternate in one process), the step's allocator peak above model and
   optimizer state against fp32, the largest batch within a budget (default 90 % of
   the card), eager and under ``torch.compile``.
3. **Cost of a grid** (default ``config/grids/paper.tsv``): each row's step time
   measured on its own network, method and batch, times its steps; GPU-hours per
   row and in total, and the ``runtime`` (minutes) a job should ask for.
4. **A short real training run** of fp32, w1, cl and w1+cl on Fashion-MNIST (or another
   registered dataset) through
   the trainer: test error per epoch over a few warm-restart cycles.

On a CPU every part runs at tiny sizes (the test suite runs it so), to keep the
code honest; its numbers say nothing about a GPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .. import create_model, list_methods
from ..errors import UserError
from ..methods import ordered
from ..models import has_depth_width
from ..ops.bits import is_channels_last
from ..step import train_step
from .steps import benchmark, make_optimizer

#: dense bf16 peak FLOP/s by device name (vendor data sheets)
BF16_PEAK = {
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
}


@dataclass
class Sizes:
    """What each part measures; :func:`sizes` picks the GPU or the tiny CPU set."""

    nets: dict  # label -> (arch, kwargs, input shape)
    batch: int
    steps: int
    amp: bool
    channels_last: bool
    compile: bool
    budget: Optional[int]
    check_net: tuple = ("wrn", {"depth": 8, "width": 0.5}, (3, 16, 16))
    check_batch: int = 8
    check_draws: int = 16
    train_net: dict = field(default_factory=lambda: {"depth": 20, "width": 4})
    train_epochs: int = 7  # warm-restart cycles of 1, 2 and 4 epochs
    train_subset: Optional[int] = None
    cost_batch_cap: Optional[int] = None


def sizes(device: torch.device, budget: Optional[int] = None, compile: Optional[bool] = None) -> Sizes:
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return Sizes(
            nets={
                "WRN-20-4": ("wrn", {"depth": 20, "width": 4}, (3, 32, 32)),
                "WRN-20-10": ("wrn", {"depth": 20, "width": 10}, (3, 32, 32)),
            },
            batch=125,
            steps=20,
            amp=True,
            channels_last=True,
            compile=True if compile is None else compile,
            budget=budget or int(0.9 * total),
        )
    return Sizes(
        nets={"WRN-8-1": ("wrn", {"depth": 8, "width": 1}, (3, 16, 16))},
        batch=8,
        steps=2,
        amp=False,
        channels_last=False,
        compile=bool(compile),
        budget=budget or 32 * 2**20,
        check_draws=6,
        train_net={"depth": 8, "width": 0.5},
        train_epochs=3,
        train_subset=512,
        cost_batch_cap=2,
    )


# ------------------------------------------------------------------ 1. correctness


def _grads(model, x, y, amp=False):
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    return logits.detach().float().cpu(), {
        n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None
    }


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@contextlib.contextmanager
def same_noise(seed: int):
    """``torch.rand_like`` and ``torch.randn_like`` draw from one CPU generator and move
    the draws to the tensor's device: a stochastic method then sees the same noise on
    every device, and its result can be compared element for element."""
    g = torch.Generator().manual_seed(seed)
    real = torch.rand_like, torch.randn_like

    def like(fn):
        def draw(t, *args, dtype=None, **kwargs):
            fmt = torch.channels_last if t.dim() == 4 and is_channels_last(t) else torch.contiguous_format
            x = fn(t.shape, generator=g, dtype=torch.float32)
            return x.to(device=t.device, dtype=dtype or t.dtype).contiguous(memory_format=fmt)

        return draw

    torch.rand_like, torch.randn_like = like(torch.rand), like(torch.randn)
    try:
        yield
    finally:
        torch.rand_like, torch.randn_like = real


def check_method(method: str, device: torch.device, s: Sizes) -> list[dict]:
    """Rows (one per variant) comparing ``method`` on ``device`` with the CPU: fp32 and
    channels_last against fp32 on the CPU, bf16 autocast against bf16 autocast on the CPU.

    The noise of stochastic methods is made the same on both (:func:`same_noise`), so
    results compare element for element (the median over 5 draws: a quantizer still
    turns a rounding difference into a whole step now and then). A method drawing noise
    the patch cannot reach is compared by the mean of several draws, within a tolerance
    computed from their spread."""
    from ..methods import get_method

    arch, kw, shape = s.check_net
    g = torch.Generator().manual_seed(0)
    x = torch.rand(s.check_batch, *shape, generator=g)
    y = torch.randint(0, 10, (s.check_batch,), generator=g)
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in create_model(arch, method, **kw).state_dict().items()}

    def draws(dev, n, variant, seed=1000):
        model = create_model(arch, method, **kw).to(dev).train()
        xx = x.to(dev)
        if variant == "channels_last":
            model, xx = model.to(memory_format=torch.channels_last), xx.contiguous(memory_format=torch.channels_last)
        out = []
        for i in range(n):
            torch.manual_seed(seed + i)
            model.load_state_dict(state)  # BN running statistics move in each forward
            with same_noise(seed + i):
                out.append(_grads(model, xx, y.to(dev), amp=variant == "bf16"))
        return out

    def worst(a, b, tol):
        """(error, tolerance) of the weight gradient with the largest error / tolerance;
        per draw under the same noise (the median over draws), else between the means."""
        best = (0.0, min(tol.values()))
        for k in b[0][1]:
            if controlled:
                err = statistics.median(_rel(da[1][k], db[1][k]) for da, db in zip(a, b))
            else:
                err = _rel(torch.stack([d[1][k] for d in a]).mean(0), torch.stack([d[1][k] for d in b]).mean(0))
            if err / tol[k] > best[0] / best[1]:
                best = (err, tol[k])
        return best

    first = draws(torch.device("cpu"), 1, "fp32")
    controlled = all(
        torch.equal(a, b) for a, b in zip(first[0][1].values(), draws(torch.device("cpu"), 1, "fp32")[0][1].values())
    )
    stochastic = controlled and any(
        not torch.equal(a, b)
        for a, b in zip(first[0][1].values(), draws(torch.device("cpu"), 1, "fp32", seed=2000)[0][1].values())
    )
    # under the same noise a quantizer still turns a rounding difference into a whole step
    # now and then (an element within 1e-6 of its threshold): the median over 5 draws
    # ignores such rare flips; noise the patch cannot reach is compared by the mean of draws
    n = (5 if stochastic else 1) if controlled else s.check_draws
    rows = []
    for variant in ("fp32", "bf16", "channels_last"):
        ref_variant = "bf16" if variant == "bf16" else "fp32"
        ref = draws(torch.device("cpu"), n, ref_variant)
        dev = draws(device, n, variant)
        base_tol = 5e-2 if variant == "bf16" else 1e-3
        if controlled:
            tol = dict.fromkeys(ref[0][1], base_tol)
        else:  # two means of n draws differ by about sqrt(2/n) of one draw's spread
            tol = {
                k: base_tol
                + 4
                * math.sqrt(2 / n)
                * float(
                    torch.stack([d[1][k] for d in ref]).std(0).norm()
                    / torch.stack([d[1][k] for d in ref]).mean(0).norm().clamp_min(1e-12)
                )
                for k in ref[0][1]
            }
        fwd = _rel(dev[0][0], ref[0][0])
        grad_err, grad_tol = worst(dev, ref, tol)
        noise = (
            ("same on both devices, median of 5 draws" if stochastic else "none")
            if controlled
            else f"not reachable: mean of {n} draws"
        )
        row = {
            "method": method,
            "variant": variant,
            "reference": f"cpu {ref_variant}",
            "noise": noise,
            "draws": n,
            "forward_rel_err": fwd,
            "forward_tol": base_tol,
            "grad_rel_err": grad_err,
            "grad_tol": grad_tol,
            "ok": fwd <= base_tol and grad_err <= grad_tol,
            "note": "",
        }
        if variant == "bf16" and get_method(method).binary_act:
            row.update(
                ok=None,
                note="sign activations: bf16 rounding flips some signs, so bf16 is not compared for this method",
            )
        rows.append(row)
    return rows


# ------------------------------------------------------------------ 2. speed and memory


def conv_flops(arch: str, kw: dict, shape: tuple) -> float:
    """Multiply-adds x 2 of every conv and linear layer for one image, forward only
    (counted on the meta device)."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        w = mod.weight
        if isinstance(mod, torch.nn.Conv2d):
            total += 2 * out.shape[1] * out.shape[2] * out.shape[3] * w[0].numel()
        else:
            total += 2 * w.numel()

    with torch.device("meta"):
        model = create_model(arch, "fp32", in_channels=shape[0], **kw)
        hooks = [
            m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ]
        with torch.no_grad():
            model(torch.empty(1, *shape))
    for h in hooks:
        h.remove()
    return total


def speed(device: torch.device, s: Sizes, methods: list, log=print) -> list[dict]:
    rows = []
    for label, (arch, kw, shape) in s.nets.items():
        for compiled in [False, True] if s.compile else [False]:
            log(f"bench: {label} {'compiled' if compiled else 'eager'}: {len(methods)} methods")
            out = benchmark(
                lambda m: create_model(arch, m, in_channels=shape[0], **kw),
                methods,
                s.batch,
                shape,
                10,
                device=str(device),
                steps=s.steps,
                amp=s.amp,
                channels_last=s.channels_last,
                compile=compiled,
                budget=None if compiled else s.budget,
                max_batch=1 << 20,
                rel_tol=0.02,
            )
            flops = 3 * conv_flops(arch, kw, shape) * s.batch  # forward + two backward convolutions
            base = out.get("fp32", {})
            for m, r in out.items():
                row = {"network": label, "method": m, "compiled": compiled, "batch": s.batch, **r}
                if "step_seconds" in r:
                    row["images_per_s"] = s.batch / r["step_seconds"]
                    row["tflops"] = flops / r["step_seconds"] / 1e12
                    if base.get("step_seconds"):
                        row["step_ratio_vs_fp32"] = r["step_seconds"] / base["step_seconds"]
                if r.get("peak_bytes") and base.get("peak_bytes"):
                    row["peak_ratio_vs_fp32"] = base["peak_bytes"] / r["peak_bytes"]
                if r.get("largest_batch") and base.get("largest_batch"):
                    row["largest_batch_vs_fp32"] = r["largest_batch"] / base["largest_batch"]
                rows.append(row)
    return rows


# ------------------------------------------------------------------ 3. cost of a grid


def _step_time(arch, kw, shape, method, batch, num_classes, device, s: Sizes) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    model = create_model(arch, method, in_channels=shape[0], num_classes=num_classes, **kw).to(device)
    model = model.train().to(memory_format=fmt)
    opt = make_optimizer(model)
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)
    times = []
    for i in range(max(2, s.steps // 2) + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        train_step(model, opt, x, y, amp=s.amp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    del model, opt, x
    return statistics.median(times)


def cost(grid_path, device: torch.device, s: Sizes, log=print) -> list[dict]:
    """GPU-hours of every row of a grid, from the step time of its network, method and
    batch per GPU measured here (evaluation and data loading not included)."""
    from ..data import get_dataset
    from ..grid import load_grid

    grid = load_grid(grid_path)
    for r in grid.itertuples():  # before any measurement: every row's number of images is known
        if not (r.train_subset or get_dataset(r.dataset).train_images):
            raise UserError(
                f"grid {grid_path}, row {r.row!r}: dataset {r.dataset!r} does not say how many "
                "training images it has (its train_images); set train_subset on the row, or "
                "register the dataset with train_images"
            )
    measured: dict = {}
    rows = []
    for r in grid.itertuples():
        ds = get_dataset(r.dataset)
        kw = {"depth": r.depth, "width": r.width} if has_depth_width(r.arch) else {}
        shape = (ds.in_channels, ds.image_size, ds.image_size)
        gpus = max(1, r.gpus)
        per_gpu = r.batch_size // gpus
        batch = min(per_gpu, s.cost_batch_cap or per_gpu)
        key = (r.arch, json.dumps(kw), r.method, batch, shape, ds.num_classes)
        if key not in measured:
            log(f"bench: cost of {r.row} ({r.arch} {kw} {r.method}, batch {batch} per GPU)")
            measured[key] = _step_time(r.arch, kw, shape, r.method, batch, ds.num_classes, device, s)
        step = measured[key] * per_gpu / batch  # per-GPU step time at the row's batch
        images = r.train_subset or ds.train_images
        steps = math.ceil(images / r.batch_size)
        hours = r.epochs * steps * step / 3600
        rows.append(
            {
                "row": r.row,
                "network": f"{r.arch} {kw}",
                "method": r.method,
                "epochs": r.epochs,
                "seeds": len(r.seeds),
                "gpus": gpus,
                "step_seconds": step,
                "epoch_minutes": steps * step / 60,
                "hours_per_run": hours,
                "gpu_hours": hours * gpus * len(r.seeds),
                "runtime_minutes": runtime_minutes(hours),
                "grid_runtime": r.runtime,
            }
        )
    return rows


def runtime_minutes(hours: float) -> int:
    """What a job of ``hours`` of training should ask for: 1.5x plus 15 minutes (evaluation,
    start-up, a slower node), in whole half hours."""
    return int(math.ceil((hours * 60 * 1.5 + 15) / 30) * 30)


# ------------------------------------------------------------------ 4. real training


def train_check(
    device: torch.device, s: Sizes, data_root: str, dataset: str = "fashion_mnist", log=print
) -> list[dict]:
    from ..config import TrainConfig
    from ..train import train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("fp32", "w1", "cl", "w1+cl"):
            cfg = TrainConfig(
                dataset=dataset,
                arch="wrn",
                method=method,
                epochs=s.train_epochs,
                crop_pad=0,
                batch_size=125,
                amp=s.amp,
                data_root=data_root,
                device=str(device),
                train_subset=s.train_subset,
                test_subset=s.train_subset,
                **s.train_net,
            )
            t0 = time.perf_counter()
            train(cfg, Path(tmp) / method, log=lambda *_: None)
            metrics = [json.loads(line) for line in (Path(tmp) / method / "metrics.jsonl").read_text().splitlines()]
            test = [m["top1_err"] for m in metrics if m["split"] == "test"]
            rows.append(
                {
                    "method": method,
                    "test_err_per_epoch": test,
                    "seconds": time.perf_counter() - t0,
                    "epochs": s.train_epochs,
                    "network": f"WRN-{s.train_net['depth']}-{s.train_net['width']:g}",
                }
            )
            log(f"bench: trained {method}: test error {' '.join(f'{e:.1f}' for e in test)}")
    return rows


# ------------------------------------------------------------------ all


def run(
    device: str = "auto",
    grid: Optional[str] = "config/grids/paper.tsv",
    data_root: str = "data",
    budget: Optional[int] = None,
    compile: Optional[bool] = None,
    methods: Optional[list] = None,
    parts: tuple = ("check", "speed", "cost", "train"),
    train_dataset: str = "fashion_mnist",
    log=print,
) -> dict:
    from ..runio import environment
    from ..train import resolve_device

    dev = resolve_device(device)
    s = sizes(dev, budget, compile)
    methods = ordered(methods or list_methods())
    t0 = time.perf_counter()
    out = {
        "environment": environment(dev),
        "sizes": {k: v for k, v in asdict(s).items()},
        "date": time.strftime("%Y-%m-%d"),
        "methods": methods,
    }
    name = out["environment"]["device_name"] or ""
    out["bf16_peak_flops"] = next((v for k, v in BF16_PEAK.items() if k in name), None)
    if "check" in parts:
        out["check"] = [r for m in methods for r in check_method(m, dev, s)]
        judged = [r for r in out["check"] if r["ok"] is not None]
        log(f"bench: correctness: {sum(r['ok'] for r in judged)}/{len(judged)} within tolerance")
    if "speed" in parts:
        out["speed"] = speed(dev, s, methods, log)
    if "cost" in parts and grid:
        out["cost"] = cost(grid, dev, s, log)
    if "train" in parts:
        out["train"] = train_check(dev, s, data_root, train_dataset, log)
    out["seconds"] = time.perf_counter() - t0
    return out


def format_report(out: dict) -> str:
    """The bench as text tables (the JSON holds every number)."""
    from ..units import format_bytes

    env = out["environment"]
    lines = [
        f"onebit bench on {env['device_name']} ({env['device']}), torch {env['torch_version']}, "
        f"{out['date']}, {out['seconds']:.0f} s"
    ]
    if "check" in out:
        lines += [
            "",
            "1. Correctness on the device against the CPU (relative error of the logits / of the "
            "weight gradient furthest from its tolerance; the same noise on both devices)",
            f"{'method':<10} {'variant':<14} {'fwd err':>9} {'tol':>7} {'grad err':>9} {'tol':>7}  ok",
        ]
        for r in out["check"]:
            lines.append(
                f"{r['method']:<10} {r['variant']:<14} {r['forward_rel_err']:>9.2e} {r['forward_tol']:>7.0e}"
                f" {r['grad_rel_err']:>9.2e} {r['grad_tol']:>7.1e}  "
                + {True: "yes", False: "NO", None: "n/a"}[r["ok"]]
                + (f" ({r['noise']})" if r["draws"] > 1 else "")
                + (f"  {r['note']}" if r["note"] else "")
            )
    if "speed" in out:
        s = out["sizes"]
        peak = out.get("bf16_peak_flops")
        lines += [
            "",
            f"2. Speed and memory, batch {s['batch']}, {'bf16' if s['amp'] else 'fp32'}"
            f"{', channels_last' if s['channels_last'] else ''}; budget {format_bytes(s['budget'])}",
            f"{'network':<10} {'method':<10} {'mode':<8} {'img/s':>9} {'x fp32':>7} {'TFLOP/s':>8}"
            f" {'step peak':>11} {'x less':>7} {'max batch':>9} {'x fp32':>7}",
        ]
        for r in out["speed"]:
            mode = "compiled" if r["compiled"] else "eager"
            if "compile_error" in r:
                lines.append(f"{r['network']:<10} {r['method']:<10} {mode:<8} compile failed: {r['compile_error']}")
                continue
            tf = f"{r.get('tflops', 0):.1f}" + (f" ({100 * r['tflops'] * 1e12 / peak:.0f}%)" if peak else "")
            lines.append(
                f"{r['network']:<10} {r['method']:<10} {mode:<8} {r.get('images_per_s', 0):>9.0f}"
                f" {r.get('step_ratio_vs_fp32', float('nan')):>7.2f} {tf:>8}"
                f" {format_bytes(r.get('peak_bytes')):>11} {r.get('peak_ratio_vs_fp32', float('nan')):>7.2f}"
                f" {r.get('largest_batch', '-'):>9} {r.get('largest_batch_vs_fp32', float('nan')):>7.2f}"
            )
    if "cost" in out:
        total = sum(r["gpu_hours"] for r in out["cost"])
        if env["device"] == "cuda":
            title = f"3. Cost of the grid: {total:,.0f} GPU-hours in all (training steps only)"
        else:  # tiny batches on another device: the arithmetic is exercised, the hours mean nothing
            title = (
                f"3. Cost of the grid: {total:,.0f} device-hours on {env['device']}, timed at tiny batches "
                "(training steps only): not an estimate for a GPU; run --write-runtime on the kind of GPU the "
                "grid will run on"
            )
        lines += [
            "",
            title,
            f"{'row':<22} {'method':<9} {'epochs':>6} {'seeds':>5} {'gpus':>4} {'min/epoch':>9}"
            f" {'GPU-hours':>9} {'runtime':>7} {'(grid)':>7}",
        ]
        for r in out["cost"]:
            lines.append(
                f"{r['row']:<22} {r['method']:<9} {r['epochs']:>6} {r['seeds']:>5} {r['gpus']:>4}"
                f" {r['epoch_minutes']:>9.2f} {r['gpu_hours']:>9.1f} {r['runtime_minutes']:>7}"
                f" {r['grid_runtime']:>7}"
            )
    if "train" in out:
        lines += ["", "4. Real training on Fashion-MNIST: test error (%) per epoch"]
        for r in out["train"]:
            lines.append(
                f"{r['network']:<10} {r['method']:<6} {' '.join(f'{e:5.1f}' for e in r['test_err_per_epoch'])}"
                f"   ({r['seconds']:.0f} s)"
            )
    return "\n".join(lines) + "\n"


def write_runtime(grid_path, cost_rows: list, device_name: str, date: str) -> int:
    """Rewrite the ``runtime`` column of a grid with the measured minutes and say so in
    a header comment; returns the number of rows changed. Comments and other cells are
    kept as they are."""
    from ..runio import atomic_write_text

    path = Path(grid_path)
    minutes = {r["row"]: r["runtime_minutes"] for r in cost_rows}
    note = (
        f"# runtime (minutes): measured by onebit bench on {device_name}, {date} "
        "(training steps x 1.5 + 15 min, in half hours)\n"
    )
    out, header, changed = [], None, 0
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("# runtime (minutes): measured by onebit bench"):
            continue
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        cells = line.rstrip("\r\n").split("\t")
        if header is None:
            header = cells
            if "runtime" not in header or "row" not in header:
                raise UserError(f"{path} has no runtime or no row column")
            out += [note, line]
            continue
        cells += [""] * (len(header) - len(cells))  # a row whose last cells are left out
        row = cells[header.index("row")]
        i = header.index("runtime")
        if row in minutes and cells[i] != str(minutes[row]):
            cells[i] = str(minutes[row])
            changed += 1
        out.append("\t".join(cells) + "\n")
    atomic_write_text(path, "".join(out))
    return changed
