"""Tiny datasets written in the real on-disk formats, registered under test names so
they go through the same loading and checksum code as the real ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from onebit.data import DATASETS
from onebit.data.datasets import Cifar, FashionMnist, ImageNet


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train=96, n_test=40, size=28, seed=0) -> tuple:
    """Gzipped IDX files whose images carry their class (a learnable toy task)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, size, size))
        for i, c in enumerate(y):  # a bright bar whose row encodes the class
            x[i, 2 + 2 * c : 4 + 2 * c, 4 : size - 4] = 250
        for name, arr in ((f"{prefix}-images-idx3-ubyte.gz", x), (f"{prefix}-labels-idx1-ubyte.gz", y)):
            raw = idx_bytes(arr)
            gz = gzip.compress(raw, mtime=0)
            (folder / name).write_bytes(gz)
            files.append((name, md5(gz), md5(raw)))
    return tuple(files)


def cifar_tarball(path: Path, n_per_batch=20, cifar100=False, seed=0) -> tuple:
    """A cifar-10/100-python.tar.gz with pickled batches; returns its md5 and the
    (name, md5) of every batch file in it."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    folder = "cifar-100-python" if cifar100 else "cifar-10-batches-py"
    names = ["train", "test"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    key = "fine_labels" if cifar100 else "labels"
    file_md5s = []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in names:
            batch = {
                "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                key: [int(v) for v in rng.integers(0, 100 if cifar100 else 10, n_per_batch)],
            }
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            file_md5s.append((name, md5(data)))
    path.write_bytes(buf.getvalue())
    return md5(buf.getvalue()), tuple(file_md5s)


@pytest.fixture
def tiny_fashion(tmp_path):
    """Registers ``tiny_fashion`` (IDX files under tmp/data/tiny-fashion); yields the data root."""
    root = tmp_path / "data"
    files = write_fashion(root / "tiny-fashion")
    DATASETS.register(
        "tiny_fashion",
        FashionMnist(
            "tiny_fashion", 10, 1, 28, files=files, url="file:///nonexistent/", folder="tiny-fashion", system_dir=""
        ),
    )
    yield root
    DATASETS.unregister("tiny_fashion")


@pytest.fixture
def tiny_cifar(tmp_path):
    """Registers ``tiny_cifar10`` served from a file:// URL (download, md5, extract)."""
    served = tmp_path / "served"
    served.mkdir()
    digest, file_md5s = cifar_tarball(served / "cifar-10-python.tar.gz")
    DATASETS.register(
        "tiny_cifar10",
        Cifar(
            "tiny_cifar10",
            10,
            3,
            32,
            url=(served / "cifar-10-python.tar.gz").as_uri(),
            md5=digest,
            folder="cifar-10-batches-py",
            train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
            test_files=("test_batch",),
            file_md5s=file_md5s,
        ),
    )
    yield tmp_path / "data"
    DATASETS.unregister("tiny_cifar10")


@pytest.fixture
def tiny_imagenet(tmp_path):
    """A folder of JPEGs: root/imagenet/{train,val}/<class>/*.JPEG, 3 classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        for c in ("n01440764", "n01443537", "n01484850"):
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{i}.JPEG", quality=90)
    DATASETS.register("tiny_imagenet", ImageNet("tiny_imagenet", 3, 3, 32, in_memory=False, top5=True))
    yield root
    DATASETS.unregister("tiny_imagenet")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped, with the reason, where there is none."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (marker gpu); none here")
        for item in gpu:
            item.add_marker(skip)
