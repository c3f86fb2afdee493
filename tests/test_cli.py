import json

from onebit.cli import main


def test_memory_json(capsys):
    assert main(["memory", "--arch", "wrn", "--depth", "8", "--width", "1", "--image-size", "16",
                 "--batch-size", "4", "--method", "fp32,cl-strict", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == ["fp32", "cl-strict"]
    assert rows[0]["saved_ratio_vs_fp32"] == 1
    assert rows[1]["saved_ratio_vs_fp32"] > 10
    assert rows[1]["paper_bytes"] * 32 == rows[0]["paper_bytes"]


def test_memory_table(capsys):
    assert main(["memory", "--arch", "resnet18", "--image-size", "64", "--batch-size", "2",
                 "--method", "cl"]) == 0
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
    import sys

    from onebit import METHODS
    from onebit.plugins import load_plugins

    pkg = tmp_path / "site"
    (pkg / "my_onebit_methods").mkdir(parents=True)
    (pkg / "my_onebit_methods" / "__init__.py").write_text(
        "from onebit import Method, register_method\n"
        "register_method(Method('ep-test', 'registered through an entry point'))\n")
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
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "onebit", "methods"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "w1+cl" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "onebit", "frob"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage: onebit" in proc.stderr
