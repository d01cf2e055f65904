"""Consistent, lock-free reads of MariaDB tables for a snapshot.

``START TRANSACTION WITH CONSISTENT SNAPSHOT`` gives an InnoDB read view and, in the same
instant, the binlog coordinates of that view (``binlog_snapshot_file`` /
``binlog_snapshot_position``, MariaDB's status variables), which ``BINLOG_GTID_POS`` turns into
the GTID state: exactly the transactions the read view holds (DESIGN.md). No lock is taken.
MariaDB cannot share a read view between connections, so each table is read by one connection
with its own snapshot and its own position; streaming skips, per table, the transactions that
table's snapshot already holds.

Values must be exactly what the binlog decoder (:mod:`replicator.mysql.rows`) gives for the
same row, so a copied row and a streamed row are indistinguishable to writers. pymysql's own
converters differ (zero dates silently ``None``, naive TIMESTAMPs in the session zone, BIT as
bytes, …), so the connection is opened without decoders (every value arrives as the server's
text or bytes) and each column gets its converter from its declared type, once per table.
The session time zone is UTC, so TIMESTAMP text is UTC whatever the server's zone.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors

from ..errors import CheckFailed, DataError, TransientError
from ..mapping import ColumnInfo, TableInfo
from ..records import JsonText, TableId
from .catalog import base_type
from .positions import MariaGtid
from .writer import connect, qtable, quote

_F32 = struct.Struct("f")
_ENCODERS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


class _BadDate(ValueError):
    pass


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def _date(v: Any) -> date:
    s = _text(v)
    try:
        return date(int(s[0:4]), int(s[5:7]), int(s[8:10]))
    except ValueError:
        raise _BadDate(s) from None


def _datetime(v: Any) -> datetime:
    s = _text(v)
    try:
        frac = s[20:]
        us = int(frac.ljust(6, "0")) if frac else 0
        return datetime(int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]),
                        int(s[17:19]), us)
    except ValueError:
        raise _BadDate(s) from None


def _timestamp(v: Any) -> datetime:
    return _datetime(v).replace(tzinfo=timezone.utc)


def _time(v: Any) -> timedelta:
    s = _text(v)
    neg = s.startswith("-")
    h, m, rest = s.lstrip("-").split(":")
    sec, _, frac = rest.partition(".")
    value = timedelta(hours=int(h), minutes=int(m), seconds=int(sec),
                      microseconds=int(frac.ljust(6, "0")) if frac else 0)
    return -value if neg else value


def _float(v: Any) -> float:
    # Read as CAST(col AS DOUBLE) (see select_list): FLOAT's own text has 6 digits only.
    return float(_F32.unpack(_F32.pack(float(_text(v))))[0])


def _bit(v: Any) -> int:
    return int.from_bytes(v, "big") if isinstance(v, (bytes, bytearray)) else int(v)


def _binary(width: int) -> Callable[[Any], bytes]:
    def pad(v: Any) -> bytes:
        b = bytes(v) if isinstance(v, (bytes, bytearray)) else str(v).encode()
        return b.ljust(width, b"\x00")

    return pad


def _bytes(v: Any) -> bytes:
    return bytes(v) if isinstance(v, (bytes, bytearray)) else str(v).encode()


def converter_for(column: ColumnInfo, mysql_json: bool = False) -> Callable[[Any], Any]:
    """The text/bytes → value converter giving what :class:`RowDecoder` gives."""
    ctype = column.type.lower()
    base = base_type(column)
    if base in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"):
        return lambda v: int(_text(v))
    if base in ("decimal", "numeric"):
        return lambda v: Decimal(_text(v))
    if base == "float":
        return _float
    if base in ("double", "real"):
        return lambda v: float(_text(v))
    if base == "date":
        return _date
    if base == "datetime":
        return _datetime
    if base == "timestamp":
        return _timestamp
    if base == "time":
        return _time
    if base == "bit":
        return _bit
    if base == "binary":
        width = int(re.search(r"\((\d+)\)", ctype).group(1)) if "(" in ctype else 1  # type: ignore[union-attr]
        return _binary(width)
    if base in ("varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point",
                "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                "geometrycollection"):
        return _bytes
    if base == "json" or ctype == "json":
        if mysql_json:
            return lambda v: json.loads(_text(v))
        return lambda v: JsonText(_text(v))
    return _text  # char, varchar, text types, enum, set


def select_list(info: TableInfo, columns: tuple[str, ...]) -> str:
    """The columns to SELECT; FLOAT columns widened to DOUBLE, whose text is exact (the text
    of a FLOAT has six significant digits: 16777217 would read back as 16777200)."""
    by_name = {c.name: c for c in info.columns}
    return ", ".join(
        f"CAST({quote(c)} AS DOUBLE)" if base_type(by_name[c]) == "float" else quote(c) for c in columns
    )


class MariaDBSnapshotReader:
    """Per-table consistent reads of a MariaDB server (see module docstring)."""

    def __init__(self, url: str, zero_dates: str = "error") -> None:
        self.url = url
        self.zero_dates = zero_dates

    def open(self) -> None:
        """Nothing to set up: every reader takes its own snapshot."""

    def reader(self) -> tuple[Any, MariaGtid]:
        """A connection inside a consistent-snapshot transaction, and that snapshot's GTID state."""
        conn = connect(self.url, autocommit=True, conv=dict(_ENCODERS),
                       cursorclass=pymysql.cursors.SSCursor)
        try:
            with conn.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SELECT VERSION()")
                if "mariadb" not in str(cur.fetchone()[0]).lower():  # type: ignore[index]
                    raise CheckFailed(
                        "snapshots of MySQL (not MariaDB) sources are not supported yet: set"
                        " `snapshot: never` on the flow and copy the tables by hand"
                    )
                cur.execute("SET SESSION time_zone = '+00:00'")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(r[0]).lower(): _text(r[1]) for r in cur.fetchall()}
                file, pos = status.get("binlog_snapshot_file", ""), status.get("binlog_snapshot_position", "")
                if not file:
                    raise CheckFailed("the source has no binary log: start it with --log-bin")
                cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, int(pos)))
                gtid = cur.fetchone()[0]  # type: ignore[index]
        except pymysql.err.OperationalError as exc:
            conn.close()
            raise TransientError(f"lost the source connection: {exc.args[-1]}") from None
        return conn, MariaGtid.parse(_text(gtid) if gtid is not None else "")

    def estimate(self, conn: Any, table: TableId) -> int:
        with conn.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (table.schema, table.name),
            )
            row = cur.fetchone()
        return int(_text(row[0])) if row and row[0] is not None else 0

    def ranges(self, conn: Any, info: TableInfo, rows: int, part_rows: int, max_parts: int) -> list[None]:
        return [None]  # one connection per table: a read view cannot be shared

    def rows(self, conn: Any, info: TableInfo, columns: tuple[str, ...], part: None) -> Iterator[tuple[Any, ...]]:
        """The table's rows (streamed, unbuffered), converted like the binlog decoder does."""
        by_name = {c.name: c for c in info.columns}
        convs = [converter_for(by_name[c]) for c in columns]
        key_idx = [columns.index(k) for k in info.primary_key if k in columns]
        pairs = list(zip(range(len(columns)), convs))
        null_bad = self.zero_dates == "null"
        with conn.cursor() as cur:
            cur.execute(f"SELECT {select_list(info, columns)} FROM {qtable(info.table)}")
            for raw in cur.fetchall_unbuffered():
                try:
                    yield tuple(None if raw[i] is None else conv(raw[i]) for i, conv in pairs)
                except _BadDate:
                    if null_bad:
                        yield tuple(self._lenient(raw, pairs))
                    else:
                        raise self._bad_row(info, columns, raw, pairs, key_idx) from None

    @staticmethod
    def _lenient(raw: tuple[Any, ...], pairs: list[tuple[int, Callable[[Any], Any]]]) -> Iterator[Any]:
        for i, conv in pairs:
            try:
                yield None if raw[i] is None else conv(raw[i])
            except _BadDate:
                yield None

    @staticmethod
    def _bad_row(info: TableInfo, columns: tuple[str, ...], raw: tuple[Any, ...],
                 pairs: list[tuple[int, Callable[[Any], Any]]], key_idx: list[int]) -> DataError:
        key = ", ".join(f"{columns[i]}={_text(raw[i])}" for i in key_idx) or "no primary key"
        for i, conv in pairs:
            try:
                if raw[i] is not None:
                    conv(raw[i])
            except _BadDate:
                return DataError(
                    f"`{info.table.schema}`.`{info.table.name}` row with {key}: column"
                    f" `{columns[i]}` holds the zero or invalid date '{_text(raw[i])}', which has"
                    " no Python value; set `zero_dates: null` in the flow config to replicate"
                    " such dates as NULL"
                )
        return DataError(f"{info.table}: row with {key} could not be read")

    def close(self) -> None:
        pass


