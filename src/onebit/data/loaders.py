"""Batches for training and evaluation.

Small datasets (CIFAR, Fashion-MNIST) live on the device as one ``uint8`` tensor
and are augmented per batch on the device: horizontal flip, padding with random
0-255 values (as the official code) and a random crop, optional cutout. This
replaces per-sample Python transforms, which would bottleneck a GPU.

ImageNet is read from an ImageFolder tree with PIL by DataLoader workers
(scale/aspect crop to 224, flip; centre crop for evaluation).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..runio import close_inherited_locks


def augment(
    x: Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True, cutout: int = 0, cutout_style: str = "official"
) -> Tensor:
    """Flip, random-fill pad and random crop, then cutout (the official order); ``x`` is
    a uint8 batch (N, C, H, W)."""
    n, c, h, w = x.shape
    dev = x.device
    if flip:
        do = torch.rand(n, device=dev, generator=gen) < 0.5
        x = torch.where(do.view(-1, 1, 1, 1), x.flip(3), x)
    if pad:
        padded = torch.randint(0, 256, (n, c, h + 2 * pad, w + 2 * pad), device=dev, dtype=torch.uint8, generator=gen)
        padded[:, :, pad : pad + h, pad : pad + w] = x
        oy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen)
        x = _crop(padded, oy, ox, h, w)
    if cutout:
        x = _cutout(x, gen, cutout, cutout_style)
    return x


def _cutout(x: Tensor, gen: torch.Generator, size: int, style: str) -> Tensor:
    """One ``size`` x ``size`` patch per image, clipped at the border.

    * ``official`` ([P]'s code): the patch's top-left corner is uniform over
      ``1 - size .. H - 1`` (MATLAB: ``randi([2-P, 32])``), so the patch may hang off
      the border and every pixel is covered equally often, ``(size / (H + size - 1))^2``
      of the images; the patch is filled with random integers 0-255.
    * ``devries`` (DeVries & Taylor 2017): the patch's centre is uniform over the image;
      the patch is filled with 0.
    """
    n, c, h, w = x.shape
    dev = x.device
    yy = torch.arange(h, device=dev).view(1, -1, 1)
    xx = torch.arange(w, device=dev).view(1, 1, -1)
    if style == "official":
        y0 = torch.randint(1 - size, h, (n, 1, 1), device=dev, generator=gen)
        x0 = torch.randint(1 - size, w, (n, 1, 1), device=dev, generator=gen)
    else:
        y0 = torch.randint(0, h, (n, 1, 1), device=dev, generator=gen) - size // 2
        x0 = torch.randint(0, w, (n, 1, 1), device=dev, generator=gen) - size // 2
    hole = ((yy >= y0) & (yy < y0 + size) & (xx >= x0) & (xx < x0 + size)).unsqueeze(1)
    if style == "official":
        fill = torch.randint(0, 256, x.shape, device=dev, dtype=x.dtype, generator=gen)
        return torch.where(hole, fill, x)
    return x.masked_fill(hole, 0)


def _crop(padded: Tensor, oy: Tensor, ox: Tensor, h: int, w: int) -> Tensor:
    """Per-sample ``h x w`` crop of ``padded`` with top-left corners ``(oy, ox)``."""
    n, c, _, wp = padded.shape
    rows = (oy.view(-1, 1) + torch.arange(h, device=padded.device)).view(n, 1, h, 1)
    x = padded.gather(2, rows.expand(n, c, h, wp))
    cols = (ox.view(-1, 1) + torch.arange(w, device=padded.device)).view(n, 1, 1, w)
    return x.gather(3, cols.expand(n, c, h, w))


class TensorBatches:
    """Iterate over (images, labels) batches of a dataset held as tensors on ``device``.

    Images come out as float in [0, 1] (the models' input BN does the
    normalisation); order and augmentation draw from ``gen``, so an epoch is
    reproducible from the generator's state.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        device,
        *,
        train: bool,
        gen: torch.Generator | None = None,
        pad: int = 4,
        flip: bool = True,
        cutout: int = 0,
        cutout_style: str = "official",
        rank: int = 0,
        world_size: int = 1,
    ):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.train, self.gen = batch_size, train, gen
        self.pad, self.flip, self.cutout, self.cutout_style = pad, flip, cutout, cutout_style
        self.rank, self.world_size = rank, world_size
        self._order = self._resume = None

    def __len__(self) -> int:
        return math.ceil(self._n_local() / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation follow ``gen``, whose state the checkpoint keeps."""

    def state(self) -> dict:
        """What a mid-epoch checkpoint needs to finish this epoch: its order (drawn from
        ``gen`` when the epoch began; the augmentation of the batches to come draws from
        ``gen`` as it is after the last batch taken)."""
        return {"order": None if self._order is None else self._order.cpu()}

    def resume(self, state: dict, batches: int) -> None:
        """The next iteration continues an epoch after its first ``batches`` batches."""
        order = state.get("order")
        if not isinstance(order, Tensor) or order.shape != (len(self.y),):
            from ..errors import StateVersionError

            raise StateVersionError(
                f"the checkpoint's mid-epoch data order does not fit this dataset of {len(self.y)} "
                "images; move the checkpoint away to restart the run"
            )
        self._resume = (order, batches)

    def _n_local(self) -> int:
        n = len(self.y)
        if self.world_size == 1:
            return n
        if self.train:  # equal shards: ranks must take the same number of steps
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))  # evaluation sees every sample once

    def __iter__(self):
        n, first = len(self.y), 0
        if self._resume is not None:
            (order, first), self._resume = self._resume, None
            order = order.to(self.x.device)
        elif self.train:
            order = torch.randperm(n, device=self.x.device, generator=self.gen)
        else:
            order = torch.arange(n, device=self.x.device)
        if self.train:
            self._order = order
        if self.world_size > 1:  # each rank takes its own slice of the same permutation
            if self.train:
                order = order[: self._n_local() * self.world_size]
            order = order[self.rank :: self.world_size]
        for i in range(first * self.batch_size, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            xb = self.x[idx]
            if self.train:
                xb = augment(xb, self.gen, self.pad, self.flip, self.cutout, self.cutout_style)
            yield xb.float().div_(255), self.y[idx]


# ---------------------------------------------------------------- ImageNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``: classes sorted by name, as torchvision's ImageFolder.

    Indexed by ``(epoch, i)`` (see :class:`EpochSampler`): the augmentation of image
    ``i`` in ``epoch`` draws from a generator seeded with ``(seed, epoch, i)``, so an
    epoch is the same whichever worker loads it and whether or not the run was
    resumed."""

    def __init__(self, root: Path, train: bool, size: int = 224, seed: int = 0, limit: int | None = None):
        self.root, self.train, self.size, self.seed = Path(root), train, size, seed
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        self.samples = [
            (p, i)
            for i, c in enumerate(self.classes)
            for p in sorted((self.root / c).iterdir())
            if p.suffix.lower() in IMG_EXTENSIONS
        ][:limit]
        if not self.samples:
            from .formats import DatasetError

            raise DatasetError(f"no images found under {self.root}/<class>/")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        from PIL import Image

        epoch, i = key if isinstance(key, tuple) else (0, key)
        rng = random.Random(f"{self.seed}:{epoch}:{i}")
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im = self._random_resized_crop(im, rng) if self.train else self._center_crop(im)
        except (OSError, ValueError, SyntaxError) as e:  # PIL: unreadable, truncated, not an image
            from .formats import DatasetError

            raise DatasetError(
                f"{path} cannot be read as an image ({type(e).__name__}: {e}); replace or remove it"
            ) from None
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.train and rng.random() < 0.5:
            x = x.flip(2)
        return x, label

    def _random_resized_crop(self, im, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        """Inception-style scale and aspect-ratio augmentation (He et al. 2016)."""
        from PIL import Image

        w, h = im.size
        for _ in range(10):
            area = w * h * rng.uniform(*scale)
            r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
                return im.resize((self.size, self.size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        return self._center_crop(im)

    def _center_crop(self, im):
        from PIL import Image

        w, h = im.size
        s = round(self.size / 0.875)  # resize the short side to 256, crop 224
        nw, nh = (s, round(h * s / w)) if w <= h else (round(w * s / h), s)
        im = im.resize((nw, nh), Image.BILINEAR)
        x0, y0 = (nw - self.size) // 2, (nh - self.size) // 2
        return im.crop((x0, y0, x0 + self.size, y0 + self.size))


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)``: a permutation of the dataset that depends only on
    ``(seed, epoch)`` (nothing to checkpoint), this rank's share of it under data
    parallelism (equal shards in training: ranks take the same number of steps)."""

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world_size
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.skip = epoch, 0

    def _order(self) -> list:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        return order[: self.n // self.world * self.world][self.rank :: self.world][self.skip :]

    def __len__(self) -> int:
        return len(self._order())

    def __iter__(self):
        return iter([(self.epoch, i) for i in self._order()])


class DeviceBatches:
    """Batches of a DataLoader moved to ``device`` and normalised (ImageNet)."""

    def __init__(self, loader, sampler: EpochSampler, device):
        self.loader, self.sampler, self.device = loader, sampler, device

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state(self) -> dict:
        """Nothing: an epoch's order and augmentation follow from (seed, epoch, image)."""
        return {}

    def resume(self, state: dict, batches: int) -> None:
        """The next iteration continues the epoch after its first ``batches`` batches."""
        self.sampler.skip = batches * self.loader.batch_size

    def __iter__(self):
        from .formats import DatasetError

        try:
            for x, y in self.loader:
                yield normalize_imagenet(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
        except DatasetError as e:  # from a loader worker: its message carries the worker's traceback
            raise DatasetError(
                str(e).rstrip().splitlines()[-1].removeprefix("onebit.data.formats.DatasetError: ")
            ) from None


def make_batches(cfg, ds, device, gen: torch.Generator, rank: int = 0, world_size: int = 1, root=None):
    """(train, test) batches of a run: the whole dataset on ``device``, augmented per
    batch from ``gen`` (CIFAR, Fashion-MNIST), or an image-folder tree read by
    ``cfg.workers`` processes (ImageNet). Both yield float images and labels on ``device``.
    ``root``: where the data is (default cfg.data_root; a staged copy)."""
    root = Path(cfg.data_root if root is None else root)
    common = dict(rank=rank, world_size=world_size)
    # batch_size is the global batch of a step: each of the world_size processes takes its
    # share, so the recipe (steps per epoch, learning rate) does not depend on the GPU count
    batch = cfg.batch_size // world_size
    if ds.in_memory:
        x, y = ds.load(root, train=True)
        xt, yt = ds.load(root, train=False)
        if cfg.train_subset:
            x, y = x[: cfg.train_subset], y[: cfg.train_subset]
        if cfg.test_subset:
            xt, yt = xt[: cfg.test_subset], yt[: cfg.test_subset]
        return (
            TensorBatches(
                x,
                y,
                batch,
                device,
                train=True,
                gen=gen,
                pad=cfg.crop_pad,
                flip=cfg.flip,
                cutout=cfg.cutout,
                cutout_style=cfg.cutout_style,
                **common,
            ),
            TensorBatches(xt, yt, cfg.eval_batch_size, device, train=False, **common),
        )
    out = []
    for train in (True, False):
        d = ImageFolder(
            ds.folder(root, train),
            train,
            ds.image_size,
            seed=cfg.seed,
            limit=cfg.train_subset if train else cfg.test_subset,
        )
        if len(d.classes) != ds.num_classes:  # labels would silently index a head of another size
            from .formats import DatasetError

            raise DatasetError(
                f"{d.root} holds {len(d.classes)} class folders, {ds.num_classes} expected for "
                f"{ds.name}: an incomplete copy, or val/ not arranged into class folders "
                "(onebit data checks the whole tree)"
            )
        sampler = EpochSampler(len(d), cfg.seed, shuffle=train, **common)
        # a generator of its own: the loader draws its workers' base seed at every epoch,
        # which would otherwise advance the global torch RNG (the noise of the methods)
        # differently with and without (persistent) workers and across a resume
        loader = torch.utils.data.DataLoader(
            d,
            batch_size=batch if train else cfg.eval_batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=torch.device(device).type == "cuda",
            persistent_workers=cfg.workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
            worker_init_fn=close_inherited_locks if cfg.workers > 0 else None,
        )
        out.append(DeviceBatches(loader, sampler, device))
    return tuple(out)


def normalize_imagenet(x: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float().div_(255) - mean) / std
