"""Data staged to node-local scratch (``stage_data``): a training job copies its dataset
from ``data_root`` (a shared file system, read by every process of every job) to a local
folder once, checks the copy, reads it there, and removes it when the run ends, stopped
or failed included. The shared copy is only ever read.

``stage_data`` names the local folder: an absolute path, or one that starts with an
environment variable of the node (``$TMPDIR``, ``$SLURM_TMPDIR``, ``~``), expanded where
the job runs. Each job stages into a folder of its own, ``onebit-<dataset>-<job>``, below
it; under ``torchrun`` the first process of each node stages and the others wait.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from ..config import STAGE_PATTERN, check_stage_data  # noqa: F401
from ..errors import ConfigError, Interrupted
from ..units import format_bytes
from .formats import DatasetError


def check_setting(value: str, name: str = "stage_data") -> None:
    check_stage_data(value or "", name)


def stage_base(value: str) -> Path:
    """The local folder stage_data names on this node: its variables expanded, existing."""
    check_setting(value)
    path = os.path.expanduser(os.path.expandvars(value))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", path)
    if unset:
        raise ConfigError(
            f"stage_data {value!r}: ${unset[0]} is not set on this node ({os.uname().nodename}); "
            "name a variable the cluster sets in every job (often $TMPDIR or $SLURM_TMPDIR), "
            "or an absolute path, or unset stage_data to read the data from data_root",
            "stage_data",
        )
    base = Path(path)
    if not base.is_dir():
        raise ConfigError(
            f"stage_data {value!r}: {base} is not a folder on this node ({os.uname().nodename}); "
            "name an existing node-local folder, or unset stage_data",
            "stage_data",
        )
    return base


def job_key() -> str:
    """The same name in every process of a job on this node, and a different one for any
    other training on this node or another: the job, the node and the process that starts
    the run's processes here (torchrun's agent, or the run itself)."""
    job = os.environ.get("SLURM_JOB_ID") or "local"
    pid = os.getppid() if os.environ.get("TORCHELASTIC_RUN_ID") else os.getpid()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}-{socket.gethostname().split('.')[0]}-{pid}")


def _files(root: Path) -> dict:
    """relative path -> size of every file below ``root``."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def copy_tree(source: Path, target: Path, stop: Callable[[], Optional[str]]) -> None:
    """Copy a folder tree, checking for a stop signal between files; the copy is then
    compared with the source, file by file (names and sizes)."""

    def copy(src, dst, *, follow_symlinks=True):
        if stop():
            raise Interrupted(f"stopped by {stop()} while staging the data; nothing was trained in this start")
        return shutil.copy2(src, dst, follow_symlinks=follow_symlinks)

    shutil.copytree(source, target, copy_function=copy)
    if _files(source) != _files(target):
        raise DatasetError(
            f"the staged copy {target} differs from {source} (a file changed while it was copied, "
            "or the local disk is full); run again"
        )


def copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    if source.stat().st_size != target.stat().st_size:
        raise DatasetError(f"the staged copy {target} is shorter than {source} (the local disk is full?)")


@contextmanager
def staged(
    ds,
    source: Path,
    setting: str,
    *,
    local_main: bool = True,
    wait: Callable[[], None] = lambda: None,
    stop: Callable[[], Optional[str]] = lambda: None,
    log=print,
):
    """The data root to read ``ds`` from: ``source`` itself when ``setting`` is empty,
    else a staged copy on this node (made by the process with ``local_main``; ``wait`` is
    a barrier of all processes), removed on exit."""
    if not setting:
        yield Path(source)
        return
    target = stage_base(setting) / f"onebit-{ds.name}-{job_key()}"
    source = Path(source).resolve()
    where = target.resolve()
    if where == source or source in where.parents or where in source.parents:
        raise ConfigError(
            f"stage_data {setting!r}: its copy {target} and data_root {source} would overlap "
            "(one inside the other); name a node-local folder apart from data_root",
            "stage_data",
        )
    try:
        if local_main:
            if target.exists():  # left by a killed process of this node whose pid is now ours
                shutil.rmtree(target)
            try:
                target.mkdir()
            except OSError as e:
                raise ConfigError(
                    f"stage_data {setting!r}: cannot create {target} ({e.strerror}); name a "
                    "writable node-local folder, or unset stage_data",
                    "stage_data",
                ) from None
            t0 = time.perf_counter()
            ds.stage(source, target, stop)
            files = _files(target)
            log(
                f"data staged to {target}: {len(files):,} files, {format_bytes(sum(files.values()))} "
                f"in {time.perf_counter() - t0:.1f} s (from {source})"
            )
        wait()
        yield target
    finally:
        if local_main:
            shutil.rmtree(target, ignore_errors=True)
