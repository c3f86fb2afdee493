"""onebit.methods: the peer methods (bc, bwn, xnor, bnn) and compressed-learning ablations
(cl-det, cl-gauss) against hand-written forward values and gradients, and the memory-saving
comparators ``ckpt`` (activation checkpointing) and ``act2`` (ActNN-style 2-bit compression)
against exact backprop."""

import math

import pytest
import torch
import torch.nn.functional as F

from onebit import create_model, get_method
from onebit.measure.memory import measure
from onebit.measure.steps import make_optimizer, train_step
from onebit.methods.peers import clip_binary_weights
from onebit.models.layers import BNReLU, QConv2d
from onebit.ops.act2 import dequantize2, quantize2


def ste_sign(x):
    """sign (sign(0) = +1) with the hard-tanh straight-through gradient, by hand."""
    hard = x.clamp(-1, 1)
    return hard + (torch.where(x >= 0, 1.0, -1.0) - hard).detach()


def conv_pair(method, w):
    conv = QConv2d(3, 4, 3, 1, 1, method=method)
    with torch.no_grad():
        conv.weight.copy_(w)
    return conv


def weights():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * 0.7  # some |W| > 1: the gate matters
    assert (w.abs() > 1).any()
    return w


@pytest.mark.parametrize(
    "method,reference",
    [
        ("bc", lambda w: ste_sign(w)),
        ("bwn", lambda w: w.abs().mean((1, 2, 3), keepdim=True) * ste_sign(w)),
    ],
)
def test_binary_weights_forward_and_gradient(method, reference):
    w = weights()
    x = torch.randn(2, 3, 8, 8)
    conv = conv_pair(method, w)
    out = conv(x)
    w_ref = w.clone().requires_grad_()
    ref = F.conv2d(x, reference(w_ref), None, 1, 1)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad)
    if method == "bc":  # gated: no gradient where |W| > 1
        assert (conv.weight.grad[w.abs() > 1] == 0).all()


def test_bwn_gradient_is_the_xnor_net_formula():
    """d(alpha sign W)/dW_i = alpha 1[|W_i| <= 1] g_i + sign(W_i) / n * sum_j g_j sign(W_j)."""
    w = weights()
    conv = conv_pair("bwn", w)
    x = torch.randn(2, 3, 8, 8)
    out = conv(x)
    g = torch.randn_like(out)
    out.backward(g)
    gw_hat = torch.nn.grad.conv2d_weight(x, w.shape, g, 1, 1)
    n = w[0].numel()
    alpha = w.abs().mean((1, 2, 3), keepdim=True)
    s = torch.where(w >= 0, 1.0, -1.0)
    expected = alpha * (w.abs() <= 1) * gw_hat + s / n * (gw_hat * s).sum((1, 2, 3), keepdim=True)
    torch.testing.assert_close(conv.weight.grad, expected)


@pytest.mark.parametrize("method", ["xnor", "bnn"])
def test_binary_activation_unit_matches_reference(method):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8, requires_grad=True) * 1.5
    x.retain_grad()
    w = weights()
    bn = BNReLU(3, method=method)
    conv = conv_pair(method, w)
    out = conv(bn(x))

    xr = x.detach().clone().requires_grad_()
    w_ref = w.clone().requires_grad_()
    y = F.batch_norm(xr, None, None, training=True)
    if method == "xnor":
        wq = w_ref.abs().mean((1, 2, 3), keepdim=True) * ste_sign(w_ref)
        k = F.avg_pool2d(y.abs().mean(1, keepdim=True), 3, 1, 1, count_include_pad=True)
        ref = F.conv2d(ste_sign(y), wq, None, 1, 1) * k
    else:
        ref = F.conv2d(ste_sign(y), ste_sign(w_ref), None, 1, 1)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad)
    torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("method", ["bc", "bnn"])
def test_binary_connect_clips_weights_after_each_step(method):
    torch.manual_seed(0)
    net = create_model("wrn", method, depth=8, width=1)
    opt = make_optimizer(net)
    for group in opt.param_groups:
        group["lr"] = 50.0  # pushes weights far outside [-1, 1]
    train_step(net, opt, torch.randn(8, 3, 16, 16), torch.arange(8))
    convs = [m for m in net.modules() if isinstance(m, QConv2d)]
    assert all(m.weight.abs().max() <= 1 for m in convs)
    assert get_method(method).after_step is clip_binary_weights


def test_bwn_and_fp32_weights_are_not_clipped():
    torch.manual_seed(0)
    for method in ("bwn", "fp32"):
        net = create_model("wrn", method, depth=8, width=1)
        opt = make_optimizer(net)
        for group in opt.param_groups:
            group["lr"] = 50.0
        train_step(net, opt, torch.randn(8, 3, 16, 16), torch.arange(8))
        assert max(m.weight.abs().max() for m in net.modules() if isinstance(m, QConv2d)) > 1


def test_cl_det_keeps_the_deterministic_threshold():
    from onebit.methods.quantizers import deterministic_binary

    a = torch.tensor([0.0, 0.2, 0.5, 0.51, 0.9, 3.0])
    assert deterministic_binary(a).tolist() == [False, False, False, True, True, True]
    # the weight gradient of a cl-det conv is the conv weight gradient at 1[A > 0.5]
    torch.manual_seed(0)
    a = torch.rand(2, 3, 8, 8, requires_grad=True)
    conv = QConv2d(3, 4, 3, 1, 1, method="cl-det")
    from onebit.models.layers import compress

    out = conv(compress(a, get_method("cl-det")))
    g = torch.randn_like(out)
    out.backward(g)
    expected = torch.nn.grad.conv2d_weight((a > 0.5).float(), conv.weight.shape, g, 1, 1)
    torch.testing.assert_close(conv.weight.grad, expected)


def test_cl_gauss_probability_is_the_normal_cdf():
    from onebit.methods.quantizers import gaussian_binary

    torch.manual_seed(0)
    a = torch.tensor([0.1, 0.3, 0.5, 0.7, 1.2]).repeat(200_000, 1)
    p = gaussian_binary(a).float().mean(0)
    expected = [0.5 * (1 + math.erf((v - 0.5) * math.sqrt(12) / math.sqrt(2))) for v in (0.1, 0.3, 0.5, 0.7, 1.2)]
    torch.testing.assert_close(p, torch.tensor(expected), atol=4e-3, rtol=0)


# ------------------------------------------------------------------ comparators
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
