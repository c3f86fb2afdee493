"""Datasets in their real on-disk formats, checksums, clear errors, augmentation."""

import os

import pytest
import torch

from onebit.data import DatasetError, get_dataset, list_datasets
from onebit.data.datasets import SYSTEM_FASHION_MNIST
from onebit.data.loaders import ImageFolder, TensorBatches, augment


def test_registry():
    assert {"cifar10", "cifar100", "fashion_mnist", "imagenet"} <= set(list_datasets())


def test_idx_files_load(tiny_fashion):
    x, y = get_dataset("tiny_fashion").load(tiny_fashion, train=True)
    assert x.shape == (96, 1, 28, 28) and x.dtype == torch.uint8
    assert y.tolist() == [i % 10 for i in range(96)]


def test_corrupted_idx_file_is_named_with_a_fix(tiny_fashion):
    path = tiny_fashion / "tiny-fashion" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetError) as e:
        get_dataset("tiny_fashion").load(tiny_fashion, train=True)
    assert str(path) in str(e.value) and "checksum mismatch" in str(e.value)
    assert "delete" in str(e.value)


def test_missing_and_offline_says_where_to_put_files(tiny_fashion):
    os.remove(tiny_fashion / "tiny-fashion" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="place it at .*t10k-labels-idx1-ubyte.gz"):
        get_dataset("tiny_fashion").load(tiny_fashion, train=False)


def test_cifar_download_checksum_extract_and_load(tiny_cifar):
    ds = get_dataset("tiny_cifar10")
    x, y = ds.load(tiny_cifar, train=True)
    assert x.shape == (100, 3, 32, 32) and y.shape == (100,) and x.dtype == torch.uint8
    xt, _ = ds.load(tiny_cifar, train=False)
    assert xt.shape == (20, 3, 32, 32)
    assert (tiny_cifar / "cifar-10-python.tar.gz").exists()


def test_cifar_bad_archive_is_refused(tiny_cifar, tmp_path):
    tiny_cifar.mkdir(parents=True)
    (tiny_cifar / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="checksum mismatch.*delete"):
        get_dataset("tiny_cifar10").load(tiny_cifar, train=True)


