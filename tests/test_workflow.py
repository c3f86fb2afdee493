"""The Snakemake pipeline end to end (smoke grid), the paper grid's job list, lint,
and the documented "add a method" path, each in a temporary copy of the workflow."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import chromium
from onebit.grid import GridError, jobs, load_grid
from onebit.report.claims import load_claims

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = ["workflow", "config", "profiles", "envs", "docs"]
needs_fashion = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="needs Fashion-MNIST (envs/setup.sh installs Debian's dataset-fashion-mnist)",
)


def snakemake(cwd, *args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    return d


@pytest.fixture(scope="module")
def smoke(workdir):
    proc = snakemake(workdir, "--cores", "2", "--config", "grid=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


@pytest.mark.slow
@needs_fashion
def test_smoke_grid_tidy_tables(smoke):
    metrics = pd.read_parquet(smoke / "results/smoke/metrics.parquet")
    assert {
        "row",
        "table",
        "method",
        "dataset",
        "width",
        "depth",
        "seed",
        "epoch",
        "split",
        "lr",
        "loss",
        "top1_err",
        "epoch_seconds",
        "images_per_s",
        "peak_mem_bytes",
    } <= set(metrics.columns)
    grid = load_grid(smoke / "config/grids/smoke.tsv")
    assert set(metrics["row"]) == set(grid["row"])
    summary = pd.read_csv(smoke / "results/smoke/summary.csv")
    assert {"row", "method", "test_err_mean", "test_err_std", "seeds", "paper_err", "diff_vs_paper"} <= set(summary)
    assert len(summary) == len(grid) and summary["test_err_mean"].between(0, 100).all()
    memory = pd.read_csv(smoke / "results/smoke/memory.csv")
    assert {"measurement", "method", "quantity", "kind", "bytes_per_image", "ratio_vs_fp32"} <= set(memory)
    r18 = memory[(memory["measurement"] == "resnet18-224") & (memory["quantity"] == "paper accounting")]
    assert (r18["paper_values_per_image"] == 1_831_936).all()
    totals = memory[memory["kind"] == "total"]
    for q in ("paper accounting", "autograd keeps", "step peak"):  # three measurements per method
        got = totals[totals["quantity"] == q].groupby("measurement")["method"].nunique()
        assert (got == memory.groupby("measurement")["method"].nunique()).all(), q
    assert (totals["step_ratio_vs_fp32"] > 0).all()
    wrn = totals[totals["measurement"] == "wrn-8-0.5-28"]
    assert (wrn["largest_batch"] >= 0).all() and (wrn["budget_bytes"] == 16 * 2**20).all()
    largest = wrn.groupby("method")["largest_batch"].first()
    assert largest["fp32"] >= 1 and largest["cl-strict"] > largest["fp32"]
    for name in ("error_curves", "error_vs_paper", "gap_vs_baseline", "memory_per_method"):
        assert (smoke / f"results/smoke/figures/{name}.png").stat().st_size > 10_000


@pytest.mark.slow
@needs_fashion
def test_smoke_grid_report_has_every_table(smoke):
    html = (smoke / "reports/smoke/report.html").read_text()
    titles = list(load_claims(REPO / "config/claims.yaml").tables.values()) + [
        "1 Claims: what this grid tested",
        "tested by this grid",
        "2 Results: training curves, final errors, gaps",
        "Gaps to 32-bit, paired per seed",
        "3 Memory kept for backward",
        "Same network, same budget",
        "4 Gradient fidelity",
        "5 Appendix",
        "Fashion-MNIST",
    ]
    for title in titles:
        assert title in html, title
    # smoke has rows of slide 16 and slide 18: both sections show what was reproduced
    assert html.count("test error % (mean ± sd)") >= 2
    assert html.count("data:image/png") >= 4 or html.count("image/png") >= 4
    assert "Traceback" not in html
    assert "<td>None</td>" not in html and "<td>nan</td>" not in html  # empty cells are empty


@pytest.mark.slow
@needs_fashion
def test_snakemake_report_with_captions(smoke):
    """Snakemake's own report as README writes it: in the grid's namespace, describing the
    workflow for that grid, every figure captioned."""
    proc = snakemake(smoke, "--config", "grid=smoke", "--report", "reports/smoke/snakemake-report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (smoke / "reports/smoke/snakemake-report.html").read_text()
    assert len(page) > 10_000
    assert "config/grids/smoke.tsv" in page and "error_curves.png" in page


@pytest.mark.slow
@needs_fashion
def test_rerun_does_nothing(smoke):
    proc = snakemake(smoke, "--cores", "2", "--config", "grid=smoke", "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_paper_grid_dry_run_lists_every_row(workdir):
    proc = snakemake(workdir, "-n", "--config", "grid=paper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    grid = load_grid(workdir / "config/grids/paper.tsv")
    for row, seed in jobs(grid):
        assert f"results/paper/runs/{row}/seed{seed}/final.json" in out, row
    for dataset in ("cifar10", "cifar100", "imagenet"):
        assert f"results/paper/data/{dataset}.json" in out
    assert "resnet18-224" in out


@pytest.mark.slow
def test_lint_and_format(workdir):
    proc = snakemake(workdir, "--lint")
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "workflow"], cwd=workdir, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stderr


def test_python_is_linted_and_formatted():
    """ruff's small rule set (pyflakes, pycodestyle, import order; line length 120, in
    pyproject.toml) and its formatter, over the package, the tests, the scripts and benchmarks."""
    paths = ["src", "tests", "workflow/scripts", "benchmarks", "docs/examples"]
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", *paths], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *paths], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_parsing_the_workflow_imports_no_torch(workdir):
    """What every job and every cluster job pays before it starts: the parse (all but a dry
    run, which builds each row's network to check it) imports no PyTorch."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "--list-rules", "--config", "grid=smoke"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "train" in proc.stdout, proc.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")]
    assert "snakemake" in imported and "onebit.grid" in imported
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def tree_digest(root: Path) -> dict:
    """sha256 of every file under ``root`` (byte-identity of a grid's results)."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@needs_fashion
def test_add_a_method_as_documented_leaves_other_grids_alone(smoke):
    """The documented example config (another grid, a plugin) runs into its own namespace:
    the smoke grid's results and report stay byte-identical and it plans nothing."""
    before = {d: tree_digest(smoke / d) for d in ("results/smoke", "reports/smoke")}
    proc = snakemake(smoke, "--cores", "2", "--configfile", "docs/examples/w1_cl_det.yaml")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = pd.read_csv(smoke / "results/w1_cl_det/summary.csv")
    assert "w1+cl-det" in set(summary["method"])
    assert "w1+cl-det" in set(pd.read_csv(smoke / "results/w1_cl_det/memory.csv")["method"])
    assert "w1+cl-det" in (smoke / "reports/w1_cl_det/report.html").read_text()
    assert "reports/w1_cl_det/report.html" in proc.stderr  # the report's path, printed at the end
    assert {d: tree_digest(smoke / d) for d in before} == before
    again = snakemake(smoke, "--cores", "2", "--config", "grid=smoke", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_documented_worked_example_is_the_registered_code():
    doc = (REPO / "docs/adding-a-method.md").read_text()
    blocks = [b.split("```")[0] for b in doc.split("```python\n")[1:]]
    quantizer, registration, plugin = blocks[:3]
    quantizers = (REPO / "src/onebit/methods/quantizers.py").read_text()
    assert "gaussian_binary" in quantizer and quantizer.strip() in quantizers
    assert "cl-gauss" in registration
    assert registration.strip() in (REPO / "src/onebit/methods/ablations.py").read_text()
    assert plugin.strip() in (REPO / "docs/examples/w1_cl_det.py").read_text()


def test_bad_grid_is_refused_before_any_job(workdir, tmp_path):
    bad = tmp_path / "bad.tsv"
    text = (workdir / "config/grids/smoke.tsv").read_text().replace("\tcl\t", "\tcl-typo\t")
    bad.write_text(text)
    proc = snakemake(workdir, "-n", "--config", "grid=bad", f"grids={{bad: {bad}}}")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "row 'smoke-cl', field 'method'" in out and "known methods" in out


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace("\tseeds\t", "\tseed\t"), "missing columns ['seeds']"),
        (lambda t: t.replace("runtime\n", "runtime\textra\n"), "unknown columns"),
        (lambda t: t.replace("smoke-w1\t", "smoke-fp32\t"), "duplicate row ids ['smoke-fp32']"),
        (lambda t: t.replace("\t8\t0.5\tw1\t", "\t9\t0.5\tw1\t"), "field 'depth': WRN depth must be 6n + 2"),
        (lambda t: t.replace("\t0.5\tcl\t1\t0\t", "\t0.5\tcl\t1\t0,x\t"), "field 'seeds'"),
        (lambda t: t.replace("\t0.5\tcl\t1\t", "\t-1\tcl\t1\t"), "field 'width': must be a finite positive float"),
        (lambda t: t.replace("fashion_mnist\twrn\t8\t0.5\tw1", "mnist\twrn\t8\t0.5\tw1"), "known datasets"),
    ],
)
def test_grid_errors_name_row_and_field(tmp_path, edit, message):
    path = tmp_path / "g.tsv"
    path.write_text(edit((REPO / "config/grids/smoke.tsv").read_text()))
    with pytest.raises(GridError) as e:
        load_grid(path)
    assert message in str(e.value)


