"""Cosine learning rate with warm restarts (SGDR), in closed form per iteration.

The first cycle lasts ``t0`` epochs, each next one ``tmult`` times longer:
``t0=1, tmult=2`` gives cycles 1, 2, 4, 8, 16, 32, 64 and the workshop's totals of
63 / 127 epochs; ``t0=2`` the ICLR paper's 30 / 62 / 126 / 254. Computing the
rate from the iteration number (rather than re-creating a PyTorch scheduler at
every restart) cannot silently miss a restart, and resumes trivially.
"""

from __future__ import annotations

import math

from .errors import ConfigError


def cycles(t0: int, tmult: int, epochs: int) -> list[tuple[int, int]]:
    """(start epoch, length) of every cycle that begins before ``epochs``."""
    if t0 <= 0 or tmult < 1:
        raise ConfigError(f"restart schedule needs t0 > 0 and tmult >= 1, got t0={t0}, tmult={tmult}")
    out, start, length = [], 0, t0
    while start < epochs:
        out.append((start, length))
        start, length = start + length, length * tmult
    return out


def cycle_end_epochs(t0: int, tmult: int, n: int) -> list[int]:
    """Epoch totals at which the first ``n`` cycles end (1, 3, 7, ..., 63, 127 for t0=1)."""
    ends, total, length = [], 0, t0
    for _ in range(n):
        total += length
        ends.append(total)
        length *= tmult
    return ends


def cycle_position(step: int, steps_per_epoch: int, t0: int, tmult: int) -> tuple[int, int]:
    """(steps into the current cycle, steps in the current cycle) of iteration ``step``."""
    start, length = 0, t0 * steps_per_epoch
    while step >= start + length:
        start, length = start + length, length * tmult
    return step - start, length


def lr_at(step: int, steps_per_epoch: int, lr_max: float, lr_min: float, t0: int, tmult: int) -> float:
    """Learning rate of iteration ``step`` (0-based): ``lr_max`` on the first step of
    every cycle, cosine-annealed towards ``lr_min`` at its end."""
    pos, length = cycle_position(step, steps_per_epoch, t0, tmult)
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * pos / length))


def is_restart(step: int, steps_per_epoch: int, t0: int, tmult: int) -> bool:
    return cycle_position(step, steps_per_epoch, t0, tmult)[0] == 0


def is_cycle_end(epochs_done: int, t0: int, tmult: int) -> bool:
    """Whether a warm-restart cycle ends after ``epochs_done`` epochs (1, 3, 7, ... for
    t0=1, tmult=2)."""
    total, length = 0, t0
    while total < epochs_done:
        total, length = total + length, length * tmult
    return total == epochs_done