class _Payload:
    """Unpickling this runs code (os.system), as a crafted file would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _replace_batch(root, name, obj):
    import pickle

    path = root / "cifar-10-batches-py" / name
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize("content", ["payload", "zeros", "truncated"])
def test_cifar_batch_files_are_verified_at_every_read_and_never_run(tiny_cifar, tmp_path, content):
    """After extraction, a batch file replaced by a crafted pickle, by 60 zero images or
    cut short is refused with its name before it is unpickled."""
    import numpy as np

    ds = get_dataset("tiny_cifar10")
    ds.load(tiny_cifar, train=True)  # downloaded, verified, extracted
    marker = tmp_path / "PWNED"
    if content == "payload":
        path = _replace_batch(tiny_cifar, "data_batch_2", {"data": _Payload(marker), "labels": [0]})
    elif content == "zeros":
        path = _replace_batch(tiny_cifar, "data_batch_2", {"data": np.zeros((60, 3072), np.uint8), "labels": [0] * 60})
    else:
        path = tiny_cifar / "cifar-10-batches-py" / "data_batch_2"
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=f"checksum mismatch for {path}"):
        ds.load(tiny_cifar, train=True)
    assert not marker.exists()


def test_cifar_unpickler_refuses_code_even_with_a_matching_checksum(tmp_path):
    """Defence in depth: a file whose checksum someone registered still cannot run code."""
    import hashlib
    import pickle

    from onebit.data.datasets import Cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    data = pickle.dumps({"data": _Payload(marker), "labels": [0]}, protocol=2)
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    ds = Cifar(
        "x",
        10,
        3,
        32,
        url="file:///nonexistent/cifar-10-python.tar.gz",
        md5="0" * 32,
        folder="cifar-10-batches-py",
        train_files=("data_batch_1",),
        test_files=("test_batch",),
        file_md5s=(("data_batch_1", md5), ("test_batch", md5)),
    )
    with pytest.raises(DatasetError, match="refused to load posix.system"):
        ds.load(tmp_path, train=True)
    assert not marker.exists()


def test_cifar_offline_error_is_readable(tmp_path):
    from onebit.data.datasets import Cifar

    ds = Cifar(
        "x",
        10,
        3,
        32,
        url="http://127.0.0.1:9/cifar-10-python.tar.gz",
        md5="0" * 32,
        folder="cifar-10-batches-py",
        train_files=("data_batch_1",),
        test_files=("test_batch",),
    )
    with pytest.raises(DatasetError, match="offline.*place it at"):
        ds.load(tmp_path, train=True)


def test_imagenet_folder_of_jpegs(tiny_imagenet):
    ds = get_dataset("tiny_imagenet")
    train = ImageFolder(ds.folder(tiny_imagenet, True), True, size=32)
    val = ImageFolder(ds.folder(tiny_imagenet, False), False, size=32)
    assert len(train) == 12 and len(val) == 6 and train.classes == val.classes
    x, label = train[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and label == 1
    assert val[0][0].shape == (3, 32, 32)


def test_imagenet_missing_explains(tmp_path):
    with pytest.raises(DatasetError, match="ImageFolder tree"):
        get_dataset("imagenet").prepare(tmp_path)


@pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_verifies(tmp_path):
    x, y = get_dataset("fashion_mnist").load(tmp_path, train=False)
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


def test_augment_flip_crop_cutout():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = augment(x, g, pad=0, flip=True)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert 10 < flipped.sum() < 54 and ((out == x).flatten(1).all(1) | flipped).all()
    out = augment(x, g, pad=2, flip=False)
    assert out.shape == x.shape
    # every crop is a shifted window: the original interior appears at the shift
    for img in out[:8, 0]:
        assert any(
            torch.equal(
                img[max(0, -dy) : 4 - max(0, dy), max(0, -dx) : 4 - max(0, dx)],
                x[0, 0, max(0, dy) : 4 + min(0, dy), max(0, dx) : 4 + min(0, dx)],
            )
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )
    holes = (
        augment(torch.full((32, 1, 8, 8), 7, dtype=torch.uint8), g, pad=0, flip=False, cutout=4, cutout_style="devries")
        == 0
    )  # the official style: tests/test_recipe.py
    assert holes.flatten(1).sum(1).max() == 16 and holes.any()


def test_tensor_batches_cover_the_data_once_and_shard():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in TensorBatches(x, y, 3, "cpu", train=False)])
    assert seen.tolist() == list(range(10))
    shards = [
        torch.cat([yb for _, yb in TensorBatches(x, y, 3, "cpu", train=False, rank=r, world_size=3)]) for r in range(3)
    ]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    # every rank draws the same permutation (same seed) and keeps its own slice
    tr = [
        torch.cat(
            [
                yb
                for _, yb in TensorBatches(
                    x,
                    y,
                    4,
                    "cpu",
                    train=True,
                    gen=torch.Generator().manual_seed(0),
                    pad=0,
                    flip=False,
                    rank=r,
                    world_size=2,
                )
            ]
        )
        for r in range(2)
    ]
    assert len(tr[0]) == len(tr[1]) == 5 and not set(tr[0].tolist()) & set(tr[1].tolist())


def test_cli_data_writes_its_json_atomically_and_nothing_on_a_bad_file(tiny_fashion, tmp_path, capsys):
    import json

    from onebit.cli import main

    out = tmp_path / "out" / "tiny_fashion.json"
    assert main(["data", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--output", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["verified"] and info["num_classes"] == 10 and info["in_channels"] == 1
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind
    out.unlink()
    path = tiny_fashion / "tiny-fashion" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3])
    assert main(["data", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--output", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(path) in err and "checksum" in err
    assert not out.exists()


def test_imagenet_tree_shape_is_checked(tiny_imagenet):
    from onebit.data.datasets import ImageNet

    get_dataset("tiny_imagenet").prepare(tiny_imagenet)  # 3 classes, as registered
    with pytest.raises(DatasetError, match="holds 3 class folders, 1000 expected"):
        ImageNet("imagenet", 1000, 3, 224, in_memory=False).prepare(tiny_imagenet)
    with pytest.raises(DatasetError, match="holds 12 images, 13 expected"):
        ImageNet("x", 3, 3, 32, in_memory=False, images=(13, 6)).prepare(tiny_imagenet)


def test_a_corrupt_jpeg_is_named_even_from_a_loader_worker(tiny_imagenet, tmp_path, capsys):
    from onebit.cli import main

    bad = sorted((tiny_imagenet / "imagenet" / "train").rglob("*.JPEG"))[3]
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(
        [
            "train",
            "--dataset",
            "tiny_imagenet",
            "--data-root",
            str(tiny_imagenet),
            "--depth",
            "8",
            "--width",
            "0.25",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and str(bad) in err and "cannot be read as an image" in err and "Traceback" not in err


def test_training_refuses_an_image_tree_with_the_wrong_classes(tiny_imagenet, tmp_path, capsys):
    import shutil

    from onebit.cli import main

    shutil.rmtree(sorted((tiny_imagenet / "imagenet" / "train").iterdir())[0])
    code = main(
        [
            "train",
            "--dataset",
            "tiny_imagenet",
            "--data-root",
            str(tiny_imagenet),
            "--depth",
            "8",
            "--width",
            "0.25",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "holds 2 class folders, 3 expected" in err


def test_a_dataset_registered_under_another_name_is_refused():
    from onebit.data import DATASETS
    from onebit.errors import UserError

    fashion = DATASETS.get("fashion_mnist")
    with pytest.raises(UserError, match="registered as 'fm_copy' calls itself 'fashion_mnist'"):
        DATASETS.register("fm_copy", fashion)
    assert "fm_copy" not in DATASETS


# ---------------------------------------------------------------- staging (stage_data)
def tree(root):
    """Every path below ``root`` with its size and modification time (what a write changes)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", ["tiny_fashion", "tiny_cifar10", "tiny_cifar10-archive", "tiny_imagenet"])
