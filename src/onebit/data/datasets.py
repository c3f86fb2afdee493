"""The dataset registry. Small datasets load as whole uint8 tensors (augmented per
batch on the device, see :mod:`onebit.data.loaders`); ImageNet is a folder tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..registry import Registry

if TYPE_CHECKING:
    import torch
from .formats import DatasetError, check_md5, download, extract_tar, read_cifar_batches, read_idx

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    #: whole-tensor dataset (True) or an image-folder tree read by workers (False)
    in_memory: bool = True
    top5: bool = False
    #: its name in tables and figures ("": the registered name)
    title: str = ""
    #: images of the training split, for the bench's cost of a grid row (0: unknown, and the
    #: bench refuses to estimate a row of all of it)
    train_images: int = 0

    def __post_init__(self):
        if not self.title:
            object.__setattr__(self, "title", self.name)

    def load(self, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, root: Path) -> None:
        """Make the data present and verified under ``root`` (download if allowed):
        both splits, so a damaged training file is caught here, before any job."""
        self.load(root, train=False)
        self.load(root, train=True)

    def stage(self, source: Path, target: Path, stop) -> None:
        """Copy (or unpack) what :meth:`load` reads from ``source`` (data_root, verified by
        :meth:`prepare`) to ``target`` (node-local, empty), checking it; ``source`` is only
        read. ``stop()`` names a stop signal received (None before): a long copy checks it."""
        raise DatasetError(
            f"dataset {self.name} cannot be staged: it does not say which files it reads "
            "(implement Dataset.stage); unset stage_data to read it from data_root"
        )


def get_dataset(name: str) -> Dataset:
    return DATASETS.get(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


@dataclass(frozen=True)
class Cifar(Dataset):
    """The python-pickle CIFAR archive, extracted under ``ROOT/<folder>/``. The archive is
    checked against its md5 when downloaded or extracted, and every batch file against
    its own known md5 each time it is read (``file_md5s``: torchvision's list), before it
    is unpickled: a tampered or foreign file is refused with its name, and its content
    never runs."""

    url: str = ""
    md5: str = ""
    folder: str = ""
    train_files: tuple = ()
    test_files: tuple = ()
    label_key: str = "labels"
    file_md5s: tuple = ()  # (file name, md5) of every batch file

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
        known = dict(self.file_md5s)
        files = [folder / f for f in (self.train_files if train else self.test_files)]
        for path in files:
            if path.name not in known:
                raise DatasetError(f"{path}: no known checksum for this file; it is not read")
            if not path.exists():
                raise DatasetError(f"{path} is missing; delete {folder} and run again to re-extract it")
            check_md5(
                path, known[path.name], f"delete {folder} and run again to re-extract it from the verified archive"
            )
        x, y = read_cifar_batches(files, self.label_key, self.num_classes)
        import torch

        return torch.from_numpy(x), torch.from_numpy(y)

    def stage(self, source, target, stop):
        """The extracted batch files, each checked against its md5 once copied; or, where
        data_root holds only the archive, the archive checked and unpacked locally."""
        from .staging import copy_file

        folder, known = source / self.folder, dict(self.file_md5s)
        names = self.train_files + self.test_files
        if all((folder / f).exists() for f in names):
            for f in names:
                copy_file(folder / f, target / self.folder / f)
                check_md5(target / self.folder / f, known[f], f"the copy of {folder / f} differs from it: run again")
            return
        archive = source / Path(self.url).name
        if not archive.exists():
            raise DatasetError(
                f"{self.name} is not in data_root {source} (neither {folder} nor {archive}): "
                f"run `onebit data --dataset {self.name}` first (the pipeline's data rule does)"
            )
        check_md5(archive, self.md5, f"delete {archive} and run `onebit data --dataset {self.name}` again")
        extract_tar(archive, target)


DATASETS.register(
    "cifar10",
    Cifar(
        "cifar10",
        10,
        3,
        32,
        title="CIFAR-10",
        train_images=50_000,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        file_md5s=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ),
    ),
)
DATASETS.register(
    "cifar100",
    Cifar(
        "cifar100",
        100,
        3,
        32,
        top5=True,
        title="CIFAR-100",
        train_images=50_000,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        file_md5s=(("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")),
    ),
)


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
                where = (
                    "reinstall the Debian package dataset-fashion-mnist"
                    if folder == system
                    else f"delete {path} and run again to download it"
                )
                check_md5(path, md5s, where)
                return path
        return download(self.url + name, root / self.folder / name, md5s[0])

    def load(self, root, train):
        prefix = "train" if train else "t10k"
        x = read_idx(self._file(Path(root), f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(self._file(Path(root), f"{prefix}-labels-idx1-ubyte.gz"))
        if len(x) != len(y):
            raise DatasetError(f"Fashion-MNIST {prefix}: {len(x)} images but {len(y)} labels")
        import torch

        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    def stage(self, source, target, stop):
        """The four IDX files (from data_root, or the Debian package's folder), each checked
        against its md5 once copied."""
        from .staging import copy_file

        system = Path(self.system_dir) if self.system_dir else None
        for name, *md5s in self.files:
            found = [d / name for d in (source / self.folder, system) if d is not None and (d / name).exists()]
            if not found:
                raise DatasetError(
                    f"{name} is not in {source / self.folder}: run `onebit data --dataset {self.name}` "
                    "first (the pipeline's data rule does)"
                )
            copy_file(found[0], target / self.folder / name)
            check_md5(target / self.folder / name, tuple(md5s), f"the copy of {found[0]} differs from it: run again")


DATASETS.register("fashion_mnist", FashionMnist("fashion_mnist", 10, 1, 28, title="Fashion-MNIST", train_images=60_000))


@dataclass(frozen=True)
class ImageNet(Dataset):
    """An ImageFolder tree ``ROOT/imagenet/{train,val}/<class>/<image>.JPEG`` (or
    ``ROOT/{train,val}``); it cannot be downloaded automatically. Its 1.3 million JPEGs
    have no published per-file checksums and are decoded by PIL (no code runs from
    them); :meth:`prepare` checks the tree's shape instead: the class folders and, when
    ``images`` is set (ILSVRC2012: 1,281,167 / 50,000), the number of images."""

    images: tuple = ()  # (train, val) image counts to expect, or () not to count

    def folder(self, root: Path, train: bool) -> Path:
        split = "train" if train else "val"
        for base in (Path(root) / "imagenet", Path(root)):
            if (base / split).is_dir():
                return base / split
        raise DatasetError(
            f"ImageNet not found: expected an ImageFolder tree {Path(root) / 'imagenet' / split}/"
            "<class>/<image>.JPEG. Download ILSVRC2012 from image-net.org (it needs an account), "
            "arrange val/ into class folders, and pass its parent with --data-root"
        )

    def prepare(self, root):
        from .loaders import IMG_EXTENSIONS

        for i, train in enumerate((True, False)):
            folder = self.folder(root, train)
            classes = [d for d in folder.iterdir() if d.is_dir()]
            if len(classes) != self.num_classes:
                raise DatasetError(
                    f"{folder} holds {len(classes)} class folders, {self.num_classes} expected: "
                    "an incomplete copy, or val/ not arranged into class folders"
                )
            if self.images:
                n = sum(1 for d in classes for p in d.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
                if n != self.images[i]:
                    raise DatasetError(
                        f"{folder} holds {n:,} images, {self.images[i]:,} expected (ILSVRC2012): "
                        "complete the copy before training"
                    )

    def stage(self, source, target, stop):
        """Both split trees, compared file by file (names and sizes) with the source, then
        checked as :meth:`prepare` checks data_root (class folders, image counts)."""
        from .staging import copy_tree

        for train in (True, False):
            copy_tree(self.folder(source, train), target / "imagenet" / ("train" if train else "val"), stop)
        self.prepare(target)


DATASETS.register(
    "imagenet",
    ImageNet(
        "imagenet",
        1000,
        3,
        224,
        in_memory=False,
        top5=True,
        title="ImageNet",
        train_images=1_281_167,
        images=(1_281_167, 50_000),
    ),
)
