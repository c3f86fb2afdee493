"""Training throughput per method, and whether the input pipeline keeps up.

For each architecture, every method trains on CIFAR-shaped batches held on the
device; methods are interleaved step by step within one process (so a busy
machine slows all of them alike) and the median step time gives images/s and the
overhead ratio against ``fp32``. The on-device augmentation (flip, random-fill
pad-4 crop, cutout) of one batch is timed the same way, against the step.

    python benchmarks/train_speed.py                     # CPU defaults: small batch
    python benchmarks/train_speed.py --device cuda --batch-size 125 --amp
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from onebit import create_model, get_method, list_methods
from onebit.data.loaders import augment
from onebit.step import train_step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="20-4,20-10", help="WRN depth-width list")
    p.add_argument(
        "--methods", default=",".join(m for m in ["fp32", "w1", "cl", "cl-strict", "w1+cl"] if m in list_methods())
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: 125 on GPU, 16 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per method (default 20 GPU, 4 CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    bs = args.batch_size or (125 if gpu else 16)
    steps = args.steps or (20 if gpu else 4)
    if gpu:
        torch.backends.cudnn.benchmark = True
    methods = args.methods.split(",")
    rows = []
    for arch in args.archs.split(","):
        depth, width = (int(v) for v in arch.split("-"))
        data = torch.randint(0, 256, (bs * 4, 3, 32, 32), dtype=torch.uint8, device=device)
        y = torch.randint(0, 10, (bs,), device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        nets, opts = {}, {}
        for m in methods:
            torch.manual_seed(0)
            net = create_model("wrn", m, depth=depth, width=width).to(device)
            if gpu:
                net = net.to(memory_format=torch.channels_last)
            nets[m] = net
            opts[m] = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        times = {m: [] for m in methods}
        data_times = []

        def batch():
            idx = torch.randint(0, len(data), (bs,), device=device, generator=gen)
            xb = augment(data[idx], gen, pad=4, flip=True, cutout=18).float().div_(255)
            return xb.contiguous(memory_format=torch.channels_last) if gpu else xb

        for it in range(steps + 1):  # the first round warms up (allocator, cudnn autotuning)
            for m in methods:
                sync(device)
                t0 = time.perf_counter()
                xb = batch()
                sync(device)
                t1 = time.perf_counter()
                train_step(nets[m], opts[m], xb, y, get_method(m), amp=args.amp)
                sync(device)
                t2 = time.perf_counter()
                if it:
                    times[m].append(t2 - t1)
                    data_times.append(t1 - t0)
        base = statistics.median(times["fp32"]) if "fp32" in times else None
        data_med = statistics.median(data_times)
        for m in methods:
            med = statistics.median(times[m])
            rows.append(
                {
                    "arch": f"WRN-{arch}",
                    "method": m,
                    "batch_size": bs,
                    "device": str(device),
                    "amp": args.amp,
                    "step_seconds": med,
                    "images_per_s": bs / med,
                    "overhead_vs_fp32": med / base if base else None,
                    "data_seconds_per_batch": data_med,
                    "data_fraction_of_step": data_med / med,
                }
            )
        del nets, opts
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batch {bs}; median of {steps} steps per method, methods interleaved")
    print(
        f"{'arch':<10} {'method':<10} {'step s':>8} {'img/s':>8} {'x fp32':>7} {'data s/batch':>13} {'data/step':>10}"
    )
    for r in rows:
        ov = f"{r['overhead_vs_fp32']:.2f}" if r["overhead_vs_fp32"] else "-"
        print(
            f"{r['arch']:<10} {r['method']:<10} {r['step_seconds']:>8.3f} {r['images_per_s']:>8.1f} {ov:>7}"
            f" {r['data_seconds_per_batch']:>13.5f} {100 * r['data_fraction_of_step']:>9.2f}%"
        )


if __name__ == "__main__":
    main()
