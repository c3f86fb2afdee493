"""McDonnell's "depth-width" wide ResNets ([P] 3.1 and appendix A; SPEC.md 2).

Pre-activation; every weight layer is BN -> ReLU -> conv without bias.

* ``wrn`` (CIFAR): first conv 3x3 to 16k channels; stages of 16k / 32k / 64k
  channels with n = (depth - 2) / 6 blocks.
* ``wrn_imagenet`` ([P] Table 2, "18-2.5"): first conv 7x7, stride 2, to 64k
  channels and a 3x3/2 max pool (as He et al.); stages of 64k / 128k / 256k / 512k
  channels with n = (depth - 2) / 8 blocks: 18-2.5 has 160 / 320 / 640 / 1280
  channels and 69,962,720 conv weights for 1000 classes.

Both: downsampling shortcut = 3x3/2 average pool (dividing by the pixels inside the
image, as the official code) + zero channels; head BN -> ReLU -> 1x1 conv -> BN ->
global average pool. BN has no learned scale/offset (``bn_affine=False``, CIFAR)
except the input BN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError
from ..methods import get_method
from ..ops.functional import AvgPoolPad, CompactMaxPool
from .layers import BNReLU, QConv2d, method_scope, run_block


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, method, bn_affine: bool, pool_count_pad: bool):
        super().__init__()
        self.bn1 = BNReLU(c_in, method=method, affine=bn_affine)
        self.conv1 = QConv2d(c_in, c_out, 3, stride, 1, method=method)
        self.bn2 = BNReLU(c_out, method=method, affine=bn_affine)
        self.conv2 = QConv2d(c_out, c_out, 3, 1, 1, method=method)
        self.c_out = c_out
        self.downsample = stride != 1 or c_in != c_out
        self.pool_count_pad = pool_count_pad
        self.method = get_method(method)

    def _forward(self, x: Tensor) -> Tensor:
        h = self.conv2(self.bn2(self.conv1(self.bn1(x))))
        return h + (AvgPoolPad.apply(x, self.c_out, self.pool_count_pad) if self.downsample else x)

    def forward(self, x: Tensor) -> Tensor:
        return run_block(self, self._forward, x)


class WRN(nn.Module):
    """``stages`` of ``base * width * 2**i`` channels; ``stem``: "cifar" (3x3 conv) or
    "imagenet" (7x7/2 conv and 3x3/2 max pool)."""

    def __init__(
        self,
        depth: int = 20,
        width: float = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        method="fp32",
        bn_affine: bool = False,
        fp32_first_last: bool = False,
        pool_count_pad: bool = False,
        stages: int = 3,
        base: int = 16,
        stem: str = "cifar",
    ):
        super().__init__()
        per_block = 2 * stages
        if not isinstance(depth, int) or depth < per_block + 2 or (depth - 2) % per_block:
            first = [per_block * n + 2 for n in (1, 2, 3, 4)]
            raise ConfigError(
                f"WRN depth must be {per_block}n + 2 with n >= 1 ({', '.join(map(str, first))}, ...), got {depth!r}",
                "depth",
            )
        if not width > 0:
            raise ConfigError(f"WRN width must be positive, got {width!r}", "width")
        self.method = method = get_method(method)
        # a method may keep the first and last layers at 32 bits by its own definition
        # (XNOR-Net, BWN); the last layer's input then stays a real activation too
        fp_ends = fp32_first_last or method.fp32_first_last
        n = (depth - 2) // per_block
        widths = [int(round(base * 2**i * width)) for i in range(stages)]
        if widths[0] < 1:
            raise ConfigError(
                f"WRN width {width!r} gives {base} x {width!r} = 0 channels in the first stage; "
                f"use a width of at least {1 / base:g}",
                "width",
            )
        self.stem = stem
        self.bn_in = nn.BatchNorm2d(in_channels)  # learned scale/offset: it normalises raw pixels
        k, s, p = (7, 2, 3) if stem == "imagenet" else (3, 1, 1)
        self.conv_in = QConv2d(in_channels, widths[0], k, s, p, method=method, quantize_weight=not fp_ends)
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Block(c, w, stride, method, bn_affine, pool_count_pad))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.bn_head = BNReLU(c, method=method, affine=bn_affine, binary_act=method.binary_act and not fp_ends)
        self.conv_head = QConv2d(c, num_classes, 1, method=method, quantize_weight=not fp_ends)
        self.bn_out = nn.BatchNorm2d(num_classes, affine=bn_affine)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):  # He-normal, fan-in ([P] 3.1)
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")

    def _pool(self, h: Tensor) -> Tensor:
        m = self.method
        if (m.compressed or m.mask_relu) and h.requires_grad:  # keeps uint8 positions, not h
            return CompactMaxPool.apply(h)
        return F.max_pool2d(h, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        with method_scope(self.method, self):
            h = self.conv_in(self.bn_in(x))
            if self.stem == "imagenet":
                h = self._pool(h)
            h = self.blocks(h)
            h = self.bn_out(self.conv_head(self.bn_head(h)))
            return h.mean((2, 3))


def wrn(depth: int = 20, width: float = 10, num_classes: int = 10, in_channels: int = 3, **kwargs) -> WRN:
    """Wide ResNet "depth-width" of McDonnell [P]; e.g. WRN-20-10."""
    return WRN(depth, width, num_classes, in_channels, **kwargs)


def wrn_imagenet(depth: int = 18, width: float = 2.5, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> WRN:
    """The ImageNet wide ResNet of [P] Table 2, e.g. "18-2.5" (4 stages, 7x7/2 stem)."""
    return WRN(depth, width, num_classes, in_channels, stages=4, base=64, stem="imagenet", **kwargs)
