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
