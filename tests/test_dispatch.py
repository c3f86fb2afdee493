"""onebit.ops.dispatch: the one point where a fused kernel is plugged in beside its reference."""

import os
import subprocess
import sys

import pytest
import torch

from helpers import run_cli
from onebit import create_model
from onebit.errors import ConfigError
from onebit.ops import dispatch
from onebit.ops.bits import pack_bits

OPS = [
    "avg_pool_pad",
    "avg_pool_pad_backward",
    "binarize_and_pack",
    "dequantize2",
    "pack_bits",
    "quantize2",
    "unpack_bits",
]


def test_every_element_wise_op_is_dispatched_with_no_kernel_by_default():
    assert dispatch.ops() == {name: [] for name in OPS}


def test_a_registered_kernel_runs_on_its_device_and_the_reference_elsewhere():
    calls = []

    def kernel(quantizer, a):
        calls.append(a.shape)
        return dispatch._REFERENCES["binarize_and_pack"](quantizer, a)

    model = create_model("wrn", "cl", depth=8, width=0.25, num_classes=10, in_channels=1)
    x = torch.randn(4, 1, 16, 16)
    dispatch.register_fused("binarize_and_pack", "cpu", kernel)
    try:
        assert dispatch.ops()["binarize_and_pack"] == ["cpu"]
        model(x).sum().backward()
        assert calls, "compressed learning did not call the registered kernel"
        n = len(calls)
        with dispatch.references_only():
            model(x).sum().backward()
        assert len(calls) == n  # references only
        dispatch.register_fused("pack_bits", "meta", lambda mask: 1 / 0)
        assert pack_bits(torch.ones(8, dtype=torch.bool)).tolist() == [255]  # a cpu tensor: the reference
    finally:
        dispatch.unregister_fused("binarize_and_pack", "cpu")
        dispatch.unregister_fused("pack_bits", "meta")
    assert dispatch.ops() == {name: [] for name in OPS}


def test_a_kernel_for_an_unknown_op_is_refused_with_the_ops_named():
    with pytest.raises(ConfigError, match="no op named 'pack' .*pack_bits"):
        dispatch.register_fused("pack", "cuda", lambda m: m)
    with pytest.raises(ValueError, match="already dispatched"):
        dispatch.reference(pack_bits.reference)


def test_onebit_kernels_reference_turns_every_kernel_off():
    probe = "from onebit.ops import dispatch; print(dispatch._enabled[0])"
    for value, enabled in (("reference", "False"), ("", "True")):
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "ONEBIT_KERNELS": value},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == enabled


def test_a_wrong_onebit_kernels_value_or_device_type_is_refused(tiny_fashion, tmp_path, monkeypatch):
    """ONEBIT_KERNELS=off (or any value but reference/fused) would leave kernels on silently:
    refused in one paragraph, exit 2, nothing written; a kernel for a device type torch does
    not know is refused too."""
    monkeypatch.setenv("ONEBIT_KERNELS", "off")
    proc = run_cli(tiny_fashion, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "ONEBIT_KERNELS must be 'reference'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="device type such as 'cuda'"):
        dispatch.register_fused("pack_bits", "gpu", lambda m: m)
    assert "gpu" not in dispatch.ops()["pack_bits"]
