"""Every error a user can fix, with the exit code the command line gives it.

``onebit`` prints one of these as one paragraph without a traceback; anything else that
reaches the command line (a ``ValueError`` from a bug, say) is shown as an internal error
that asks for ``--debug`` and a report. Exit codes: 2 a bad argument, setting, grid or
plugin; 3 bad data, a damaged file or a run that cannot go on (4, a file that cannot be
written, comes from ``OSError`` in :mod:`onebit.cli`; 75, training stopped by SIGUSR1 or
SIGTERM after saving a checkpoint, to be run again; 70, an internal error: a bug, to be
reported with the traceback of ``--debug``; 130, Ctrl-C).
"""

from __future__ import annotations

from typing import Optional


class OnebitError(Exception):
    """Base of every user-facing error; ``exit_code`` is what ``onebit`` exits with."""

    exit_code = 2


class UserError(OnebitError, ValueError):
    """A bad argument, setting or input file (exit 2); a ``ValueError`` to Python callers."""


class ConfigError(UserError):
    """A value a run cannot have; the message names the field (also kept as ``field``)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


class GridError(UserError):
    """A grid that cannot run; the message names file, row and field."""


class UnknownNameError(OnebitError, KeyError):
    """An unknown registry name; the message lists the known ones (exit 2; a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(UserError):
    """A plugin that cannot be found or fails while loading."""


class ConfigMismatch(UserError):
    """The run directory holds a run of another configuration."""


class StateVersionError(UserError):
    """A checkpoint written by another version of onebit's training state."""


class RunLocked(UserError):
    """Another live process is writing the run directory."""


class InconsistentRun(UserError):
    """A run directory whose files disagree with each other or with its grid row."""


class DatasetError(OnebitError):
    """A dataset that is missing, damaged or not what it claims (exit 3)."""

    exit_code = 3


class CorruptCheckpoint(OnebitError):
    """A checkpoint file that is truncated, altered or not a onebit checkpoint (exit 3)."""

    exit_code = 3


class NonFiniteLoss(OnebitError, RuntimeError):
    """Training produced a NaN or infinite loss (exit 3)."""

    exit_code = 3


class Interrupted(OnebitError):
    """Training stopped by SIGUSR1 or SIGTERM at a step boundary, its checkpoint saved (exit
    75, EX_TEMPFAIL: run the same command again, or let the cluster resubmit, to continue)."""

    exit_code = 75


class ReportCrashed(Exception):
    """The report notebook failed on tables that passed their checks: a bug (exit 70, with
    the notebook's error), not a user error."""
