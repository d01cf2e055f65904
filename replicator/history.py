"""The checkpoint history: one row per committed checkpoint, for the timeline and rewinds.

``<state_schema>.checkpoint_history`` gets a row in every target transaction that writes the
checkpoint (the writers insert it with the checkpoint, in the same transaction: the history
is exactly what the target committed). It answers two questions the checkpoint row alone
cannot: where did the flow stand at a given time (``checkpoint show --history``), and which
position is "just before time T" on a PostgreSQL source, whose WAL carries no index by time
(a rewind or rollback ``--to TIMESTAMP`` resolves through it; MariaDB sources resolve from the
binlog's own event times instead).

Keeping it cheap: one single-row insert per commit (the PostgreSQL writer folds it into the
checkpoint statement), and rows older than ``rewind.history_days`` are deleted when ``run``
starts and hourly after. Rewinds are recorded here too (``event`` says what happened), so the
timeline shows a position going back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .statedb import StateDB

TABLE = "checkpoint_history"


@dataclass
class HistoryRow:
    flow: str
    position: str
    source_commit_time: datetime | None
    changes_applied: int
    transactions_applied: int
    recorded_at: datetime | None
    event: str | None = None


class History:
    def __init__(self, conn: Any, schema: str) -> None:
        self.db = StateDB(conn, schema)
        self.t = self.db.table(TABLE)

    def ensure(self) -> None:
        """Create the table if missing (the caller commits)."""
        db = self.db
        db.exec(
            f"CREATE TABLE IF NOT EXISTS {self.t} (id {db.serial}, flow {db.short} NOT NULL,"
            f" position {db.text} NOT NULL, source_commit_time {db.ts} NULL,"
            f" changes_applied BIGINT NOT NULL, transactions_applied BIGINT NOT NULL,"
            f" recorded_at {db.ts} NOT NULL, event {db.text}){db.suffix}"
        )
        db.exec(f"CREATE INDEX IF NOT EXISTS checkpoint_history_flow ON {self.t} (flow, recorded_at)")

    def record(self, row: HistoryRow) -> None:
        """In the caller's open transaction."""
        db = self.db
        db.exec(
            f"INSERT INTO {self.t} (flow, position, source_commit_time, changes_applied, transactions_applied,"
            f" recorded_at, event) VALUES (%s, %s, %s, %s, %s, {db.now}, %s)",
            (row.flow, row.position, db.ts_value(row.source_commit_time), row.changes_applied,
             row.transactions_applied, row.event),
        )

    def prune(self, days: float, flow: str) -> int:
        """Delete the flow's rows older than ``days`` (commits); how many."""
        db = self.db
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        n = db.exec_count(f"DELETE FROM {self.t} WHERE flow = %s AND recorded_at < %s", (flow, db.ts_value(cutoff)))
        db.commit()
        return n

    def timeline(self, flow: str, limit: int = 50) -> list[HistoryRow]:
        """The newest ``limit`` rows, oldest first."""
        rows = self.db.exec(
            f"SELECT flow, position, source_commit_time, changes_applied, transactions_applied, recorded_at, event"
            f" FROM {self.t} WHERE flow = %s ORDER BY id DESC LIMIT {int(limit)}",
            (flow,),
        )
        return list(reversed([self._row(r) for r in rows]))

    def before(self, flow: str, when: datetime) -> HistoryRow | None:
        """The checkpoint that stood just before the first source transaction committed at or
        after ``when``: the newest row whose last transaction committed before it (a flow's
        first checkpoint, recorded before anything was applied, has no commit time and
        counts as earliest). None when the history does not reach back that far."""
        db = self.db
        rows = db.exec(
            f"SELECT flow, position, source_commit_time, changes_applied, transactions_applied, recorded_at, event"
            f" FROM {self.t} WHERE flow = %s AND (source_commit_time < %s OR source_commit_time IS NULL)"
            f" AND event IS NULL ORDER BY source_commit_time IS NOT NULL DESC, source_commit_time DESC, id DESC LIMIT 1",
            (flow, db.ts_value(when)),
        )
        return self._row(rows[0]) if rows else None

    def at(self, flow: str, position: str) -> HistoryRow | None:
        """The newest checkpoint recorded at exactly ``position``."""
        rows = self.db.exec(
            f"SELECT flow, position, source_commit_time, changes_applied, transactions_applied, recorded_at, event"
            f" FROM {self.t} WHERE flow = %s AND position = %s AND event IS NULL ORDER BY id DESC LIMIT 1",
            (flow, position),
        )
        return self._row(rows[0]) if rows else None

    def newest_before(self, flow: str, cutoff: datetime) -> HistoryRow | None:
        """The newest checkpoint committed before ``cutoff`` (what a rewind window releases)."""
        db = self.db
        rows = db.exec(
            f"SELECT flow, position, source_commit_time, changes_applied, transactions_applied, recorded_at, event"
            f" FROM {self.t} WHERE flow = %s AND recorded_at < %s AND event IS NULL ORDER BY id DESC LIMIT 1",
            (flow, db.ts_value(cutoff)),
        )
        return self._row(rows[0]) if rows else None

    def oldest(self, flow: str) -> HistoryRow | None:
        rows = self.db.exec(
            f"SELECT flow, position, source_commit_time, changes_applied, transactions_applied, recorded_at, event"
            f" FROM {self.t} WHERE flow = %s ORDER BY id LIMIT 1",
            (flow,),
        )
        return self._row(rows[0]) if rows else None

    def _row(self, r: tuple[Any, ...]) -> HistoryRow:
        db = self.db
        return HistoryRow(str(r[0]), str(r[1]), db.ts_read(r[2]), int(r[3]), int(r[4]), db.ts_read(r[5]), r[6])