def test_quick_grid_runs_every_registered_method():
    from onebit import list_methods

    grid = load_grid(REPO / "config/grids/quick.tsv")
    assert set(grid["method"]) == set(list_methods())
    assert grid["width"].nunique() >= 2 and all(len(s) >= 2 for s in grid["seeds"])


@pytest.mark.slow
def test_local_gpu_rows_need_a_gpu_limit(workdir):
    """Without --resources gpu=N, a local run of GPU rows would start as many GPU jobs
    as it has cores: refused before any job, saying what to add."""
    proc = snakemake(workdir, "--cores", "1", "--config", "grid=paper")
    assert proc.returncode != 0
    assert "--resources gpu=1" in proc.stderr and not (workdir / "results/paper/data").exists()


DDP = (
    "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset"
    "\ttest_subset\tgpus\n"
    "ddp\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t256\t128\t2\n"
)


@pytest.mark.slow
@needs_fashion
def test_row_of_two_gpus_runs_torchrun_through_the_rule(workdir, tmp_path):
    """gpus = 2 launches two processes through torchrun (here on the CPU, gloo), each
    taking half of the global batch."""
    grid = tmp_path / "ddp.tsv"
    grid.write_text(DDP)
    target = "results/ddp/runs/ddp/seed0/final.json"
    proc = snakemake(
        workdir,
        "--cores",
        "2",
        "--resources",
        "gpu=2",
        "--config",
        "grid=ddp",
        f"grids={{ddp: {grid}}}",
        "device=cpu",
        "--",
        target,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "onebit_launch 1 2 train" in proc.stdout + proc.stderr
    run = workdir / "results/ddp/runs/ddp/seed0"
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["images"] for m in lines] == [256, 128]  # both ranks' shards are counted
    assert [m["step"] for m in lines] == [8, 8]  # 256 / 32: the same steps as one process


