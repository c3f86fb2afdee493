"""The official code's recipe details, each against a hand-computed reference: cutout,
test-time BN statistics, momentum at restarts, the shortcut's average pool, which layers
of the peers stay at 32 bits, and [P]'s ImageNet network."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from onebit import create_model
from onebit.bnstats import reestimate
from onebit.config import TrainConfig
from onebit.data.loaders import augment
from onebit.ops.functional import AvgPoolPad
from onebit.schedule import is_cycle_end


def cutout_coverage(style, n=40_000, size=8, patch=3, seed=0):
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    gen = torch.Generator().manual_seed(seed)
    out = augment(x, gen, pad=0, flip=False, cutout=patch, cutout_style=style)
    # a cut pixel holds a fill value; the official fill is random 0-255, so a 0 is a cut pixel
    # with probability 1/256: count by a second run filled over ones instead
    ones = augment(
        torch.full_like(x, 1), torch.Generator().manual_seed(seed), pad=0, flip=False, cutout=patch, cutout_style=style
    )
    cut = (out != 0) | (ones != 1)
    return cut.float().mean(0)[0], out


def test_official_cutout_covers_every_pixel_equally_often():
    """MATLAB draws the patch's corner in 2-P .. 32 (1-indexed): each axis covers a pixel in
    P of the H + P - 1 positions, so every pixel is cut in (P / (H + P - 1))^2 of the images."""
    freq, out = cutout_coverage("official")
    expected = (3 / (8 + 3 - 1)) ** 2  # 0.09
    assert torch.allclose(freq, torch.full_like(freq, expected), atol=0.006)
    fill = out[out != 0].float()
    assert fill.min() >= 1 and fill.max() == 255 and abs(fill.mean().item() - 128) < 2  # uniform 1..255 here


def test_devries_cutout_is_centred_and_zero():
    """The centre uniform over the image: a middle pixel is cut in (P/H)^2 of the images, a
    corner pixel only when the centre falls within P//2 of it, (2/8)^2."""
    x = torch.full((40_000, 1, 8, 8), 7, dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=False, cutout=3, cutout_style="devries")
    freq = (out == 0).float().mean(0)[0]
    assert set(out.unique().tolist()) == {0, 7}
    assert abs(freq[4, 4].item() - (3 / 8) ** 2) < 0.006 and abs(freq[0, 0].item() - (2 / 8) ** 2) < 0.006


