"""Dead letters: changes that were not written, why, and how to bring them back.

A change that fails validation or cannot be transformed (a value the map does not know, a date
that does not parse, a value the target column cannot hold) is not written. It is recorded in
``<state_schema>.dead_letters`` on the target, in the same transaction as the batch it was part
of (so a crash can neither lose it nor record it twice), and the flow goes on.

What is stored is what an operator needs, never more: flow, tables, the row's key, the op, the
rule that failed and the reason, the source position, and the row as read *with the columns
that must never leave the source removed or masked* (see ``RowTransform.sanitize``).

``dlq retry`` does not replay the stored row (it could be older than what the target holds by
then, and sensitive columns are not in it): it reads the row's *current* version from the
source by its key and runs it through the flow's mapping as it is configured now -- written if
it passes, deleted on the target if the source row is gone or no longer matches the filter,
left in place with the new reason if it still fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .statedb import StateDB, dumps, loads


@dataclass
class DeadLetter:
    flow: str
    source_table: str
    target_table: str
    key: dict[str, Any] | None  # source column names
    op: str
    rule: str
    reason: str
    position: str | None
    commit_time: datetime | None
    row: dict[str, Any] | None  # sanitized
    id: int | None = None
    status: str = "open"
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DeadLetters:
    def __init__(self, conn: Any, schema: str) -> None:
        self.db = StateDB(conn, schema)
        self.t = self.db.table("dead_letters")

    def ensure(self) -> None:
        db = self.db
        db.exec(
            f"CREATE TABLE IF NOT EXISTS {self.t} (id {db.serial}, flow {db.short} NOT NULL,"
            f" source_table {db.short} NOT NULL, target_table {db.short} NOT NULL, row_key {db.json},"
            f" op {db.short} NOT NULL, rule {db.text} NOT NULL, reason {db.text} NOT NULL, position {db.text},"
            f" commit_time {db.ts} NULL, row_data {db.json}, status {db.short} NOT NULL,"
            f" created_at {db.ts} NOT NULL, updated_at {db.ts} NOT NULL){db.suffix}"
        )

    def add(self, letters: list[DeadLetter]) -> None:
        """In the caller's open transaction."""
        db = self.db
        db.insert_many(
            f"INSERT INTO {self.t} (flow, source_table, target_table, row_key, op, rule, reason, position,"
            f" commit_time, row_data, status, created_at, updated_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'open', {db.now}, {db.now})",
            [
                (d.flow, d.source_table, d.target_table, dumps(d.key), d.op, d.rule, d.reason, d.position,
                 db.ts_value(d.commit_time), dumps(d.row))
                for d in letters
            ],
        )

    def list(self, flow: str | None = None, status: str | None = "open", ids: list[int] | None = None,
             limit: int | None = None) -> list[DeadLetter]:
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
        query = (
            f"SELECT id, flow, source_table, target_table, row_key, op, rule, reason, position, commit_time,"
            f" row_data, status, created_at, updated_at FROM {self.t} WHERE {' AND '.join(where)} ORDER BY id"
        )
        if limit:
            query += f" LIMIT {int(limit)}"
        db = self.db
        return [
            DeadLetter(r[1], r[2], r[3], loads(r[4]), r[5], r[6], r[7], r[8], db.ts_read(r[9]), loads(r[10]), int(r[0]),
                       r[11], db.ts_read(r[12]), db.ts_read(r[13]))
            for r in db.exec(query, params)
        ]

    def set_status(self, ident: int, status: str, reason: str | None = None) -> None:
        db = self.db
        if reason is None:
            db.exec(f"UPDATE {self.t} SET status = %s, updated_at = {db.now} WHERE id = %s", (status, ident))
        else:
            db.exec(f"UPDATE {self.t} SET status = %s, reason = %s, updated_at = {db.now} WHERE id = %s",
                    (status, reason, ident))

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.exec(f"SELECT flow, status, count(*) FROM {self.t} GROUP BY flow, status")
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}
