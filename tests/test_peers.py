"""Peer methods (bc, bwn, xnor, bnn) and compressed-learning ablations (cl-det,
cl-gauss): forward values and gradients against hand-written references."""

import math

import pytest
import torch
import torch.nn.functional as F

from onebit import create_model, get_method
from onebit.measure.steps import make_optimizer, train_step
from onebit.methods.peers import clip_binary_weights
from onebit.models.layers import BNReLU, QConv2d


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