GPU_ROW = (
    "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset"
    "\ttest_subset\tgpus\tcpus\n"
    "g\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t256\t128\t{gpus}\t{cpus}\n"
)


def test_threads_are_shared_among_a_jobs_processes(workdir, tmp_path):
    """A row of 2 GPUs and 8 CPUs runs two processes of 4 threads each (not 8 each), and
    tells each process how many GPUs its row was given."""
    grid = tmp_path / "g2.tsv"
    grid.write_text(GPU_ROW.format(gpus=2, cpus=8))
    proc = snakemake(
        workdir, "-n", "-p", "--cores", "8", "--resources", "gpu=2", "--config", "grid=g2", f"grids={{g2: {grid}}}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OMP_NUM_THREADS=4 ONEBIT_GPUS=2 ONEBIT_ROW=g onebit_launch 1 2 train" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_row_across_nodes_asks_slurm_for_one_torchrun_per_node_and_is_refused_locally(workdir, tmp_path):
    """nodes=2, gpus=4, cpus=16: one job of two nodes (--nodes=2, one task per node, 4 GPUs
    per node; the plugin's mpi path, so that the job's shell line runs srun itself), 4
    threads per process; on one machine the row is refused before any job, saying what to set."""
    grid = tmp_path / "n2.tsv"
    grid.write_text(
        GPU_ROW.format(gpus=4, cpus=16)
        .replace("\tcpus\n", "\tcpus\tnodes\tgpu_model\n")
        .replace("\t16\n", "\t16\t2\ta100\n")
    )
    args = ["--cores", "16", "--resources", "gpu=8", "--config", "grid=n2", f"grids={{n2: {grid}}}"]
    proc = snakemake(workdir, "-n", "-p", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "gpu=0, gres=, slurm_partition=, nodes=2, mpi=srun, tasks=2" in out, out
    assert "slurm_extra=--ntasks-per-node=1 --gpus-per-node=a100:4" in out, out
    assert "OMP_NUM_THREADS=4 ONEBIT_GPUS=4 ONEBIT_ROW=g onebit_launch 2 4 train" in out, out
    proc = snakemake(workdir, *args, "--", "results/n2/runs/g/seed0/final.json")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "row 'g' asks for 2 nodes, which only a cluster gives" in out, out
    assert not (workdir / "results/n2/runs").exists()


def test_max_runtime_caps_a_jobs_time_and_asks_for_the_stop_signal(workdir, tmp_path):
    """slurm.max_runtime caps the runtime resource (SLURM's --time); every training job asks
    for SIGUSR1 signal_seconds before its limit, then config slurm.extra and the row's
    slurm_extra; the row's GPU model, constraint and qos become resources (the sbatch lines
    themselves: tests/test_slurm.py)."""
    grid = tmp_path / "cap.tsv"
    grid.write_text(
        GPU_ROW.format(gpus=1, cpus=1).replace("\tcpus\n", "\tcpus\truntime\tgpu_model\tconstraint\tqos\tslurm_extra\n")
        .replace("\t1\t1\n", "\t1\t1\t3000\ta100\t80gb\tlong\t--mail-type=END\n")
    )  # fmt: skip
    slurm = "slurm={max_runtime: 1440, signal_seconds: 600, extra: --exclusive}"
    proc = snakemake(
        workdir, "-n", "--cores", "1", "--resources", "gpu=1", "--config", "grid=cap", f"grids={{cap: {grid}}}", slurm
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "runtime=1440" in out and "gpu_model=a100" in out and "constraint=80gb" in out and "qos=long" in out, out
    assert "slurm_extra=--signal=USR1@600 --exclusive --mail-type=END" in out, out


@pytest.mark.parametrize(
    "slurm, message",
    [
        ("{gres: 'gpu a100'}", "gres"),
        ("{cpu_partition: 'a;rm'}", "cpu_partition"),
        ("{gpu_type: a100}", "gpu_type"),
        ("{max_runtime: -5}", "max_runtime"),
        ("{max_runtime: 1h}", "max_runtime"),
        ("{signal_seconds: 70000}", "signal_seconds"),
        ("{extra: '--time=5'}", "slurm.extra"),
        ("{extra: '--exclusive; id'}", "slurm.extra"),
    ],
)
def test_a_malformed_slurm_setting_is_refused_before_any_job(workdir, slurm, message):
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", "grid=smoke", f"slurm={slurm}")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


@pytest.mark.slow
@needs_fashion
def test_gpu_row_never_trains_on_the_cpu(workdir, tmp_path):
    """A gpus=1 row run where PyTorch sees no GPU fails with the reason in its log and
    leaves no result; --config device=cpu trains it on the CPU on purpose."""
    if __import__("torch").cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    grid = tmp_path / "g1.tsv"
    grid.write_text(GPU_ROW.format(gpus=1, cpus=1))
    target = "results/g1/runs/g/seed0/final.json"
    args = ["--cores", "1", "--resources", "gpu=1", "--config", "grid=g1", f"grids={{g1: {grid}}}"]
    proc = snakemake(workdir, *args, "--", target)
    assert proc.returncode != 0
    log = (workdir / "results/g1/logs/train/g/seed0.log").read_text()
    assert "grid row 'g' asks for 1 GPU(s)" in log and "CPU-only build" in log and "device: cpu" in log
    assert not (workdir / "results/g1/runs/g/seed0").exists()
    proc = snakemake(workdir, *args, "device=cpu", "--", target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = json.loads((workdir / "results/g1/runs/g/seed0/env.json").read_text())
    assert env["device"] == "cpu"


@pytest.mark.slow
@needs_fashion
def test_stage_data_copies_a_jobs_dataset_to_the_node_and_removes_it(workdir, tmp_path):
    """config stage_data='$VAR' reaches every training job unexpanded and is expanded where
    the job runs: the dataset is read from a copy there, removed when the job ends; a
    relative folder (on the shared file system) is refused before any job."""
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", "grid=smoke", "stage_data=scratch")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config stage_data 'scratch'" in out and "shared file system" in out, out
    grid = tmp_path / "st.tsv"
    grid.write_text(GPU_ROW.format(gpus=0, cpus=1))
    local = tmp_path / "node-local"
    local.mkdir()
    args = ["--cores", "1", "--config", "grid=st", f"grids={{st: {grid}}}", "stage_data=$ONEBIT_TEST_NODE"]
    proc = snakemake(workdir, *args, "--", "results/st/runs/g/seed0/final.json", env={"ONEBIT_TEST_NODE": str(local)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (workdir / "results/st/logs/train/g/seed0.log").read_text()
    assert f"data staged to {local}/onebit-fashion_mnist-" in log and "4 files" in log, log
    assert list(local.iterdir()) == []


@pytest.mark.slow
@needs_fashion
def test_report_notebook_runs_from_the_repository_as_it_is(smoke, tmp_path):
    """Opened where it lies (workflow/notebooks/), the notebook finds the repository and
    a grid's results by its parameters cell alone, as in Jupyter."""
    out = tmp_path / "executed.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--cwd",
            str(smoke / "workflow/notebooks"),
            "workflow/notebooks/report.ipynb",
            str(out),
            "-p",
            "grid",
            "smoke",
        ],
        cwd=smoke,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "Same network, same budget" in text and "Traceback" not in text


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,4000",
]


@pytest.mark.slow
@needs_fashion
@pytest.mark.skipif(not chromium(), reason="no Chromium here (.ci/run installs Debian's chromium)")
def test_report_renders_with_no_empty_section_and_fits_the_window(smoke, tmp_path):
    """The report as a reader meets it: rendered by Chromium at 1400 pixels, it opens with
    the headline table, every section holds a table, a figure or text, nothing is wider
    than the window, and the screenshot is not blank."""
    import html as htmllib
    import re

    from matplotlib.image import imread

    page = tmp_path / "report.html"
    # a script that writes the page's width into the page, for --dump-dom to read back
    page.write_text(
        (smoke / "reports/smoke/report.html")
        .read_text()
        .replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const d = document.createElement('div');"
            " d.id = 'measured-width'; d.textContent = document.documentElement.scrollWidth;"
            " const t = document.getElementById('tally').getBoundingClientRect().bottom;"
            " d.dataset.tally = Math.round(t); document.body.appendChild(d); });</script></body>",
        )
    )
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    width = int(re.search(r'id="measured-width" data-tally="\d+">(\d+)<', dom).group(1))
    assert width <= 1400, f"the page is {width} pixels wide"
    # the first screen (1400 x 900) holds the tally of the claims this grid tested
    tally_bottom = int(re.search(r'data-tally="(\d+)"', dom).group(1))
    assert 0 < tally_bottom <= 900, f"the tally ends {tally_bottom} pixels down"
    tally = htmllib.unescape(re.sub(r"<[^>]+>", "", re.search(r'<p id="tally"[^>]*>(.*?)</p>', dom, re.S).group(1)))
    assert re.search(r"\d+ claims? tested by this grid: \d+ within tolerance · \d+ outside tolerance", tally), tally
    sections = re.split(r"<h2[^>]*>", dom)[1:]
    titles = [htmllib.unescape(re.sub(r"<[^>]+>", "", s.split("</h2>")[0])).strip() for s in sections]
    assert [t.split(" ")[0] for t in titles] == ["1", "2", "3", "4", "5"], titles
    assert titles[0].startswith("1 Claims"), titles
    for title, body in zip(titles, sections):
        content = body.split("</h2>", 1)[1]
        text = re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", content))).strip()
        assert "<table" in content or "<img" in content or len(text) > 80, f"section {title!r} is empty"
        assert "Traceback" not in text and "Error" not in text.split(" ")[:3], title
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180)
    pixels = imread(shot)
    assert pixels.shape[1] == 1400 and pixels[..., :3].std() > 0.05  # rendered, not blank


HOSTILE = "x y'\"$(touch INJECTED)`touch INJECTED`;touch INJECTED"
TINY = (
    "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset"
    "\ttest_subset\tmemory\n"
    "tiny\tbaseline\tfashion_mnist\twrn\t8\t0.25\tfp32\t1\t0\t64\t0\t128\t64\tm\n"
)


@pytest.mark.slow
@needs_fashion
def test_hostile_values_never_reach_a_shell(workdir, tmp_path):
    """Values that reach shell lines (the data folder, a plugin file's name) are quoted: a
    run with them completes and nothing is injected; those that cannot be made safe (row
    ids, grid names, devices, memory networks) are refused before any job."""
    import yaml

    grid = tmp_path / "tiny.tsv"
    grid.write_text(TINY)
    plugin = tmp_path / f"{HOSTILE}.py"
    plugin.write_text("# registers nothing\n")
    config = {
        "grid": "hostile",
        "grids": {"hostile": str(grid)},
        "data_root": f"data/{HOSTILE}",
        "plugins": [str(plugin)],
        "fidelity": {},
        "memory": {
            "hostile": {
                "m": {
                    "arch": "wrn",
                    "depth": 8,
                    "width": 0.25,
                    "image_size": 28,
                    "in_channels": 1,
                    "batch_size": 2,
                    "steps": 1,
                }
            }
        },
    }
    cfg = tmp_path / "hostile.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--cores", "2", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "reports/hostile/report.html").exists()
    data = json.loads((workdir / "results/hostile/data/fashion_mnist.json").read_text())
    assert data["data_root"].endswith(f"data/{HOSTILE}")  # reached onebit literally, whole
    refused = {
        "row id": {
            "grids": {"hostile": str(_write(tmp_path / "g.tsv", TINY.replace("tiny\t", "a$(touch INJECTED)\t")))}
        },
        "grid name": {"grid": "a;touch INJECTED", "grids": {"a;touch INJECTED": str(grid)}},
        "device": {"device": "cpu$(touch INJECTED)"},
        "memory network": {
            "memory": {"hostile": {"m": {"arch": "wrn;touch INJECTED", "image_size": 8, "batch_size": 2}}}
        },
    }
    for what, change in refused.items():
        bad = tmp_path / f"bad-{what.replace(' ', '-')}.yaml"
        bad.write_text(yaml.safe_dump({**config, **change}))
        proc = snakemake(workdir, "--cores", "2", "--configfile", str(bad))
        assert proc.returncode != 0, what
        assert "rule " not in proc.stdout + proc.stderr.split("Error")[0], what  # no job started
    assert not list(workdir.rglob("INJECTED")) and not list(tmp_path.rglob("INJECTED"))
    assert not Path("INJECTED").exists()


def _write(path, text):
    path.write_text(text)
    return path


@needs_fashion
@pytest.mark.slow
def test_workflow_runs_as_a_snakemake_module(workdir, tmp_path):
    """The workflow finds its own files from where it lives: a Snakefile elsewhere that uses it
    as a module runs the smoke grid to its report there."""
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{workdir}/config/config.yaml"\n\n\n'
        f'module onebit:\n    snakefile:\n        "{workdir}/workflow/Snakefile"\n    config:\n        config\n\n\n'
        "use rule * from onebit\n"
    )
    proc = snakemake(tmp_path, "--cores", "2", "--config", "grid=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = pd.read_csv(tmp_path / "results/smoke/summary.csv")
    assert len(summary) == len(load_grid(workdir / "config/grids/smoke.tsv"))
    assert (tmp_path / "reports/smoke/report.html").stat().st_size > 10_000


BAD_DEPTH = (
    "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\n"
    "bad\tbaseline\tfashion_mnist\twrn\t9\t0.5\tfp32\t1\t0\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("as_module", [False, True])
def test_a_row_whose_network_cannot_be_built_is_refused_before_any_job(workdir, tmp_path, as_module):
    """In a dry run, and where the workflow is used as a module (whose onstart handler
    Snakemake does not use), a row whose network cannot be built stops the run before any
    job, naming the row and field."""
    grid = tmp_path / "bad.tsv"
    grid.write_text(BAD_DEPTH)
    cwd = workdir
    if as_module:
        cwd = tmp_path / "user"
        cwd.mkdir()
        (cwd / "Snakefile").write_text(
            f'configfile: "{workdir}/config/config.yaml"\n\n\n'
            f'module onebit:\n    snakefile:\n        "{workdir}/workflow/Snakefile"\n    config:\n        config\n\n\n'
            "use rule * from onebit\n"
        )
    for dry in (["-n"], []):
        proc = snakemake(cwd, *dry, "--cores", "1", "--config", "grid=bad", f"grids={{bad: {grid}}}")
        assert proc.returncode != 0, proc.stdout[-2000:]
        assert "row 'bad', field 'depth': WRN depth must be 6n + 2" in proc.stdout + proc.stderr
        assert not (cwd / "results/bad").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="needs Fashion-MNIST (envs/setup.sh installs Debian's dataset-fashion-mnist)",
)
def test_killed_and_concurrent_pipeline(tmp_path):
    """A second invocation is refused while one runs; Snakemake SIGKILLed with its jobs;
    re-running completes only what was missing."""
    import shutil
    import time

    from test_workflow import REPO, WORKFLOW, snakemake

    for name in WORKFLOW:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "grid=smoke"]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("results/smoke/runs/*/*/final.json")) and time.time() < deadline:
            time.sleep(0.5)
        assert first.poll() is None, "the pipeline finished before it could be interrupted"
        second = snakemake(tmp_path, "--cores", "1", "--config", "grid=smoke")
        assert second.returncode != 0
        assert "cannot be locked" in second.stderr + second.stdout
        os.killpg(first.pid, signal.SIGKILL)  # Snakemake and every job it started
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    done = {
        p: (p.stat().st_mtime_ns, json.loads(p.read_text())) for p in tmp_path.glob("results/smoke/runs/*/*/final.json")
    }
    n_rows = len(list(tmp_path.glob("results/smoke/logs/train/*/*.log")))
    # the lock of a killed Snakemake stays: the message says how to remove it
    stale = snakemake(tmp_path, "--cores", "2", "--config", "grid=smoke")
    assert stale.returncode != 0 and "--unlock" in stale.stderr + stale.stdout
    assert snakemake(tmp_path, "--unlock", "--config", "grid=smoke").returncode == 0
    rerun = snakemake(tmp_path, "--cores", "2", "--config", "grid=smoke")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (tmp_path / "reports/smoke/report.html").exists()
    rerun_done = 0
    for p, (mtime, before) in done.items():  # finished runs are not retrained
        if p.stat().st_mtime_ns == mtime:
            continue
        # a job that finished as Snakemake was killed is unconfirmed: Snakemake runs it
        # again, and the trainer resumes from its last checkpoint without training an epoch
        rerun_done += 1
        run, seed = p.parent.parent.name, p.parent.name
        log = (tmp_path / "results/smoke/logs/train" / run / f"{seed}.log").read_text()
        assert f"after epoch {before['epochs']}" in log and " lr " not in log, log
        after = json.loads(p.read_text())
        assert {k: v for k, v in after.items() if k != "wall_seconds"} == {
            k: v for k, v in before.items() if k != "wall_seconds"
        }
    retrained = rerun.stderr.count("rule train:") + rerun.stdout.count("rule train:")
    total = len(list(tmp_path.glob("results/smoke/runs/*/*/final.json")))
    assert retrained == total - len(done) + rerun_done and len(done) >= 1 and n_rows >= 1
