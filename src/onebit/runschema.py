"""The run-directory contract: what ``collect`` reads from a run, as versioned JSON schemas.

A run directory ``results/<grid>/runs/<row>/seed<seed>/`` holds ``final.json`` (the run is
done: its result), ``metrics.jsonl`` (one JSON object per line: a split of an epoch),
``env.json`` (where and with what it ran; optional) and ``config.json`` (what it was asked
to do; written by ``onebit train``, not read by ``collect``). Any producer, ``onebit train``
or a user's own script, writes these; ``onebit.runschema.check_run`` names the file, line
and field of any violation. ``docs/run-directory.md`` is generated from here
(``python -m onebit.schema``).

Besides the fields below, ``final.json`` may carry the run's fields (the grid's run columns,
such as ``method``, ``dataset``, ``depth``, ``seed``): ``collect`` checks each one present
against the run's grid row, so that a run copied from another row is not mislabelled.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InconsistentRun

#: the version of the contract below; a change that a producer must follow raises it
VERSION = 1

_ERR = {"type": "number", "minimum": 0, "maximum": 100}
_SECONDS = {"type": "number", "minimum": 0}

SCHEMAS = {
    "final.json": {
        "$id": f"onebit/run-directory/v{VERSION}/final.json",
        "title": "final.json: the run's result, written once training is complete",
        "type": "object",
        "required": ["epochs_done", "test_top1_err"],
        "properties": {
            "epochs_done": {"type": "integer", "minimum": 1, "description": "epochs trained"},
            "test_top1_err": {**_ERR, "description": "final top-1 test error, % (the last test line's)"},
            "test_top5_err": {**_ERR, "description": "final top-5 test error, % (optional)"},
            "test_loss": {"type": "number", "description": "final test loss (optional)"},
            "wall_seconds": {**_SECONDS, "description": "seconds of training and evaluation (optional)"},
            "params": {"type": "integer", "minimum": 0, "description": "parameters of the network (optional)"},
        },
    },
    "metrics.jsonl": {
        "$id": f"onebit/run-directory/v{VERSION}/metrics.jsonl",
        "title": "metrics.jsonl: one JSON object per line, per epoch and split",
        "type": "object",
        "required": ["epoch", "split", "top1_err"],
        "properties": {
            "epoch": {"type": "integer", "minimum": 1, "description": "epochs done when measured (1, 2, ...)"},
            "split": {"enum": ["train", "test"], "description": "every epoch has one line of each"},
            "top1_err": {**_ERR, "description": "top-1 error on the split, %"},
            "top5_err": {**_ERR, "description": "top-5 error, % (optional)"},
            "loss": {"type": "number", "description": "mean loss (optional)"},
            "lr": {"type": "number", "minimum": 0, "description": "learning rate at the epoch's end (optional)"},
            "epoch_seconds": {**_SECONDS, "description": "seconds the split took (optional; 0 if absent)"},
            "data_seconds": {**_SECONDS, "description": "of which waiting for data (optional)"},
            "images": {"type": "integer", "minimum": 0, "description": "images seen (optional)"},
            "images_per_s": {"type": "number", "minimum": 0, "description": "throughput (optional)"},
            "step": {"type": "integer", "minimum": 0, "description": "optimizer steps done (optional)"},
            "bn_stats": {
                "enum": ["running", "reestimated", None],
                "description": "test lines: BN statistics used, the running averages or re-estimated (optional)",
            },
            "peak_mem_bytes": {"type": ["integer", "null"], "minimum": 0, "description": "peak memory (optional)"},
            "peak_mem_kind": {"type": ["string", "null"], "description": "what peak_mem_bytes measures (optional)"},
        },
    },
    "env.json": {
        "$id": f"onebit/run-directory/v{VERSION}/env.json",
        "title": "env.json: where and with what the run ran (the file is optional; so is each field)",
        "type": "object",
        "properties": {
            "device": {"type": "string", "description": "cpu, cuda, cuda:0, ..."},
            "device_name": {"type": "string", "description": "the GPU's name, or the CPU's"},
            "torch_version": {"type": "string", "description": "or the framework's version, for other frameworks"},
            "git_revision": {"type": ["string", "null"], "description": "the commit of the code that trained it"},
            "git_dirty": {"type": ["boolean", "null"], "description": "uncommitted changes"},
            "hostname": {"type": "string"},
            "python_version": {"type": "string"},
            "onebit_version": {"type": "string"},
            "threads": {"type": "integer", "minimum": 1},
            "world_size": {"type": "integer", "minimum": 1, "description": "processes of a distributed run"},
        },
    },
    "config.json": {
        "$id": f"onebit/run-directory/v{VERSION}/config.json",
        "title": "config.json: what the run was asked to do (written by onebit train; not read by collect)",
        "type": "object",
        "properties": {
            "identity": {"type": "object", "description": "the run's fields that define its result"},
            "params": {"type": "integer", "minimum": 0},
            "num_classes": {"type": "integer", "minimum": 1},
        },
    },
}


def _where(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return f"field {path}" if path else "the object"


def check(name: str, obj, where: str) -> None:
    """Refuse ``obj`` (the content of the run file ``name``) that breaks its schema, naming
    ``where`` (the file, and line), the field and what is wrong."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(SCHEMAS[name]).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise InconsistentRun(
            f"{where}: {_where(e)}: {e.message}. A run directory's files follow docs/run-directory.md "
            f"(contract v{VERSION}); fix the program that wrote it, or delete the run and run the pipeline again."
        )


def check_run(run: Path) -> tuple:
    """``(final, metrics lines, env)`` of the run directory ``run``, each checked."""
    run = Path(run)
    try:
        final = json.loads((run / "final.json").read_text())
    except ValueError as e:
        raise InconsistentRun(f"{run}/final.json: not JSON ({e}); delete the run directory and run again") from None
    check("final.json", final, f"{run}/final.json")
    lines = []
    try:
        text = (run / "metrics.jsonl").read_text()
    except FileNotFoundError:
        raise InconsistentRun(
            f"{run}/metrics.jsonl: missing; a finished run has one line per epoch and split"
        ) from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InconsistentRun(f"{run}/metrics.jsonl, line {n}: not JSON ({e})") from None
        check("metrics.jsonl", obj, f"{run}/metrics.jsonl, line {n}")
        lines.append(obj)
    env = {}
    if (run / "env.json").exists():
        try:
            env = json.loads((run / "env.json").read_text())
        except ValueError as e:
            raise InconsistentRun(f"{run}/env.json: not JSON ({e})") from None
        check("env.json", env, f"{run}/env.json")
    return final, lines, env


def docs() -> str:
    """``docs/run-directory.md``: the contract in words and its schemas."""
    out = [
        "# The run directory (contract v%d)" % VERSION,
        "",
        "<!-- generated by `python -m onebit.schema` from src/onebit/runschema.py; do not edit -->",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        "`collect` refuses a run that breaks it, naming the file, the line and the field.",
        "",
    ]
    for name, schema in SCHEMAS.items():
        req = set(schema.get("required", []))
        out += [f"## `{name}`", "", schema["title"] + ".", "", "| field | type | required | description |"]
        out.append("|---|---|---|---|")
        for field, prop in schema["properties"].items():
            kind = prop.get("type", " or ".join(str(v) for v in prop.get("enum", [])))
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            out.append(f"| `{field}` | {kind} | {'yes' if field in req else 'no'} | {prop.get('description', '')} |")
        out += ["", "```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(out)
