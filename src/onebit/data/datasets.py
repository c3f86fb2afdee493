"""The dataset registry. Small datasets load as whole uint8 tensors (augmented per
batch on the device, see :mod:`onebit.data.loaders`); ImageNet is a folder tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..registry import Registry
from .formats import DatasetError, check_md5, download, extract_tar, read_cifar_batches, read_idx

DATASETS: Registry = Registry("dataset")


def default_root() -> Path:
    return Path(os.environ.get("ONEBIT_DATA", "data"))


@dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    #: whole-tensor dataset (True) or an image-folder tree read by workers (False)
    in_memory: bool = True
    top5: bool = False

    def load(self, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, root: Path) -> None:
        """Make the data present and verified under ``root`` (download if allowed):
        both splits, so a damaged training file is caught here, before any job."""
        self.load(root, train=False)
        self.load(root, train=True)


def get_dataset(name: str) -> Dataset:
    return DATASETS.get(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


@dataclass(frozen=True)
class Cifar(Dataset):
    url: str = ""
    md5: str = ""
    folder: str = ""
    train_files: tuple = ()
    test_files: tuple = ()
    label_key: str = "labels"

    def _ensure(self, root: Path) -> Path:
        folder = root / self.folder
        if all((folder / f).exists() for f in self.train_files + self.test_files):
            return folder
        archive = root / Path(self.url).name
        repair = f"delete {archive} and run again to re-download it"
        if archive.exists():
            check_md5(archive, self.md5, repair)
        else:
            download(self.url, archive, self.md5)
        extract_tar(archive, root)
        return folder

    def load(self, root, train):
        folder = self._ensure(Path(root))
        files = [folder / f for f in (self.train_files if train else self.test_files)]
        x, y = read_cifar_batches(files, self.label_key)
        return torch.from_numpy(x), torch.from_numpy(y)


DATASETS.register("cifar10", Cifar(
    "cifar10", 10, 3, 32, url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",)))
DATASETS.register("cifar100", Cifar(
    "cifar100", 100, 3, 32, top5=True, url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python",
    train_files=("train",), test_files=("test",), label_key="fine_labels"))


# name -> (md5 of the upstream gzipped file, md5 of the decompressed IDX content).
# Debian's dataset-fashion-mnist re-compresses the files, so only the content md5
# (recorded from that package) identifies them; downloads are checked against
# upstream's published md5 of the .gz file.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist


@dataclass(frozen=True)
class FashionMnist(Dataset):
    """Gzipped IDX files in ``ROOT/<folder>/``, or in ``system_dir`` (Debian's
    package), else downloaded from ``url``; every file is checksummed."""

    files: tuple = tuple((k, *v) for k, v in FASHION_MNIST_FILES.items())
    url: str = FASHION_MNIST_URL
    folder: str = "fashion-mnist"
    system_dir: str = str(SYSTEM_FASHION_MNIST)

    def _file(self, root: Path, name: str) -> Path:
        md5s = {f[0]: (f[1], f[2]) for f in self.files}[name]
        system = Path(self.system_dir) if self.system_dir else None
        for folder in (root / self.folder, system):
            if folder is not None and (folder / name).exists():
                path = folder / name
                where = ("reinstall the Debian package dataset-fashion-mnist" if folder == system
                         else f"delete {path} and run again to download it")
                check_md5(path, md5s, where)
                return path
        return download(self.url + name, root / self.folder / name, md5s[0])

    def load(self, root, train):
        prefix = "train" if train else "t10k"
        x = read_idx(self._file(Path(root), f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(self._file(Path(root), f"{prefix}-labels-idx1-ubyte.gz"))
        if len(x) != len(y):
            raise DatasetError(f"Fashion-MNIST {prefix}: {len(x)} images but {len(y)} labels")
        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


DATASETS.register("fashion_mnist", FashionMnist("fashion_mnist", 10, 1, 28))


@dataclass(frozen=True)
class ImageNet(Dataset):
    """An ImageFolder tree ``ROOT/imagenet/{train,val}/<class>/<image>.JPEG`` (or
    ``ROOT/{train,val}``); it cannot be downloaded automatically."""

    def folder(self, root: Path, train: bool) -> Path:
        split = "train" if train else "val"
        for base in (Path(root) / "imagenet", Path(root)):
            if (base / split).is_dir():
                return base / split
        raise DatasetError(
            f"ImageNet not found: expected an ImageFolder tree {Path(root) / 'imagenet' / split}/"
            "<class>/<image>.JPEG. Download ILSVRC2012 from image-net.org (it needs an account), "
            "arrange val/ into class folders, and pass its parent with --data-root")

    def prepare(self, root):
        self.folder(root, True), self.folder(root, False)


DATASETS.register("imagenet", ImageNet("imagenet", 1000, 3, 224, in_memory=False, top5=True))
