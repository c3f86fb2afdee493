"""The standard ImageNet ResNet-18 (He et al. 2016; torchvision's layout and
parameter names, 11,689,512 parameters for 1000 classes) with method plumbing.

Post-activation blocks: the ReLU after each residual sum is a :class:`BNReLU`
that also takes the residual (or the projection shortcut's BN), so compressed
learning sees every conv input as a BN -> (+) -> ReLU unit.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..methods import get_method
from .layers import Act, BNReLU, QConv2d, QLinear, compress, max_pool_act, method_scope, run_block


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, method):
        super().__init__()
        self.conv1 = QConv2d(c_in, c_out, 3, stride, 1, method=method)
        self.bn1 = BNReLU(c_out, method=method, affine=True)
        self.conv2 = QConv2d(c_out, c_out, 3, 1, 1, method=method)
        self.bn2 = BNReLU(c_out, method=method, affine=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(QConv2d(c_in, c_out, 1, stride, method=method), nn.BatchNorm2d(c_out))
        self.method = get_method(method)

    def forward(self, x: Act) -> Act:
        if self.method.checkpoint:  # no 1-bit copies to carry: checkpoint on the float tensor
            return Act(run_block(self, lambda a: self._forward(Act(a)).a, x.a))
        return self._forward(x)

    def _forward(self, x: Act) -> Act:
        h = self.conv2(self.bn1(self.conv1(x)))
        if self.downsample is not None:
            return self.bn2(h, shortcut=(self.downsample[1], self.downsample[0](x)))
        return self.bn2(h, residual=x.a)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, method="fp32", fp32_first_last: bool = False):
        super().__init__()
        self.method = method = get_method(method)
        fp32_first_last = fp32_first_last or method.fp32_first_last  # weights only, here
        self.conv1 = QConv2d(in_channels, 64, 7, 2, 3, method=method, quantize_weight=not fp32_first_last)
        self.bn1 = BNReLU(64, method=method, affine=True)
        c = 64
        for i, w in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c, w, stride, method), BasicBlock(w, w, 1, method)))
            c = w
        self.fc = QLinear(512, num_classes, method=method, quantize_weight=not fp32_first_last)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        with method_scope(self.method, self):
            h = max_pool_act(self.bn1(self.conv1(x)), self.method)
            h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
            return self.fc(compress(h.a.mean((2, 3)), self.method))


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet18:
    """Standard ResNet-18 for 224x224 ImageNet [W slide 17]."""
    return ResNet18(num_classes, in_channels, **kwargs)
