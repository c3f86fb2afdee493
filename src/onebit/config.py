"""The one schema of a run: :class:`TrainConfig` and its field metadata.

Every other description of a run is generated from the dataclass below: the
``onebit train`` flags and their help, the grid's run columns, their JSON schema
(``workflow/schemas/grid.schema.yaml``), the command line of a grid job, the
checks of ``onebit train --check`` and ``config/README.md``. A field is added in
one place, here, with :func:`option`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ConfigError

SEED_MAX = 2**63 - 2  # the data generator is seeded with seed + 1, a signed 64-bit integer


def option(
    default,
    help: str,
    *,
    minimum=None,
    exclusive_minimum=None,
    maximum=None,
    exclusive_maximum=None,
    choices=None,
    registry: Optional[str] = None,
    runtime: bool = False,
    grid: bool = True,
    required: bool = False,
    pattern: Optional[str] = None,
    aliases: tuple = (),
    env: Optional[str] = None,
    check=None,
) -> Any:
    """A field with its metadata.

    ``minimum`` ... ``exclusive_maximum`` bound numbers; ``choices`` lists the allowed
    values of a string; ``registry`` names the registry a string must be a key of
    (``dataset``, ``model``, ``method``); ``runtime`` fields say how a run is
    executed, not what it computes (they are not part of its identity); ``grid``
    False keeps a field out of the grid's columns (set by the pipeline instead) and
    ``required`` makes its column mandatory in a grid; ``pattern`` is a regular
    expression a string must match whole; ``env`` names an environment variable that
    gives the command line's default (the pipeline sets it, so that changing it changes
    no job's command); ``check`` is a function that raises a ConfigError of its own, with
    what to do, for a value it refuses (before the pattern)."""
    meta = dict(
        help=help,
        minimum=minimum,
        exclusive_minimum=exclusive_minimum,
        maximum=maximum,
        exclusive_maximum=exclusive_maximum,
        choices=choices,
        registry=registry,
        runtime=runtime,
        grid=grid,
        required=required,
        pattern=pattern,
        aliases=aliases,
        env=env,
        check=check,
    )
    return dataclasses.field(default=default, metadata=meta)


#: a stage_data setting: "" (off), an absolute path, or a path that starts with $VAR,
#: ${VAR} or ~ (expanded on the node)
STAGE_PATTERN = r"|/.*|~.*|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?(/.*)?"


def check_stage_data(value, name: str = "stage_data") -> None:
    """Refuse a relative stage_data (it would be below the job's working directory, on
    the shared file system) and anything but one path."""
    if not isinstance(value, str) or not re.fullmatch(STAGE_PATTERN, value) or "\n" in value:
        raise ConfigError(
            f"{name} {value!r}: a node-local folder is an absolute path or one that starts "
            "with an environment variable of the node, such as $TMPDIR or $SLURM_TMPDIR "
            "(a relative path would be on the shared file system)",
            name,
        )


@dataclass
class TrainConfig:
    """One run. Defaults are the workshop recipe ([W]; SPEC.md 3) with the official code's
    details where the papers say nothing (README: "Differences from the official code")."""

    dataset: str = option("cifar10", "registered dataset", registry="dataset", required=True)
    arch: str = option("wrn", "registered model", registry="model", required=True)
    method: str = option("fp32", "registered method (onebit methods)", registry="method", required=True)
    depth: int = option(20, "depth of a wide ResNet: 6n+2 (wrn), 8n+2 (wrn_imagenet)", minimum=1, maximum=1000)
    width: float = option(
        4,
        "width k of a wide ResNet: 16k/32k/64k channels (wrn), 64k/.../512k (wrn_imagenet)",
        exclusive_minimum=0,
        maximum=1000,
    )
    epochs: int = option(
        63, "epochs; 63 / 127 end a cycle with t0=1, tmult=2 (126 / 254 with t0=2)", minimum=1, required=True
    )
    seed: int = option(
        0, "seed of initialisation, data order, augmentation and noise", minimum=0, maximum=SEED_MAX, grid=False
    )
    batch_size: int = option(125, "images per step (125: 400 steps per CIFAR epoch, as in the paper)", minimum=1)
    lr_max: float = option(
        0.1, "learning rate at the first step of every cosine cycle", exclusive_minimum=0, aliases=("--lr",)
    )
    lr_min: float = option(1e-5, "floor of the cosine (the official code; [P]'s text says 1e-4)", minimum=0)
    momentum: float = option(0.9, "SGD momentum (not Nesterov)", minimum=0, exclusive_maximum=1)
    weight_decay: float = option(
        5e-4, "weight decay of the full-precision weights (5e-4 CIFAR, 1e-4 ImageNet)", minimum=0
    )
    t0: int = option(1, "epochs of the first warm-restart cycle ([W]: 1, [P]: 2)", minimum=1)
    tmult: int = option(2, "growth of each next cycle", minimum=1)
    momentum_reset: bool = option(True, "zero the momentum at each warm restart (the official MATLAB code does)")
    flip: bool = option(True, "random horizontal flips")
    crop_pad: int = option(4, "pixels of random-valued padding before the random crop (0: no crop)", minimum=0)
    cutout: int = option(0, "side of the cutout square (0: none; [P]'s '++' columns use 18)", minimum=0)
    cutout_style: str = option(
        "official",
        "official: the patch's corner uniform over 1-P..H-1 (it may "
        "hang off the border), filled with random 0-255; devries: centre uniform, "
        "filled with 0",
        choices=("official", "devries"),
    )
    train_subset: Optional[int] = option(None, "train on the first N images only", minimum=1)
    test_subset: Optional[int] = option(None, "test on the first N images only", minimum=1)
    fp32_first_last: bool = option(False, "keep the first and last layer's weights at 32 bits")
    bn_affine: bool = option(False, "learn BN scale and offset (ImageNet)")
    bn_reestimate: bool = option(
        True,
        "at the end of each warm-restart cycle, set the BN statistics used "
        "for testing from one pass over the augmented training set (the official "
        "code); off: running averages",
    )
    pool_count_pad: bool = option(
        False,
        "the shortcut's 3x3 average pool divides by 9, counting the zero "
        "padding (PyTorch's default); off: by the pixels inside the image (the "
        "official code)",
    )
    amp: bool = option(False, "bf16 autocast")
    # how, not what: excluded from the identity of a run
    data_root: str = option(
        "data",
        "folder of datasets (downloads go here; ImageNet is read from here)",
        runtime=True,
        grid=False,
        env="ONEBIT_DATA_ROOT",
    )
    stage_data: str = option(
        "",
        "node-local folder to copy the dataset to, once per job, read there and removed after "
        "(an absolute path, or $TMPDIR, $SLURM_TMPDIR...: expanded on the node; empty: read data_root)",
        runtime=True,
        grid=False,
        pattern=STAGE_PATTERN,
        check=check_stage_data,
        env="ONEBIT_STAGE_DATA",
    )
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...", runtime=True, grid=False, env="ONEBIT_DEVICE")
    gpus: int = option(
        0,
        "GPUs this run was given (the workflow sets the grid row's gpus): with device auto, a run given "
        "GPUs refuses to start where PyTorch sees none, instead of training on the CPU",
        minimum=0,
        runtime=True,
        grid=False,
        env="ONEBIT_GPUS",
    )
    workers: int = option(4, "data-loading processes (folder datasets such as ImageNet)", minimum=0, runtime=True)
    compile: bool = option(False, "torch.compile the model (memory measurements stay eager)", runtime=True)
    eval_batch_size: int = option(500, "images per evaluation batch", minimum=1, runtime=True)

    def validate(self, build: bool = True) -> None:
        """Every check a run makes before it starts: each field against its metadata,
        the learning-rate range, and (with ``build``, which imports PyTorch) the device and
        the model built on the meta device (which checks the architecture's own arguments,
        e.g. a WRN depth of 6n+2)."""
        from .data import get_dataset

        for f in fields():
            check_value(f.name, getattr(self, f.name))

        if self.cutout > get_dataset(self.dataset).image_size:
            raise ConfigError(
                f"cutout {self.cutout} is larger than the {self.dataset} images "
                f"({get_dataset(self.dataset).image_size} pixels)",
                "cutout",
            )
        if self.lr_min > self.lr_max:
            raise ConfigError(f"lr_min must be at most lr_max ({self.lr_max!r}), got {self.lr_min!r}", "lr_min")
        if build:
            check_device(self.device, self.gpus)
            self.build_model(meta=True)

    def identity(self) -> dict:
        """The fields that define the result (a resumed run must match them)."""
        return {f.name: getattr(self, f.name) for f in fields() if not f.metadata["runtime"]}

    def model_kwargs(self, num_classes: int, in_channels: int) -> dict:
        kw = dict(num_classes=num_classes, in_channels=in_channels, fp32_first_last=self.fp32_first_last)
        from .models import has_depth_width

        if has_depth_width(self.arch):  # the wide ResNets
            kw.update(depth=self.depth, width=self.width, bn_affine=self.bn_affine, pool_count_pad=self.pool_count_pad)
        return kw

    def build_model(self, meta: bool = False):
        """The run's model (on the meta device: no memory, for checks)."""
        import torch

        from .data import get_dataset
        from .models import create_model

        ds = get_dataset(self.dataset)
        kwargs = self.model_kwargs(ds.num_classes, ds.in_channels)
        try:
            if meta:
                with torch.device("meta"):
                    return create_model(self.arch, self.method, **kwargs)
            return create_model(self.arch, self.method, **kwargs)
        except (RuntimeError, OverflowError, MemoryError) as e:
            if isinstance(e, RuntimeError) and not _SIZE_ERROR.search(str(e)):
                raise  # a bug in a builder, not a size beyond any memory
            raise ConfigError(
                f"cannot build {self.arch} with {kwargs}: {type(e).__name__}: {e}; choose a smaller width or depth"
            ) from None


