"""Packaging: what pip installs, the locks, the conda environment as Snakemake deploys it."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import onebit

REPO = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"\s*-?\s*([A-Za-z0-9_.-]+)==(\S+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_pip_install_never_asks_for_torch():
    """From PyPI a bare torch requirement is a CUDA build of several GB: the package's
    own dependencies leave torch to the user (an extra asks for it explicitly)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[ ;]", d)[0].lower() for d in project["dependencies"]]
    assert "torch" not in names and "torchvision" not in names
    for need in ("pandas", "pyarrow", "snakemake", "seaborn", "nbconvert", "tqdm", "papermill"):
        assert need in names, need
    assert all(re.search(r"[<>=]", d) for d in project["dependencies"])  # ranges, not bare names
    extras = project["optional-dependencies"]
    assert extras["torch"] == ["torch>=2.3"] and "jupyterlab>=4" in extras["notebook"]
    assert project["version"] == onebit.__version__ and project["requires-python"] == ">=3.11"
    assert (REPO / "LICENSE").exists() and project["license"] == "MIT"


def test_locks_cover_the_declared_dependencies():
    runtime, dev = pins(REPO / "envs/requirements.txt"), pins(REPO / "envs/requirements-dev.txt")
    assert runtime["torch"] == "2.13.0"  # the CPU build on disk; never a range here
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        assert re.split(r"[<>=!~\[ ;]", dep)[0].lower() in runtime, dep
    for dep in project["optional-dependencies"]["test"]:
        assert re.split(r"[<>=!~\[ ;]", dep)[0].lower() in dev, dep
    assert not set(runtime) & set(dev)  # dev adds tools only; it includes the runtime lock
    assert (REPO / "envs/requirements-dev.txt").read_text().count("-r requirements.txt") == 1


def test_conda_environment_is_self_contained():
    """Snakemake deploys envs/onebit.yaml by copying that file alone: no relative paths,
    and the same pins as the runtime lock."""
    env = yaml.safe_load((REPO / "envs/onebit.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not any(p.startswith(("-r", "-e", ".", "/")) for p in pip)
    assert pins(REPO / "envs/onebit.yaml") == pins(REPO / "envs/requirements.txt")


def test_light_modules_do_not_import_torch():
    """The grid, the report, the registries and the CLI's parser import without torch, so that
    Snakemake's parse, ``collect`` and the figures do not pay its seconds."""
    light = [
        "onebit",
        "onebit.grid",
        "onebit.config",
        "onebit.errors",
        "onebit.units",
        "onebit.methods",
        "onebit.models",
        "onebit.data",
        "onebit.report.claims",
        "onebit.report.tables",
        "onebit.report.text",
        "onebit.report.figures",
    ]
    code = (
        f"import sys\nfor m in {light!r}:\n    __import__(m)\n    assert 'torch' not in sys.modules, "
        "m + ' imported torch (a built-in method names its quantizers by Ref: docs/adding-a-method.md)'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_built_in_methods_name_their_callables_by_ref():
    """A built-in method written from docs/adding-a-method.md names its quantizers by
    ``Ref("module:name")``: a function passed directly would import torch with the registry."""
    import dataclasses

    from onebit.methods import METHODS
    from onebit.methods.base import Ref

    for name in METHODS:
        method = METHODS.get(name)
        if method.family == "plugin":
            continue
        for f in dataclasses.fields(method):
            value = getattr(method, f.name)
            if callable(value) and not isinstance(value, Ref):
                raise AssertionError(
                    f"built-in method {name!r}: field {f.name} is {value!r}, not a Ref; name it "
                    f"Ref('onebit.methods.quantizers:...') (docs/adding-a-method.md)"
                )
