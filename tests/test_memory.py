"""Memory: the slide's accounting exactly, and what autograd keeps per method."""

import math

import pytest
import torch
from torch import nn

from onebit import create_model, list_methods
from onebit.measure.memory import measure
from onebit.models.layers import BNReLU, QConv2d


@pytest.mark.parametrize("method", list_methods())
def test_resnet18_paper_accounting_reproduces_the_slide(method):
    report = measure(create_model("resnet18", method), torch.randn(2, 3, 224, 224))
    assert report.paper_values_per_image == 1_831_936
    at256 = report.paper_values_per_image * 256 * report.activation_bits / 8
    if report.activation_bits == 32:
        assert round(at256 / 1e9, 3) == 1.876  # "1.8 GB"
    elif report.activation_bits == 1:
        assert round(at256 / 2**20, 1) == 55.9  # "56 MB"
    else:  # act2: 2 bits per value
        assert report.activation_bits == 2 and at256 == 1_831_936 * 256 // 4


class Tiny(nn.Module):
    """conv -> BN -> ReLU -> conv -> global mean: one compressible unit."""

    def __init__(self, method, c=8, k=5):
        super().__init__()
        self.conv0 = QConv2d(3, c, 3, 1, 1, method=method)
        self.unit = BNReLU(c, method=method)
        self.conv1 = QConv2d(c, k, 3, 1, 1, method=method)
        self.onebit_config = {"arch": "tiny", "method": method}

    def forward(self, x):
        return self.conv1(self.unit(self.conv0(x))).mean((2, 3))


@pytest.mark.parametrize("method", ["fp32", "w1", "cl", "cl-strict", "w1+cl"])
def test_saved_bytes_match_a_hand_count(method):
    n, c, h, k = 4, 8, 6, 5
    e = n * c * h * h  # elements of the unit's activation
    bits = math.ceil(e / 8)
    logits = n * k * 4  # log_softmax keeps its output ...
    loss = {"other": 4}  # ... and nll_loss its total weight, a 0-d float
    per_channel = 2 * c * 4  # batch mean and inverse std (stock BN) ...
    expected = {
        # BN input + ReLU output (= conv1 input, one storage)
        "fp32": {"float activations": 2 * e * 4 + logits, "statistics": per_channel},
        # BN input exact; ReLU keeps a 1-bit mask; conv1 keeps the 1-bit A_q
        "cl": {
            "float activations": e * 4 + logits,
            "relu mask": bits,
            "packed activation": bits,
            "statistics": per_channel,
        },
        # only A_q, plus (invstd, m0, m1) and p0 per channel
        "cl-strict": {"float activations": logits, "packed activation": bits, "statistics": 3 * c * 4 + c * 4},
    }
    expected["w1"], expected["w1+cl"] = expected["fp32"], expected["cl"]
    report = measure(Tiny(method), torch.randn(n, 3, h, h))
    assert report.saved_breakdown == {**expected[method], **loss}


def test_compressed_learning_keeps_far_fewer_bytes_on_wrn():
    x = torch.randn(4, 3, 32, 32)
    saved = {}
    for method in ("fp32", "cl", "cl-strict", "w1+cl"):
        torch.manual_seed(0)
        saved[method] = measure(create_model("wrn", method, depth=20, width=4), x).saved_bytes_per_image
    for method, b in saved.items():
        print(f"WRN-20-4 {method:<10} {b / 1e3:9.1f} kB/image  {saved['fp32'] / b:5.1f}x below fp32")
    assert saved["cl"] < saved["fp32"]
    assert saved["w1+cl"] < saved["fp32"]
    assert saved["fp32"] / saved["cl-strict"] >= 20


def test_memory_job_asks_for_memory_that_follows_from_its_batch():
    from onebit.measure.memory import activation_bytes_per_image, job_memory_mb

    act, params = activation_bytes_per_image("resnet18", 224)
    assert params == 11_689_512 and 15e6 < act < 25e6  # every module output of one image, fp32
    r18 = dict(arch="resnet18", image_size=224, batch_size=256)
    assert job_memory_mb(r18) >= 16_000 > job_memory_mb({**r18, "batch_size": 32})
    assert job_memory_mb({**r18, "mem_mb": 1234}) == 1234
    assert job_memory_mb({**r18, "device": "cuda", "budget": "70GiB"}) < job_memory_mb(r18)
