"""A real training step measured: allocator peak, step time, largest batch in a budget."""

import pytest
import torch

from onebit import create_model
from onebit.measure.memory import measure
from onebit.measure.steps import _cpu_peak, benchmark, largest_batch, make_optimizer, parse_bytes, step_peak, train_step


def test_cpu_peak_is_the_allocators_running_maximum():
    def three_then_one():
        held = [torch.empty(1_000_000) for _ in range(3)]  # 12 MB at once
        del held
        torch.empty(2_000_000)  # 8 MB, freed at once

    peak = _cpu_peak(three_then_one)
    assert 12_000_000 <= peak < 12_000_000 + 4096


@pytest.mark.parametrize("answer", [0, 1, 7, 8, 9, 100, 1023, 4096])
@pytest.mark.parametrize("guess", [1, 8, 300])
def test_largest_batch_finds_the_boundary(answer, guess):
    probes = []

    def fits(b):
        probes.append(b)
        return b <= answer

    assert largest_batch(fits, guess=guess, limit=4096) == answer
    assert len(probes) <= 2 * 13 + 2  # doubling then bisection: logarithmic
    assert all(1 <= b <= 4096 for b in probes)


def test_parse_bytes():
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("2e9") == 2_000_000_000
    for bad in ["", "12 parsecs", "-1MB", "0"]:
        with pytest.raises(ValueError, match="byte size"):
            parse_bytes(bad)


def _peak(method, batch=16):
    torch.manual_seed(0)
    model = create_model("wrn", method, depth=8, width=2)
    opt = make_optimizer(model)
    x, y = torch.randn(batch, 3, 32, 32), torch.zeros(batch, dtype=torch.long)
    train_step(model, opt, x, y)
    return model, x, step_peak(model, opt, x, y)


def test_step_peak_bounds_what_autograd_keeps_and_the_gradients():
    model, x, peak = _peak("fp32")
    kept = measure(model, x).saved_bytes
    grads = sum(p.numel() * 4 for p in model.parameters())
    assert peak >= kept  # all saved tensors are alive at the end of the forward pass
    assert peak >= grads
    assert peak < 3 * (kept + grads)


def test_step_peak_grows_with_batch_and_cl_strict_lowers_it():
    p8, p16, p32 = (_peak("fp32", b)[2] for b in (8, 16, 32))
    assert p8 < p16 < p32
    assert abs((p32 - p16) - 2 * (p16 - p8)) < 0.15 * (p32 - p16)  # affine in the batch size
    assert _peak("cl-strict", 32)[2] < 0.75 * p32


def test_benchmark_reports_every_quantity():
    out = benchmark(
        lambda m: create_model("wrn", m, depth=8, width=1),
        ["fp32", "cl-strict"],
        4,
        (3, 16, 16),
        10,
        steps=2,
        budget=8 * 2**20,
        max_batch=256,
    )
    for m in ("fp32", "cl-strict"):
        r = out[m]
        assert r["peak_bytes"] > 0 and r["state_bytes"] > 0 and r["step_seconds"] > 0
        assert 1 <= r["largest_batch"] <= 256 and r["batch_probes"] >= 2
    assert out["cl-strict"]["largest_batch"] >= out["fp32"]["largest_batch"]
