"""The SQL a poll source and its key comparison need, one small class per engine.

The differences are few: quoting, how rows are read so that their values are exactly what
the engine's log decoder would give (PostgreSQL: ``COPY … TO STDOUT`` loaded with the
pgoutput loaders; MariaDB: text values through the binlog decoder's converters), the
clock, and the session time zone (UTC on both, so ``TIMESTAMP`` columns compare and print
the same whatever the server's zone, and a daylight-saving change cannot move a watermark
back). Identifiers are quoted; values are bound (PostgreSQL's ``COPY`` takes no parameters:
there values are quoted by psycopg as literals).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..mapping import TableInfo
from ..records import TableId
from .position import LowerBound


class PollDialect:
    """What differs between engines; see :class:`PgPoll` and :class:`MariaPoll`."""

    engine = ""

    def connect(self, url: str, what: str) -> Any:
        raise NotImplementedError

    def connect_typed(self, url: str, what: str) -> Any:
        """A connection with the driver's usual typed values (catalog queries, target keys)."""
        return self.connect(url, what)

    def describe(self, conn: Any, table: TableId) -> TableInfo | None:
        raise NotImplementedError

    def now(self, conn: Any) -> datetime:
        raise NotImplementedError

    def max_value(self, conn: Any, info: TableInfo, column: str) -> Any:
        raise NotImplementedError

    def page(self, conn: Any, info: TableInfo, column: str, key: tuple[str, ...], bound: LowerBound,
             limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows (all columns, in ``info`` order) from ``bound`` on, ordered by
        (column, key); rows whose column is NULL are never read."""
        raise NotImplementedError

    def present(self, conn: Any, info: TableInfo, key: tuple[str, ...], keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Which of ``keys`` the table holds (values as :meth:`page` reads them)."""
        raise NotImplementedError

    def keys_after(self, conn: Any, table: TableId, key: tuple[str, ...], after: tuple[Any, ...] | None,
                   limit: int) -> list[tuple[Any, ...]]:
        """The next ``limit`` keys after ``after`` in key order (the target side of a comparison)."""
        raise NotImplementedError

    def can_read(self, conn: Any, table: TableId, column: str) -> str | None:
        """None when the user may SELECT the column (and the key), else the server's reason."""
        raise NotImplementedError

    def rollback(self, conn: Any) -> None:
        """End the read's transaction (MariaDB connections run in autocommit)."""


class PgPoll(PollDialect):
    engine = "postgresql"

    def connect(self, url: str, what: str) -> Any:
        from ..pg.conn import connect
        from ..pg.pgoutput import use_exact_loaders
        from ..pg.snapshot import SESSION_OPTIONS

        conn = connect(url, what, options=SESSION_OPTIONS)
        use_exact_loaders(conn.adapters)
        return conn

    def describe(self, conn: Any, table: TableId) -> TableInfo | None:
        from ..pg.catalog import describe_table

        return describe_table(conn, table)

    def now(self, conn: Any) -> datetime:
        value = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        return value.astimezone(timezone.utc)  # type: ignore[no-any-return]

    @staticmethod
    def _table(table: TableId) -> Any:
        from psycopg import sql

        return sql.Identifier(table.schema, table.name)

    def max_value(self, conn: Any, info: TableInfo, column: str) -> Any:
        from psycopg import sql

        # the value as COPY loads it (the same type the rounds compare with)
        rows = self._copy(conn, info, (column,), sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), self._table(info.table)))
        return rows[0][0] if rows else None

    def page(self, conn: Any, info: TableInfo, column: str, key: tuple[str, ...], bound: LowerBound,
             limit: int) -> list[tuple[Any, ...]]:
        from psycopg import sql

        col = sql.Identifier(column)
        if bound.everything:
            where: sql.Composable = sql.SQL("{} IS NOT NULL").format(col)
        elif bound.key is None:
            where = sql.SQL("{} >= {}").format(col, sql.Literal(bound.value))
        elif not bound.key:  # strictly after a value (``snapshot: never`` starts so)
            where = sql.SQL("{} > {}").format(col, sql.Literal(bound.value))
        else:
            # the leading ``>=`` lets an index on the column alone bound the scan
            where = sql.SQL("{} >= {} AND ({}) > ({})").format(
                col, sql.Literal(bound.value), sql.SQL(", ").join([col, *map(sql.Identifier, key)]),
                sql.SQL(", ").join(sql.Literal(v) for v in (bound.value, *bound.key)))
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
            sql.SQL(", ").join(map(sql.Identifier, info.column_names)), self._table(info.table), where,
            sql.SQL(", ").join([col, *map(sql.Identifier, key)]), sql.Literal(int(limit)))
        return self._copy(conn, info, info.column_names, query)

    def _copy(self, conn: Any, info: TableInfo, columns: tuple[str, ...], query: Any) -> list[tuple[Any, ...]]:
        from psycopg import sql

        from ..pg.snapshot import PgSnapshotReader

        oids = PgSnapshotReader._load_oids(conn, info.table, columns)
        with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
            copy.set_types(oids)
            return list(copy.rows())

    def present(self, conn: Any, info: TableInfo, key: tuple[str, ...], keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        from psycopg import sql

        if not keys:
            return []
        cols = sql.SQL(", ").join(map(sql.Identifier, key))
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(key)))
        query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN ({})").format(
            cols, self._table(info.table), cols, sql.SQL(", ").join([one] * len(keys)))
        params = [v for k in keys for v in k]
        return [tuple(r) for r in conn.execute(query, params).fetchall()]

    def keys_after(self, conn: Any, table: TableId, key: tuple[str, ...], after: tuple[Any, ...] | None,
                   limit: int) -> list[tuple[Any, ...]]:
        from psycopg import sql

        cols = sql.SQL(", ").join(map(sql.Identifier, key))
        where: sql.Composable = sql.SQL("")
        params: list[Any] = []
        if after is not None:
            where = sql.SQL(" WHERE {} >= %s AND ({}) > ({})").format(
                sql.Identifier(key[0]), cols, sql.SQL(", ").join(sql.Placeholder() * len(key)))
            params = [after[0], *after]
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
            cols, self._table(table), where, cols, sql.Literal(int(limit)))
        rows = [tuple(r) for r in conn.execute(query, params).fetchall()]
        return rows

    def can_read(self, conn: Any, table: TableId, column: str) -> str | None:
        import psycopg
        from psycopg import sql

        try:
            conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(sql.Identifier(column), self._table(table)))
            conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._table(table)))
        except psycopg.Error as exc:
            from ..pg.conn import first_line

            return first_line(exc)
        return None

    def rollback(self, conn: Any) -> None:
        pass  # autocommit


