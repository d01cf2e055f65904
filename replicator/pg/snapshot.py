"""Consistent, lock-free reads of PostgreSQL tables for a snapshot.

A temporary logical slot created with ``(SNAPSHOT 'export')`` gives two things at once: an
exported snapshot any number of connections can import (``SET TRANSACTION SNAPSHOT``), so
tables and key ranges are read in parallel and all see the same instant; and the slot's
``consistent_point``, the LSN that instant corresponds to: a transaction is in the snapshot
exactly when its commit record starts before that LSN (which is what a Begin's position
holds, see :meth:`PostgresSource.covered`). Streaming the flow's own slot from its
checkpoint and skipping the covered transactions of a copied table joins copy and stream with
no gap and no duplicate. The exporting connection must stay idle while readers import the
snapshot (DESIGN.md), so it only opens and closes; closing drops the temporary slot.

Rows are read with ``COPY … TO STDOUT``: as raw text lines for a PostgreSQL target with the
same column types (no value is ever parsed), or loaded with the same psycopg loaders the
pgoutput decoder uses, so a snapshot row is the very value streaming would have produced.
"""

from __future__ import annotations

import itertools
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.abc import Buffer

from ..errors import CheckFailed, ReplicatorError, TransientError
from ..mapping import TableInfo
from ..records import TableId
from .conn import connect, first_line
from .pgoutput import str_to_lsn, use_exact_loaders

SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
    " -c client_encoding=UTF8"
)
_INT_KEYS = {"smallint", "integer", "bigint"}
_counter = itertools.count()


@dataclass(frozen=True)
class KeyRange:
    """``lo <= key < hi`` on a single integer key column (None: unbounded)."""

    column: str
    lo: int | None
    hi: int | None


def _ident(table: TableId) -> sql.Composed:
    return sql.SQL(".").join([sql.Identifier(table.schema), sql.Identifier(table.name)])


