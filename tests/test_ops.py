"""onebit.ops and the layers built on them: forward values and gradients of the Functions
(bit packing, compressed learning, the shortcut pool, the strict BN-ReLU) against
hand-written references."""

import math

import pytest
import torch
import torch.nn.functional as F

from onebit.methods.quantizers import stochastic_binary
from onebit.models.layers import BNReLU, QConv2d, QLinear
from onebit.ops.bits import pack_bits, unpack_bits
from onebit.ops.functional import AvgPoolPad, CompactMaxPool, MaskReLU, StrictBNReLU


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5, 7), (2, 16, 4, 4)])
def test_pack_bits_round_trip_and_size(shape):
    mask = torch.rand(shape) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(mask.numel() / 8)
    assert torch.equal(unpack_bits(packed, shape, torch.bool), mask)


def test_w1_forward_and_identity_straight_through():
    torch.manual_seed(0)
    conv = QConv2d(6, 5, 3, 1, 1, method="w1")
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    c = math.sqrt(2 / (3 * 3 * 6))
    w_hat = (c * torch.sign(conv.weight)).detach().requires_grad_()
    ref = F.conv2d(x, w_hat, padding=1)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    ref.backward(g)
    gx_ref = x.grad.clone()
    x.grad = None
    out.backward(g)
    # dL/dW := dL/dW_hat: not scaled by c, not clipped
    torch.testing.assert_close(conv.weight.grad, w_hat.grad)
    torch.testing.assert_close(x.grad, gx_ref)


def test_w1_linear_matches_reference():
    torch.manual_seed(1)
    fc = QLinear(12, 4, method="w1")
    x = torch.rand(3, 12)
    w_hat = (math.sqrt(2 / 12) * torch.sign(fc.weight)).detach().requires_grad_()
    ref = F.linear(x, w_hat, fc.bias)
    out = fc(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(fc.weight.grad, w_hat.grad)


def test_stochastic_binary_is_unbiased_below_one():
    torch.manual_seed(0)
    a = torch.linspace(0, 2, 101)
    draws = 20_000
    mean = stochastic_binary(a.expand(draws, -1)).float().mean(0)
    # standard error <= 0.5 / sqrt(draws) = 0.0035
    torch.testing.assert_close(mean, a.clamp(max=1), atol=0.02, rtol=0)
    assert not stochastic_binary(torch.zeros(1000)).any()


def _cl_conv_grads(a, w, g, draws):
    conv = QConv2d(w.shape[1], w.shape[0], 3, 1, 1, method="cl")
    conv.weight.data.copy_(w)
    gw = torch.zeros_like(w)
    for _ in range(draws):
        conv.weight.grad = None
        a_leaf = a.clone().requires_grad_()
        act = torch.nn.Identity()(a_leaf)
        from onebit.models.layers import compress

        out = conv(compress(act, conv.method))
        out.backward(g)
        gw += conv.weight.grad
    return gw / draws, a_leaf.grad


def test_cl_gradients_input_exact_weight_unbiased_below_one():
    torch.manual_seed(0)
    a = torch.rand(4, 3, 6, 6)  # A <= 1: the estimate is unbiased
    w = torch.randn(5, 3, 3, 3)
    g = torch.randn(4, 5, 6, 6)
    a_ref = a.clone().requires_grad_()
    w_ref = w.clone().requires_grad_()
    F.conv2d(a_ref, w_ref, padding=1).backward(g)
    gw1, ga = _cl_conv_grads(a, w, g, 1)
    torch.testing.assert_close(ga, a_ref.grad)  # input gradient exact
    gw_many, _ = _cl_conv_grads(a, w, g, 1000)
    err1 = (gw1 - w_ref.grad).norm() / w_ref.grad.norm()
    err_many = (gw_many - w_ref.grad).norm() / w_ref.grad.norm()
    print(f"relative weight-gradient error: 1 draw {err1:.3f}, mean of 1000 draws {err_many:.4f}")
    assert err1 > 0.05  # a single draw is noisy ...
    assert err_many < err1 / 10 and err_many < 0.03  # ... and the average converges


def test_cl_conv_keeps_only_packed_bits():
    conv = QConv2d(8, 4, 3, 1, 1, method="cl")
    a = torch.rand(2, 8, 8, 8, requires_grad=True)
    from onebit.models.layers import compress

    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        conv(compress(a * 1, conv.method))
    kept = [t for t in saved if t.untyped_storage().data_ptr() != conv.weight.untyped_storage().data_ptr()]
    assert [(t.dtype, t.numel()) for t in kept] == [(torch.uint8, a.numel() // 8)]


def test_mask_relu_exact():
    x = torch.randn(3, 4, 5, requires_grad=True)
    y = MaskReLU.apply(x)
    torch.testing.assert_close(y, F.relu(x))
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * (x > 0))


@pytest.mark.parametrize("count_pad", [False, True])
def test_avg_pool_pad_matches_reference(count_pad):
    x = torch.randn(2, 3, 7, 6, dtype=torch.double, requires_grad=True)
    pooled = F.avg_pool2d(x, 3, 2, 1, count_include_pad=count_pad)
    ref = torch.cat([pooled, torch.zeros(2, 3, 4, 3, dtype=torch.double)], 1)
    torch.testing.assert_close(AvgPoolPad.apply(x, 6, count_pad), ref)
    assert torch.autograd.gradcheck(lambda t: AvgPoolPad.apply(t, 6, count_pad), (x,))


def test_compact_max_pool_matches_stock():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 10, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, ref = CompactMaxPool.apply(x), F.max_pool2d(x2, 3, 2, 1)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad)


def _bn(c, affine, seed=0):
    torch.manual_seed(seed)
    bn = torch.nn.BatchNorm2d(c, affine=affine)
    if affine:
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    return bn


@pytest.mark.parametrize("affine", [False, True])
def test_strict_forward_and_running_stats_equal_stock(affine):
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    r = torch.randn(4, 3, 5, 5)
    unit = BNReLU(3, method="cl-strict", affine=affine)
    ref = _bn(3, affine)
    if affine:
        unit.weight.data.copy_(ref.weight.data)
        unit.bias.data.copy_(ref.bias.data)
    a = unit(x.requires_grad_(), residual=r).a
    torch.testing.assert_close(a, F.relu(ref(x) + r))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(unit, name), getattr(ref, name))


