"""The ``onebit`` subcommands: each takes the parsed arguments and returns an exit code.

Errors meant for users are raised as the errors of :mod:`onebit.errors` and turned into one
paragraph by :func:`onebit.cli.main`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import UnknownNameError, UserError  # noqa: F401  (UnknownNameError: for callers)


def _arch_kwargs(args) -> dict:
    from .models import has_depth_width

    kw = {}
    if has_depth_width(args.arch):
        kw.update(depth=args.depth, width=args.width)
    if args.num_classes is not None:
        kw["num_classes"] = args.num_classes
    if args.in_channels is not None:
        kw["in_channels"] = args.in_channels
    return kw


def _check_output(output: "str | None", *inputs, inside: "str | None" = None) -> None:
    """Refuse an output path that is one of the command's inputs, lies inside a folder the
    command reads (``inside``), or is a folder: nothing a command reads is overwritten."""
    from .plugins import LOADED_FILES

    if output is None:
        return
    if not str(output).strip():
        raise UserError("the output path is empty; give a file path")
    out = Path(output).resolve()
    if out.is_dir():
        raise UserError(f"the output {output} is a folder; give a file path")
    ancestor = out.parent  # missing folders are created on writing; a file in the way is not
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"the output {output} cannot be written: {ancestor} is a file, not a folder")
    for src in [*inputs, *LOADED_FILES]:
        if src and Path(src).resolve() == out:
            raise UserError(
                f"the output {output} is also an input of this command; choose another path (nothing was written)"
            )
    if inside and out.is_relative_to(Path(inside).resolve()):
        raise UserError(
            f"the output {output} lies inside {inside}, which this command reads; choose a path "
            "outside it (nothing was written)"
        )
    _check_writable(output, Path(output), ancestor)


def _check_writable(output, path: Path, folder: Path) -> None:
    """Before any work: the output is a regular file or nothing yet (a FIFO, a device or a
    link would be replaced by the atomic write), and its folder takes a new file."""
    import stat
    import tempfile

    if path.is_symlink() or (path.exists() and not stat.S_ISREG(path.stat().st_mode)):
        raise UserError(
            f"the output {output} is {'a link' if path.is_symlink() else 'not a regular file'}; the output is "
            "written as a new regular file that would replace it: give a path to a file (nothing was written)"
        )
    try:  # folder: the output's nearest existing folder (missing ones are created on writing)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".onebit-check-"):
            pass
    except OSError as e:
        raise UserError(
            f"the output {output} cannot be written: {folder} takes no new file ({e.strerror}); choose "
            "another folder (nothing was measured or written)"
        ) from None


def _checkpoint_config(ckpt, path) -> dict:
    """The model configuration of a onebit training checkpoint, or a UserError saying why not."""
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("config"), dict)
        or not isinstance(ckpt.get("model"), dict)
    ):
        raise UserError(f"{path} is not a onebit training checkpoint (it needs a 'config' and a 'model')")
    config = dict(ckpt["config"])
    missing = [k for k in ("arch", "method") if k not in config]
    if missing:
        raise UserError(f"{path}: its configuration lacks {missing}; it was not written by onebit train")
    return config


def _stamped(line: str, file=None) -> None:
    """A log line with the time of day (logs of long jobs are read by the clock)."""
    import time

    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True, file=file)


def _progress(line: str) -> None:
    """Progress of a measurement, on stderr (stdout holds its tables or JSON)."""
    _stamped(line, file=sys.stderr)


def _emit(text: str, output: "str | None") -> None:
    """Write ``text`` to ``output`` atomically (a killed run leaves no partial file
    for the next step to read), or to stdout."""
    if output:
        from .runio import atomic_write_text

        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)


def cmd_memory(args) -> int:
    import torch

    from .config import check_device

    _check_output(args.output)
    check_device(args.device)
    from . import create_model, list_methods
    from .measure.memory import measure, require_memory
    from .measure.steps import benchmark
    from .methods import get_method
    from .units import format_bytes, format_number

    _fmt_b = format_bytes

    methods = list_methods() if args.method == "all" else args.method.split(",")
    for name in methods:  # an unknown name is refused before anything is measured
        get_method(name)
    in_ch = args.in_channels or 3
    kwargs = _arch_kwargs(args)
    require_memory(
        args.arch,
        args.image_size,
        args.batch_size,
        args.device,
        in_ch,
        **{k: v for k, v in kwargs.items() if k != "in_channels"},
    )
    rows = []
    net = " ".join([args.arch] + [f"{k}={v}" for k, v in kwargs.items()])
    _progress(f"memory: {net}, batch {args.batch_size}, on {args.device}: {len(methods)} method(s)")
    for i, name in enumerate(methods):
        _progress(f"memory: what autograd keeps, {name} ({i + 1}/{len(methods)})")
        torch.manual_seed(args.seed)
        model = create_model(args.arch, name, **kwargs).to(args.device)
        x = torch.randn(args.batch_size, in_ch, args.image_size, args.image_size, device=args.device)
        rows.append(measure(model, x).as_dict())
        rows[-1]["device"] = str(x.device)
        num_classes = model.onebit_config.get("num_classes", 10)
        del model, x
    _progress(f"memory: step time{'' if args.no_peak else ', step peak'} and largest batch of {len(methods)} methods")
    bench = benchmark(
        lambda m: create_model(args.arch, m, **kwargs),
        methods,
        args.batch_size,
        (in_ch, args.image_size, args.image_size),
        num_classes,
        device=args.device,
        seed=args.seed,
        steps=args.steps,
        peak=not args.no_peak,
        budget=args.budget,
        max_batch=args.max_batch,
    )
    for r in rows:
        r.update(bench[r["method"]])
    base = next((r for r in rows if r["method"] == "fp32"), None)
    for r in rows:
        r["saved_ratio_vs_fp32"] = base["saved_bytes"] / r["saved_bytes"] if base else None
        if "peak_bytes" in r:
            r["peak_bytes_per_image"] = r["peak_bytes"] / r["batch_size"]
            r["peak_ratio_vs_fp32"] = base["peak_bytes"] / r["peak_bytes"] if base else None
        if "step_seconds" in r:
            r["step_ratio_vs_fp32"] = r["step_seconds"] / base["step_seconds"] if base else None
    if args.json or args.output:
        _emit(json.dumps(rows, indent=2) + "\n", args.output)
        return 0
    print(
        f"{args.arch} {kwargs}  input {in_ch}x{args.image_size}x{args.image_size}"
        f"  batch {args.batch_size}  device {args.device}"
    )
    head = (
        f"{'method':<10} {'paper: values/img':>18} {'bits':>4} {'paper bytes':>13}"
        f" {'autograd keeps':>15} {'per image':>11} {'x fp32':>7} {'step peak':>11} {'x fp32':>7}"
        f" {'step s':>8} {'x fp32':>7} {'max batch':>9}  breakdown of what autograd keeps, per image"
    )
    print(head)
    print("-" * len(head))

    def ratio(v, fmt="{:.1f}"):
        return format_number(v or None, fmt, missing="-")

    for r in rows:
        parts = ", ".join(f"{k} {_fmt_b(v / r['batch_size'])}" for k, v in r["saved_breakdown"].items())
        peak = format_bytes(r["peak_bytes"]) if "peak_bytes" in r else "-"
        step = f"{r['step_seconds']:.3f}" if "step_seconds" in r else "-"
        print(
            f"{r['method']:<10} {r['paper_values_per_image']:>18,} {r['activation_bits']:>4}"
            f" {_fmt_b(r['paper_bytes']):>13} {_fmt_b(r['saved_bytes']):>15}"
            f" {_fmt_b(r['saved_bytes_per_image']):>11} {ratio(r['saved_ratio_vs_fp32']):>7}"
            f" {peak:>11} {ratio(r.get('peak_ratio_vs_fp32')):>7} {step:>8}"
            f" {ratio(r.get('step_ratio_vs_fp32'), '{:.2f}'):>7} {r.get('largest_batch', '-'):>9}  {parts}"
        )
    if args.budget:
        print(
            f"max batch: the largest batch whose model + optimizer state + input + step peak fit"
            f" {format_bytes(args.budget)}"
        )
    return 0


def cmd_fidelity(args) -> int:
    import torch

    from . import create_model
    from .data import get_dataset
    from .measure.fidelity import check_methods, gradient_fidelity, same_forward_methods
    from .runio import CorruptCheckpoint, load_checkpoint

    _check_output(args.output, args.checkpoint, inside=args.data_root if args.dataset else None)
    methods = same_forward_methods() if args.method == "all" else args.method.split(",")
    check_methods(methods)  # before anything is loaded or measured
    kwargs, state = _arch_kwargs(args), None
    if args.checkpoint:
        try:
            ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
        except (FileNotFoundError, CorruptCheckpoint) as e:
            raise UserError(f"cannot use checkpoint {args.checkpoint}: {e}")
        config = _checkpoint_config(ckpt, args.checkpoint)
        args.arch = config.pop("arch")
        config.pop("method")
        kwargs, state = config, ckpt["model"]
    if args.dataset:
        ds = get_dataset(args.dataset)
        if not ds.in_memory:
            raise UserError(
                f"fidelity takes its batch from a dataset held in memory (CIFAR, Fashion-MNIST); "
                f"{args.dataset} is read from image folders: leave --dataset out (a batch of noise)"
            )
        images, labels = ds.load(Path(args.data_root), train=False)  # a damaged file: DatasetError, exit 3
        if images.shape[1] != kwargs.get("in_channels", images.shape[1]):
            raise UserError(
                f"the network takes {kwargs['in_channels']} input channels, {args.dataset} has "
                f"{images.shape[1]}: use the dataset the checkpoint was trained on"
            )
        x, y = images[: args.batch_size].float().div(255), labels[: args.batch_size]
        kwargs.setdefault("in_channels", x.shape[1])
    else:
        g = torch.Generator().manual_seed(args.seed)
        shape = (args.batch_size, kwargs.get("in_channels", 3), args.image_size, args.image_size)
        x, y = torch.rand(shape, generator=g), torch.randint(0, 10, (args.batch_size,), generator=g)
    _progress(
        f"fidelity: {len(methods)} method{'s' if len(methods) != 1 else ''} x {args.draws} draws, batch of {len(x)}"
    )
    rows = gradient_fidelity(
        lambda m: create_model(args.arch, m, **kwargs),
        methods,
        x,
        y,
        draws=args.draws,
        seed=args.seed,
        state=state,
        log=_progress,
    )
    source = args.checkpoint or f"{args.arch} {kwargs} initialised with seed {args.seed}"
    for r in rows:
        r.update(network=str(source), batch=args.dataset or "uniform noise", batch_size=len(x))
    if args.output:
        _emit(json.dumps(rows, indent=2) + "\n", args.output)
        return 0
    print(f"weight-gradient error relative to exact backprop, {args.draws} draws; network: {source}")
    print(f"{'method':<10} {'layer':<16} {'bias':>7} {'std':>7} {'rmse':>7} {'noise floor':>11}")
    for r in rows:
        print(
            f"{r['method']:<10} {r['layer']:<16} {r['bias']:>7.3f} {r['std']:>7.3f} {r['rmse']:>7.3f}"
            f" {r['noise_floor']:>11.3f}"
        )
    return 0


def cmd_export(args) -> int:

    from . import create_model
    from .export import export_packed
    from .runio import CorruptCheckpoint, load_checkpoint, previous_checkpoint
    from .units import format_bytes

    if not str(args.checkpoint).strip():
        raise UserError("the checkpoint path is empty; give a run's checkpoint.pt")
    out = args.output or os.path.splitext(args.checkpoint)[0] + ".onebit"
    _check_output(out, args.checkpoint, previous_checkpoint(args.checkpoint))
    try:
        ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
    except FileNotFoundError:
        raise UserError(f"checkpoint {args.checkpoint} does not exist")
    except CorruptCheckpoint as e:
        raise UserError(
            f"{e}. Export the previous checkpoint ({previous_checkpoint(args.checkpoint)}) "
            "if it exists, or re-run the training command to rebuild it."
        )
    config = _checkpoint_config(ckpt, args.checkpoint)
    model = create_model(config.pop("arch"), config.pop("method"), **config)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"{args.checkpoint}: its weights do not fit its configuration ({str(e).splitlines()[0][:200]})")
    try:
        size = export_packed(model, out)
    except ValueError as e:
        raise UserError(str(e))
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {out}: {size:,} bytes ({format_bytes(size)}) for {n_params:,} parameters "
        f"({format_bytes(n_params * 4)} at 32 bits, {n_params * 4 / size:.1f}x smaller)"
    )
    return 0


def cmd_train(args) -> int:
    from .config import from_namespace
    from .rundir import StateVersionError
    from .runio import RunLocked
    from .train import Trainer

    if not str(args.out).strip():
        raise UserError("--out is empty; give the run's folder")
    trainer = Trainer(from_namespace(args), args.out, log=_stamped)  # validates, as --check does
    if args.check:
        cfg = trainer.cfg
        trainer.rundir.inspect(cfg.identity())  # what training checks of --out, reading only
        try:
            trainer.rundir.check_checkpoints(cfg.identity())
        except StateVersionError as e:
            raise UserError(str(e))
        print(f"onebit train: configuration valid ({cfg.arch}, {cfg.method}, {trainer.check():,} parameters)")
        return 0
    try:
        trainer.run()
    except (RunLocked, StateVersionError) as e:
        raise UserError(str(e))
    return 0


def cmd_bench(args) -> int:
    from .config import check_device
    from .measure.bench import format_report, run

    _check_output(args.output, args.grid, inside=args.data_root if "train" in args.parts else None)
    check_device(args.device)
    parts = tuple(args.parts.split(","))
    unknown = set(parts) - {"check", "speed", "cost", "train"}
    if unknown:
        raise UserError(f"unknown part(s) {sorted(unknown)}; the parts are check, speed, cost, train")
    methods = args.method.split(",") if args.method != "all" else None
    if methods:
        from .methods import get_method

        for m in methods:
            get_method(m)
    if args.write_runtime and ("cost" not in parts or not args.grid):
        raise UserError("--write-runtime needs the cost part and a --grid")
    out = run(
        args.device,
        args.grid,
        args.data_root,
        args.budget,
        args.compile,
        methods,
        parts,
        args.train_dataset,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.write_runtime:
        from .measure.bench import write_runtime

        n = write_runtime(args.grid, out["cost"], out["environment"]["device_name"], out["date"])
        print(f"onebit bench: wrote the measured runtime of {n} rows into {args.grid}", file=sys.stderr)
    if args.json or args.output:
        _emit(json.dumps(out, indent=2, default=str) + "\n", args.output)
        if not args.output:
            return 0
    print(format_report(out), end="")
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS, ordered

    rows = [
        {
            "method": m.name,
            "weight_bits": m.weight_bits,
            "activation_bits": m.activation_bits,
            "description": m.description,
        }
        for m in map(METHODS.get, ordered(METHODS.names()))
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'method':<12} {'bits/weight':>11} {'bits kept/activation':>20}  description")
    for r in rows:
        print(f"{r['method']:<12} {r['weight_bits']:>11} {r['activation_bits']:>20}  {r['description']}")
    return 0


def cmd_data(args) -> int:
    from .data import get_dataset

    ds = get_dataset(args.dataset)
    _check_output(args.output, inside=args.data_root)
    ds.prepare(Path(args.data_root))  # a missing or damaged file: DatasetError, exit 3
    info = {
        "dataset": ds.name,
        "data_root": str(Path(args.data_root).resolve()),
        "verified": True,
        "num_classes": ds.num_classes,
        "in_channels": ds.in_channels,
        "image_size": ds.image_size,
    }
    _emit(json.dumps(info) + "\n", args.output)
    return 0


def cmd_report(args) -> int:
    """Render the report of a results folder (the notebook, executed, to HTML)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from .errors import ReportCrashed
    from .report.claims import load_claims
    from .report.load import TABLES, load_results
    from .report.tables import load_published
    from .runio import atomic_write_bytes

    repo = Path(__file__).resolve().parents[2]
    results = Path(args.results).resolve()
    load_results(results)  # every table readable, before the notebook runs
    published = Path(args.published)
    if not published.is_absolute() and not published.exists() and (repo / published).exists():
        published = repo / published
    if not published.exists():
        raise UserError(f"{published}: no such file of published numbers; give --published (see config/published.tsv)")
    load_claims(published, load_published(published))
    output = args.output if args.output is not None else str(results / "report.html")
    inputs = [results / f"{name}.{ext}" for name in TABLES for ext in ("csv", "parquet")]
    _check_output(output, *[str(p) for p in inputs if p.exists()], str(published))
    notebook = repo / "workflow" / "notebooks" / "report.ipynb"
    if not notebook.exists():
        raise UserError(f"{notebook}: the report notebook is missing; onebit report runs from a checkout of onebit")
    grid = args.grid or results.name
    with tempfile.TemporaryDirectory(prefix="onebit-report-") as tmp:
        executed = Path(tmp) / "report.ipynb"
        steps = [
            [sys.executable, "-m", "papermill", "--no-progress-bar", str(notebook), str(executed), "-p", "grid", grid]
            + ["-p", "root", str(repo), "-p", "results", str(results), "-p", "published", str(published.resolve())],
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--no-input", str(executed)]
            + ["--output-dir", tmp, "--output", "report.html"],
        ]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True)
            if proc.returncode:
                doing = "executing the notebook" if step is steps[0] else "converting it to HTML"
                raise ReportCrashed(f"the report of {results} failed while {doing}: {proc.stderr.strip()[-2000:]}")
        atomic_write_bytes(output, (Path(tmp) / "report.html").read_bytes())
    print(f"report: {output}")
    return 0
