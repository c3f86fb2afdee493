"""Packed 1-bit export: round trip and file size."""

import os

import pytest
import torch

from helpers import corrupt, tiny_cfg
from onebit import create_model, export_packed, get_method, list_methods, load_packed
from onebit.cli import main
from onebit.runio import (
    save_checkpoint,
)
from onebit.train import train


def trained(method="w1", **kw):
    torch.manual_seed(0)
    model = create_model("wrn", method, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(8, kw.get("in_channels", 3), 16, 16)
    for _ in range(2):  # moves weights and BN running statistics away from their init
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 10).backward()
        opt.step()
    return model.eval(), x


@pytest.mark.parametrize(
    "kw",
    [
        dict(depth=8, width=1),
        dict(depth=8, width=1, fp32_first_last=True),
        dict(depth=8, width=0.5, in_channels=1, bn_affine=True),
    ],
)
def test_round_trip_gives_identical_eval_outputs(tmp_path, kw):
    model, x = trained(**kw)
    export_packed(model, tmp_path / "m.onebit")
    loaded = load_packed(tmp_path / "m.onebit")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_resnet18_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", "w1+cl", num_classes=10).eval()
    export_packed(model, tmp_path / "r.onebit")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_packed(tmp_path / "r.onebit")(x), model(x))


def test_wrn_20_10_packs_to_about_3_4_megabytes(tmp_path):
    size = export_packed(create_model("wrn", "w1", depth=20, width=10), tmp_path / "m.onebit")
    print(f"WRN-20-10 packed: {size:,} bytes")
    assert 3.3e6 <= size <= 3.5e6


def test_fp32_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to pack"):
        export_packed(create_model("wrn", "fp32", depth=8, width=1), tmp_path / "m.onebit")


def test_export_command(tmp_path, capsys):
    model, x = trained(depth=8, width=1)
    save_checkpoint({"config": model.onebit_config, "model": model.state_dict()}, tmp_path / "checkpoint.pt")
    assert main(["export", str(tmp_path / "checkpoint.pt")]) == 0
    assert "bytes" in capsys.readouterr().out
    with torch.no_grad():
        assert torch.equal(load_packed(tmp_path / "checkpoint.onebit")(x), model(x))


def test_export_command_explains_bad_input(tmp_path, capsys):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "broken.pt")]) == 2
    assert main(["export", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "truncated or not a onebit checkpoint" in err and "does not exist" in err
    with pytest.raises(ValueError, match="not a onebit packed model"):
        load_packed(tmp_path / "broken.pt")


@pytest.mark.parametrize("method", [m for m in list_methods() if get_method(m).weight_bits == 1])
def test_every_one_bit_method_exports(tmp_path, method):
    torch.manual_seed(0)
    model = create_model("wrn", method, depth=8, width=1).eval()
    export_packed(model, tmp_path / "m.onebit")
    x = torch.randn(2, 3, 16, 16)
    out, ref = load_packed(tmp_path / "m.onebit")(x), model(x)
    assert torch.equal(out, ref)


def test_export_refuses_a_corrupt_checkpoint_with_a_fix(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=2), tmp_path / "r", log=lambda *_: None)
    corrupt(tmp_path / "r" / "checkpoint.pt", "flipped")
    assert main(["export", str(tmp_path / "r" / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert "corrupted" in err and "checkpoint.pt.prev" in err and "Traceback" not in err


def test_export_never_overwrites_its_input(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=2), tmp_path / "r", log=lambda *_: None)
    ck = tmp_path / "r" / "checkpoint.pt"
    before = ck.read_bytes()
    for out, says in (
        (ck, "also an input"),
        (tmp_path / "r" / "checkpoint.pt.prev", "also an input"),
        (tmp_path / "r", "is a folder"),
    ):
        assert main(["export", str(ck), "-o", str(out)]) == 2
        assert says in capsys.readouterr().err
    assert ck.read_bytes() == before


def test_outputs_never_overwrite_a_plugin_file(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=1), tmp_path / "r", log=lambda *_: None)
    plugin = tmp_path / "my_method.py"
    plugin.write_text("X = 1  # a user's plugin\n")
    assert main(["--plugins", str(plugin), "export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(plugin)]) == 2
    assert "also an input" in capsys.readouterr().err and plugin.read_text() == "X = 1  # a user's plugin\n"


def test_export_writes_atomically_with_the_usual_file_mode(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=1), tmp_path / "r", log=lambda *_: None)
    old = os.umask(0o022)
    try:
        out = tmp_path / "packed" / "model.pt"  # a missing folder is created
        assert main(["export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644 and os.listdir(out.parent) == ["model.pt"]
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(tmp_path / "afile" / "m.pt")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
