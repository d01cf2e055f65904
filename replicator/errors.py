"""One error hierarchy for the whole replicator.

Every error the user can see derives from :class:`ReplicatorError` and carries a one-line
message that says what is wrong and how to fix it. The category decides what the pipeline does:
:class:`TransientError` (a lost connection, a server restarting) is retried with backoff and
resumes from the last checkpoint; everything else stops the flow. The CLI maps categories to
exit codes and never prints a traceback for them.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base class: a problem reported to the user as one clear line."""

    exit_code = 1


class ConfigError(ReplicatorError):
    """The configuration file or command line is invalid (exit code 2)."""

    exit_code = 2


class CheckFailed(ReplicatorError):
    """A prerequisite on a database is not met (wal_level, privileges, missing tables…)."""


class FlowPaused(ReplicatorError):
    """``run --once`` (or a scheduled run) reached the transaction a change limit paused."""


class TransientError(ReplicatorError):
    """A connection was lost or a server is (re)starting: retrying can help."""


class SchemaError(ReplicatorError):
    """Source and target tables do not fit together (missing table/column, no key)."""


class DataError(ReplicatorError):
    """A value cannot be written to the target as it is."""
