"""Opening PostgreSQL connections with errors sorted into the replicator's categories.

A refused or dropped connection is transient (the server may be restarting: retry); bad
credentials, an unknown role or database, or a missing pg_hba entry will not fix themselves,
so they stop the flow with the server's own one-line reason.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..errors import ReplicatorError, TransientError

_FATAL_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "is not permitted to log in",
)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, what: str, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """Connect (autocommit unless told otherwise); ``what`` names the role: source/target."""
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        msg = first_line(exc)
        if any(marker in msg for marker in _FATAL_MARKERS):
            raise ReplicatorError(f"cannot connect to the {what}: {msg}") from None
        raise TransientError(f"cannot connect to the {what}: {msg}") from None
