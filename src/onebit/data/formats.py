"""Readers for the datasets' real on-disk formats, and checksummed downloads."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ..errors import DatasetError


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_md5(path: Path, md5: "str | tuple[str, str]", repair: str) -> None:
    """Check ``path`` against ``md5``, or against ``(md5 of the file, md5 of its
    gzip-decompressed content)``: either one matching is enough."""
    file_md5, content_md5 = (md5, None) if isinstance(md5, str) else md5
    got = md5sum(path)
    if got == file_md5:
        return
    if content_md5 is not None:
        h = hashlib.md5()
        try:
            with gzip.open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            if h.hexdigest() == content_md5:
                return
        except (OSError, EOFError, zlib.error):
            pass  # not gzip, truncated or corrupted: reported below
    raise DatasetError(
        f"checksum mismatch for {path}: md5 {got}, expected {file_md5}"
        + (f" (or decompressed content md5 {content_md5})" if content_md5 else "")
        + f". The file is corrupted or truncated; {repair}"
    )


def download(url: str, dest: Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` atomically and check its md5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {url} ({e}). If this machine is offline, fetch the "
            f"file elsewhere and place it at {dest}"
        ) from None
    check_md5(tmp, md5, f"the download from {url} was damaged; run again")
    os.replace(tmp, dest)
    return dest


def read_idx(path: Path) -> np.ndarray:
    """A (gzipped) IDX file, the MNIST / Fashion-MNIST format."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DatasetError(f"{path} is truncated (no IDX header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: {body.size} bytes of data, header says {shape}")
    return body.reshape(shape)


def extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, strings, numbers and numpy
    arrays) and nothing else: a class or function any other file names is refused, so
    no code in a file runs. (Files are also checked against their known md5 first.)"""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
        ("_codecs", "encode"),
    }  # how protocol 2 holds bytes when written by Python 3

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batches(
    files: list[Path], label_key: str, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR's python-pickle batches -> (N, 3, 32, 32) uint8 images, int64 labels. The
    caller verifies each file's checksum first; the unpickler allows only the types a
    batch holds, and the content is checked (shapes, label range)."""
    xs, ys = [], []
    for path in files:
        if not path.exists():
            raise DatasetError(f"{path} is missing")
        try:
            with open(path, "rb") as f:
                batch = _CifarUnpickler(f, encoding="latin1").load()
            data = np.asarray(batch["data"], dtype=np.uint8)
            labels = np.asarray(batch[label_key], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise ValueError(f"data of shape {data.shape} with {len(labels)} labels")
            if num_classes is not None and len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
                raise ValueError(f"labels outside 0..{num_classes - 1}")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise DatasetError(
                f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); delete "
                f"its folder and run again to re-extract or re-download it"
            ) from None
    return np.concatenate(xs), np.concatenate(ys)
