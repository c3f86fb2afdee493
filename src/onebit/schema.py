"""Files generated from the schema of a run (:mod:`onebit.config`) and of a grid
(:mod:`onebit.grid`): the JSON schema Snakemake validates every grid row against,
and ``config/README.md``. ``python -m onebit.schema`` rewrites them; a test checks
that the committed files are current.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .config import describe, kind_of
from .grid import columns

REPO = Path(__file__).resolve().parents[2]
GRID_SCHEMA = "workflow/schemas/grid.schema.yaml"
CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
CONFIG_README = "config/README.md"
RUN_DIRECTORY = "docs/run-directory.md"
_JSON_TYPE = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _property(f, owner) -> dict:
    kind, optional = kind_of(f, owner)
    m = f.metadata
    if kind is list:
        prop = {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 2**63 - 2},
            "minItems": 1,
            "uniqueItems": True,
        }
    else:
        prop = {"type": [_JSON_TYPE[kind], "null"] if optional else _JSON_TYPE[kind]}
        if kind is str:
            prop["minLength"] = 1
    for key, name in (
        ("minimum", "minimum"),
        ("exclusive_minimum", "exclusiveMinimum"),
        ("maximum", "maximum"),
        ("exclusive_maximum", "exclusiveMaximum"),
    ):
        if m.get(key) is not None:
            prop[name] = m[key]
    if m.get("pattern"):
        prop["pattern"] = f"^{m['pattern']}$"
    if m.get("choices"):
        prop["enum"] = list(m["choices"])
    prop["description"] = m["help"]
    return prop


def grid_schema() -> dict:
    cols = columns()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "One row of an experiment grid (config/grids/*.tsv), as onebit.grid.load_grid "
        "returns it. Generated from onebit.config.TrainConfig and onebit.grid.Job by "
        "`python -m onebit.schema`; do not edit.",
        "type": "object",
        "properties": {name: _property(f, owner) for name, (f, owner) in cols.items()},
        "required": list(cols),
        "additionalProperties": False,
    }


def _default(f) -> str:
    if f.default is None:
        return "empty"
    if isinstance(f.default, bool):
        return "1" if f.default else "0"
    return f"`{f.default}`"


def config_readme() -> str:
    config = yaml.safe_load((REPO / CONFIG_SCHEMA).read_text())
    lines = [
        "# Configuration",
        "",
        "Generated from `workflow/schemas/config.schema.yaml`, `onebit.config.TrainConfig` and "
        "`onebit.grid.Job` by `python -m onebit.schema`; do not edit.",
        "",
        "## `config/config.yaml`",
        "",
        "Override any key with `snakemake --config key=value` or `--configfile file.yaml`.",
        "",
        "| key | meaning |",
        "|---|---|",
    ]
    for key, prop in config["properties"].items():
        lines.append(f"| `{key}` | {prop.get('description', '')} |")
    lines += [
        "",
        "## Grid columns (`config/grids/*.tsv`)",
        "",
        "A grid is a tab-separated table, one row per table row of a paper; `#` lines are comments. "
        "Required columns must be present and filled; any other column may be left out or left "
        "empty, and then takes its default. The run columns are `onebit train`'s options "
        "(`--crop-pad` for `crop_pad`; booleans as 0/1); `seeds` lists the seeds, one job each. "
        "The pipeline sets `data_root`, `stage_data` and `device` for every job (keys above).",
        "",
        "| column | kind | allowed | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, (f, owner) in columns().items():
        kind = "job" if owner.__name__ == "Job" else "run"
        default = "required" if f.metadata["required"] else _default(f)
        lines.append(f"| `{name}` | {kind} | {describe(f, owner)} | {default} | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


def generated() -> dict:
    from .runschema import docs

    return {
        GRID_SCHEMA: yaml.safe_dump(grid_schema(), sort_keys=False, width=100),
        CONFIG_README: config_readme(),
        RUN_DIRECTORY: docs(),
    }


def main(argv=None) -> int:
    stale = []
    for path, text in generated().items():
        target = REPO / path
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            stale.append(path)
    print("rewrote " + ", ".join(stale) if stale else "generated files are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
