"""Registry, golden parameter counts, and every model x method building and training."""

import pytest
import torch

import onebit
from onebit import UnknownNameError, create_model, list_methods, list_models

SMALL = {"wrn": dict(depth=8, width=0.5), "resnet18": dict(num_classes=7)}
SHAPE = {"wrn": (4, 3, 16, 16), "resnet18": (2, 3, 64, 64)}


def conv_weights(model):
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_registries_list_names():
    assert {"wrn", "resnet18"} <= set(list_models())
    assert {"fp32", "w1", "cl", "cl-strict", "w1+cl"} <= set(list_methods())


@pytest.mark.parametrize("lookup", [lambda: create_model("vgg"), lambda: create_model("wrn", "w2")])
def test_unknown_names_list_the_known_ones(lookup):
    with pytest.raises(UnknownNameError) as e:
        lookup()
    msg = str(e.value)
    assert "known" in msg and ("wrn" in msg or "cl-strict" in msg)


@pytest.mark.parametrize(
    "depth,width,classes,expected",
    [(20, 4, 10, 4_280_512), (20, 4, 100, 4_303_552), (20, 10, 10, 26_737_120), (20, 10, 100, 26_794_720)],
)
def test_wrn_golden_conv_weight_counts(depth, width, classes, expected):
    model = create_model("wrn", "w1", depth=depth, width=width, num_classes=classes)
    assert conv_weights(model) == expected


def test_resnet18_golden_parameter_count():
    assert sum(p.numel() for p in create_model("resnet18").parameters()) == 11_689_512


def test_wrn_architecture_details():
    m = create_model("wrn", depth=20, width=4)
    assert m.conv_in.out_channels == 64 and m.conv_in.bias is None
    assert m.bn_in.affine and not m.bn_head.affine and not m.bn_out.affine
    assert all(not b.bn1.affine for b in m.blocks)
    assert len(m.blocks) == 9 and m.conv_head.kernel_size == (1, 1)
    assert create_model("wrn", depth=20, width=4, bn_affine=True).bn_head.affine


@pytest.mark.parametrize("depth", [7, 21, 2, "20"])
def test_wrn_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match="6n"):
        create_model("wrn", depth=depth, width=1)


def test_wrn_takes_28x28_single_channel():
    model = create_model("wrn", "w1+cl", depth=8, width=1, in_channels=1)
    out = model(torch.randn(3, 1, 28, 28))
    out.sum().backward()
    assert out.shape == (3, 10)


def test_fp32_first_last_flag():
    m = create_model("wrn", "w1", depth=8, width=1, fp32_first_last=True)
    assert m.conv_in.weight_quantizer is None and m.conv_head.weight_quantizer is None
    assert m.blocks[0].conv1.weight_quantizer is not None
    r = create_model("resnet18", "w1", fp32_first_last=True)
    assert r.conv1.weight_quantizer is None and r.fc.weight_quantizer is None


@pytest.mark.parametrize("arch", sorted(SMALL))
@pytest.mark.parametrize("method", list_methods())
def test_every_model_and_method_trains(arch, method):
    torch.manual_seed(0)
    model = create_model(arch, method, **SMALL[arch])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(*SHAPE[arch])
    y = torch.randint(0, 7, (x.shape[0],))
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert torch.isfinite(loss)
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_state_dict_moves_between_methods(arch):
    ref = create_model(arch, "fp32", **SMALL[arch])
    keys = list(ref.state_dict())
    x = torch.rand(*SHAPE[arch])
    ref.eval()
    for method in list_methods():
        other = create_model(arch, method, **SMALL[arch])
        assert list(other.state_dict()) == keys
        other.load_state_dict(ref.state_dict())
        other.eval()
        if onebit.get_method(method).weight_quantizer is None:  # same forward weights
            torch.testing.assert_close(other(x), ref(x))


def test_width_that_gives_no_channels_is_a_config_error():
    from onebit import create_model
    from onebit.config import ConfigError

    with pytest.raises(ConfigError, match="0 channels"):
        create_model("wrn", "fp32", depth=8, width=0.01)
    assert create_model("wrn", "fp32", depth=8, width=1 / 16) is not None  # the smallest width that works