def fields() -> tuple:
    return dataclasses.fields(TrainConfig)


def kind_of(f: dataclasses.Field, owner=TrainConfig) -> tuple[type, bool]:
    """(base type, optional) of a field: ``Optional[int]`` -> ``(int, True)``."""
    hint = typing.get_type_hints(owner)[f.name]
    if typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None)), True
    return hint, False


def describe(f: dataclasses.Field, owner=TrainConfig) -> str:
    """The allowed values of a field in words: 'a positive float', 'an integer >= 0', ..."""
    kind, optional = kind_of(f, owner)
    m = f.metadata
    noun = {int: "integer", float: "float", bool: "boolean", str: "string"}.get(kind, kind.__name__)
    if kind is list:
        return "comma-separated distinct integers in [0, 2**63 - 2]"
    if m.get("pattern"):
        return f"a string matching {m['pattern']}"
    if m.get("registry"):
        return f"a registered {m['registry']} name"
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    lo, xlo, hi, xhi = m.get("minimum"), m.get("exclusive_minimum"), m.get("maximum"), m.get("exclusive_maximum")
    finite = "finite " if kind is float else ""  # nan and inf are refused
    if xlo == 0 or (lo == 1 and kind is int):
        text = f"a {finite}positive {noun}"
    elif lo == 0:
        text = f"a {finite}non-negative {noun}"
    elif lo is not None or xlo is not None:
        text = f"a {finite}{noun} {'>=' if lo is not None else '>'} {lo if lo is not None else xlo}"
    else:
        text = (
            f"a {finite}{noun}"
            if finite or hi is not None or xhi is not None
            else ("an " if noun[0] in "aeiou" else "a ") + noun
        )
    if hi is not None:
        text += f" up to {hi}"
    elif xhi is not None:
        text += f" below {xhi}"
    return text + (" (or empty)" if optional else "")


