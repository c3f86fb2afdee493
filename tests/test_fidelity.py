"""Gradient fidelity: reproducible for a fixed seed, exact where it must be, and it
tells a stochastic copy from a deterministic threshold."""

import pytest
import torch

from onebit import create_model
from onebit.cli import main
from onebit.measure.fidelity import gradient_fidelity, same_forward_methods


def run(methods, draws=6, seed=0, width=0.5):
    torch.manual_seed(123)
    x = torch.rand(16, 1, 16, 16)
    y = torch.randint(0, 10, (16,))
    return gradient_fidelity(
        lambda m: create_model("wrn", m, depth=8, width=width, in_channels=1), methods, x, y, draws=draws, seed=seed
    )


def by(rows, method, key):
    return [r[key] for r in rows if r["method"] == method]


def test_same_forward_methods_are_the_approximate_gradient_ones():
    names = same_forward_methods()
    assert {"cl", "cl-strict", "cl-det", "cl-gauss", "act2", "ckpt"} <= set(names)
    assert not {"fp32", "w1", "bc", "bwn", "xnor", "bnn", "w1+cl"} & set(names)


def test_reproducible_for_a_fixed_seed_and_different_for_another():
    a, b = run(["cl", "act2"]), run(["cl", "act2"])
    assert a == b
    c = run(["cl", "act2"], seed=1)
    assert by(c, "cl", "std") != by(a, "cl", "std")


def test_exact_and_deterministic_methods():
    rows = run(["ckpt", "cl-det"])
    assert max(by(rows, "ckpt", "bias") + by(rows, "ckpt", "std")) < 1e-6  # exact control
    assert max(by(rows, "cl-det", "std")) == 0  # no noise, so no spread
    assert max(by(rows, "cl-det", "bias")) > 0.05  # ... but a bias
    first = [r for r in rows if r["index"] == 0]
    assert all(r["bias"] < 1e-6 for r in first)  # the first conv's input is kept exact


@pytest.mark.slow
def test_measured_bias_of_a_stochastic_copy_falls_with_draws_deterministic_does_not():
    """The bias seen with D draws is about sqrt(b^2 + s^2 / D): its noise part falls
    with D. (b itself is not zero for cl: 1[A + u > 1] clips activations above 1.)"""
    few, many = run(["cl", "cl-det"], draws=4), run(["cl", "cl-det"], draws=32)
    for f, m in zip(by(few, "cl", "bias")[1:], by(many, "cl", "bias")[1:]):
        assert m < f
    assert by(many, "cl-det", "bias") == pytest.approx(by(few, "cl-det", "bias"))


def test_cli_refuses_a_method_that_changes_the_forward(capsys, tmp_path):
    assert main(["fidelity", "--method", "w1", "--width", "0.25", "--draws", "2"]) == 2
    assert "changes the forward pass" in capsys.readouterr().err
    out = tmp_path / "f.json"
    assert (
        main(
            [
                "fidelity",
                "--method",
                "cl",
                "--width",
                "0.25",
                "--draws",
                "2",
                "--image-size",
                "16",
                "--batch-size",
                "4",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert '"method": "cl"' in out.read_text()
    progress = capsys.readouterr().err  # the fidelity job's log says what it measures
    assert "fidelity: 1 method x 2 draws, batch of 4" in progress and "fidelity: cl (1/1), 2 draws" in progress
