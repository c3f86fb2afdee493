"""The ``onebit`` command line: its parser (the subcommands are in :mod:`onebit.commands`).

Errors meant for users are printed as one paragraph; ``--debug`` (or
``ONEBIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from .commands import (  # noqa: F401
    UserError,
    cmd_bench,
    cmd_data,
    cmd_export,
    cmd_fidelity,
    cmd_memory,
    cmd_methods,
    cmd_report,
    cmd_train,
)
from .errors import OnebitError


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


def _width(text):
    """A WRN width k: a positive float up to 1000 (as the training configuration takes)."""
    v = _positive(float)(text)
    if v > 1000:
        raise argparse.ArgumentTypeError(f"expected a width up to 1000, got {text!r}")
    return v


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
    from .measure.steps import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import add_arguments

    p = argparse.ArgumentParser(
        prog="onebit",
        description=(
            "Reproduce and extend 1-bit-weight and compressed-learning training: "
            "train a row, measure memory and gradients, benchmark, export"
        ),
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"onebit {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument(
        "--plugins",
        default=None,
        help="comma-separated modules or .py files registering methods/models "
        "(default: $ONEBIT_PLUGINS; installed packages register through the entry-point "
        "group onebit.methods)",
    )
    # --debug is also accepted after the subcommand; SUPPRESS keeps the global value otherwise
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, **kw):
        return sub.add_parser(name, parents=[common], allow_abbrev=False, **kw)

    t = add(
        "train",
        help="train one row of the paper's tables",
        description="Train one model with one method; writes config.json, env.json, "
        "metrics.jsonl, checkpoint.pt and final.json to --out. Re-running the same "
        "command resumes; a completed run is not retrained. Defaults: the workshop "
        "recipe (SGD momentum 0.9, batch 125, cosine 0.1 -> 1e-5 per iteration with "
        "warm restarts, weight decay 5e-4, flip + random-fill pad-4 crop).",
    )
    add_arguments(t)
    t.add_argument("--out", required=True, help="run directory (created; resumed if it holds a checkpoint)")
    t.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration exactly as training does (fields, device, the model "
        "built on the meta device), then exit; the data is checked when training starts",
    )
    t.set_defaults(func=cmd_train)

    m = add(
        "memory",
        help="bytes kept for backward, measured and per the paper's accounting",
        description="Measure, for each method, the bytes autograd keeps for backward "
        "(saved tensors, each storage once; parameters and input excluded) and the "
        "paper's accounting (inputs of every weight layer at the method's precision).",
    )
    m.add_argument("--arch", default="resnet18", help="registered model (default: resnet18)")
    m.add_argument(
        "--method",
        default="fp32,w1,cl,cl-strict,w1+cl",
        help="method, comma-separated methods, or 'all' (default: %(default)s)",
    )
    m.add_argument("--image-size", type=_int_in(1, 65_536), default=224)
    m.add_argument("--batch-size", type=_int_in(1, 10_000_000), default=256)
    m.add_argument("--depth", type=_int_in(1, 1000), default=20, help="depth of a wide ResNet (wrn: 6n+2)")
    m.add_argument("--width", type=_width, default=10, help="WRN width k (up to 1000)")
    m.add_argument("--num-classes", type=_int_in(1, 1_000_000), default=None)
    m.add_argument("--in-channels", type=_int_in(1, 4096), default=None)
    m.add_argument("--seed", type=_int_in(0, 2**63 - 2), default=0)
    m.add_argument("--device", default="cpu")
    m.add_argument(
        "--steps",
        type=_int_in(0, 10_000),
        default=5,
        help="timed training steps per method for the step-time ratio (0: skip)",
    )
    m.add_argument("--no-peak", action="store_true", help="skip the peak of a real training step")
    m.add_argument(
        "--budget",
        type=_byte_size,
        default=None,
        help="memory budget (e.g. 512MiB, 2GB): find the largest batch that fits it",
    )
    m.add_argument(
        "--max-batch", type=_int_in(1, 10_000_000), default=4096, help="upper limit of the largest-batch search"
    )
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.add_argument("--output", default=None, help="write the JSON to this file (atomically)")
    m.set_defaults(func=cmd_memory)

    f = add(
        "fidelity",
        help="bias and variance of approximate weight gradients vs exact",
        description="For one fixed network and batch, draw each approximate-gradient "
        "method's weight gradients many times and report per layer their bias, spread "
        "and error against exact backprop, relative to the exact gradient's norm.",
    )
    f.add_argument(
        "--method", default="all", help="methods (comma-separated) or 'all' of those whose forward equals fp32's"
    )
    f.add_argument("--arch", default="wrn")
    f.add_argument("--depth", type=_int_in(1, 1000), default=8, help="depth of a wide ResNet (wrn: 6n+2)")
    f.add_argument("--width", type=_width, default=1, help="WRN width k (up to 1000)")
    f.add_argument("--num-classes", type=_int_in(1, 1_000_000), default=None)
    f.add_argument("--in-channels", type=_int_in(1, 4096), default=None)
    f.add_argument("--checkpoint", default=None, help="take the network (and its weights) from a checkpoint")
    f.add_argument(
        "--dataset", default=None, help="take the batch from this dataset's test split (default: uniform noise)"
    )
    f.add_argument(
        "--data-root",
        default=os.environ.get("ONEBIT_DATA_ROOT", "data"),
        help="folder of datasets (default: %(default)s, or $ONEBIT_DATA_ROOT)",
    )
    f.add_argument("--image-size", type=_int_in(1, 65_536), default=32)
    f.add_argument("--batch-size", type=_int_in(1, 10_000_000), default=64)
    f.add_argument("--draws", type=_int_in(2, 100_000), default=32)
    f.add_argument("--seed", type=_int_in(0, 2**63 - 2), default=0)
    f.add_argument("--output", default=None, help="write JSON rows to this file (atomically)")
    f.set_defaults(func=cmd_fidelity)

    d = add(
        "data",
        help="download (if needed) and verify a dataset",
        description="Make a dataset present under --data-root and check its checksums; "
        "prints a JSON line describing it.",
    )
    d.add_argument("--dataset", required=True)
    d.add_argument(
        "--data-root",
        default=os.environ.get("ONEBIT_DATA_ROOT", "data"),
        help="folder of datasets (default: %(default)s, or $ONEBIT_DATA_ROOT)",
    )
    d.add_argument("--output", default=None, help="write the JSON line to this file (atomically)")
    d.set_defaults(func=cmd_data)

    e = add("export", help="pack a trained 1-bit-weight model, one bit per weight")
    e.add_argument("checkpoint", help="a checkpoint with 'config' and 'model' (onebit train's checkpoint.pt)")
    e.add_argument("-o", "--output", help="output path (default: CHECKPOINT with suffix .onebit)")
    e.set_defaults(func=cmd_export)

    b = add(
        "bench",
        help="prove and time every method on this machine's GPU (tiny sizes on a CPU)",
        description="Correctness of every method on the device against the CPU (fp32, bf16, "
        "channels_last); speed, step peak and largest batch of WRN-20-4 and WRN-20-10 at batch 125, "
        "eager and compiled; the GPU-hours of every row of a grid; a short real training run of fp32, "
        "w1, cl and w1+cl on Fashion-MNIST. On a CPU everything runs at tiny sizes.",
    )
    b.add_argument("--device", default="auto", help="auto (a GPU if present), cpu, cuda, cuda:N")
    b.add_argument("--method", default="all", help="methods (comma-separated) or 'all'")
    b.add_argument("--parts", default="check,speed,cost,train", help="which parts to run (comma-separated)")
    b.add_argument("--grid", default="config/grids/paper.tsv", help="grid whose cost to estimate")
    b.add_argument(
        "--data-root",
        default=os.environ.get("ONEBIT_DATA_ROOT", "data"),
        help="where Fashion-MNIST is (data-root/fashion-mnist/; default: %(default)s, or $ONEBIT_DATA_ROOT)",
    )
    b.add_argument("--train-dataset", default="fashion_mnist", help="dataset of the real training run")
    b.add_argument(
        "--budget",
        type=_byte_size,
        default=None,
        help="memory budget of the largest-batch search (default: 90%% of the GPU; 32MiB on a CPU)",
    )
    b.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time under torch.compile (default: on a GPU only)",
    )
    b.add_argument(
        "--write-runtime",
        action="store_true",
        help="write each row's measured runtime (minutes) into the grid's runtime column",
    )
    b.add_argument("--json", action="store_true", help="print JSON instead of tables")
    b.add_argument("--output", default=None, help="write the JSON to this file (atomically) and print the tables")
    b.set_defaults(func=cmd_bench)

    rp = add(
        "report",
        help="render the report (HTML) of a results folder",
        description="Render the report of a results folder: a grid's results/<grid>/, the committed "
        "results/reference/fashion/, or tidy tables merged from several machines (CSV or Parquet: "
        "summary, metrics, gaps, paper_gaps, memory, fidelity). Figures are read from <results>/figures/ "
        "where they are there, drawn from the tables otherwise.",
    )
    rp.add_argument("results", help="the results folder")
    rp.add_argument("--output", default=None, help="the HTML file (default: <results>/report.html)")
    rp.add_argument("--grid", default=None, help="the grid's name shown in the report (default: the folder's name)")
    rp.add_argument("--published", default="config/published.tsv", help="the published numbers (claims.yaml beside)")
    rp.set_defaults(func=cmd_report)

    ms = add(
        "methods",
        help="registered methods with their bits per weight and per kept activation",
        description="List the registered methods (plugins included): bits per weight at deployment, "
        "bits per element of the weight layers' inputs kept for backward, and a description.",
    )
    ms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ms.set_defaults(func=cmd_methods)
    return p


#: errno of a file that cannot be written: full, read-only, forbidden (exit 4)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _oserror(e: OSError) -> tuple[int, str]:
    what = e.filename or "a file"
    if e.errno is None:  # raised by a library (e.g. an image decoder), not by the system
        return 3, f"cannot read {what}: {e}. Check that file, or re-run with --debug for the traceback."
    if e.errno in _WRITE_ERRNOS:
        return 4, (
            f"cannot write {what}: {e.strerror}. Free space (or fix permissions) and re-run the "
            "same command: completed files were written atomically and are intact, and training "
            "resumes from its last checkpoint."
        )
    if e.errno == errno.ENOENT:
        return 2, f"{what} does not exist ({e.strerror}); check the path"
    if e.errno == errno.ENAMETOOLONG:
        return 2, f"a path is too long ({what[:80]}...); choose a shorter one"
    if e.errno in (errno.EISDIR, errno.ENOTDIR):
        return 2, f"{what}: {e.strerror}; give a file path where a file is expected, and a folder where a folder is"
    return 4, f"{what}: {e.strerror} (errno {e.errno}); check the path and the file system, then re-run"


def _failure(e: BaseException) -> tuple[int, str]:
    """Exit code and one paragraph for an exception reaching the command line: the errors of
    :mod:`onebit.errors` with their own codes; anything else is a failure of the run or a bug."""
    if isinstance(e, OnebitError):
        return e.exit_code, str(e)
    if isinstance(e, OSError):
        return _oserror(e)
    if isinstance(e, MemoryError) and str(e):
        return 3, f"too large for this machine: {e}. Use a smaller --batch-size (or --width / --image-size)."
    if (
        isinstance(e, (MemoryError, RuntimeError))
        and any(
            k in str(e).lower()
            for k in ("out of memory", "not enough memory", "can't allocate", "cannot allocate", "memoryerror")
        )
        or isinstance(e, MemoryError)
    ):
        return 3, (
            "ran out of memory (" + (str(e).splitlines()[0][:200] or type(e).__name__) + "). Use a smaller "
            "--batch-size (or --width / --image-size), or a machine with more memory."
        )
    if isinstance(e, RuntimeError):
        return 3, (
            f"failed: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}. Re-run with --debug "
            "for the traceback."
        )
    from .errors import ReportCrashed

    if isinstance(e, ReportCrashed):
        return 70, f"internal error: {e}. Please report it with this message."
    return 70, (
        f"internal error ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}). Re-run "
        "with --debug for the traceback and report it."
    )


def main(argv=None) -> int:
    from . import require_torch
    from .plugins import load_plugins

    require_torch()
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("ONEBIT_DEBUG") == "1"
    try:
        load_plugins(args.plugins)
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            f"onebit {args.command}: interrupted. Completed files are intact; re-run the same command to "
            "resume (training continues from its last checkpoint).",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # noqa: BLE001  (every failure: one paragraph, the traceback with --debug)
        if debug:
            raise
        code, message = _failure(e)
        print(f"onebit {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
