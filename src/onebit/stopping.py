"""Stopping a training run early and cleanly: ``SIGUSR1`` or ``SIGTERM`` ask the run to
stop at the next step boundary, save a checkpoint (mid-epoch if need be) and exit 75.

On SLURM, ``--signal=USR1@300`` delivers SIGUSR1 five minutes before a job's time limit
(the pipeline asks for it when ``max_runtime`` caps the jobs), and SIGTERM comes at the
limit itself, on ``scancel`` and on preemption. Snakemake resubmits the job (its
``retries``), and the run continues from the step it stopped after: on CPU, with a result
bit for bit that of an uninterrupted run.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopSignals:
    """Within ``with StopSignals() as stop:``, :attr:`requested` is the name of the first
    stop signal received (None before). Handlers are installed only in the main thread,
    and the previous ones are restored on exit."""

    def __init__(self):
        self.requested: Optional[str] = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is None:
            self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
