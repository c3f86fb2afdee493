"""Files of a run directory: atomic writes, verified checkpoints, the run lock,
fault points for the reliability tests, and the environment record."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from .errors import CorruptCheckpoint, RunLocked, UserError

_FAULT_COUNTS: dict = {}


def fault_point(name: str) -> None:
    """Reliability tests only: with ``ONEBIT_FAULT=name:n`` in the environment, the
    process kills itself (SIGKILL, as a scheduler or the OOM killer would) the n-th
    time it reaches this point; ``name:n:SIGNAL`` (``USR1``, ``TERM``) sends itself that
    signal instead, as SLURM does before a time limit. Points: ``step``, ``checkpoint``,
    ``metrics``, ``checkpoint-rotate``."""
    spec = os.environ.get("ONEBIT_FAULT")
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    count, _, sig = rest.partition(":")
    sig = sig.upper().removeprefix("SIG")
    if not (count or "1").isdigit() or (sig and sig not in ("USR1", "TERM")):
        raise UserError(
            f"ONEBIT_FAULT={spec!r}: the test hook takes POINT:N[:USR1|TERM] with N a positive integer "
            "(unset ONEBIT_FAULT to train normally)"
        )
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if _FAULT_COUNTS[name] == int(count or 1):
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}") if sig else signal.SIGKILL)


def atomic_write_bytes(path: Path, data: bytes, fault: str | None = None) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a reader
    (or a killed writer) never sees a truncated file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the user asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            if fault:
                f.flush()
                fault_point(fault)  # killed half-way through the write
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> list:
    """Delete the temporary files a killed writer left (``.<name>.<random>.tmp``); only
    the holder of the folder's run lock may call this."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p.name)
    for p in Path(folder).glob("*.new"):  # a checkpoint written but not yet renamed
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def atomic_write_text(path: Path, text: str, fault: str | None = None) -> None:
    atomic_write_bytes(path, text.encode(), fault)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


_MAGIC = b"\nonebit-checkpoint-v1\n"  # footer: sha256 of the payload, then this


def save_checkpoint(obj, path: Path, keep_previous: bool = True) -> None:
    """``torch.save`` bytes + their sha256 + a marker, written atomically; the
    checkpoint it replaces is kept as ``<name>.prev`` (a fallback)."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    data = payload + hashlib.sha256(payload).digest() + _MAGIC
    if keep_previous and path.exists():
        # write the new file first, under a temporary name: at every instant a
        # complete checkpoint exists under the name or under .prev
        tmp = path.with_name(path.name + ".new")
        atomic_write_bytes(tmp, data, fault="checkpoint")
        os.replace(path, previous_checkpoint(path))
        fault_point("checkpoint-rotate")
        os.replace(tmp, path)
    else:
        atomic_write_bytes(path, data, fault="checkpoint")


def previous_checkpoint(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".prev")


def load_checkpoint(path: Path, map_location=None):
    """Read and verify a checkpoint written by :func:`save_checkpoint`; raises
    :class:`CorruptCheckpoint` saying what is wrong."""
    path = Path(path)
    data = path.read_bytes()
    n = len(_MAGIC) + 32
    if len(data) < n or data[-len(_MAGIC) :] != _MAGIC:
        raise CorruptCheckpoint(f"{path} is truncated or not a onebit checkpoint (no end marker)")
    payload, digest = data[:-n], data[-n : -len(_MAGIC)]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint(f"{path} is corrupted (sha256 of its content does not match)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # verified bytes that torch cannot read: written by something else
        raise CorruptCheckpoint(f"{path} cannot be read ({type(e).__name__}: {e})") from None


def set_aside(path: Path) -> Path:
    """Rename a bad file out of the way (kept for inspection, never deleted)."""
    dest = Path(path).with_name(f"{Path(path).name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, dest)
    return dest


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.lock``: two trainers never write the
    same run. The kernel releases it when the holder dies, so a killed run leaves
    no stale lock behind."""

    #: lock descriptors held by this process: a forked DataLoader worker closes them
    #: (:func:`close_inherited_locks`), so that it cannot hold the lock after a crash
    HELD: set = set()

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunLocked(
                    f"{self.path.parent} is being written by another onebit process "
                    f"(pid {holder}); wait for it to finish or use another --out"
                ) from None
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        RunLock.HELD.add(self.fd)
        return self

    def __exit__(self, *exc):
        RunLock.HELD.discard(self.fd)
        os.close(self.fd)  # releases the lock


def close_inherited_locks(*_) -> None:
    """In a forked child (a DataLoader worker, as ``worker_init_fn``): close the run locks
    inherited from the parent, so that only the parent holds them."""
    for fd in list(RunLock.HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    RunLock.HELD.clear()


def git_revision(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the source tree the package runs from, or (None, None)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return rev, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(device: torch.device) -> dict:
    from . import __version__

    rev, dirty = git_revision()
    return {
        "git_revision": rev,
        "git_dirty": dirty,
        "onebit_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        ),
        "threads": torch.get_num_threads(),
        "hostname": platform.node(),
    }
