"""Training one row of the paper's tables: ``onebit train``.

The run directory is the output contract the pipeline relies on:
``config.json`` (resolved configuration), ``env.json`` (git revision, torch,
device, threads), ``metrics.jsonl`` (one line per epoch and split, each carrying
every config field), ``final.json`` (written last: its presence means the run is
complete) and ``checkpoint.pt`` (state after the last complete epoch). Every file
is written atomically. Re-running the same command resumes from the checkpoint;
on CPU the result is bit-for-bit that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from . import create_model, get_method
from .data import get_dataset
from .data.loaders import ImageFolder, TensorBatches, normalize_imagenet
from .runio import (CorruptCheckpoint, RunLock, atomic_write_json, atomic_write_text, environment,
                    fault_point, load_checkpoint, previous_checkpoint, save_checkpoint, set_aside)
from .schedule import is_restart, lr_at


@dataclass
class TrainConfig:
    """One run. Defaults are the workshop recipe ([W]; SPEC.md 3)."""

    dataset: str = "cifar10"
    arch: str = "wrn"
    method: str = "fp32"
    depth: int = 20
    width: float = 4
    epochs: int = 63            # cycles 1+2+4+8+16+32 with t0=1, tmult=2
    seed: int = 0
    batch_size: int = 125       # 400 steps per CIFAR epoch, as in the paper
    lr_max: float = 0.1        # at the first step of every cycle
    lr_min: float = 1e-5        # floor of the cosine (the MATLAB code; [P]'s text says 1e-4)
    momentum: float = 0.9       # not Nesterov
    weight_decay: float = 5e-4  # CIFAR; use 1e-4 for ImageNet
    t0: int = 1                 # first warm-restart cycle, epochs ([W]: 1, [P]: 2)
    tmult: int = 2
    momentum_reset: bool = False  # zero momentum at each restart (the official MATLAB code does)
    flip: bool = True
    crop_pad: int = 4           # padding filled with random 0-255 values, as the official code
    cutout: int = 0             # [P]'s "++" columns use 18
    train_subset: Optional[int] = None  # first N training images (small runs)
    test_subset: Optional[int] = None
    fp32_first_last: bool = False
    bn_affine: bool = False     # learned BN scale/offset (ImageNet)
    data_root: str = "data"
    # how, not what: excluded from the identity of a run
    device: str = "auto"
    workers: int = 4
    amp: bool = False           # bf16 autocast
    compile: bool = False
    eval_batch_size: int = 500

    RUNTIME_FIELDS = ("data_root", "device", "workers", "compile", "eval_batch_size")

    def validate(self) -> None:
        from . import MODELS
        from .data import DATASETS

        DATASETS.get(self.dataset), MODELS.get(self.arch), get_method(self.method)
        for name in ("epochs", "batch_size", "t0", "tmult", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("lr_max", "lr_min", "width", "momentum", "weight_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got "
                             f"{self.momentum!r} and {self.weight_decay!r}")
        for name in ("lr_max", "width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.lr_min <= self.lr_max:
            raise ValueError(f"lr_min must be in [0, lr_max], got {self.lr_min!r}")
        for name in ("train_subset", "test_subset"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.arch == "wrn" and (self.depth < 8 or (self.depth - 2) % 6):
            raise ValueError(f"WRN depth must be 6n + 2 (8, 14, 20, 26, ...), got {self.depth}")

    def identity(self) -> dict:
        """The fields that define the result (a resumed run must match them)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in self.RUNTIME_FIELDS}


class NonFiniteLoss(RuntimeError):
    pass