class MariaPoll(PollDialect):
    engine = "mysql"

    def __init__(self, zero_dates: str = "error") -> None:
        self.zero_dates = zero_dates

    def connect(self, url: str, what: str) -> Any:
        from ..mysql.snapshot import _ENCODERS
        from ..mysql.writer import connect

        conn = connect(url, autocommit=True, conv=dict(_ENCODERS))  # values as text: see page()
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
        return conn

    def describe(self, conn: Any, table: TableId) -> TableInfo | None:
        from ..mysql.catalog import describe_table

        return describe_table(conn, table)

    def now(self, conn: Any) -> datetime:
        from ..mysql.snapshot import _datetime

        with conn.cursor() as cur:
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            return _datetime(cur.fetchone()[0]).replace(tzinfo=timezone.utc)

    @staticmethod
    def _bind(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:  # TIMESTAMP: UTC in this session
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def _convert(self, info: TableInfo, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        from ..errors import DataError
        from ..mysql.snapshot import _BadDate, converter_for

        by_name = {c.name: c for c in info.columns}
        convs = [converter_for(by_name[c]) for c in columns]
        out = []
        for raw in rows:
            values = []
            for value, conv in zip(raw, convs):
                try:
                    values.append(None if value is None else conv(value))
                except _BadDate:
                    if self.zero_dates != "null":
                        raise DataError(f"{info.table}: a row holds a zero or invalid date (set `zero_dates: null`"
                                        " to read it as NULL)") from None
                    values.append(None)
            out.append(tuple(values))
        return out

    def max_value(self, conn: Any, info: TableInfo, column: str) -> Any:
        from ..mysql.writer import qtable, quote

        with conn.cursor() as cur:
            cur.execute(f"SELECT max({quote(column)}) FROM {qtable(info.table)}")
            rows = cur.fetchall()
        return self._convert(info, (column,), list(rows))[0][0] if rows else None

    def page(self, conn: Any, info: TableInfo, column: str, key: tuple[str, ...], bound: LowerBound,
             limit: int) -> list[tuple[Any, ...]]:
        from ..mysql.snapshot import select_list
        from ..mysql.writer import qtable, quote

        order = ", ".join(quote(c) for c in (column, *key))
        params: list[Any] = []
        if bound.everything:
            where = f"{quote(column)} IS NOT NULL"
        elif bound.key is None:
            where, params = f"{quote(column)} >= %s", [self._bind(bound.value)]
        elif not bound.key:
            where, params = f"{quote(column)} > %s", [self._bind(bound.value)]
        else:
            # the leading ``>=`` gives the optimizer a range on the column's index
            where = f"{quote(column)} >= %s AND ({order}) > ({', '.join(['%s'] * (1 + len(key)))})"
            params = [self._bind(v) for v in (bound.value, bound.value, *bound.key)]
        with conn.cursor() as cur:
            cur.execute(f"SELECT {select_list(info, info.column_names)} FROM {qtable(info.table)}"
                        f" WHERE {where} ORDER BY {order} LIMIT {int(limit)}", params)
            rows = list(cur.fetchall())
        return self._convert(info, info.column_names, rows)

    def present(self, conn: Any, info: TableInfo, key: tuple[str, ...], keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        from ..mysql.writer import qtable, quote

        if not keys:
            return []
        cols = ", ".join(quote(c) for c in key)
        one = "(" + ", ".join(["%s"] * len(key)) + ")"
        with conn.cursor() as cur:
            cur.execute(f"SELECT {cols} FROM {qtable(info.table)} WHERE ({cols}) IN ({', '.join([one] * len(keys))})",
                        [self._bind(v) for k in keys for v in k])
            rows = list(cur.fetchall())
        return self._convert(info, key, rows)

    def keys_after(self, conn: Any, table: TableId, key: tuple[str, ...], after: tuple[Any, ...] | None,
                   limit: int) -> list[tuple[Any, ...]]:
        from ..mysql.writer import qtable, quote

        cols = ", ".join(quote(c) for c in key)
        where, params = "", []
        if after is not None:
            where = f" WHERE {quote(key[0])} >= %s AND ({cols}) > ({', '.join(['%s'] * len(key))})"
            params = [self._bind(v) for v in (after[0], *after)]
        with conn.cursor() as cur:
            cur.execute(f"SELECT {cols} FROM {qtable(table)}{where} ORDER BY {cols} LIMIT {int(limit)}", params)
            return [tuple(r) for r in cur.fetchall()]

    def connect_typed(self, url: str, what: str) -> Any:
        from ..mysql.writer import connect

        conn = connect(url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
        return conn

    def can_read(self, conn: Any, table: TableId, column: str) -> str | None:
        import pymysql

        from ..mysql.writer import qtable, quote

        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT {quote(column)} FROM {qtable(table)} LIMIT 0")
                cur.execute(f"SELECT * FROM {qtable(table)} LIMIT 0")
        except pymysql.err.MySQLError as exc:
            return str(exc.args[-1]) if exc.args else str(exc)
        return None


def dialect_for(engine: str, zero_dates: str = "error") -> PollDialect:
    return PgPoll() if engine == "postgresql" else MariaPoll(zero_dates)
