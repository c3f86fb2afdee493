"""Training one row of the paper's tables: ``onebit train``.

The run directory (:mod:`onebit.rundir`) is the output contract the pipeline
relies on; its configuration is :class:`onebit.config.TrainConfig`. Re-running
the same command resumes from the last checkpoint; on CPU the result is
bit-for-bit that of an uninterrupted run. SIGUSR1 or SIGTERM stop a run at the next
step boundary with a checkpoint of that step (:mod:`onebit.stopping`), from which it
resumes mid-epoch.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from . import bnstats
from .config import ConfigError, TrainConfig
from .data import get_dataset
from .data.loaders import make_batches
from .data.staging import staged
from .errors import Interrupted
from .methods import get_method
from .rundir import ConfigMismatch, RunDir, StateVersionError
from .runio import environment, fault_point
from .schedule import is_cycle_end, is_restart, lr_at
from .step import NonFiniteLoss, autocast, train_step
from .stopping import StopSignals

__all__ = ["ConfigMismatch", "NonFiniteLoss", "TrainConfig", "Trainer", "train"]


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
    """The whole run's progress: a bar with its ETA on a terminal; in logs, a plain line
    every ``every`` seconds with the epoch's step, the run's share done and its ETA.
    ``total`` is the run's steps, ``done`` those finished before this epoch."""

    def __init__(self, total: int, desc: str, enabled: bool, every: float = 30.0, done: int = 0, epoch_steps=None):
        self.total, self.desc, self.every, self.done0 = total, desc, every, done
        self.epoch_steps = epoch_steps or total
        self.enabled, self.bar = enabled, None
        self.t0 = self.last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, leave=False, unit="step")

    def eta(self, done: int) -> str:
        """The time left at this epoch's rate (steps only: evaluation adds a little)."""
        elapsed = time.monotonic() - self.t0
        if done <= self.done0 or elapsed <= 0:
            return "ETA unknown"
        return f"ETA {format_duration((self.total - done) * elapsed / (done - self.done0))}"

    def update(self, i: int, loss: float, done: "int | None" = None) -> None:
        """After step ``i`` of the epoch (from 0); ``done``: the run's steps done so far."""
        if not self.enabled:
            return
        done = self.done0 + i + 1 if done is None else done
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}")
        elif time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(
                f"{self.desc}: step {i + 1}/{self.epoch_steps} loss {loss:.4f} | run {100 * done / self.total:.0f}% "
                f"done, {self.eta(done)}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, log=print):
        cfg.validate()
        self.cfg, self.log = cfg, log
        self.rank, self.world = _dist()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if cfg.batch_size % self.world:
            raise ConfigError(
                f"batch_size {cfg.batch_size} is the global batch of a step and must be a "
                f"multiple of the {self.world} processes",
                "batch_size",
            )
        self.main = self.rank == 0
        self.say = log if self.main else (lambda *_: None)  # progress lines: the first process only
        self.rundir = RunDir(out, main=self.main, log=log)
        self.ds = get_dataset(cfg.dataset)
        self.method = get_method(cfg.method)
        self.stop = StopSignals()
        self.stops: list = []  # the stop signals of earlier starts of this run (checkpoint "stops")

    def check(self) -> int:
        """Validate everything short of training (what ``__init__`` did); returns the
        parameter count of the model, built on the meta device."""
        return sum(p.numel() for p in self.cfg.build_model(meta=True).parameters())

    def _staged(self):
        """The data root of this run: data_root, or its copy staged to node-local scratch
        (config stage_data) by the first process of each node."""
        local_main = int(os.environ.get("LOCAL_RANK", 0)) == 0
        return staged(
            self.ds,
            Path(self.cfg.data_root),
            self.cfg.stage_data,
            local_main=local_main,
            wait=torch.distributed.barrier if self.world > 1 else (lambda: None),
            stop=lambda: self.stop.requested,
            log=self.log if local_main else (lambda *_: None),
        )

    def _build(self, root: Optional[Path] = None):
        """The model, optimizer and batches (from ``root``: the staged data; default
        data_root)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = cfg.build_model().to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.model = self.net = model
        self.n_params = sum(p.numel() for p in model.parameters())
        self.opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr_max, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.train_batches, self.test_batches = make_batches(
            cfg, self.ds, self.device, self.gen, self.rank, self.world, root
        )

    # ------------------------------------------------------------ state
    def _state(self, epoch, step, metrics, partial: Optional[dict] = None) -> dict:
        """The training state after ``step``; ``partial`` (a mid-epoch checkpoint) holds how
        far epoch ``epoch + 1`` got: its batches done, their sums and its data order."""
        extra = {} if partial is None else {"partial": partial}
        return {
            **extra,
            "stops": self.stops,
            "config": self.model.onebit_config,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": epoch,
            "step": step,
            "metrics": metrics,
            "run_config": self.cfg.identity(),
            "rng": {
                "torch": torch.get_rng_state(),
                "data": self.gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def _restore(self, ck: dict):
        try:
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise StateVersionError(
                f"{self.rundir.checkpoint} does not fit this run's model ({str(e).splitlines()[0][:200]}); it "
                "was not touched: move it away to restart the run, or use another --out"
            ) from None
        torch.set_rng_state(ck["rng"]["torch"])
        self.gen.set_state(ck["rng"]["data"])
        if ck["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        self.stops = list(ck.get("stops") or [])
        return ck["epoch"], ck["step"], ck["metrics"], ck.get("partial")

    def _stop_requested(self) -> bool:
        """A stop signal reached this process, or (data-parallel) any of them: all stop
        after the same step."""
        flag = self.stop.requested is not None
        if self.world > 1:
            t = torch.tensor([float(flag)], device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _interrupted(self, epoch: int, i: int, steps: int) -> Interrupted:
        """The exception of a stop after step ``i`` of epoch ``epoch + 1`` (0: at the end of
        epoch ``epoch``), recorded in the checkpoint's ``stops`` before the caller saves it."""
        self.stops.append({"signal": self.stop.requested or "another process's", "epoch": epoch, "step": i})
        where = f"after step {i} of epoch {epoch + 1} ({steps} steps)" if i else f"after epoch {epoch}"
        return Interrupted(
            f"stopped by {self.stop.requested or 'a stop signal to another process'} {where}; "
            f"{self.rundir.checkpoint} holds that state. Run the same command again to continue from "
            "there (the pipeline resubmits the job); the result is that of an uninterrupted run."
        )

    # ------------------------------------------------------------ loops
    def _reduce(self, *vals):
        t = torch.tensor(vals, dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def train_epoch(self, epoch: int, step: int, metrics: Optional[list] = None, partial: Optional[dict] = None):
        """One epoch from its start, or from where ``partial`` (a mid-epoch checkpoint) left it.
        A stop signal ends it after the current step with a checkpoint of that step, which
        holds ``metrics`` (the epochs before this one)."""
        cfg = self.cfg
        self.net.train()
        self.train_batches.set_epoch(epoch)
        steps_per_epoch = len(self.train_batches)
        loss_sum = correct = seen = data_time = before = 0.0
        first = 0
        if partial is not None:
            first = partial["batches"]
            data_time, before = partial["data_seconds"], partial["seconds"]
            if self.rank == 0:  # the sums of all processes (the others start from 0)
                loss_sum, correct, seen = (partial[k] for k in ("loss_sum", "correct", "seen"))
            self.train_batches.resume(partial["data"], first)
        progress = Progress(
            cfg.epochs * steps_per_epoch,
            f"epoch {epoch + 1}/{cfg.epochs} train",
            self.main,
            done=step,
            epoch_steps=steps_per_epoch,
        )
        t_start = t_data = time.perf_counter()
        lr = cfg.lr_max
        for i, (xb, yb) in enumerate(self.train_batches, start=first):
            if self.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            data_time += time.perf_counter() - t_data
            # the learning rate of this iteration (closed form), and the warm restart
            lr = lr_at(step, steps_per_epoch, cfg.lr_max, cfg.lr_min, cfg.t0, cfg.tmult)
            for group in self.opt.param_groups:
                group["lr"] = lr
            if cfg.momentum_reset and step > 0 and is_restart(step, steps_per_epoch, cfg.t0, cfg.tmult):
                for s in self.opt.state.values():
                    if s.get("momentum_buffer") is not None:
                        s["momentum_buffer"].zero_()
            try:
                loss, logits = train_step(self.net, self.opt, xb, yb, self.method, cfg.amp)
            except NonFiniteLoss as e:
                raise NonFiniteLoss(
                    f"{e} at epoch {epoch + 1}, step {i + 1} (learning rate {lr:.3g}). The run stopped; "
                    f"{self.rundir.checkpoint} holds the last good epoch, if any. Lower --lr, check the "
                    "data, or try without --amp."
                ) from None
            step += 1
            fault_point("step")
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
            progress.update(i, loss.item(), done=step)
            if i + 1 < steps_per_epoch and self._stop_requested():
                progress.close()
                loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
                state = {
                    "batches": i + 1,
                    "loss_sum": loss_sum,
                    "correct": correct,
                    "seen": seen,
                    "data_seconds": data_time,
                    "seconds": before + time.perf_counter() - t_start,
                    "data": self.train_batches.state(),
                }
                stopped = self._interrupted(epoch, i + 1, steps_per_epoch)
                self.rundir.save(self._state(epoch, step, metrics or [], state))
                raise stopped
            t_data = time.perf_counter()
        progress.close()
        seconds = before + time.perf_counter() - t_start
        loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
        return step, {
            "split": "train",
            "lr": lr,
            "loss": loss_sum / seen,
            "top1_err": 100 * (1 - correct / seen),
            "epoch_seconds": seconds,
            "data_seconds": data_time,
            "images": int(seen),
            "images_per_s": seen / seconds,
        }

    def reestimate_bn(self, epoch: int) -> None:
        """The official code's test-time BN statistics: one pass over the augmented
        training set (:mod:`onebit.bnstats`); its draws come from the data generator,
        whose state the checkpoint keeps."""
        self.train_batches.set_epoch(10**6 + epoch)  # folder datasets: an order of its own

        def reduce(t):
            if self.world > 1:
                torch.distributed.all_reduce(t)
            return t

        bnstats.reestimate(self.model, self.train_batches, self.cfg.amp, reduce)

    @torch.no_grad()
    def evaluate(self) -> dict:
        import torch.nn.functional as F

        model = self.model
        model.eval()
        loss_sum = c1 = c5 = seen = 0.0
        t = time.perf_counter()
        for xb, yb in self.test_batches:
            with autocast(self.device, self.cfg.amp):
                logits = model(xb).float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), 1).indices
            c1 += (top[:, 0] == yb).sum().item()
            c5 += (top == yb[:, None]).any(1).sum().item()
            seen += len(yb)
        seconds = time.perf_counter() - t
        loss_sum, c1, c5, seen = self._reduce(loss_sum, c1, c5, seen)
        out = {
            "split": "test",
            "loss": loss_sum / seen,
            "top1_err": 100 * (1 - c1 / seen),
            "epoch_seconds": seconds,
            "images": int(seen),
            "images_per_s": seen / seconds,
        }
        if self.ds.top5:
            out["top5_err"] = 100 * (1 - c5 / seen)
        return out

    def _peak_memory(self) -> dict:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return {"peak_mem_bytes": peak, "peak_mem_kind": "cuda_max_allocated"}
        return {
            "peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_mem_kind": "cpu_max_rss",
        }

    # ------------------------------------------------------------ run
    def run(self, stop_after: Optional[int] = None) -> Optional[dict]:
        """Train to the end (or for ``stop_after`` more epochs); returns final.json's content."""
        cfg, identity = self.cfg, self.cfg.identity()
        with self.rundir.open(identity) as rd:
            final = rd.finished()
            if final is not None:
                self.log(f"{rd.final} exists: the run is complete, nothing to do")
                return final
            # stop signals are caught from here on (a stop while staging exits 75 too)
            with self.stop, self._staged() as root:
                self._build(root)
                epoch, step, metrics, partial = 0, 0, [], None
                state = rd.resume(identity, map_location=self.device)
                if state is not None:
                    epoch, step, metrics, partial = self._restore(state)
                    within = f", step {partial['batches']} of epoch {epoch + 1}" if partial else ""
                    why = f" (stopped by {self.stops[-1]['signal']}; start {len(self.stops) + 1})" if self.stops else ""
                    self.log(f"resuming {rd.path} after epoch {epoch}{within}{why}")
                rd.start(
                    {
                        **dataclasses.asdict(cfg),
                        "identity": identity,
                        "num_classes": self.ds.num_classes,
                        "params": self.n_params,
                    },
                    {**environment(self.device), "world_size": self.world},
                )
                wall = sum(m["epoch_seconds"] for m in metrics)
                self.say(self._banner(epoch, rd.path))
                epoch, step, wall = self._epochs(epoch, step, metrics, partial, wall, stop_after)
                if epoch < cfg.epochs:
                    return None
                final = self._finish(epoch, metrics, wall)
                self.say(
                    f"done: test error {final['test_top1_err']:.2f}% after {epoch} epochs "
                    f"({format_duration(wall)} of epochs); results in {rd.path} (final.json, metrics.jsonl)"
                )
                return final

    def _banner(self, epoch: int, path) -> str:
        """The start line: network, parameters, method, data, device, steps, output."""
        from .data import DATASETS
        from .models import LABELS, model_label

        cfg = self.cfg
        name = model_label(cfg.arch, depth=cfg.depth, width=cfg.width) if cfg.arch in LABELS else cfg.arch

        def images(b):
            return len(b.x) if hasattr(b, "x") else len(getattr(b, "dataset", ()))

        title = DATASETS.get(cfg.dataset).title if cfg.dataset in DATASETS else cfg.dataset
        where = f"{self.device}" + (f" x {self.world} processes" if self.world > 1 else "")
        where += f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        steps = len(self.train_batches)
        again = f", from epoch {epoch + 1}" if epoch else ""
        return (
            f"start: {name} ({self.n_params:,} parameters), method {cfg.method}, {title} "
            f"({images(self.train_batches):,} training / {images(self.test_batches):,} test images), {where}; "
            f"{cfg.epochs} epochs x {steps} steps of batch {cfg.batch_size}{again}; output {path}"
        )

    def _epochs(self, epoch, step, metrics, partial, wall, stop_after):
        cfg, identity, rd = self.cfg, self.cfg.identity(), self.rundir
        for _ in range(cfg.epochs - epoch if stop_after is None else min(stop_after, cfg.epochs - epoch)):
            step, train_m = self.train_epoch(epoch, step, metrics, partial)
            partial = None
            epoch += 1
            bn_stats = "running"
            if cfg.bn_reestimate and (is_cycle_end(epoch, cfg.t0, cfg.tmult) or epoch == cfg.epochs):
                self.reestimate_bn(epoch)
                bn_stats = "reestimated"
            test_m = {**self.evaluate(), "bn_stats": bn_stats}
            base = {**identity, "epoch": epoch, "step": step, **self._peak_memory()}
            test_m["lr"] = train_m["lr"]
            metrics += [{**base, **train_m}, {**base, **test_m}]
            wall += train_m["epoch_seconds"] + test_m["epoch_seconds"]
            rd.save(self._state(epoch, step, metrics))
            rd.write_metrics(metrics)
            left = (cfg.epochs - epoch) * wall / epoch
            self.say(
                f"epoch {epoch}/{cfg.epochs} lr {train_m['lr']:.2e} train loss {train_m['loss']:.4f} "
                f"err {train_m['top1_err']:.2f}% | test err {test_m['top1_err']:.2f}% | "
                f"{train_m['images_per_s']:.0f} img/s, data {train_m['data_seconds']:.1f}s "
                f"of {train_m['epoch_seconds']:.1f}s | run {100 * epoch / cfg.epochs:.0f}% done"
                + (f", ETA {format_duration(left)}" if epoch < cfg.epochs else "")
            )
            if epoch < cfg.epochs and self._stop_requested():
                stopped = self._interrupted(epoch, 0, 0)
                rd.save(self._state(epoch, step, metrics))  # again, with the stop recorded
                raise stopped
        return epoch, step, wall

    def _finish(self, epoch, metrics, wall) -> dict:
        identity, rd = self.cfg.identity(), self.rundir
        last = metrics[-1]
        final = {
            **identity,
            "epochs_done": epoch,
            "test_top1_err": last["top1_err"],
            "test_loss": last["loss"],
            "wall_seconds": wall,
            "params": self.n_params,
        }
        if "top5_err" in last:
            final["test_top5_err"] = last["top5_err"]
        rd.finish(metrics, final)
        return final


def train(cfg: TrainConfig, out, stop_after: Optional[int] = None, log=print) -> Optional[dict]:
    return Trainer(cfg, Path(out), log).run(stop_after)