class ConfigMismatch(ValueError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dist():
    """(rank, world_size), initialising torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


class Progress:
    """A progress bar on a terminal; plain lines every ``every`` seconds in logs."""

    def __init__(self, total: int, desc: str, enabled: bool, every: float = 30.0):
        self.total, self.desc, self.every = total, desc, every
        self.enabled, self.bar, self.last = enabled, None, time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, i: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}")
        elif time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(f"{self.desc}: step {i + 1}/{self.total} loss {loss:.4f}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, log=print):
        cfg.validate()
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.rank, self.world = _dist()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.main = self.rank == 0
        self.ds = get_dataset(cfg.dataset)
        self.method = get_method(cfg.method)

    # ------------------------------------------------------------ set-up
    def model_kwargs(self) -> dict:
        cfg, ds = self.cfg, self.ds
        kw = dict(num_classes=ds.num_classes, in_channels=ds.in_channels,
                  fp32_first_last=cfg.fp32_first_last)
        if cfg.arch == "wrn":
            kw.update(depth=cfg.depth, width=cfg.width, bn_affine=cfg.bn_affine)
        return kw

    def check(self) -> int:
        """Validate everything short of training: the config and the model's
        construction (on the meta device: no memory, no data). Returns the
        parameter count."""
        with torch.device("meta"):
            model = self._create_model()
        return sum(p.numel() for p in model.parameters())

    def _create_model(self):
        try:
            return create_model(self.cfg.arch, self.cfg.method, **self.model_kwargs())
        except (RuntimeError, OverflowError, MemoryError) as e:  # sizes beyond any memory
            raise ValueError(f"cannot build {self.cfg.arch} with {self.model_kwargs()}: "
                             f"{type(e).__name__}: {e}; choose a smaller width or depth") from None

    def _build(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = self._create_model().to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.model = model
        self.n_params = sum(p.numel() for p in model.parameters())
        self.opt = torch.optim.SGD(model.parameters(), lr=cfg.lr_max, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.net = model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self._build_data()

    def _build_data(self):
        cfg, ds, root = self.cfg, self.ds, Path(self.cfg.data_root)
        if ds.in_memory:
            x, y = ds.load(root, train=True)
            xt, yt = ds.load(root, train=False)
            if cfg.train_subset:
                x, y = x[:cfg.train_subset], y[:cfg.train_subset]
            if cfg.test_subset:
                xt, yt = xt[:cfg.test_subset], yt[:cfg.test_subset]
            common = dict(rank=self.rank, world_size=self.world)
            self.train_batches = TensorBatches(x, y, cfg.batch_size, self.device, train=True, gen=self.gen,
                                               pad=cfg.crop_pad, flip=cfg.flip, cutout=cfg.cutout, **common)
            self.test_batches = TensorBatches(xt, yt, cfg.eval_batch_size, self.device, train=False, **common)
            self.prep = lambda xb: xb
            return
        sets = {}
        for train in (True, False):
            d = ImageFolder(ds.folder(root, train), train, ds.image_size)
            n = cfg.train_subset if train else cfg.test_subset
            if n:
                d = torch.utils.data.Subset(d, range(min(n, len(d))))
            sampler = (torch.utils.data.distributed.DistributedSampler(d, shuffle=train, seed=cfg.seed)
                       if self.world > 1 else None)
            sets[train] = torch.utils.data.DataLoader(
                d, batch_size=cfg.batch_size if train else cfg.eval_batch_size,
                shuffle=train and sampler is None, sampler=sampler, num_workers=cfg.workers,
                pin_memory=self.device.type == "cuda", drop_last=False,
                generator=torch.Generator().manual_seed(cfg.seed),
                persistent_workers=cfg.workers > 0)
        self.train_batches, self.test_batches = sets[True], sets[False]
        self.prep = lambda xb: normalize_imagenet(xb.to(self.device, non_blocking=True))

    # ------------------------------------------------------------ state
    def _state(self, epoch, step, metrics) -> dict:
        return {"config": self.model.onebit_config, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "epoch": epoch, "step": step,
                "metrics": metrics, "run_config": self.cfg.identity(),
                "rng": {"torch": torch.get_rng_state(), "data": self.gen.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}

    def _restore(self, ck: dict):
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"]["torch"])
        self.gen.set_state(ck["rng"]["data"])
        if ck["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        return ck["epoch"], ck["step"], ck["metrics"]

    # ------------------------------------------------------------ loops
    def _autocast(self):
        if self.cfg.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _reduce(self, *vals):
        t = torch.tensor(vals, dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def train_epoch(self, epoch: int, step: int):
        cfg, net = self.cfg, self.net
        net.train()
        spe = len(self.train_batches)
        loss_sum = correct = seen = 0.0
        data_time = 0.0
        progress = Progress(spe, f"epoch {epoch + 1}/{cfg.epochs} train", self.main)
        t_start = t_data = time.perf_counter()
        lr = cfg.lr_max
        for i, (xb, yb) in enumerate(self.train_batches):
            xb, yb = self.prep(xb), yb.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            data_time += time.perf_counter() - t_data
            lr = lr_at(step, spe, cfg.lr_max, cfg.lr_min, cfg.t0, cfg.tmult)
            for group in self.opt.param_groups:
                group["lr"] = lr
            if cfg.momentum_reset and step > 0 and is_restart(step, spe, cfg.t0, cfg.tmult):
                for s in self.opt.state.values():
                    if "momentum_buffer" in s and s["momentum_buffer"] is not None:
                        s["momentum_buffer"].zero_()
            with self._autocast():
                logits = net(xb)
                loss = F.cross_entropy(logits.float(), yb)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {i + 1} "
                    f"(learning rate {lr:.3g}). The run stopped; {self.out / 'checkpoint.pt'} holds the "
                    "last good epoch, if any. Lower --lr, check the data, or try without --amp.")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.method.after_step is not None:
                self.method.after_step(self.model)
            step += 1
            fault_point("step")
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
            progress.update(i, loss.item())
            t_data = time.perf_counter()
        progress.close()
        seconds = time.perf_counter() - t_start
        loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
        return step, {"split": "train", "lr": lr, "loss": loss_sum / seen, "top1_err": 100 * (1 - correct / seen),
                      "epoch_seconds": seconds, "data_seconds": data_time, "images": int(seen),
                      "images_per_s": seen / seconds}

    @torch.no_grad()
    def evaluate(self) -> dict:
        model = self.model
        model.eval()
        loss_sum = c1 = c5 = seen = 0.0
        t = time.perf_counter()
        for xb, yb in self.test_batches:
            xb, yb = self.prep(xb), yb.to(self.device)
            with self._autocast():
                logits = model(xb).float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), 1).indices
            c1 += (top[:, 0] == yb).sum().item()
            c5 += (top == yb[:, None]).any(1).sum().item()
            seen += len(yb)
        seconds = time.perf_counter() - t
        loss_sum, c1, c5, seen = self._reduce(loss_sum, c1, c5, seen)
        out = {"split": "test", "loss": loss_sum / seen, "top1_err": 100 * (1 - c1 / seen),
               "epoch_seconds": seconds, "images": int(seen), "images_per_s": seen / seconds}
        if self.ds.top5:
            out["top5_err"] = 100 * (1 - c5 / seen)
        return out

    def _peak_memory(self) -> dict:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return {"peak_mem_bytes": peak, "peak_mem_kind": "cuda_max_allocated"}
        return {"peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "peak_mem_kind": "cpu_max_rss"}

    # ------------------------------------------------------------ run
    def _resume(self, ck_path: Path):
        """The newest verified checkpoint (the latest, else the previous one), or None.
        A bad file is set aside (renamed, not deleted) with a warning."""
        for path in (ck_path, previous_checkpoint(ck_path)):
            if not path.exists():
                continue
            try:
                return load_checkpoint(path, map_location=self.device)
            except CorruptCheckpoint as e:
                moved = set_aside(path).name if self.main else path.name
                then = ("falling back to the previous checkpoint" if path == ck_path
                        else "restarting the run from epoch 0")
                self.log(f"WARNING: {e}. It was renamed to {moved}; {then}.")
        return None

    def run(self, stop_after: Optional[int] = None) -> Optional[dict]:
        """Train to the end (or for ``stop_after`` more epochs); returns final.json's content."""
        final_path = self.out / "final.json"
        if final_path.exists():
            self.log(f"{final_path} exists: the run is complete, nothing to do")
            return json.loads(final_path.read_text())
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.main:
            return self._run(stop_after)
        with RunLock(self.out):
            return self._run(stop_after)

    def _run(self, stop_after: Optional[int]) -> Optional[dict]:
        cfg, out = self.cfg, self.out
        final_path = out / "final.json"
        config_path = out / "config.json"
        if config_path.exists():
            previous = json.loads(config_path.read_text())
            if previous.get("identity") != cfg.identity():
                diff = {k: (previous.get("identity", {}).get(k), v) for k, v in cfg.identity().items()
                        if previous.get("identity", {}).get(k) != v}
                raise ConfigMismatch(f"{out} holds a run with a different configuration "
                                     f"(field: (existing, requested): {diff}); use another --out "
                                     "or delete that directory")
        self._build()
        epoch, step, metrics = 0, 0, []
        ck_path = out / "checkpoint.pt"
        state = self._resume(ck_path)
        if state is not None:
            epoch, step, metrics = self._restore(state)
            self.log(f"resuming {out} after epoch {epoch}")
        if self.main:
            atomic_write_json(config_path, {**dataclasses.asdict(cfg), "identity": cfg.identity(),
                                            "num_classes": self.ds.num_classes, "params": self.n_params})
            atomic_write_json(out / "env.json", {**environment(self.device), "world_size": self.world})
        wall = sum(m["epoch_seconds"] for m in metrics)
        done_now = 0
        while epoch < cfg.epochs:
            step, train_m = self.train_epoch(epoch, step)
            test_m = self.evaluate()
            epoch += 1
            mem = self._peak_memory()
            base = {**cfg.identity(), "epoch": epoch, "step": step, **mem}
            test_m["lr"] = train_m["lr"]
            metrics += [{**base, **train_m}, {**base, **test_m}]
            wall += train_m["epoch_seconds"] + test_m["epoch_seconds"]
            if self.main:
                save_checkpoint(self._state(epoch, step, metrics), ck_path)
                self._write_metrics(metrics)
            self.log(f"epoch {epoch}/{cfg.epochs} lr {train_m['lr']:.2e} train loss {train_m['loss']:.4f} "
                     f"err {train_m['top1_err']:.2f}% | test err {test_m['top1_err']:.2f}% | "
                     f"{train_m['images_per_s']:.0f} img/s, data {train_m['data_seconds']:.1f}s "
                     f"of {train_m['epoch_seconds']:.1f}s")
            done_now += 1
            if stop_after is not None and done_now >= stop_after and epoch < cfg.epochs:
                return None
        last = metrics[-1]
        final = {**cfg.identity(), "epochs_done": epoch, "test_top1_err": last["top1_err"],
                 "test_loss": last["loss"], "wall_seconds": wall, "params": self.n_params}
        if "top5_err" in last:
            final["test_top5_err"] = last["top5_err"]
        if self.main:
            self._write_metrics(metrics)  # complete even if a kill interrupted the last write
            atomic_write_json(final_path, final)
        return final

    def _write_metrics(self, metrics: list) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics),
                          fault="metrics")


def train(cfg: TrainConfig, out, stop_after: Optional[int] = None, log=print) -> Optional[dict]:
    return Trainer(cfg, Path(out), log).run(stop_after)
