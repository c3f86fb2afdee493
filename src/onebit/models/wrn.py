"""McDonnell's "depth-width" wide ResNet ([P] 3.1 and appendix A; SPEC.md 2).

Pre-activation; every weight layer is BN -> ReLU -> conv without bias. First conv
3x3 to 16k channels; stages of 16k / 32k / 64k channels with n = (depth - 2) / 6
blocks; downsampling shortcut = 3x3/2 average pool + zero channels; head
BN -> ReLU -> 1x1 conv -> BN -> global average pool. BN has no learned
scale/offset (``bn_affine=False``, CIFAR) except the input BN.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ConfigError
from ..functional import AvgPoolPad
from ..layers import BNReLU, QConv2d, method_scope, run_block
from ..methods import get_method
from .registry import register_model


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, method, bn_affine: bool):
        super().__init__()
        self.bn1 = BNReLU(c_in, method=method, affine=bn_affine)
        self.conv1 = QConv2d(c_in, c_out, 3, stride, 1, method=method)
        self.bn2 = BNReLU(c_out, method=method, affine=bn_affine)
        self.conv2 = QConv2d(c_out, c_out, 3, 1, 1, method=method)
        self.c_out = c_out
        self.downsample = stride != 1 or c_in != c_out
        self.method = get_method(method)

    def _forward(self, x: Tensor) -> Tensor:
        h = self.conv2(self.bn2(self.conv1(self.bn1(x))))
        return h + (AvgPoolPad.apply(x, self.c_out) if self.downsample else x)

    def forward(self, x: Tensor) -> Tensor:
        return run_block(self, self._forward, x)


class WRN(nn.Module):
    def __init__(self, depth: int = 20, width: float = 10, num_classes: int = 10,
                 in_channels: int = 3, *, method="fp32", bn_affine: bool = False,
                 fp32_first_last: bool = False):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"WRN depth must be 6n + 2 with n >= 1 (8, 14, 20, 26, ...), got {depth!r}",
                              "depth")
        if not width > 0:
            raise ConfigError(f"WRN width must be positive, got {width!r}", "width")
        self.method = method = get_method(method)
        n = (depth - 2) // 6
        widths = [int(round(c * width)) for c in (16, 32, 64)]
        self.bn_in = nn.BatchNorm2d(in_channels)  # learned scale/offset: it normalises raw pixels
        self.conv_in = QConv2d(in_channels, widths[0], 3, 1, 1, method=method,
                               quantize_weight=not fp32_first_last)
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Block(c, w, stride, method, bn_affine))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.bn_head = BNReLU(c, method=method, affine=bn_affine)
        self.conv_head = QConv2d(c, num_classes, 1, method=method,
                                 quantize_weight=not fp32_first_last)
        self.bn_out = nn.BatchNorm2d(num_classes, affine=bn_affine)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):  # He-normal, fan-in ([P] 3.1)
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        with method_scope(self.method, self):
            h = self.blocks(self.conv_in(self.bn_in(x)))
            h = self.bn_out(self.conv_head(self.bn_head(h)))
            return h.mean((2, 3))


@register_model("wrn")
def wrn(depth: int = 20, width: float = 10, num_classes: int = 10, in_channels: int = 3,
        **kwargs) -> WRN:
    """Wide ResNet "depth-width" of McDonnell [P]; e.g. WRN-20-10."""
    return WRN(depth, width, num_classes, in_channels, **kwargs)
