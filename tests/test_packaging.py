"""Packaging: what pip installs, the locks, the conda environment as Snakemake deploys it."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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


@pytest.fixture
def setup_copy(tmp_path):
    """envs/setup.sh in a copy of the repository whose .venv is this one (dry runs only)."""
    (tmp_path / "envs").mkdir()
    for name in ("setup.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / "envs" / name, tmp_path / "envs" / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def setup_sh(root, *args, env=None):
    return subprocess.run(
        ["bash", str(root / "envs/setup.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="checks the CPU-only machine's behaviour")
def test_setup_installs_the_torch_build_asked_for(setup_copy):
    """`--torch cu126` on a machine that has the CPU build replaces it from PyTorch's CUDA
    index (a login node has no GPU: `auto` would install the CPU build); the summary names
    the build and the GPUs seen; the build asked for again changes nothing."""
    import torch

    if torch.version.cuda:
        pytest.skip("this environment has a CUDA build")
    proc = setup_sh(setup_copy, "--torch", "cu126", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "replacing PyTorch's cpu build with the cu126 build" in proc.stderr
    assert "--force-reinstall torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in proc.stdout
    assert f"PyTorch {torch.__version__}, CPU-only build; GPUs seen here: 0" in proc.stderr
    assert "next: .venv/bin/snakemake" in proc.stderr
    proc = setup_sh(setup_copy, "--dry-run", env={"ONEBIT_TORCH": "cpu"})
    assert proc.returncode == 0, proc.stderr
    assert "reinstall" not in proc.stdout and "index-url" not in proc.stdout
    assert "envs/setup.sh --torch cu126" in proc.stderr  # what a GPU user does next


@pytest.mark.parametrize(
    "args", [["--torch", "cuda12"], ["--torch"], ["--gpu"], ["--torch", "rocm."], ["--torch", "rocm6..4"]]
)
def test_setup_refuses_a_build_it_does_not_know(setup_copy, args):
    proc = setup_sh(setup_copy, *args, "--dry-run")
    assert proc.returncode == 2
    assert "usage: bash envs/setup.sh" in proc.stderr or "Nothing was installed" in proc.stderr
    assert "would run" not in proc.stdout


@pytest.mark.slow
def test_setup_keeps_the_installed_torch_when_the_index_fails(setup_copy):
    """A CUDA build that cannot be downloaded (no route to PyTorch's index here) leaves the
    installed build in place and says where the builds are listed."""
    import urllib.request

    try:
        urllib.request.urlopen("https://download.pytorch.org/whl/", timeout=5)
        pytest.skip("PyTorch's index is reachable: this would download a CUDA build")
    except OSError:
        pass
    import torch

    if torch.version.cuda:
        pytest.skip("this environment has a CUDA build")
    # pip without this machine's local wheel folders, so that nothing can be installed
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "3", "PIP_FIND_LINKS": None}
    proc = setup_sh(setup_copy, "--torch", "cu126", env=env)
    assert proc.returncode == 1
    assert "could not install torch==2.13.0 from https://download.pytorch.org/whl/cu126" in proc.stderr
    assert "left as it was (cpu)" in proc.stderr
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda)"], capture_output=True)
    assert check.stdout.strip() == b"None"
