"""Snapshot bookkeeping on the target, and the lock that says a flow is running.

The target is the only truth about a flow (its checkpoint lives there), so the state of each
table's snapshot lives there too, in ``<state_schema>.snapshots``, one row per (flow, source
table):

``status``
    ``requested`` (``snapshot --table`` asked a running ``run`` to copy it), ``copying`` (a
    copy is under way or was interrupted: it is redone from the start), ``done``.
``target_table``
    The target table the copy went to: a table whose flow now maps it elsewhere counts as
    never copied.
``position``
    The source position of the consistent snapshot the copy was read under. Changes of
    transactions the snapshot already holds (``Source.covered``) are not applied again by
    streaming; everything later is.

Progress columns (rows copied, chunks committed) are updated in the same target transaction
as each chunk's rows, so they are exact after a crash too.

:class:`FlowLock` is a session-level advisory lock on the target (PostgreSQL
``pg_try_advisory_lock``, MySQL ``GET_LOCK``) held by ``run`` for each flow: a second ``run``
of the same flow refuses to start, and ``snapshot`` knows whether to copy by itself or to ask
the running process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from .errors import ReplicatorError
from .statedb import StateDB
from .urls import parse


@dataclass(frozen=True)
class TableSnapshotState:
    table: str
    target: str | None
    status: str
    position: str | None
    rows_copied: int
    chunks_done: int
    rows_estimated: int | None
    started_at: datetime | None
    finished_at: datetime | None


class _StateSQL:
    """Dialect pieces; subclasses override what differs."""

    ddl: str
    now = "clock_timestamp()"

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def table(self) -> str:
        raise NotImplementedError

    def upsert(self) -> str:
        raise NotImplementedError


class _PgSQL(_StateSQL):
    ddl = """CREATE TABLE IF NOT EXISTS {t} (
        flow text NOT NULL,
        source_table text NOT NULL,
        target_table text,
        status text NOT NULL,
        position text,
        rows_copied bigint NOT NULL DEFAULT 0,
        chunks_done integer NOT NULL DEFAULT 0,
        rows_estimated bigint,
        started_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (flow, source_table))"""

    def table(self) -> str:
        return sql.SQL("{}.snapshots").format(sql.Identifier(self.schema)).as_string(None)

    def upsert(self) -> str:
        return (
            f"INSERT INTO {self.table()} (flow, source_table, target_table, status, position, rows_copied,"
            " chunks_done, rows_estimated, started_at, finished_at, updated_at)"
            " VALUES (%s, %s, %s, %s, NULL, 0, 0, %s, clock_timestamp(), NULL, clock_timestamp())"
            " ON CONFLICT (flow, source_table) DO UPDATE SET status = EXCLUDED.status,"
            " target_table = EXCLUDED.target_table, position = NULL, rows_copied = 0, chunks_done = 0,"
            " rows_estimated = EXCLUDED.rows_estimated, started_at = EXCLUDED.started_at,"
            " finished_at = NULL, updated_at = EXCLUDED.updated_at"
        )


class _MySQL(_StateSQL):
    ddl = """CREATE TABLE IF NOT EXISTS {t} (
        flow VARCHAR(64) NOT NULL,
        source_table VARCHAR(300) NOT NULL,
        target_table VARCHAR(300) NULL,
        status VARCHAR(16) NOT NULL,
        position TEXT NULL,
        rows_copied BIGINT NOT NULL DEFAULT 0,
        chunks_done INT NOT NULL DEFAULT 0,
        rows_estimated BIGINT NULL,
        started_at DATETIME(6) NULL,
        finished_at DATETIME(6) NULL,
        updated_at DATETIME(6) NOT NULL,
        PRIMARY KEY (flow, source_table)) ENGINE=InnoDB"""
    now = "UTC_TIMESTAMP(6)"

    def table(self) -> str:
        return "`" + self.schema.replace("`", "``") + "`.snapshots"

    def upsert(self) -> str:
        return (
            f"INSERT INTO {self.table()} (flow, source_table, target_table, status, position, rows_copied,"
            " chunks_done, rows_estimated, started_at, finished_at, updated_at)"
            " VALUES (%s, %s, %s, %s, NULL, 0, 0, %s, UTC_TIMESTAMP(6), NULL, UTC_TIMESTAMP(6))"
            " ON DUPLICATE KEY UPDATE status = VALUES(status), target_table = VALUES(target_table), position = NULL,"
            " rows_copied = 0, chunks_done = 0, rows_estimated = VALUES(rows_estimated),"
            " started_at = VALUES(started_at), finished_at = NULL, updated_at = VALUES(updated_at)"
        )


class SnapshotState:
    """Reads and writes ``snapshots`` rows through a sink's connection, inside the caller's
    transaction (the caller commits: with a chunk's rows, or alone)."""

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.db = StateDB(conn, schema)
        self.is_pg = self.db.is_pg
        self.sql: _StateSQL = _PgSQL(schema) if self.is_pg else _MySQL(schema)
        self._exec = self.db.exec

    def ensure(self) -> None:
        self._exec(self.sql.ddl.format(t=self.sql.table()))

    def load(self, flow: str) -> dict[str, TableSnapshotState]:
        rows = self._exec(
            f"SELECT source_table, target_table, status, position, rows_copied, chunks_done,"
            f" rows_estimated, started_at, finished_at FROM {self.sql.table()} WHERE flow = %s",
            (flow,),
        )
        return {
            str(r[0]): TableSnapshotState(
                str(r[0]), None if r[1] is None else str(r[1]), str(r[2]), r[3], int(r[4]), int(r[5]),
                None if r[6] is None else int(r[6]), r[7], r[8],
            )
            for r in rows
        }

    def start(self, flow: str, table: str, target: str | None, rows_estimated: int | None,
              status: str = "copying") -> None:
        self._exec(self.sql.upsert(), (flow, table, target, status, rows_estimated))

    def chunk_done(self, flow: str, table: str, rows: int) -> None:
        self._exec(
            f"UPDATE {self.sql.table()} SET rows_copied = rows_copied + %s,"
            f" chunks_done = chunks_done + 1, updated_at = {self.sql.now}"
            " WHERE flow = %s AND source_table = %s",
            (rows, flow, table),
        )

    def finish(self, flow: str, table: str, position: str) -> None:
        self._exec(
            f"UPDATE {self.sql.table()} SET status = 'done', position = %s,"
            f" finished_at = {self.sql.now}, updated_at = {self.sql.now}"
            " WHERE flow = %s AND source_table = %s",
            (position, flow, table),
        )

    def forget(self, flow: str, table: str) -> None:
        """The table left the flow: if it comes back, it is copied again."""
        self._exec(f"DELETE FROM {self.sql.table()} WHERE flow = %s AND source_table = %s", (flow, table))

    def request(self, flow: str, table: str) -> None:
        """Ask a running ``run`` to (re)copy ``table``."""
        self.start(flow, table, None, None, status="requested")


class FlowLock:
    """A session advisory lock on the target, named after the flow (see module docstring)."""

    def __init__(self, url: str, flow: str) -> None:
        self.url = url
        self.name = f"replicator:{flow}"
        self.conn: Any = None
        self.is_pg = parse(url).engine == "postgresql"

    def acquire(self, wait: float = 0.0) -> bool:
        """True if this process now holds the lock; False if another session still holds it
        after ``wait`` seconds (a process killed a moment ago may hold it until its server
        notices the closed connection)."""
        deadline = time.monotonic() + wait
        while not self._try():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _try(self) -> bool:
        if self.is_pg:
            from .pg.conn import connect as pg_connect

            self.conn = pg_connect(self.url, "target")
            row = self.conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.name,)
            ).fetchone()
        else:
            from .mysql.writer import connect as my_connect

            self.conn = my_connect(self.url, autocommit=True)
            with self.conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 0)", (self.name[:64],))
                row = cur.fetchone()
        if not (row and row[0]):
            self.release()
            return False
        return True

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # a session lock ends with its session
            except Exception:
                pass
            self.conn = None

    def state(self, schema: str) -> SnapshotState:
        """Snapshot state read through the lock's own connection (autocommit)."""
        if self.conn is None:
            raise ReplicatorError("the flow lock is not held")
        return SnapshotState(self.conn, schema)