def test_staged_copy_loads_the_same_data_and_the_shared_copy_is_only_read(request, tmp_path, name):
    """Each dataset kind is copied (CIFAR: unpacked from its verified archive where data_root
    holds only that) to the local folder, checked, read from there, and removed after."""
    from onebit.data.staging import staged

    fixture = {"tiny_cifar10": "tiny_cifar", "tiny_cifar10-archive": "tiny_cifar"}.get(name, name)
    source = request.getfixturevalue(fixture)
    ds = get_dataset(name.removesuffix("-archive"))
    ds.prepare(source)
    want = {train: ds.load(source, train) for train in (True, False)} if ds.in_memory else None
    if name.endswith("-archive"):
        import shutil

        shutil.rmtree(source / "cifar-10-batches-py")
    before = tree(source)
    local = tmp_path / "local"
    local.mkdir()
    logs = []
    with staged(ds, source, str(local), log=logs.append) as root:
        assert root.parent == local and root.name.startswith(f"onebit-{ds.name}-")
        if ds.in_memory:
            for train in (True, False):
                x, y = ds.load(root, train)
                assert torch.equal(x, want[train][0]) and torch.equal(y, want[train][1])
        else:
            ds.prepare(root)
            for train in (True, False):
                assert tree(ds.folder(root, train)).keys() == tree(ds.folder(source, train)).keys()
    assert list(local.iterdir()) == []  # removed
    assert tree(source) == before  # never written
    assert len(logs) == 1 and f"data staged to {root}" in logs[0]


