"""Change limits: stop a mass delete (or a flapping record) before it reaches the target.

A flow's ``limits`` bound the volume of changes: rows changed by one source transaction,
changes per minute, and changes of one key per minute. They are counted *before* anything of a
transaction is committed on the target, in the source's time (commit timestamps), so a backlog
caught up after downtime trips nothing that the source did not actually do.

``action: alert`` logs a warning and goes on. ``action: pause`` stops the flow before the
transaction that tripped the guard is committed: the open target transaction is rolled back
(nothing of it is written), a pause record naming the transaction and the reason is committed
in ``<state_schema>.pauses``, and the flow waits. ``replicator resume FLOW`` lets that one
transaction through (and starts the rate windows afresh); a paused flow also stays paused
across restarts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import LimitsConfig
from .statedb import StateDB


ANY_TRANSACTION = "*"  # a pause position that holds the next transaction, whichever it is (pause, rollback)


class GuardTripped(Exception):
    """A limit was exceeded by the transaction at ``position`` (its text form)."""

    def __init__(self, reason: str, position: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


class Guard:
    """Counts one flow's changes; :meth:`change` raises GuardTripped (action pause) or
    returns a warning text (action alert) when a limit is exceeded."""

    def __init__(self, limits: LimitsConfig, allowed: str | None = None) -> None:
        self.limits = limits
        self.allowed = allowed  # the transaction ``resume`` let through
        self.hold: str | None = None  # the paused transaction: stop before it
        self.hold_reason = ""
        self._txn_rows = 0
        self._txn_position: str | None = None
        self._second = 0
        self._per_minute: deque[tuple[int, int]] = deque()  # (second, changes) in the last minute
        self._window = 0
        self._keys: dict[object, deque[int]] = {}  # per (table, key): seconds of its recent changes
        self._keys_pruned = 0
        self._alerted: set[str] = set()
        self._passing = False  # the open transaction is the one ``resume`` let through

    def begin(self, position: str | None, commit_time: datetime | None) -> None:
        self._txn_rows = 0
        self._txn_position = position
        self._alerted.clear()
        self._passing = self.allowed is not None and position == self.allowed
        if self._passing:  # let through, and the windows start afresh after it
            self._per_minute.clear()
            self._window = 0
            self._keys.clear()
        second = int(commit_time.timestamp()) if commit_time is not None else 0
        self._second = second
        while self._per_minute and self._per_minute[0][0] <= second - 60:
            self._window -= self._per_minute.popleft()[1]
        if second - self._keys_pruned >= 60:  # forget keys without a change in the last minute
            self._keys_pruned = second
            for k in [k for k, times in self._keys.items() if times[-1] <= second - 60]:
                del self._keys[k]

    def change(self, table: object, key: object) -> str | None:
        """Count one row change of the open transaction."""
        if self._passing:
            return None
        limits = self.limits
        self._txn_rows += 1
        if self._per_minute and self._per_minute[-1][0] == self._second:
            last = self._per_minute[-1]
            self._per_minute[-1] = (last[0], last[1] + 1)
        else:
            self._per_minute.append((self._second, 1))
        self._window += 1
        problem: str | None = None
        if limits.max_rows_per_transaction is not None and self._txn_rows > limits.max_rows_per_transaction:
            problem = (f"a source transaction changes more than {limits.max_rows_per_transaction} rows"
                       " (limits.max_rows_per_transaction)")
        elif limits.max_changes_per_minute is not None and self._window > limits.max_changes_per_minute:
            problem = (f"more than {limits.max_changes_per_minute} changes within a minute"
                       " (limits.max_changes_per_minute)")
        if limits.max_changes_per_key_per_minute is not None:
            times = self._keys.get((table, key))
            if times is None:
                times = self._keys[(table, key)] = deque()
            while times and times[0] <= self._second - 60:
                times.popleft()
            times.append(self._second)
            if len(times) > limits.max_changes_per_key_per_minute and problem is None:
                problem = (f"row {key} of {table} changed more than {limits.max_changes_per_key_per_minute}"
                           " times within a minute (limits.max_changes_per_key_per_minute)")
        if problem is None:
            return None
        if limits.action == "pause":
            raise GuardTripped(problem, self._txn_position)
        if problem in self._alerted:
            return None
        self._alerted.add(problem)
        return problem

    def holds(self, position: str | None) -> bool:
        return self.hold is not None and (position == self.hold or self.hold == ANY_TRANSACTION)

    @property
    def counts_keys(self) -> bool:
        return self.limits.max_changes_per_key_per_minute is not None


@dataclass
class Pause:
    flow: str
    reason: str
    position: str | None
    status: str  # paused | resumed
    paused_at: datetime | None


class Pauses:
    def __init__(self, conn: Any, schema: str) -> None:
        self.db = StateDB(conn, schema)
        self.t = self.db.table("pauses")

    def ensure(self) -> None:
        db = self.db
        db.exec(
            f"CREATE TABLE IF NOT EXISTS {self.t} (flow {db.short} NOT NULL PRIMARY KEY, reason {db.text} NOT NULL,"
            f" position {db.text}, status {db.short} NOT NULL, paused_at {db.ts} NOT NULL,"
            f" resumed_at {db.ts} NULL){db.suffix}"
        )

    def get(self, flow: str) -> Pause | None:
        rows = self.db.exec(f"SELECT flow, reason, position, status, paused_at FROM {self.t} WHERE flow = %s", (flow,))
        return Pause(*rows[0]) if rows else None

    def pause(self, flow: str, reason: str, position: str | None) -> None:
        db = self.db
        db.exec(f"DELETE FROM {self.t} WHERE flow = %s", (flow,))
        db.exec(f"INSERT INTO {self.t} (flow, reason, position, status, paused_at) VALUES (%s, %s, %s, 'paused', {db.now})",
                (flow, reason, position))

    def resume(self, flow: str) -> Pause | None:
        """Mark the pause resumed (commits); None if the flow was not paused."""
        current = self.get(flow)
        if current is None or current.status != "paused":
            return None
        db = self.db
        db.exec(f"UPDATE {self.t} SET status = 'resumed', resumed_at = {db.now} WHERE flow = %s", (flow,))
        db.commit()
        return current