def check_value(name: str, value, owner=TrainConfig) -> None:
    """Raise :class:`ConfigError` unless ``value`` is allowed for field ``name``."""
    f = next(f for f in dataclasses.fields(owner) if f.name == name)
    kind, optional = kind_of(f, owner)
    m = f.metadata
    bad = ConfigError(f"{name} must be {describe(f, owner)}, got {value!r}", name)
    if value is None:
        if optional:
            return
        raise bad
    if m.get("check"):
        m["check"](value)
    if kind is bool:
        if not isinstance(value, bool):
            raise bad
        return
    if kind is list:
        if (
            not isinstance(value, list)
            or not value
            or len(set(value)) != len(value)
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX for s in value)
        ):
            raise bad
        return
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
    if kind is str:
        if not isinstance(value, str) or not (value or m.get("pattern") and re.fullmatch(m["pattern"], "")):
            raise bad  # empty only where the pattern allows it
        if m.get("choices") and value not in m["choices"]:
            raise bad
        if m.get("pattern") and not re.fullmatch(m["pattern"], value):
            raise bad
        if m.get("registry"):
            registry_of(m["registry"]).get(value)  # UnknownNameError lists the known names
        return
    if (
        (m.get("minimum") is not None and value < m["minimum"])
        or (m.get("exclusive_minimum") is not None and value <= m["exclusive_minimum"])
        or (m.get("maximum") is not None and value > m["maximum"])
        or (m.get("exclusive_maximum") is not None and value >= m["exclusive_maximum"])
    ):
        raise bad


