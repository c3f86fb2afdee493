"""The life cycle of a run directory: what it holds, and whether a request may
write into it.

``config.json`` (resolved configuration and the run's *identity*: the fields that
define its result), ``env.json`` (where and with what it ran), ``metrics.jsonl``
(one line per epoch and split), ``checkpoint.pt`` (state after the last complete
epoch; the one before is ``checkpoint.pt.prev``), ``final.json`` (written last:
the run is complete). Every file is written atomically (:mod:`onebit.runio`).

A directory serves one identity only: a request with another configuration is
refused, whether the run there is finished, unfinished or only a checkpoint
copied in, and a checkpoint of another format version is refused with a
message, never set aside as corrupt.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from .errors import ConfigMismatch, StateVersionError
from .runio import (
    CorruptCheckpoint,
    RunLock,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    previous_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_aside,
)

#: version of the training state in checkpoint.pt; 1 had no "format" key; 3 is a
#: mid-epoch state (its "partial" says how far the epoch got), which a reader of 2 must
#: refuse rather than resume at the epoch's start; epoch-end states are still written as 2
STATE_FORMAT = 3
STATE_KEYS = ("model", "optimizer", "epoch", "step", "metrics", "run_config", "rng")
PARTIAL_KEYS = ("batches", "loss_sum", "correct", "seen", "data_seconds", "seconds", "data")


def _diff(existing: dict, requested: dict) -> dict:
    keys = sorted(set(existing) | set(requested))
    return {
        k: (existing.get(k, "(absent)"), requested.get(k, "(absent)"))
        for k in keys
        if existing.get(k, "(absent)") != requested.get(k, "(absent)")
    }


class RunDir:
    def __init__(self, path: "str | Path", main: bool = True, log: Callable = print):
        self.path, self.main, self.log = Path(path), main, log
        self.config = self.path / "config.json"
        self.env = self.path / "env.json"
        self.metrics = self.path / "metrics.jsonl"
        self.final = self.path / "final.json"
        self.checkpoint = self.path / "checkpoint.pt"

    #: what a run directory may hold besides temporaries and set-aside checkpoints
    OWN = {
        ".lock",
        "config.json",
        "env.json",
        "metrics.jsonl",
        "final.json",
        "checkpoint.pt",
        "checkpoint.pt.prev",
        "checkpoint.pt.new",
    }

    @contextmanager
    def open(self, identity: dict):
        """Create the directory, take its lock (main process) and check that it holds
        nothing else: no other configuration, no files of something other than a run.
        Temporaries a killed writer left are removed (under the lock)."""
        self.inspect(identity)
        self.path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.path) if self.main else None
        if lock is not None:
            lock.__enter__()
        try:
            self.inspect(identity)
            if self.main:
                remove_stale_temporaries(self.path)
            yield self
        finally:
            if lock is not None:
                lock.__exit__(None, None, None)

    def inspect(self, identity: dict) -> None:
        """Refuse, reading only, a path that cannot hold this run: a file, a folder of
        other files, a run of another configuration, a damaged config or final file."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigMismatch(f"--out {self.path} is a file; give a folder for the run (new or its own)")
        if not self.path.is_dir():
            return
        foreign = sorted(
            p.name
            for p in self.path.iterdir()
            if p.name not in self.OWN
            and not p.name.startswith("checkpoint.pt.corrupt-")
            and not (p.name.startswith(".") and p.name.endswith(".tmp"))
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ConfigMismatch(
                f"{self.path} holds files that are not part of a onebit run ({shown}): nothing "
                "was written. Use a new or empty folder for --out."
            )
        self.check_identity(identity)

    def check_identity(self, identity: dict) -> None:
        for path, key in ((self.config, "identity"), (self.final, None)):
            if not path.exists():
                continue
            try:
                held = json.loads(path.read_text())
                if not isinstance(held, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                raise ConfigMismatch(
                    f"{path} is damaged ({e}); it was not touched. Move it away (the run "
                    "then restarts or resumes from its checkpoint) or use another --out."
                ) from None
            held = held.get(key, {}) if key else {k: held.get(k, "(absent)") for k in identity}
            if held != identity:
                state = "a finished" if self.final.exists() else "an unfinished"
                raise ConfigMismatch(
                    f"{self.path} holds {state} run of another configuration "
                    f"(field: (existing, requested): {_diff(held, identity)}). Use another --out for "
                    "the new configuration, or delete that directory to replace its run."
                )

    def finished(self) -> Optional[dict]:
        return json.loads(self.final.read_text()) if self.final.exists() else None

    def start(self, config: dict, env: dict) -> None:
        if self.main:
            atomic_write_json(self.config, config)
            atomic_write_json(self.env, env)

    def resume(self, identity: dict, map_location=None) -> Optional[dict]:
        """The newest verified checkpoint (the latest, else the previous one) of this
        identity, or None. A damaged file is set aside (renamed, not deleted) with a
        warning; one of another configuration or format version is refused."""
        for path in (self.checkpoint, previous_checkpoint(self.checkpoint)):
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, map_location=map_location)
            except CorruptCheckpoint as e:
                moved = set_aside(path).name if self.main else path.name
                then = (
                    "falling back to the previous checkpoint"
                    if path == self.checkpoint and previous_checkpoint(path).exists()
                    else "restarting the run from epoch 0"
                )
                self.log(f"WARNING: {e}. It was renamed to {moved}; {then}.")
                continue
            self._check_state(path, state, identity)
            return state
        return None

    def check_checkpoints(self, identity: dict) -> None:
        """Read-only: refuse as :meth:`resume` would a checkpoint of another configuration
        or format (a damaged one is left for training to set aside)."""
        for path in (self.checkpoint, previous_checkpoint(self.checkpoint)):
            if path.exists():
                try:
                    state = load_checkpoint(path, map_location="cpu")
                except CorruptCheckpoint:
                    continue
                self._check_state(path, state, identity)

    def _check_state(self, path: Path, state, identity: dict) -> None:
        if not isinstance(state, dict):
            raise StateVersionError(
                f"{path} is a verified file but not a onebit training state; move it out of the run directory"
            )
        version = state.get("format", 1)
        if not isinstance(version, int) or version > STATE_FORMAT:
            raise StateVersionError(
                f"{path} was written by a newer onebit (training-state format {version!r}; this one "
                f"reads up to {STATE_FORMAT}). Resume it with that version, or use another --out."
            )
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise StateVersionError(
                f"{path} (training-state format {version}) lacks {missing}: it cannot be resumed by "
                "this version. Move it away to restart the run, or use another --out."
            )
        if state["run_config"] != identity:
            raise ConfigMismatch(
                f"{path} holds the state of a run of another configuration (field: (checkpoint, "
                f"requested): {_diff(state['run_config'], identity)}). It was not touched: move it "
                "away, or use another --out."
            )
        # format 1 -> 2 added only the "format" key: the state itself is the same
        partial = state.get("partial")
        if partial is not None and not (
            isinstance(partial, dict)
            and all(k in partial for k in PARTIAL_KEYS)
            and isinstance(partial["batches"], int)
            and partial["batches"] > 0
            and isinstance(partial["data"], dict)
        ):
            raise StateVersionError(
                f"{path} holds a mid-epoch state this version cannot continue (its 'partial' entry "
                f"lacks {[k for k in PARTIAL_KEYS if not isinstance(partial, dict) or k not in partial]} "
                "or is malformed). Move it away to restart the run, or use another --out."
            )

    def save(self, state: dict) -> None:
        if self.main:
            save_checkpoint({**state, "format": 3 if "partial" in state else 2}, self.checkpoint)

    def write_metrics(self, metrics: list) -> None:
        if self.main:
            atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in metrics), fault="metrics")

    def finish(self, metrics: list, final: dict) -> None:
        if self.main:
            self.write_metrics(metrics)  # complete even if a kill interrupted the last write
            atomic_write_json(self.final, final)
