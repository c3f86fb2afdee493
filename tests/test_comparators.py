"""The memory-saving comparators: ``ckpt`` (activation checkpointing) and ``act2``
(ActNN-style 2-bit compression), against exact backprop."""

import pytest
import torch
import torch.nn.functional as F

from onebit import create_model
from onebit.measure.memory import measure
from onebit.ops.act2 import dequantize2, quantize2

KW = {"wrn": dict(depth=8, width=1), "resnet18": dict(num_classes=10)}
X = {"wrn": (8, 3, 16, 16), "resnet18": (4, 3, 64, 64)}


def grads(arch, method, ref, x):
    model = create_model(arch, method, **KW[arch])
    model.load_state_dict(ref.state_dict())
    F.cross_entropy(model(x), torch.arange(len(x)) % 10).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]), model


@pytest.mark.parametrize("arch", sorted(KW))
def test_ckpt_gradients_and_bn_statistics_equal_exact(arch):
    torch.manual_seed(0)
    ref = create_model(arch, "fp32", **KW[arch])
    x = torch.randn(*X[arch])
    g_ref, m_ref = grads(arch, "fp32", ref, x)
    g, m = grads(arch, "ckpt", ref, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    # the recomputation in backward must not update the running statistics again
    for (name, a), b in zip(m_ref.named_buffers(), m.buffers()):
        assert torch.equal(a, b), name


def test_act2_dequantization_is_unbiased():
    torch.manual_seed(0)
    x = torch.randn(2, 3000) * 3 + 1
    draws = 400
    mean = torch.stack([dequantize2(*quantize2(x)) for _ in range(draws)]).mean(0)
    scale = quantize2(x)[1][:, 1].max()  # rows of x are its channels
    # per-element rounding sd <= scale / 2: 5 standard errors of the mean
    assert (mean - x).abs().max() < 5 * 0.5 * scale / draws**0.5
    packed, stats, meta = quantize2(x)
    assert packed.dtype == torch.uint8 and packed.numel() <= x.numel() // 4 + 2 * 256
    y = torch.randn(4, 6, 5, 5)  # channels of very different scale stay apart
    y[:, 0] *= 1000
    back = torch.stack([dequantize2(*quantize2(y)) for _ in range(50)]).mean(0)
    assert back.shape == y.shape
    assert (back - y)[:, 1:].abs().max() < 1.0


def test_act2_gradient_converges_to_exact():
    """Tolerance: one draw is noisy (2 bits); the mean of 40 draws is within 0.15
    of the exact gradient (relative norm) and 3x closer than one draw."""
    torch.manual_seed(0)
    ref = create_model("wrn", "fp32", **KW["wrn"])
    x = torch.randn(*X["wrn"])
    exact, _ = grads("wrn", "fp32", ref, x)
    draws = [grads("wrn", "act2", ref, x)[0] for _ in range(40)]
    err1 = (draws[0] - exact).norm() / exact.norm()
    err40 = (torch.stack(draws).mean(0) - exact).norm() / exact.norm()
    print(f"act2 relative gradient error: 1 draw {err1:.3f}, mean of 40 {err40:.3f}")
    assert err40 < 0.15 and err40 < err1 / 3


def test_saved_bytes_of_the_comparators():
    x = torch.randn(8, 3, 32, 32)
    kept = {m: measure(create_model("wrn", m, depth=20, width=4), x).saved_bytes for m in ("fp32", "ckpt", "act2")}
    print({m: f"{kept['fp32'] / b:.1f}x" for m, b in kept.items()})
    assert kept["fp32"] / kept["act2"] > 8  # ActNN reports 12x at 2 bits
    assert kept["fp32"] / kept["ckpt"] > 2  # only block inputs kept


def test_paper_accounting_counts_act2_at_two_bits_and_ckpt_at_thirty_two():
    x = torch.randn(2, 3, 32, 32)
    paper = {
        m: measure(create_model("wrn", m, depth=8, width=1), x).paper_bytes for m in ("fp32", "ckpt", "act2", "cl")
    }
    assert paper["fp32"] == paper["ckpt"] == 16 * paper["act2"] == 32 * paper["cl"]