@pytest.mark.parametrize("affine", [False, True])
def test_strict_backward_is_exact_when_one_bit_determines_the_activation(affine):
    """Each channel of x takes two values, each on exactly half of its elements, so
    x_hat = +-1 and A in {0, 1}: A_q = A (up to P ~ 1e-6 from BN's eps), and the
    conditional means reconstruct x_hat exactly. The strict gradients must then
    equal exact backprop."""
    torch.manual_seed(0)
    n, c = 8, 4
    half = torch.tensor([1.0, -1.0]).repeat_interleave(n * 9 // 2)
    signs = torch.stack([half[torch.randperm(n * 9)] for _ in range(c)], 1).view(n, 3, 3, c)
    x = signs.permute(0, 3, 1, 2) * 3 + torch.arange(c).view(1, -1, 1, 1)
    conv_w = torch.randn(5, c, 3, 3)

    def run(method):
        unit = BNReLU(c, method=method, affine=affine)
        if affine:  # scale 1 keeps A in {0, 1}; offset 0
            unit.weight.data.fill_(1.0)
        conv = QConv2d(c, 5, 3, 1, 1, method=method)
        conv.weight.data.copy_(conv_w)
        xl = x.clone().requires_grad_()
        out = conv(unit(xl))
        out.backward(torch.randn_like(out, generator=torch.Generator().manual_seed(1)))
        return xl.grad, conv.weight.grad, unit.weight.grad if affine else None

    for got, want in zip(run("cl-strict"), run("fp32")):
        if want is not None:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_strict_backward_matches_hand_written_formula():
    torch.manual_seed(0)
    n, c, h = 6, 3, 4
    x = torch.randn(n, c, h, h, requires_grad=True)
    xs = torch.randn(n, c, h, h, requires_grad=True)
    r = torch.randn(n, c, h, h, requires_grad=True)
    bn, bns = _bn(c, True, 1), _bn(c, True, 2)
    a, aq = StrictBNReLU.apply(stochastic_binary, r, bn, x, bn.weight, bn.bias, bns, xs, bns.weight, bns.bias)
    g = torch.randn_like(a)
    a.backward(g)

    # reference, written from the docstring's definitions
    bit = unpack_bits(aq, a.shape)
    dims = (0, 2, 3)
    ch = lambda v: v.view(1, -1, 1, 1)  # noqa: E731

    def xhat_of(t):
        var, mean = torch.var_mean(t.detach(), dims, correction=0)
        return (t.detach() - ch(mean)) / ch(torch.sqrt(var + 1e-5)), 1 / torch.sqrt(var + 1e-5)

    xh, inv = xhat_of(x)
    xhs, invs = xhat_of(xs)
    z = xh * ch(bn.weight) + ch(bn.bias) + xhs * ch(bns.weight) + ch(bns.bias) + r.detach()
    assert torch.equal(bit.bool() & (z <= 0), torch.zeros_like(bit, dtype=torch.bool))
    off = 1 - bit
    p0 = ((z > 0).float() * off).sum(dims) / off.sum(dims)
    gz = g * (bit + off * ch(p0))
    torch.testing.assert_close(r.grad, gz)
    for t, t_hat, t_inv, mod in ((x, xh, inv, bn), (xs, xhs, invs, bns)):
        m1 = (t_hat * bit).sum(dims) / bit.sum(dims)
        m0 = (t_hat * off).sum(dims) / off.sum(dims)
        rec = bit * ch(m1) + off * ch(m0)
        gxh = gz * ch(mod.weight)
        gx = ch(t_inv) * (gxh - gxh.mean(dims, keepdim=True) - rec * (gxh * rec).mean(dims, keepdim=True))
        torch.testing.assert_close(t.grad, gx, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mod.weight.grad, (gz * rec).sum(dims), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mod.bias.grad, gz.sum(dims))


def test_pack_bits_channels_last_round_trip():
    mask = torch.rand(3, 5, 4, 7) > 0.5
    nhwc = mask.contiguous(memory_format=torch.channels_last)
    from onebit.ops.bits import is_channels_last

    assert is_channels_last(nhwc) and not is_channels_last(mask)
    out = unpack_bits(pack_bits(nhwc), mask.shape, torch.float32, channels_last=True)
    assert torch.equal(out, mask.float()) and is_channels_last(out)


@pytest.mark.parametrize("method", ["w1", "cl", "cl-strict", "act2"])
def test_channels_last_gives_the_same_step(method, monkeypatch):
    """The same network, seed and batch in NCHW and NHWC layouts: same gradients. The
    uniform draws are fixed (random draws follow memory order, not logical order)."""
    from onebit import create_model

    monkeypatch.setattr(torch, "rand_like", lambda t: torch.full_like(t, 0.37))
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        net = create_model("wrn", method, depth=8, width=1).to(memory_format=fmt)
        x = torch.randn(4, 3, 16, 16).contiguous(memory_format=fmt)
        torch.manual_seed(1)
        F.cross_entropy(net(x), torch.arange(4)).backward()
        grads.append([p.grad for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_unpack_batch_slice_is_the_slice_of_the_whole(fmt):
    from onebit.ops.bits import is_channels_last, unpack_batch_slice

    mask = (torch.rand(7, 8, 5, 3) > 0.5).contiguous(memory_format=fmt)
    nhwc = is_channels_last(mask)
    packed = pack_bits(mask)
    for start, stop in [(0, 7), (2, 5), (6, 7)]:
        got = unpack_batch_slice(packed, mask.shape, start, stop, torch.float32, nhwc)
        assert torch.equal(got, mask[start:stop].float()) and is_channels_last(got) == nhwc
    with pytest.raises(ValueError, match="whole bytes"):
        unpack_batch_slice(pack_bits(torch.ones(4, 3, 1, 1)), (4, 3, 1, 1), 0, 2)


@pytest.mark.parametrize("method", ["cl", "cl-strict", "w1+cl", "cl-gauss"])
def test_conv_backward_in_batch_slices_gives_the_whole_batch_gradients(method, monkeypatch):
    """Compressed learning runs the convolution backward a batch slice at a time (a
    lower peak): the same gradients as in one piece, for even and uneven slices."""
    import onebit.ops.functional as fn
    from onebit import create_model

    grads = {}
    for slices in (1, 4, 3):
        monkeypatch.setattr(fn, "CONV_BACKWARD_SLICES", slices)
        torch.manual_seed(0)
        net = create_model("wrn", method, depth=8, width=1)
        x = torch.randn(10, 3, 16, 16)
        torch.manual_seed(1)
        F.cross_entropy(net(x), torch.arange(10)).backward()
        grads[slices] = [p.grad for p in net.parameters()]
    assert fn._batch_slices((10, 16, 8, 8)) == [(0, 4), (4, 8), (8, 10)]  # 3 slices of ceil(10/3)
    for s in (4, 3):
        for a, b in zip(grads[1], grads[s]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_binarize_in_slices_draws_the_same_bits_and_counts_agree(fmt):
    from onebit.methods.quantizers import deterministic_binary
    from onebit.ops.functional import _channel_count, binarize_in_slices

    a = (torch.rand(12, 5, 6, 6) * 1.5).contiguous(memory_format=fmt)
    for f in (stochastic_binary, deterministic_binary):
        torch.manual_seed(3)
        whole = f(a)
        torch.manual_seed(3)
        sliced = binarize_in_slices(f, a)
        assert sliced.dtype == torch.bool and torch.equal(sliced, whole)
    bit = stochastic_binary(a)
    relu = torch.relu(a - 0.5)
    assert torch.equal(_channel_count(bit), bit.sum((0, 2, 3)).float())
    assert torch.equal(_channel_count(relu, where_not=bit), ((relu > 0) & ~bit).sum((0, 2, 3)).float())