def registry_of(name: str):
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS

    return {"dataset": DATASETS, "model": MODELS, "method": METHODS}[name]


#: what PyTorch says when a tensor's size is beyond any memory or index
_SIZE_ERROR = re.compile(
    r"overflow|negative dimension|too large|out of memory|numel|size calculation|invalid size", re.I
)


def cuda_absence() -> str:
    """Why PyTorch sees no CUDA device here, in words a user can act on."""
    import torch

    if torch.version.cuda is None:
        return (
            f"PyTorch {torch.__version__} is a CPU-only build (installed where no GPU was seen, "
            "e.g. on a login node); install the CUDA build with `bash envs/setup.sh --torch cu126` "
            "(or the CUDA version of your cluster)"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "CUDA_VISIBLE_DEVICES is not set"
    return (
        f"PyTorch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU ({where}); "
        "check that the job was given a GPU (SLURM: --gpus or --gres) and that `nvidia-smi` lists it"
    )


def check_device(name: str, gpus: int = 0) -> None:
    """``auto``, ``cpu`` or an available accelerator; anything else is refused here,
    before any work, rather than at the first tensor moved. With ``gpus`` (a grid row's
    GPUs), ``auto`` must find a CUDA device: a GPU row never trains on the CPU silently."""
    import torch

    if name == "auto":
        if gpus and not torch.cuda.is_available():
            row = os.environ.get("ONEBIT_ROW")
            who = f"grid row {row!r}" if row else "this run"
            raise ConfigError(
                f"{who} asks for {gpus} GPU(s) (the row's gpus) but PyTorch sees no CUDA device: "
                f"{cuda_absence()}. Nothing was trained or written. To train it on the CPU on purpose, "
                "set device: cpu (snakemake --config device=cpu, or --device cpu)",
                "device",
            )
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} was asked for but PyTorch sees no CUDA device: {cuda_absence()}. "
                "Nothing was trained or written; or use --device cpu",
                "device",
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type != "cpu":
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


# ------------------------------------------------------------------ text <-> values


def parse_text(text: str, kind: type, optional: bool = False):
    """A value of ``kind`` from its text in a grid cell or on the command line
    (``'3'`` and ``'3.0'`` are the integer 3; booleans are 0/1/true/false/yes/no)."""
    text = text.strip()
    if text == "" and optional:
        return None
    if kind is int:
        v = float(text)
        if not v.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(text) if text.lstrip("+-").isdigit() else int(v)
    if kind is float:
        return float(text)
    if kind is list:  # seeds
        return [parse_text(s, int) for s in text.split(",")]
    if kind is bool:
        low = text.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return text


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def to_argv(values: dict) -> list[str]:
    """``onebit train`` arguments for the given fields (``None`` values are left out)."""
    by_name = {f.name: f for f in fields()}
    argv = []
    for name, value in values.items():
        if value is None:
            continue
        kind, _ = kind_of(by_name[name])
        if kind is bool:
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag(name), str(value)]
    return argv


def add_arguments(parser) -> None:
    """One ``--flag`` per field, typed and bounded from the metadata."""
    import argparse

    for f in fields():
        kind, optional = kind_of(f)
        env = f.metadata["env"]
        default = os.environ.get(env, f.default) if env else f.default
        help_ = f"{f.metadata['help']} ({describe(f)}; default: %(default)s" + (f", or ${env})" if env else ")")
        if kind is bool:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        parser.add_argument(
            flag(f.name),
            *f.metadata["aliases"],
            dest=f.name,
            type=_argument_type(f, kind, optional),
            default=default,
            help=help_,
        )


def _argument_type(f, kind, optional):
    """Parse and bound-check a flag's text; registry names are checked by
    :meth:`TrainConfig.validate`, after plugins have registered theirs."""
    import argparse

    def parse(text):
        try:
            value = parse_text(text, kind, optional)
            if not f.metadata["registry"]:
                check_value(f.name, value)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{f.name} must be {describe(f)}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def from_namespace(args) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields()})