def test_bn_statistics_are_the_average_of_batch_moments():
    """running_mean = mean of the batch means; sqrt(running_var + eps) = mean of the batch
    sigmas sqrt(var_b + eps), biased variances (MatConvNet's moments)."""
    bn = torch.nn.BatchNorm2d(2, eps=1e-5)
    model = torch.nn.Sequential(bn)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 2, 3, 3, generator=g) * (i + 1) + i, None) for i in range(3)]
    bn.num_batches_tracked.fill_(11)
    assert reestimate(model, batches) == 3
    means = torch.stack([x.mean((0, 2, 3)) for x, _ in batches])
    sigmas = torch.stack([(x.var((0, 2, 3), unbiased=False) + 1e-5).sqrt() for x, _ in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose((bn.running_var + 1e-5).sqrt(), sigmas.mean(0), atol=1e-6)
    assert bn.num_batches_tracked.item() == 11


def test_trainer_reestimates_at_the_end_of_each_cycle(tiny_fashion, tmp_path):
    import json

    from onebit.train import train

    cfg = TrainConfig(
        dataset="tiny_fashion", depth=8, width=0.25, batch_size=32, epochs=4, crop_pad=0, data_root=str(tiny_fashion)
    )
    train(cfg, tmp_path / "r", log=lambda *_: None)
    test = [
        json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines() if '"test"' in line
    ]
    # cycles of 1 and 2 epochs end after epochs 1 and 3; the last epoch (4) is measured so too
    assert [m["bn_stats"] for m in test] == ["reestimated", "running", "reestimated", "reestimated"]
    assert [is_cycle_end(e, 1, 2) for e in range(1, 8)] == [True, False, True, False, False, False, True]
    assert [e for e in range(1, 31) if is_cycle_end(e, 2, 2)] == [2, 6, 14, 30]


def test_official_defaults():
    cfg = TrainConfig()
    assert cfg.momentum_reset and cfg.bn_reestimate and not cfg.pool_count_pad
    assert cfg.cutout_style == "official" and cfg.lr_min == 1e-5 and cfg.crop_pad == 4


@pytest.mark.parametrize("count_pad", [False, True])
def test_shortcut_average_pool(count_pad):
    """On a 4x4 image of ones, windows at the top and left edge hold 4 or 6 pixels inside
    the image: dividing by those (the official code) gives 1 everywhere; dividing by 9
    gives 4/9 in the corner and 6/9 on the edges. Gradients match autograd's."""
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    y = AvgPoolPad.apply(x, 2, count_pad)
    expected = torch.tensor([[4 / 9, 6 / 9], [6 / 9, 1.0]]) if count_pad else torch.ones(2, 2)
    assert torch.allclose(y[0, 0], expected) and torch.equal(y[0, 1], torch.zeros(2, 2))
    g = torch.randn(1, 2, 2, 2)
    (gx,) = torch.autograd.grad(y, x, g)
    x2 = x.detach().clone().requires_grad_()
    ref = F.avg_pool2d(x2, 3, 2, 1, count_include_pad=count_pad)
    (gref,) = torch.autograd.grad(ref, x2, g[:, :1])
    assert torch.allclose(gx, gref)


def test_wrn_uses_the_official_pool_unless_asked():
    x = torch.ones(1, 16, 8, 8)
    blocks = create_model("wrn", depth=8, width=1).blocks
    assert blocks[1].downsample and blocks[1].pool_count_pad is False
    assert create_model("wrn", depth=8, width=1, pool_count_pad=True).blocks[1].pool_count_pad
    assert x.shape == (1, 16, 8, 8)


@pytest.mark.parametrize(
    "method,fp_ends", [("bc", False), ("bnn", False), ("bwn", True), ("xnor", True), ("w1", False)]
)
def test_peers_keep_the_layers_their_papers_keep(method, fp_ends):
    """BinaryConnect and BNN binarize every layer (their code); XNOR-Net and BWN keep the
    first and the last at 32 bits, the last one's input a real activation."""
    m = create_model("wrn", method, depth=8, width=1)
    assert (
        m.conv_in.weight_quantizer is None and m.conv_head.weight_quantizer is None
        if fp_ends
        else m.conv_in.weight_quantizer is not None and m.conv_head.weight_quantizer is not None
    )
    assert m.blocks[0].conv1.weight_quantizer is not None
    if method in ("xnor", "bnn"):
        assert m.bn_head.binary_act is (not fp_ends) and m.blocks[0].bn1.binary_act


def test_imagenet_wrn_18_2_5_golden_conv_weight_count():
    """[P] Table 2's "18-2.5": a 7x7 stem 3 -> 160, stages of 160 / 320 / 640 / 1280 channels
    with 2 blocks each, a 1x1 conv 1280 -> 1000:
    7*7*3*160 + 4*9*160^2 + (9*160*320 + 3*9*320^2) + (9*320*640 + 3*9*640^2)
    + (9*640*1280 + 3*9*1280^2) + 1280*1000 = 69,962,720 ("70.0M")."""
    expected = (
        7 * 7 * 3 * 160
        + 4 * 9 * 160**2
        + 9 * 160 * 320
        + 3 * 9 * 320**2
        + 9 * 320 * 640
        + 3 * 9 * 640**2
        + 9 * 640 * 1280
        + 3 * 9 * 1280**2
        + 1280 * 1000
    )
    assert expected == 69_962_720
    with torch.device("meta"):
        m = create_model("wrn_imagenet", "w1", depth=18, width=2.5, num_classes=1000)
    assert sum(c.weight.numel() for c in m.modules() if isinstance(c, torch.nn.Conv2d)) == expected
    assert math.isclose(expected / 8 / 2**20, 8.34, abs_tol=0.01)  # one bit per weight: "8.3 MB"


def test_imagenet_wrn_runs_and_rejects_a_three_stage_depth():
    m = create_model("wrn_imagenet", "w1+cl", depth=10, width=0.25, num_classes=7)
    out = m(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (2, 7)
    with pytest.raises(ValueError, match="8n \\+ 2"):
        create_model("wrn_imagenet", depth=20, width=1)


def test_report_shows_a_grids_own_table_with_what_each_row_changes():
    """A grid's own table (e.g. recipe.tsv's ``recipe``) gets a section: each row against the
    first row of its method, the run fields it changes and the difference in error."""
    import json

    import pandas as pd

    from onebit.report import text as reporting

    base = {"arch": "wrn", "depth": 8, "width": 2.0, "cutout": 0, "cutout_style": "official", "momentum_reset": True}
    rows = [
        ("a-official", "fp32", {}, 21.25),
        ("a-no-reset", "fp32", {"momentum_reset": False}, 20.8),
        ("b-official", "w1", {}, 23.5),
        ("a-cutout", "fp32", {"cutout": 14, "cutout_style": "devries"}, 23.0),
        ("paper-row", "w1", {}, 5.0),
    ]
    summary = pd.DataFrame(
        [
            {
                "row": r,
                "method": m,
                "table": "slide16" if r == "paper-row" else "recipe",
                "dataset": "fashion_mnist",
                "arch": "wrn",
                "depth": 8,
                "width": 2.0,
                "epochs": 3,
                "recipe": json.dumps({**base, **change}),
                "test_err_mean": err,
                "test_err_std": 0.1,
                "seeds": 2,
            }
            for r, m, change, err in rows
        ]
    )
    from onebit.report.claims import load_claims

    got = reporting.other_tables(summary, load_claims(Path(__file__).parents[1] / "config" / "published.tsv"))
    assert list(got) == ["recipe"]  # paper tables have their own sections
    t = got["recipe"].set_index("row")
    assert list(t.index) == ["a-official", "a-no-reset", "b-official", "a-cutout"]
    assert t.loc["a-official", "changed against the first row of its method"] == "(the reference of its method)"
    assert t.loc["a-no-reset", "changed against the first row of its method"] == "momentum_reset = False"
    assert t.loc["a-no-reset", "error difference"] == "-0.45"
    assert t.loc["b-official", "error difference"] == ""  # the first w1 row: its own reference
    assert t.loc["a-cutout", "changed against the first row of its method"] == "cutout = 14, cutout_style = devries"
    assert t.loc["a-cutout", "error difference"] == "+1.75"
