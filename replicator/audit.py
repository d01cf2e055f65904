"""The audit trail: one entry per applied operation, committed with the operation itself.

Entries live in ``<state_schema>.audit`` on the target and are written in the same target
transaction as the rows and the checkpoint, so the trail is exactly what the target holds: a
crash can neither lose an entry nor record one twice. Each entry has the flow, tables, the row's
key, the op, the before and after values (for an update, only the columns that changed when the
source sent the old row; all new values otherwise), the source position (the transaction's),
its commit time, the apply time and the conflict decision, if any.

Values are recorded *as written* -- after the mapping -- so an excluded column never appears
and a masked one appears only masked. A JSON lines copy (``audit.file``) is appended after the
commit (at-least-once: a crash between commit and append can lose the last lines of the file,
never of the table). Entries older than ``retention_days`` are pruned automatically.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .statedb import StateDB, dumps, jsonable, loads


@dataclass
class AuditEntry:
    flow: str
    source_table: str
    target_table: str
    key: dict[str, Any] | None
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: str | None
    commit_time: datetime | None
    decision: str | None = None
    applied_at: datetime | None = None
    id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "flow": self.flow, "source_table": self.source_table, "target_table": self.target_table,
            "key": jsonable(self.key), "op": self.op, "before": jsonable(self.before), "after": jsonable(self.after),
            "position": self.position, "commit_time": jsonable(self.commit_time), "decision": self.decision,
            "applied_at": jsonable(self.applied_at),
        }


def changed(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """An update's before/after reduced to the columns that changed (when the old row is known)."""
    if before is None or after is None:
        return before, after
    keys = [k for k, v in after.items() if k not in before or before[k] != v]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


class AuditTrail:
    def __init__(self, conn: Any, schema: str) -> None:
        self.db = StateDB(conn, schema)
        self.t = self.db.table("audit")

    def ensure(self) -> None:
        db = self.db
        db.exec(
            f"CREATE TABLE IF NOT EXISTS {self.t} (id {db.serial}, flow {db.short} NOT NULL,"
            f" source_table {db.short} NOT NULL, target_table {db.short} NOT NULL, row_key {db.json},"
            f" op {db.short} NOT NULL, before_values {db.json}, after_values {db.json}, position {db.text},"
            f" commit_time {db.ts} NULL, decision {db.text}, applied_at {db.ts} NOT NULL){db.suffix}"
        )
        db.exec(f"CREATE INDEX IF NOT EXISTS audit_applied_at ON {self.t} (applied_at)")  # both dialects
        db.exec(f"CREATE INDEX IF NOT EXISTS audit_flow_table ON {self.t} (flow, target_table, id)")

    def add(self, entries: list[AuditEntry]) -> None:
        """In the caller's open transaction."""
        db = self.db
        db.insert_many(
            f"INSERT INTO {self.t} (flow, source_table, target_table, row_key, op, before_values, after_values,"
            f" position, commit_time, decision, applied_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {db.now})",
            [
                (e.flow, e.source_table, e.target_table, dumps(e.key), e.op, dumps(e.before), dumps(e.after),
                 e.position, db.ts_value(e.commit_time), e.decision)
                for e in entries
            ],
        )

    def prune(self, retention_days: float, flow: str | None = None) -> int:
        """Delete entries older than the retention (commits). Returns how many."""
        db = self.db
        cutoff = datetime.now(timezone.utc) - timedelta(days=retention_days)
        where = "applied_at < %s" + (" AND flow = %s" if flow else "")
        params: list[object] = [db.ts_value(cutoff)] + ([flow] if flow else [])
        n = db.exec_count(f"DELETE FROM {self.t} WHERE {where}", params)
        db.commit()
        return n

    def query(self, flow: str | None = None, table: str | None = None, key: str | None = None,
              since: datetime | None = None, limit: int = 100) -> list[AuditEntry]:
        db = self.db
        where: list[str] = ["1=1"]
        params: list[object] = []
        if flow:
            where.append("flow = %s")
            params.append(flow)
        if table:
            where.append("(target_table = %s OR source_table = %s)")
            params += [table, table]
        if since:
            where.append("applied_at >= %s")
            params.append(db.ts_value(since))
        rows = db.exec(
            f"SELECT id, flow, source_table, target_table, row_key, op, before_values, after_values, position,"
            f" commit_time, decision, applied_at FROM {self.t} WHERE {' AND '.join(where)} ORDER BY id DESC"
            f" LIMIT {int(limit) if not key else 1000000}",
            params,
        )
        out = [
            AuditEntry(r[1], r[2], r[3], loads(r[4]), r[5], loads(r[6]), loads(r[7]), r[8], db.ts_read(r[9]), r[10],
                       db.ts_read(r[11]), int(r[0]))
            for r in rows
        ]
        if key:
            out = [e for e in out if _key_matches(e.key, key)][:limit]
        return list(reversed(out))


def _key_matches(row_key: dict[str, Any] | None, wanted: str) -> bool:
    """``--key 42`` matches a one-column key; ``--key id=42,region=eu`` any key by its columns."""
    if not row_key:
        return False
    if "=" not in wanted:
        return len(row_key) == 1 and str(next(iter(row_key.values()))) == wanted
    parts = dict(p.split("=", 1) for p in wanted.split(","))
    return all(str(row_key.get(k.strip())) == v.strip() for k, v in parts.items())


class AuditFile:
    """Appends committed entries as JSON lines (one writer per file per process)."""

    _locks: dict[str, threading.Lock] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = self._locks.setdefault(path, threading.Lock())

    def append(self, entries: list[AuditEntry], applied_at: datetime) -> None:
        if not entries:
            return
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            for e in entries:
                e.applied_at = applied_at
                fh.write(json.dumps(e.as_json(), ensure_ascii=False, sort_keys=True) + "\n")
