"""The ``onebit`` command: ``onebit train``, ``onebit memory``, ``onebit export``.

Errors meant for users are printed as one paragraph; ``--debug`` (or
``ONEBIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from .registry import UnknownNameError


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


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


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if not 0 < v < float("inf"):  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return v
    return parse


def _int_in(lo: int, hi: int):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}")
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}")
        return v
    return parse


def _byte_size(text):
    from .stepbench import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _check_output(output: "str | None", *inputs, inside: "str | None" = None) -> None:
    """Refuse an output path that is one of the command's inputs, lies inside a folder the
    command reads (``inside``), or is a folder: nothing a command reads is overwritten."""
    if not output:
        return
    out = Path(output).resolve()
    if out.is_dir():
        raise UserError(f"the output {output} is a folder; give a file path")
    for src in inputs:
        if src and Path(src).resolve() == out:
            raise UserError(f"the output {output} is also an input of this command; choose another path "
                            "(nothing was written)")
    if inside and out.is_relative_to(Path(inside).resolve()):
        raise UserError(f"the output {output} lies inside {inside}, which this command reads; choose a path "
                        "outside it (nothing was written)")


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
    from .memory import format_bytes, measure
    from .stepbench import benchmark

    def _fmt_b(n):
        return format_bytes(n, binary=True)

    methods = list_methods() if args.method == "all" else args.method.split(",")
    in_ch = args.in_channels or 3
    kwargs = _arch_kwargs(args)
    rows = []
    for name in methods:
        torch.manual_seed(args.seed)
        model = create_model(args.arch, name, **kwargs).to(args.device)
        x = torch.randn(args.batch_size, in_ch, args.image_size, args.image_size, device=args.device)
        rows.append(measure(model, x).as_dict())
        rows[-1]["device"] = str(x.device)
        num_classes = model.onebit_config.get("num_classes", 10)
        del model, x
    bench = benchmark(lambda m: create_model(args.arch, m, **kwargs), methods, args.batch_size,
                      (in_ch, args.image_size, args.image_size), num_classes, device=args.device,
                      seed=args.seed, steps=args.steps, peak=not args.no_peak, budget=args.budget,
                      max_batch=args.max_batch)
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
    print(f"{args.arch} {kwargs}  input {in_ch}x{args.image_size}x{args.image_size}"
          f"  batch {args.batch_size}  device {args.device}")
    head = (f"{'method':<10} {'paper: values/img':>18} {'bits':>4} {'paper bytes':>13}"
            f" {'autograd keeps':>15} {'per image':>11} {'x fp32':>7} {'step peak':>11} {'x fp32':>7}"
            f" {'step s':>8} {'x fp32':>7} {'max batch':>9}  breakdown of what autograd keeps, per image")
    print(head)
    print("-" * len(head))

    def ratio(v, fmt="{:.1f}"):
        return fmt.format(v) if v else "-"

    for r in rows:
        parts = ", ".join(f"{k} {_fmt_b(v / r['batch_size'])}" for k, v in r["saved_breakdown"].items())
        peak = format_bytes(r["peak_bytes"]) if "peak_bytes" in r else "-"
        step = f"{r['step_seconds']:.3f}" if "step_seconds" in r else "-"
        print(f"{r['method']:<10} {r['paper_values_per_image']:>18,} {r['activation_bits']:>4}"
              f" {_fmt_b(r['paper_bytes']):>13} {_fmt_b(r['saved_bytes']):>15}"
              f" {_fmt_b(r['saved_bytes_per_image']):>11} {ratio(r['saved_ratio_vs_fp32']):>7}"
              f" {peak:>11} {ratio(r.get('peak_ratio_vs_fp32')):>7} {step:>8}"
              f" {ratio(r.get('step_ratio_vs_fp32'), '{:.2f}'):>7} {r.get('largest_batch', '-'):>9}  {parts}")
    if args.budget:
        print(f"max batch: the largest batch whose model + optimizer state + input + step peak fit"
              f" {format_bytes(args.budget, binary=True)}")
    return 0


def cmd_fidelity(args) -> int:
    from pathlib import Path

    import torch

    from . import create_model
    from .data import DatasetError, get_dataset
    from .fidelity import gradient_fidelity, same_forward_methods
    from .runio import CorruptCheckpoint, load_checkpoint

    _check_output(args.output, args.checkpoint)
    methods = same_forward_methods() if args.method == "all" else args.method.split(",")
    kwargs, state = _arch_kwargs(args), None
    if args.checkpoint:
        try:
            ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
        except (FileNotFoundError, CorruptCheckpoint) as e:
            raise UserError(f"cannot use checkpoint {args.checkpoint}: {e}")
        if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
            raise UserError(f"{args.checkpoint} is not a onebit training checkpoint (needs 'config' and 'model')")
        config = dict(ckpt["config"])
        args.arch = config.pop("arch")
        config.pop("method")
        kwargs, state = config, ckpt["model"]
    if args.dataset:
        try:
            images, labels = get_dataset(args.dataset).load(Path(args.data_root), train=False)
        except DatasetError as e:
            raise UserError(str(e))
        x, y = images[:args.batch_size].float().div(255), labels[:args.batch_size]
        kwargs.setdefault("in_channels", x.shape[1])
    else:
        g = torch.Generator().manual_seed(args.seed)
        shape = (args.batch_size, kwargs.get("in_channels", 3), args.image_size, args.image_size)
        x, y = torch.rand(shape, generator=g), torch.randint(0, 10, (args.batch_size,), generator=g)
    rows = gradient_fidelity(lambda m: create_model(args.arch, m, **kwargs), methods, x, y,
                             draws=args.draws, seed=args.seed, state=state)
    source = args.checkpoint or f"{args.arch} {kwargs} initialised with seed {args.seed}"
    for r in rows:
        r.update(network=str(source), batch=args.dataset or "uniform noise", batch_size=len(x))
    if args.output:
        _emit(json.dumps(rows, indent=2) + "\n", args.output)
        return 0
    print(f"weight-gradient error relative to exact backprop, {args.draws} draws; network: {source}")
    print(f"{'method':<10} {'layer':<16} {'bias':>7} {'std':>7} {'rmse':>7} {'noise floor':>11}")
    for r in rows:
        print(f"{r['method']:<10} {r['layer']:<16} {r['bias']:>7.3f} {r['std']:>7.3f} {r['rmse']:>7.3f}"
              f" {r['noise_floor']:>11.3f}")
    return 0


def cmd_export(args) -> int:
    import torch

    from . import create_model
    from .export import export_packed

    from .runio import CorruptCheckpoint, load_checkpoint, previous_checkpoint

    out = args.output or os.path.splitext(args.checkpoint)[0] + ".onebit"
    _check_output(out, args.checkpoint, previous_checkpoint(args.checkpoint))
    try:
        ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
    except FileNotFoundError:
        raise UserError(f"checkpoint {args.checkpoint} does not exist")
    except CorruptCheckpoint as e:
        raise UserError(f"{e}. Export the previous checkpoint ({previous_checkpoint(args.checkpoint)}) "
                        "if it exists, or re-run the training command to rebuild it.")
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise UserError(f"{args.checkpoint} is not a onebit checkpoint (needs 'config' and 'model')")
    config = dict(ckpt["config"])
    model = create_model(config.pop("arch"), config.pop("method"), **config)
    model.load_state_dict(ckpt["model"])
    try:
        size = export_packed(model, out)
    except ValueError as e:
        raise UserError(str(e))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {size:,} bytes ({size / 1e6:.2f} MB) for {n_params:,} parameters "
          f"({n_params * 4 / 1e6:.1f} MB at 32 bits, {n_params * 4 / size:.1f}x smaller)")
    return 0


def cmd_train(args) -> int:
    from .config import from_namespace
    from .rundir import StateVersionError
    from .runio import RunLocked
    from .train import Trainer

    trainer = Trainer(from_namespace(args), args.out, log=print)  # validates, as --check does
    if args.check:
        cfg = trainer.cfg
        print(f"onebit train: configuration valid ({cfg.arch}, {cfg.method}, {trainer.check():,} parameters)")
        return 0
    try:
        trainer.run()
    except (RunLocked, StateVersionError) as e:
        raise UserError(str(e))
    return 0


def cmd_bench(args) -> int:
    from .bench import format_report, run
    from .config import check_device

    _check_output(args.output, args.grid)
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
    out = run(args.device, args.grid, args.data_root, args.budget, args.compile, methods, parts,
              args.train_dataset, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.write_runtime:
        from .bench import write_runtime

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

    rows = [{"method": m.name, "weight_bits": m.weight_bits, "activation_bits": m.activation_bits,
             "description": m.description} for m in map(METHODS.get, ordered(METHODS.names()))]
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
    info = {"dataset": ds.name, "data_root": str(Path(args.data_root).resolve()), "verified": True,
            "num_classes": ds.num_classes, "in_channels": ds.in_channels, "image_size": ds.image_size}
    _emit(json.dumps(info) + "\n", args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import add_arguments

    p = argparse.ArgumentParser(prog="onebit", description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--version", action="version", version=f"onebit {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--plugins", default=None,
                   help="comma-separated modules or .py files registering methods/models "
                   "(default: $ONEBIT_PLUGINS; installed packages register through the entry-point "
                   "group onebit.methods)")
    # --debug is also accepted after the subcommand; SUPPRESS keeps the global value otherwise
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, **kw):
        return sub.add_parser(name, parents=[common], allow_abbrev=False, **kw)

    t = add("train", help="train one row of the paper's tables",
                       description="Train one model with one method; writes config.json, env.json, "
                       "metrics.jsonl, checkpoint.pt and final.json to --out. Re-running the same "
                       "command resumes; a completed run is not retrained. Defaults: the workshop "
                       "recipe (SGD momentum 0.9, batch 125, cosine 0.1 -> 1e-5 per iteration with "
                       "warm restarts, weight decay 5e-4, flip + random-fill pad-4 crop).")
    add_arguments(t)
    t.add_argument("--out", required=True, help="run directory (created; resumed if it holds a checkpoint)")
    t.add_argument("--check", action="store_true",
                   help="validate the configuration exactly as training does (fields, device, the model "
                   "built on the meta device), then exit; the data is checked when training starts")
    t.set_defaults(func=cmd_train)

    m = add("memory", help="bytes kept for backward, measured and per the paper's accounting",
                       description="Measure, for each method, the bytes autograd keeps for backward "
                       "(saved tensors, each storage once; parameters and input excluded) and the "
                       "paper's accounting (inputs of every weight layer at the method's precision).")
    m.add_argument("--arch", default="resnet18", help="registered model (default: resnet18)")
    m.add_argument("--method", default="fp32,w1,cl,cl-strict,w1+cl",
                   help="method, comma-separated methods, or 'all' (default: %(default)s)")
    m.add_argument("--image-size", type=_positive(int), default=224)
    m.add_argument("--batch-size", type=_positive(int), default=256)
    m.add_argument("--depth", type=_int_in(1, 1000), default=20, help="depth of a wide ResNet (wrn: 6n+2)")
    m.add_argument("--width", type=_positive(float), default=10, help="WRN width k")
    m.add_argument("--num-classes", type=_positive(int), default=None)
    m.add_argument("--in-channels", type=_positive(int), default=None)
    m.add_argument("--seed", type=_int_in(0, 2**63 - 2), default=0)
    m.add_argument("--device", default="cpu")
    m.add_argument("--steps", type=_int_in(0, 10_000), default=5,
                   help="timed training steps per method for the step-time ratio (0: skip)")
    m.add_argument("--no-peak", action="store_true", help="skip the peak of a real training step")
    m.add_argument("--budget", type=_byte_size, default=None,
                   help="memory budget (e.g. 512MiB, 2GB): find the largest batch that fits it")
    m.add_argument("--max-batch", type=_positive(int), default=4096,
                   help="upper limit of the largest-batch search")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.add_argument("--output", default=None, help="write the JSON to this file (atomically)")
    m.set_defaults(func=cmd_memory)

    f = add("fidelity", help="bias and variance of approximate weight gradients vs exact",
                       description="For one fixed network and batch, draw each approximate-gradient "
                       "method's weight gradients many times and report per layer their bias, spread "
                       "and error against exact backprop, relative to the exact gradient's norm.")
    f.add_argument("--method", default="all", help="methods (comma-separated) or 'all' of those whose "
                   "forward equals fp32's")
    f.add_argument("--arch", default="wrn")
    f.add_argument("--depth", type=_int_in(1, 1000), default=8, help="depth of a wide ResNet (wrn: 6n+2)")
    f.add_argument("--width", type=_positive(float), default=1, help="WRN width k")
    f.add_argument("--num-classes", type=_positive(int), default=None)
    f.add_argument("--in-channels", type=_positive(int), default=None)
    f.add_argument("--checkpoint", default=None, help="take the network (and its weights) from a checkpoint")
    f.add_argument("--dataset", default=None, help="take the batch from this dataset's test split "
                   "(default: uniform noise)")
    f.add_argument("--data-root", default="data")
    f.add_argument("--image-size", type=_positive(int), default=32)
    f.add_argument("--batch-size", type=_positive(int), default=64)
    f.add_argument("--draws", type=_int_in(2, 100_000), default=32)
    f.add_argument("--seed", type=_int_in(0, 2**63 - 2), default=0)
    f.add_argument("--output", default=None, help="write JSON rows to this file (atomically)")
    f.set_defaults(func=cmd_fidelity)

    d = add("data", help="download (if needed) and verify a dataset",
                       description="Make a dataset present under --data-root and check its checksums; "
                       "prints a JSON line describing it.")
    d.add_argument("--dataset", required=True)
    d.add_argument("--data-root", default="data")
    d.add_argument("--output", default=None, help="write the JSON line to this file (atomically)")
    d.set_defaults(func=cmd_data)

    e = add("export", help="pack a trained 1-bit-weight model, one bit per weight")
    e.add_argument("checkpoint", help="a checkpoint with 'config' and 'model' (onebit train's checkpoint.pt)")
    e.add_argument("-o", "--output", help="output path (default: CHECKPOINT with suffix .onebit)")
    e.set_defaults(func=cmd_export)

    b = add("bench", help="prove and time every method on this machine's GPU (tiny sizes on a CPU)",
            description="Correctness of every method on the device against the CPU (fp32, bf16, "
            "channels_last); speed, step peak and largest batch of WRN-20-4 and WRN-20-10 at batch 125, "
            "eager and compiled; the GPU-hours of every row of a grid; a short real training run of fp32, "
            "w1, cl and w1+cl on Fashion-MNIST. On a CPU everything runs at tiny sizes.")
    b.add_argument("--device", default="auto", help="auto (a GPU if present), cpu, cuda, cuda:N")
    b.add_argument("--method", default="all", help="methods (comma-separated) or 'all'")
    b.add_argument("--parts", default="check,speed,cost,train", help="which parts to run (comma-separated)")
    b.add_argument("--grid", default="config/grids/paper.tsv", help="grid whose cost to estimate")
    b.add_argument("--data-root", default="data", help="where Fashion-MNIST is (data-root/fashion-mnist/)")
    b.add_argument("--train-dataset", default="fashion_mnist", help="dataset of the real training run")
    b.add_argument("--budget", type=_byte_size, default=None,
                   help="memory budget of the largest-batch search (default: 90%% of the GPU; 32MiB on a CPU)")
    b.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time under torch.compile (default: on a GPU only)")
    b.add_argument("--write-runtime", action="store_true",
                   help="write each row's measured runtime (minutes) into the grid's runtime column")
    b.add_argument("--json", action="store_true", help="print JSON instead of tables")
    b.add_argument("--output", default=None, help="write the JSON to this file (atomically) and print the tables")
    b.set_defaults(func=cmd_bench)

    ms = add("methods", help="registered methods with their bits per weight and per kept activation",
             description="List the registered methods (plugins included): bits per weight at deployment, "
             "bits per element of the weight layers' inputs kept for backward, and a description.")
    ms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ms.set_defaults(func=cmd_methods)
    return p


#: errno of a file that cannot be written: full, read-only, forbidden (exit 4)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _oserror(e: OSError) -> tuple[int, str]:
    what = e.filename or "a file"
    if e.errno in _WRITE_ERRNOS:
        return 4, (f"cannot write {what}: {e.strerror}. Free space (or fix permissions) and re-run the "
                   "same command: completed files were written atomically and are intact, and training "
                   "resumes from its last checkpoint.")
    if e.errno == errno.ENOENT:
        return 2, f"{what} does not exist ({e.strerror}); check the path"
    if e.errno == errno.ENAMETOOLONG:
        return 2, f"a path is too long ({what[:80]}...); choose a shorter one"
    if e.errno in (errno.EISDIR, errno.ENOTDIR):
        return 2, f"{what}: {e.strerror}; give a file path where a file is expected, and a folder where a folder is"
    return 4, f"{what}: {e.strerror} (errno {e.errno}); check the path and the file system, then re-run"


def _failure(e: BaseException) -> tuple[int, str]:
    """Exit code and one paragraph for an exception reaching the command line."""
    from .data import DatasetError
    from .step import NonFiniteLoss

    if isinstance(e, (UserError, UnknownNameError, ValueError)):
        return 2, str(e)
    if isinstance(e, DatasetError):
        return 3, str(e)
    if isinstance(e, NonFiniteLoss):
        return 3, str(e)
    if isinstance(e, OSError):
        return _oserror(e)
    if isinstance(e, (MemoryError, RuntimeError)) and any(
            k in str(e).lower() for k in ("out of memory", "not enough memory", "can't allocate", "cannot allocate",
                                          "memoryerror")) or isinstance(e, MemoryError):
        return 3, ("ran out of memory (" + (str(e).splitlines()[0][:200] or type(e).__name__) + "). Use a smaller "
                   "--batch-size (or --width / --image-size), or a machine with more memory.")
    if isinstance(e, RuntimeError):
        return 3, (f"failed: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}. Re-run with --debug "
                   "for the traceback.")
    return 3, (f"internal error ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}). Re-run "
               "with --debug for the traceback and report it.")


def main(argv=None) -> int:
    from .plugins import load_plugins

    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("ONEBIT_DEBUG") == "1"
    try:
        load_plugins(args.plugins)
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"onebit {args.command}: interrupted. Completed files are intact; re-run the same command to "
              "resume (training continues from its last checkpoint).", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (every failure: one paragraph, the traceback with --debug)
        if debug:
            raise
        code, message = _failure(e)
        print(f"onebit {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
