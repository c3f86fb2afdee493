import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import cell
from onebit.cli import main


def test_memory_json(capsys):
    assert (
        main(
            [
                "memory",
                "--arch",
                "wrn",
                "--depth",
                "8",
                "--width",
                "1",
                "--image-size",
                "16",
                "--batch-size",
                "4",
                "--method",
                "fp32,cl-strict",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    rows = json.loads(out.out)  # progress goes to stderr (the memory job's log), not into the JSON
    assert [r["method"] for r in rows] == ["fp32", "cl-strict"]
    progress = out.err.splitlines()
    assert progress[1].endswith("memory: what autograd keeps, fp32 (1/2)")
    assert progress[2].endswith("memory: what autograd keeps, cl-strict (2/2)")
    assert "step time, step peak and largest batch of 2 methods" in progress[3]
    assert rows[0]["saved_ratio_vs_fp32"] == 1
    assert rows[1]["saved_ratio_vs_fp32"] > 10
    assert rows[1]["paper_bytes"] * 32 == rows[0]["paper_bytes"]


def test_memory_table(capsys):
    assert main(["memory", "--arch", "resnet18", "--image-size", "64", "--batch-size", "2", "--method", "cl"]) == 0
    out = capsys.readouterr().out
    assert "cl" in out and "autograd keeps" in out


def test_unknown_method_is_one_readable_line(capsys):
    assert main(["memory", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known methods:" in err and "cl-strict" in err and "fp32" in err


def test_version_and_methods(capsys):
    import pytest

    from onebit import __version__, list_methods

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"onebit {__version__}"
    assert main(["methods", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_methods())
    assert (rows["w1"]["weight_bits"], rows["w1"]["activation_bits"]) == (1, 32)
    assert (rows["cl"]["weight_bits"], rows["cl"]["activation_bits"]) == (32, 1)
    assert rows["act2"]["activation_bits"] == 2
    assert main(["methods"]) == 0
    assert "w1+cl" in capsys.readouterr().out


def test_debug_after_the_subcommand_shows_the_traceback(capsys):
    import pytest

    assert main(["memory", "--method", "nope"]) == 2  # one paragraph
    capsys.readouterr()
    with pytest.raises(KeyError):
        main(["memory", "--method", "nope", "--debug"])
    with pytest.raises(KeyError):
        main(["--debug", "memory", "--method", "nope"])


def test_long_options_are_not_abbreviated(capsys, tmp_path):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["train", "--epoch", "3", "--out", str(tmp_path / "r"), "--check"])
    assert e.value.code == 2 and "unrecognized arguments: --epoch" in capsys.readouterr().err


def test_entry_point_plugins_of_installed_packages(tmp_path, monkeypatch):
    """A package declaring [project.entry-points."onebit.methods"] registers its
    methods without being named anywhere."""

    from onebit import METHODS
    from onebit.plugins import load_plugins

    pkg = tmp_path / "site"
    (pkg / "my_onebit_methods").mkdir(parents=True)
    (pkg / "my_onebit_methods" / "__init__.py").write_text(
        "from onebit import Method, register_method\n"
        "register_method(Method('ep-test', 'registered through an entry point'))\n"
    )
    dist = pkg / "my_onebit_methods-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-onebit-methods\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[onebit.methods]\nmine = my_onebit_methods\n")
    monkeypatch.syspath_prepend(str(pkg))
    try:
        load_plugins("")
        assert "ep-test" in METHODS
    finally:
        METHODS.unregister("ep-test")
        sys.modules.pop("my_onebit_methods", None)


def test_python_dash_m_onebit_is_the_onebit_command():
    import sys

    proc = subprocess.run([sys.executable, "-m", "onebit", "methods"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "w1+cl" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "onebit", "frob"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage: onebit" in proc.stderr


@pytest.mark.parametrize(
    "arg",
    [
        "--crop-pad=-1",
        "--seed=18446744073709551616",
        "--device=tpu",
        "--cutout=-7",
        "--device=cuda",
        "--cutout-style=centre",
        "--lr-min=0.5",
    ],
)
def test_check_refuses_what_training_refuses(arg, tmp_path, capsys):
    """--check and training validate the same (the trainer's constructor): each of these
    was once accepted by --check and refused (or silently recorded) by training."""
    from onebit.cli import main
    from onebit.config import from_namespace
    from onebit.train import Trainer

    try:
        code = main(["train", "--out", str(tmp_path / "o"), "--check", arg])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    if arg in ("--device=cuda", "--lr-min=0.5"):  # parsed fine, refused by the trainer itself
        from onebit.cli import build_parser

        ns = build_parser().parse_args(["train", "--out", "o", arg.replace("0.5", "0.5"), "--lr-max", "0.1"])
        with pytest.raises(ValueError):
            Trainer(from_namespace(ns), tmp_path / "o")


BASE = {  # a small valid command per subcommand; the test changes one or two options
    "train": ["train", "--dataset", "fashion_mnist", "--depth", "8", "--width", "0.5", "--out", "o", "--check"],
    "memory": [
        "memory",
        "--arch",
        "wrn",
        "--depth",
        "8",
        "--width",
        "0.5",
        "--image-size",
        "8",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--method",
        "fp32",
        "--no-peak",
    ],
    "fidelity": [
        "fidelity",
        "--depth",
        "8",
        "--width",
        "0.25",
        "--image-size",
        "8",
        "--batch-size",
        "2",
        "--draws",
        "2",
        "--method",
        "cl",
    ],
    "data": ["data", "--dataset", "fashion_mnist"],
    "export": ["export"],
    "methods": ["methods"],
    "bench": ["bench", "--device", "cpu", "--parts", "check", "--method", "fp32"],
}


OPTIONS = {
    "train": [
        "--out",
        "--dataset",
        "--method",
        "--depth",
        "--width",
        "--seed",
        "--crop-pad",
        "--cutout",
        "--device",
        "--data-root",
        "--cutout-style",
        "--lr-min",
        "--workers",
        "--epochs",
    ],
    "memory": [
        "--output",
        "--arch",
        "--method",
        "--depth",
        "--width",
        "--image-size",
        "--batch-size",
        "--device",
        "--budget",
        "--max-batch",
        "--seed",
        "--steps",
        "--in-channels",
        "--num-classes",
    ],
    "fidelity": [
        "--output",
        "--checkpoint",
        "--dataset",
        "--data-root",
        "--method",
        "--depth",
        "--draws",
        "--seed",
        "--batch-size",
    ],
    "data": ["--output", "--dataset", "--data-root"],
    "export": ["-o", "CHECKPOINT"],
    "methods": ["--json"],
    "bench": ["--output", "--grid", "--method", "--parts", "--budget", "--device", "--train-dataset"],
}


def paths(tmp: Path) -> list[str]:
    (tmp / "dir").mkdir(exist_ok=True)
    (tmp / "file.txt").write_text("not what a command expects\n")
    (tmp / "empty.pt").write_bytes(b"")
    return [
        str(tmp / "dir"),
        str(tmp / "file.txt"),
        str(tmp / "empty.pt"),
        str(tmp / "missing" / "x.json"),
        "/proc/version",
        "/proc/onebit-unwritable.json",
        "",
        "x" * 300,
        str(tmp / "out.json"),
    ]


values = st.sampled_from(
    [
        "-1",
        "0",
        "x",
        "nan",
        "inf",
        "1e400",
        str(10**30),
        "2.5",
        "",
        "cuda",
        "cuda:7",
        "meta",
        "fp32",
        "nope",
        "wrn",
        "resnet18",
        "0x10",
        "a$(touch PWNED)",
        "1,2",
        "1e9",
        "9" * 25,
    ]
)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_subcommand_refuses_bad_input_with_one_paragraph(data, sandbox, capsys, monkeypatch):
    command = data.draw(st.sampled_from(sorted(BASE)))
    argv = list(BASE[command])
    pool = paths(sandbox)
    for opt in data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=2, unique=True)):
        value = data.draw(st.one_of(values, st.sampled_from(pool)))
        if opt == "CHECKPOINT":
            argv.insert(1, value)
        elif opt == "--json":
            argv.append(opt)
        else:
            argv += [f"{opt}={value}"]
    if command == "export" and len(argv) == 1 or (command == "export" and argv[1].startswith("-")):
        argv.insert(1, data.draw(st.sampled_from(pool)))
    env = data.draw(st.sampled_from([None] * 6 + ["nonexistent_plugin_module", str(sandbox / "missing.py"), "broken"]))
    if env == "broken":
        dataset_plugin = sandbox / "broken_plugin.py"
        dataset_plugin.write_text("raise RuntimeError('a dataset_plugin with a bug')\n")
        env = str(dataset_plugin)
    if env:
        monkeypatch.setenv("ONEBIT_PLUGINS", env)
    else:
        monkeypatch.delenv("ONEBIT_PLUGINS", raising=False)
    monkeypatch.delenv("ONEBIT_DEBUG", raising=False)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage and the option at fault
        code = e.code
    err = capsys.readouterr().err
    from hypothesis import event

    event(f"{command} exit {code}")
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2, 3, 4), (argv, code, err)
    if code:
        lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
        assert len(lines) == 1 and "error" in lines[0], (argv, err)  # one paragraph
    assert not (sandbox / "PWNED").exists()


TRAIN_OPTIONS = [
    "--dataset",
    "--arch",
    "--method",
    "--depth",
    "--width",
    "--epochs",
    "--seed",
    "--batch-size",
    "--lr-max",
    "--lr-min",
    "--momentum",
    "--weight-decay",
    "--t0",
    "--tmult",
    "--crop-pad",
    "--cutout",
    "--train-subset",
    "--test-subset",
    "--eval-batch-size",
    "--workers",
]


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), cell), max_size=5))
def test_any_train_arguments_run_or_are_refused_with_a_message(opts, tmp_path, capsys):
    argv = ["train", "--out", str(tmp_path / "o"), "--check"]
    for name, value in opts:
        argv += [f"{name}={value}"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage line and the option at fault
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:
        assert "error:" in err


@pytest.mark.parametrize(
    "arg,message",
    [
        ("--width=inf", "positive float"),
        ("--lr-max=nan", "positive float"),
        ("--momentum=1.5", "momentum"),
        ("--method=nope", "known methods"),
        ("--depth=9", "6n + 2"),
        ("--batch-size=0", "positive"),
        ("--dataset=nodata", "known"),
        ("--weight-decay=-1", "weight_decay"),
        ("--epochs=x", "epochs"),
    ],
)
def test_bad_train_arguments_are_named(arg, message, tmp_path, capsys):
    try:
        code = main(["train", "--out", str(tmp_path / "o"), "--check", arg])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_an_output_that_is_no_regular_file_or_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    """--output naming a FIFO, a character device or a link would be replaced by the atomic
    write (as root, /dev/null itself); a folder that takes no file (/proc) would fail only after
    the measurement. Each is refused first, in one paragraph, and left as it was."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "target.json"
    target.write_text("{}")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    for output, said in (
        (fifo, "not a regular file"),
        ("/dev/null", "not a regular file"),
        (link, "is a link"),
        ("/proc/onebit.json", "takes no new file"),
    ):
        assert main(["bench", "--device", "cpu", "--parts", "check", "--method", "fp32", "--output", str(output)]) == 2
        out = capsys.readouterr()
        assert said in out.err and out.err.count("\n") == 1, out.err
        assert "correctness" not in out.err + out.out  # nothing was measured
    assert fifo.is_fifo() and link.is_symlink() and target.read_text() == "{}"
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
