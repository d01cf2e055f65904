"""Commit times for ``conflicts: last_writer_wins``: when was the target's current row written?

The incoming change brings its own commit time (the source transaction's). The other time --
of the target's current version of the row -- comes from:

- a PostgreSQL target: ``pg_xact_commit_timestamp(xmin)``, read with the row (the server needs
  ``track_commit_timestamp = on``). Rows the replicator wrote carry their *source's* commit
  time there: it tags its transactions with ``pg_replication_origin_xact_setup``.
- a MySQL/MariaDB target, which keeps no such time: the binlog does. The flow that reads that
  system (the other half of the two-way flow, in the same ``run``) records the commit time of
  every change it reads here (:class:`CommitTimes`, fed from its reader thread); the writer
  waits until that reader has read past the target's binlog position of the moment it locked
  the rows, then looks the key up. A key it does not know was read by an earlier process and
  already delivered to the other system, which has decided the conflict with both times in
  hand: the writer mirrors that decision (``mirror``). Both halves of a MySQL <-> MySQL pair
  would wait for each other's reader, so that pair is refused at load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .errors import TransientError
from .records import Change, Commit, Heartbeat, Item, Position, Row, TableId

WAIT_SECONDS = 60.0
MAX_KEYS = 2_000_000  # per system; beyond, the oldest are forgotten (then decisions are mirrored)


class CommitTimes:
    """Commit times of changes read from one system's log, by (table, key), and how far the
    reader got. Written by a reader thread, read by writer threads."""

    def __init__(self) -> None:
        self._times: dict[tuple[TableId, tuple[object, ...]], datetime] = {}
        self._position: Position | None = None
        self._reading = False  # a reader is running (a stopped one will not get further)
        self._cond = threading.Condition()

    def record(self, items: Iterator[Item], keys: dict[TableId, tuple[str, ...]]) -> Iterator[Item]:
        """Pass ``items`` through, noting each change's commit time and each transaction end."""
        when: datetime | None = None
        times = self._times
        for item in items:
            kind = type(item)
            if kind is Change:
                cols = keys.get(item.table)  # type: ignore[union-attr]
                if cols is not None and when is not None:
                    row = item.after if item.after is not None else (item.before or item.key)  # type: ignore[union-attr]
                    if row is not None and all(c in row for c in cols):
                        times[(item.table, tuple(row[c] for c in cols))] = when  # type: ignore[union-attr]
                        if len(times) > MAX_KEYS:
                            del times[next(iter(times))]
            elif kind is Commit or kind is Heartbeat:
                if kind is Commit:
                    when = None
                with self._cond:
                    self._position = item.position  # type: ignore[union-attr]
                    self._cond.notify_all()
            elif hasattr(item, "commit_time"):  # Begin
                when = item.commit_time  # type: ignore[union-attr]
            yield item

    def wait_past(self, position: Position, timeout: float = WAIT_SECONDS) -> None:
        """Until the reader has read everything up to ``position`` (or has stopped: ``run
        --once`` reads up to where it started; later keys are decided by mirroring)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._reading_behind(position):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientError(
                        "last_writer_wins: the reader of the target system did not reach its current"
                        f" position {position} in {timeout:.0f}s (both halves of a two-way flow must run"
                        " in the same `replicator run`)"
                    )
                self._cond.wait(left)

    def begin(self, position: Position) -> None:
        """A reader session starts at ``position`` (until :meth:`end`, waiters wait for it)."""
        with self._cond:
            self._position = position
            self._reading = True

    def end(self) -> None:
        with self._cond:
            self._reading = False
            self._cond.notify_all()

    def _reading_behind(self, position: Position) -> bool:
        if self._position is not None and self._position >= position:
            return False
        return self._reading or self._position is None

    def get(self, table: TableId, key: tuple[object, ...]) -> datetime | None:
        return self._times.get((table, key))


_registry: dict[str, CommitTimes] = {}
_registry_lock = threading.Lock()


def commit_times(system: str) -> CommitTimes:
    """The process-wide record of ``system``'s commit times."""
    with _registry_lock:
        found = _registry.get(system)
        if found is None:
            found = _registry[system] = CommitTimes()
        return found


def mirror(after: Row | None, other_now: Row | None, same: Any) -> str:
    """The decision the other system made, seen in its row now: it kept the incoming change's
    version (it won: apply it here) or it took ours (skip)."""
    return "apply" if same(after, other_now) else "skip"
