"""onebit.rundir: what an --out folder may be, and what a damaged one says."""

import os

from helpers import tiny_cfg
from onebit.train import train


def test_train_refuses_an_out_that_is_not_a_run_and_keeps_it(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    common = [
        "train",
        "--dataset",
        "tiny_fashion",
        "--data-root",
        str(tiny_fashion),
        "--depth",
        "8",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--epochs",
        "1",
    ]
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    afile = tmp_path / "notes.txt"
    afile.write_text("notes")
    for out, says in ((folder, "not part of a onebit run"), (afile, "is a file")):
        for check in ([], ["--check"]):
            assert main([*common, *check, "--out", str(out)]) == 2
            assert says in capsys.readouterr().err
    assert (folder / "chapter1.tex").read_text() == "years of work" and sorted(os.listdir(folder)) == ["chapter1.tex"]
    assert afile.read_text() == "notes"


def test_a_damaged_config_json_is_named_not_overwritten(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    run = tmp_path / "run"
    train(tiny_cfg(tiny_fashion, epochs=1), run, log=lambda *_: None)
    (run / "final.json").unlink()
    (run / "config.json").write_text("{ half a json")
    args = [
        "train",
        "--dataset",
        "tiny_fashion",
        "--data-root",
        str(tiny_fashion),
        "--depth",
        "8",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--lr-max",
        "0.05",
        "--out",
        str(run),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'} is damaged" in err and (run / "config.json").read_text() == "{ half a json"