def fetch_rows(url: str, info: TableInfo, columns: tuple[str, ...], key: dict[str, Any] | None = None,
               limit: int | None = None, zero_dates: str = "error") -> list[tuple[Any, ...]]:
    """Current rows of a table (by key, or the first ``limit`` by key), converted like the
    binlog decoder does: for previews and dead-letter retries."""
    by_name = {c.name: c for c in info.columns}
    convs = [converter_for(by_name[c]) for c in columns]
    query = f"SELECT {select_list(info, columns)} FROM {qtable(info.table)}"
    params: list[Any] = []
    if key:
        query += " WHERE " + " AND ".join(f"{quote(k)} = %s" for k in key)
        params = list(key.values())
    if info.primary_key:
        query += " ORDER BY " + ", ".join(quote(k) for k in info.primary_key)
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    conn = connect(url, autocommit=True, conv=dict(_ENCODERS))
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(query, params)
            out = []
            for raw in cur.fetchall():
                values = []
                for value, conv in zip(raw, convs):
                    try:
                        values.append(None if value is None else conv(value))
                    except _BadDate:
                        if zero_dates != "null":
                            raise DataError(f"{info.table}: a row holds a zero or invalid date (set `zero_dates: null`"
                                        " to read it as NULL)") from None
                        values.append(None)
                out.append(tuple(values))
            return out
    finally:
        conn.close()