class PgSnapshotReader:
    """One exported snapshot of a PostgreSQL database, read by as many threads as wanted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._exporter: psycopg.Connection[Any] | None = None
        self.snapshot = ""
        self.position = 0

    def open(self) -> None:
        """Create the temporary slot and export its snapshot."""
        name = f"replicator_snap_{os.getpid()}_{next(_counter)}"
        try:
            self._exporter = connect(self.url, "source (snapshot)", replication="database")
            row = self._exporter.execute(
                f"CREATE_REPLICATION_SLOT {name} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
            ).fetchone()
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise CheckFailed(f"cannot take a snapshot of the source: {first_line(exc)}") from None
        except psycopg.errors.ProgramLimitExceeded as exc:
            raise CheckFailed(
                f"cannot take a snapshot of the source: {first_line(exc)} (a snapshot needs one"
                " more replication slot for its duration: raise max_replication_slots)"
            ) from None
        except psycopg.OperationalError as exc:
            raise TransientError(f"lost the source connection: {first_line(exc)}") from None
        assert row is not None
        self.position = str_to_lsn(str(row[1]))
        self.snapshot = str(row[2])

    def reader(self) -> tuple[psycopg.Connection[Any], int]:
        """A connection inside a REPEATABLE READ transaction on the exported snapshot, and
        the snapshot's LSN."""
        conn = connect(self.url, "source", autocommit=False, options=SESSION_OPTIONS)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        use_exact_loaders(conn.adapters)
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
        return conn, self.position

    def estimate(self, conn: psycopg.Connection[Any], table: TableId) -> int:
        """The planner's row estimate; an exact count where the table was never analyzed
        (cheap next to the copy, and it decides how the table is split)."""
        row = conn.execute(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.name),
        ).fetchone()
        if row is not None and int(row[0]) > 0:
            return int(row[0])
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(table))).fetchone()
        return int(count[0]) if count else 0

    def ranges(self, conn: psycopg.Connection[Any], info: TableInfo, rows: int, part_rows: int,
               max_parts: int) -> list[KeyRange | None]:
        """Split a table with one integer key column into key ranges of about ``part_rows``
        rows (equal widths between min and max); other tables are read whole."""
        key = info.primary_key
        if len(key) != 1 or rows < 2 * part_rows:
            return [None]
        col = info.column(key[0])
        if col is None or col.type not in _INT_KEYS:
            return [None]
        row = conn.execute(
            sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(sql.Identifier(key[0]), _ident(info.table))
        ).fetchone()
        if row is None or row[0] is None:
            return [None]
        lo, hi = int(row[0]), int(row[1]) + 1
        parts = max(1, min(max_parts, -(-rows // part_rows)))
        step = -(-(hi - lo) // parts)
        bounds = list(range(lo, hi, step))[1:]
        edges: list[int | None] = [None, *bounds, None]
        return [KeyRange(key[0], a, b) for a, b in zip(edges, edges[1:])]

    @staticmethod
    def _select(info: TableInfo, columns: tuple[str, ...], part: KeyRange | None) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        if part is None:
            return sql.SQL("COPY {} ({}) TO STDOUT").format(_ident(info.table), cols)
        conds: list[sql.Composable] = []
        if part.lo is not None:
            conds.append(sql.SQL("{} >= {}").format(sql.Identifier(part.column), sql.Literal(part.lo)))
        if part.hi is not None:
            conds.append(sql.SQL("{} < {}").format(sql.Identifier(part.column), sql.Literal(part.hi)))
        return sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(
            cols, _ident(info.table), sql.SQL(" AND ").join(conds)
        )

    def raw_rows(self, conn: psycopg.Connection[Any], info: TableInfo, columns: tuple[str, ...],
                 part: KeyRange | None) -> Iterator[Buffer]:
        """Rows as COPY text lines (one per row, with its newline).

        Read through libpq directly (non-blocking, waiting on the socket without the GIL):
        psycopg's Copy iterator costs several microseconds per row, which is most of the
        client's work in a PostgreSQL -> PostgreSQL copy."""
        pgconn = conn.pgconn
        pgconn.send_query(self._select(info, columns, part).as_bytes(conn))
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            message = result.error_message.decode(errors="replace") if result is not None else "no result"
            raise ReplicatorError(f"cannot read {info.table} from the source: {message.strip()}")
        get = pgconn.get_copy_data
        sock = pgconn.socket
        while True:
            n, data = get(1)
            if n > 0:
                yield data
            elif n == 0:
                select.select([sock], [], [])
                pgconn.consume_input()
            elif n == -1:
                break
            else:
                raise TransientError(f"lost the source connection: {pgconn.get_error_message()!r}")
        result = pgconn.get_result()
        while pgconn.get_result() is not None:
            pass
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            message = result.error_message.decode(errors="replace") if result is not None else "no result"
            raise ReplicatorError(f"cannot read {info.table} from the source: {message.strip()}")

    def rows(self, conn: psycopg.Connection[Any], info: TableInfo, columns: tuple[str, ...],
             part: KeyRange | None) -> Iterator[tuple[Any, ...]]:
        """Rows as tuples of Python values, exactly as the pgoutput decoder loads them."""
        oids = self._load_oids(conn, info.table, columns)
        with conn.cursor().copy(self._select(info, columns, part)) as copy:
            copy.set_types(oids)
            yield from copy.rows()

    @staticmethod
    def _load_oids(conn: psycopg.Connection[Any], table: TableId, columns: tuple[str, ...]) -> list[int]:
        """Each column's type, domains replaced by their base type (pgoutput describes a
        domain by its base type too)."""
        found = {
            str(r[0]): int(r[1])
            for r in conn.execute(
                "SELECT a.attname, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END"
                " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                (sql.SQL("{}").format(_ident(table)).as_string(conn),),
            ).fetchall()
        }
        return [found[c] for c in columns]

    def close(self) -> None:
        if self._exporter is not None:
            try:
                self._exporter.close()  # drops the temporary slot
            except psycopg.Error:
                pass
            self._exporter = None


def fetch_rows(url: str, info: TableInfo, columns: tuple[str, ...], key: dict[str, Any] | None = None,
               limit: int | None = None) -> list[tuple[Any, ...]]:
    """Current rows of a table (by key, or the first ``limit`` by key), loaded exactly as the
    pgoutput decoder loads them: for previews and dead-letter retries."""
    from .conn import connect

    conn = connect(url, "source")
    try:
        oids = PgSnapshotReader._load_oids(conn, info.table, columns)
        query: sql.Composable = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), _ident(info.table))
        if key:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(
                sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in key.items()))
        if info.primary_key:
            query = sql.SQL("{} ORDER BY {}").format(query, sql.SQL(", ").join(map(sql.Identifier, info.primary_key)))
        if limit is not None:
            query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(int(limit)))
        with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
            copy.set_types(oids)
            return list(copy.rows())
    finally:
        conn.close()
