"""Packed 1-bit export: round trip and file size."""

import pytest
import torch

from onebit import create_model, export_packed, get_method, list_methods, load_packed
from onebit.cli import main
from onebit.runio import save_checkpoint


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


@pytest.mark.parametrize("kw", [dict(depth=8, width=1), dict(depth=8, width=1, fp32_first_last=True),
                                dict(depth=8, width=0.5, in_channels=1, bn_affine=True)])
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
