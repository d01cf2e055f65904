"""The conflict log: every two-way sync conflict, how it was decided and what was written.

A conflict (see :mod:`replicator.conflicts`) is recorded in ``<state_schema>.conflicts`` on the
target, in the same transaction as the batch that met it, so the log is exactly what the target
holds: a resolved conflict is logged if and only if its result committed, and a parked change
is kept if and only if the batch that parked it committed.

An entry keeps both versions of the row (``incoming``: what arrived from ``origin``;
``current``: what the target held), the rule and the winner, the columns in conflict and the
result written (None when the row was deleted or left alone). Its status is ``resolved``
(decided by the rule), ``parked`` (rule ``manual``: nothing was written, an operator decides)
or ``taken`` (an operator has dealt with a parked entry). Rows are stored as the caller passes
them: sanitizing sensitive columns is its job, as for dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .statedb import StateDB, dumps, loads

Row = dict[str, Any]

_COLUMNS = ("flow, table_name, row_key, origin, target, rule, winner, columns, incoming, current_row, result,"
            " action, status, position, commit_time")


@dataclass
class ConflictEntry:
    flow: str
    table: str  # the target table
    key: Row | None  # target column names
    origin: str  # the system whose change arrived
    target: str
    rule: str
    winner: str | None
    columns: list[str]
    incoming: Row | None  # sanitized
    current: Row | None  # sanitized
    result: Row | None  # the row written; None when deleted or left alone
    action: str
    status: str  # "resolved" | "parked" | "taken"
    position: str | None
    commit_time: datetime | None


class ConflictLog:
    def __init__(self, conn: Any, schema: str) -> None:
        self.db = StateDB(conn, schema)
        self.t = self.db.table("conflicts")

    def ensure(self) -> None:
        db = self.db
        db.exec(
            f"CREATE TABLE IF NOT EXISTS {self.t} (id {db.serial}, flow {db.short} NOT NULL,"
            f" table_name {db.short} NOT NULL, row_key {db.json}, origin {db.short} NOT NULL,"
            f" target {db.short} NOT NULL, rule {db.short} NOT NULL, winner {db.short}, columns {db.json},"
            f" incoming {db.json}, current_row {db.json}, result {db.json}, action {db.short} NOT NULL,"
            f" status {db.short} NOT NULL, position {db.text}, commit_time {db.ts} NULL,"
            f" detected_at {db.ts} NOT NULL){db.suffix}"
        )

    def add(self, entries: list[ConflictEntry]) -> None:
        """In the caller's open transaction."""
        db = self.db
        db.insert_many(
            f"INSERT INTO {self.t} ({_COLUMNS}, detected_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {db.now})",
            [
                (e.flow, e.table, dumps(e.key), e.origin, e.target, e.rule, e.winner, dumps(e.columns),
                 dumps(e.incoming), dumps(e.current), dumps(e.result), e.action, e.status, e.position,
                 db.ts_value(e.commit_time))
                for e in entries
            ],
        )

    def list(self, flow: str | None = None, status: str | None = None, ids: list[int] | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
        """Entries, oldest first; with ``limit``, the newest ``limit`` of them."""
        where: list[str] = ["1=1"]
        params: list[object] = []
        if flow is not None:
            where.append("flow = %s")
            params.append(flow)
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if ids:
            where.append("id IN (" + ", ".join(["%s"] * len(ids)) + ")")
            params.extend(ids)
        query = f"SELECT id, {_COLUMNS}, detected_at FROM {self.t} WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit:
            query += f" LIMIT {int(limit)}"
        db = self.db
        return [
            {"id": int(r[0]), "flow": r[1], "table": r[2], "key": loads(r[3]), "origin": r[4], "target": r[5],
             "rule": r[6], "winner": r[7], "columns": loads(r[8]), "incoming": loads(r[9]), "current": loads(r[10]),
             "result": loads(r[11]), "action": r[12], "status": r[13], "position": r[14],
             "commit_time": db.ts_read(r[15]), "detected_at": db.ts_read(r[16])}
            for r in reversed(db.exec(query, params))
        ]

    def counts(self) -> dict[tuple[str, str], int]:
        """(flow, status) -> number of entries."""
        rows = self.db.exec(f"SELECT flow, status, count(*) FROM {self.t} GROUP BY flow, status")
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def set_status(self, ident: int, status: str) -> None:
        self.db.exec(f"UPDATE {self.t} SET status = %s WHERE id = %s", (status, ident))