def test_stage_data_names_a_node_local_folder_or_says_what_to_set(tiny_fashion, tmp_path, monkeypatch):
    """$VAR and ~ are expanded on the node; an unset variable, a missing folder, a relative
    path or a folder inside data_root is refused with what to do, before anything is copied."""
    from onebit.config import TrainConfig
    from onebit.data.staging import stage_base, staged
    from onebit.errors import ConfigError

    local = tmp_path / "scratch"
    local.mkdir()
    monkeypatch.setenv("ONEBIT_TEST_SCRATCH", str(local))
    assert stage_base("$ONEBIT_TEST_SCRATCH") == local == stage_base("${ONEBIT_TEST_SCRATCH}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert stage_base("~/scratch") == local
    monkeypatch.delenv("ONEBIT_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match=r"\$ONEBIT_NOT_SET is not set on this node .*TMPDIR"):
        stage_base("$ONEBIT_NOT_SET/x")
    with pytest.raises(ConfigError, match="is not a folder on this node"):
        stage_base(str(tmp_path / "missing"))
    for bad in ("scratch", "./scratch", "$1", "a$TMPDIR"):
        with pytest.raises(ConfigError, match="shared file system"):
            TrainConfig(dataset="tiny_fashion", stage_data=bad).validate(build=False)
    ds = get_dataset("tiny_fashion")
    with pytest.raises(ConfigError, match="would overlap"):
        with staged(ds, tiny_fashion, str(tiny_fashion)):
            pass
    assert sorted(p.name for p in tiny_fashion.iterdir()) == ["tiny-fashion"]


def test_a_stop_signal_while_staging_and_a_bad_copy_leave_nothing_behind(tiny_imagenet, tiny_fashion, tmp_path):
    """A stop (SIGUSR1 near the time limit) during a long copy exits 75 like a stop in
    training; a damaged source is refused by its checksum; either way the local copy is
    removed and data_root is untouched."""
    from onebit.data.staging import staged
    from onebit.errors import Interrupted

    local = tmp_path / "local"
    local.mkdir()
    copied = []

    def stop():
        copied.append(1)
        return "SIGUSR1" if len(copied) > 3 else None

    before = tree(tiny_imagenet)
    with pytest.raises(Interrupted, match="stopped by SIGUSR1 while staging the data") as e:
        with staged(get_dataset("tiny_imagenet"), tiny_imagenet, str(local), stop=stop):
            pass
    assert e.value.exit_code == 75 and list(local.iterdir()) == [] and tree(tiny_imagenet) == before
    bad = tiny_fashion / "tiny-fashion" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-10])
    before = tree(tiny_fashion)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        with staged(get_dataset("tiny_fashion"), tiny_fashion, str(local)):
            pass
    assert list(local.iterdir()) == [] and tree(tiny_fashion) == before


def test_a_dataset_that_does_not_say_its_files_cannot_be_staged(tmp_path):
    from onebit.data import DATASETS, Dataset
    from onebit.data.staging import staged

    DATASETS.register("plugin_data", Dataset("plugin_data", 10, 1, 28))
    try:
        with pytest.raises(DatasetError, match="cannot be staged.*unset stage_data"):
            with staged(get_dataset("plugin_data"), tmp_path, str(tmp_path / "..")):
                pass
    finally:
        DATASETS.unregister("plugin_data")


def test_two_runs_of_one_job_on_one_node_stage_apart_and_data_root_is_never_inside_the_copy(
    tiny_fashion, tmp_path, monkeypatch
):
    """Trainings that share a SLURM job (Snakemake run inside one allocation) or a shared
    stage folder (several nodes) each get their own copy: the node and process are in its
    name, and one ending does not remove the other's. A data_root that would lie inside the
    copy, or an unwritable stage folder, is refused before anything is copied or removed."""
    import os

    from onebit.data.staging import staged
    from onebit.errors import ConfigError

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    local = tmp_path / "local"
    local.mkdir()
    ds = get_dataset("tiny_fashion")
    with staged(ds, tiny_fashion, str(local)) as first:
        pid = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # another training of job 77
        with staged(ds, tiny_fashion, str(local)) as second:
            assert first != second and first.name.startswith("onebit-tiny_fashion-77-") and second.exists()
        assert first.exists() and not second.exists()
        assert ds.load(first, train=True)[0].shape[0] == 96
        monkeypatch.undo()
    assert list(local.iterdir()) == []
    inside = local / first.name / "data"  # data_root inside the copy-to-be: never removed
    shutil_copy = __import__("shutil").copytree
    shutil_copy(tiny_fashion, inside)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    with pytest.raises(ConfigError, match="would overlap"):
        with staged(ds, inside, str(local)):
            pass
    assert (inside / "tiny-fashion").is_dir()
    with pytest.raises(ConfigError, match="stage_data '/proc': cannot create /proc/onebit-"):
        with staged(ds, tiny_fashion, "/proc"):
            pass


def test_a_corrupted_gzip_file_is_a_checksum_mismatch_not_an_internal_error(tiny_fashion):
    """One byte changed inside the compressed stream (zlib's 'invalid distance'), not a
    truncation: the same checksum message, with what to do."""
    path = tiny_fashion / "tiny-fashion" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="checksum mismatch .*delete"):
        get_dataset("tiny_fashion").load(tiny_fashion, train=False)
