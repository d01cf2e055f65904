"""``replicator verify``: do the source and target tables hold the same rows, after the mapping?

The answer must be exact in both directions: never "equal" when a value differs, never
"different" for a value the replicator replicated exactly. Rows are therefore compared through
a **canonical text per value**, computed by each database from its own column type, chosen so
that the value a source column holds and the value the replicator writes into the target column
give the same text — and different values give different texts:

=========================  ===============================================================
kind                       canonical text (both engines)
=========================  ===============================================================
integers, numeric/DECIMAL  the decimal number without trailing fractional zeros (``10.5``,
boolean, BIT, YEAR, money  ``-3``); boolean is 0/1, BIT its unsigned value
double / real, FLOAT       the exact IEEE value as ``<53-bit integer>p<binary exponent>``,
                           computed with arithmetic that is exact in IEEE doubles (MariaDB
                           has no way to show a double's bits, and its shortest text is
                           formatted unlike PostgreSQL's); FLOAT/real widened exactly. The
                           column pair decides the source side's value: a ``real`` sent to a
                           DOUBLE column is its shortest text read as a double (what the
                           replicator writes); a double sent to a FLOAT column is rounded to
                           float32. PostgreSQL to PostgreSQL: the shortest exact text.
text, varchar, ENUM, SET,  the text (MariaDB's converted to utf8mb4). ``char(n)``: PostgreSQL
uuid                       strips the padding, MariaDB never keeps it; a ``char(n)`` source
                           into a ``varchar`` target is compared padded (the target holds the
                           padding), a ``varchar`` into a ``char(n)`` without trailing spaces
bytea, BINARY, BLOB        lower-case hex of the bytes (BINARY(n) with its zero padding)
date                       ``YYYY-MM-DD`` (PostgreSQL ``BC`` and ``infinity`` stay distinct)
timestamp(tz), DATETIME,   microseconds since 1970-01-01, naive values read as UTC (the
TIMESTAMP                  sessions run in UTC: timestamptz and TIMESTAMP are instants, the
                           naive UTC DATETIME the replicator writes for a timestamptz matches)
time, TIME, interval       signed microseconds (MariaDB TIME spans ±838 h; an interval with
                           months or years keeps its text, so ``1 mon`` ≠ ``720:00:00``);
                           interval to interval: the interval's text
json, jsonb, JSON          parsed and written back canonically in Python (sorted keys, no
                           whitespace, numbers by exact value, so ``1.0`` = ``1``, ``1e2`` =
                           ``100``, ``1.50`` = ``1.5``): PostgreSQL's jsonb and MariaDB's verbatim
                           text order keys differently, and jsonb keeps a number's scale
                           while the replicator carries JSON numbers as Python floats. An
                           array sent to a MariaDB JSON column: the JSON the MariaDB writer
                           makes of it, canonicalised the same way
other PostgreSQL types     their text (inet, timetz, …; compared with text columns too)
arrays (PostgreSQL)        their text
=========================  ===============================================================

A pair of column types outside these (a date against a timestamp, say) is reported as a table
error rather than guessed at. NULL is distinct from every text (JSON's ``null`` is a text).

**Chunks are hash buckets of the key, not key ranges.** Key order is not portable: a
``utf8mb4_unicode_ci`` or PAD SPACE key sorts differently from PostgreSQL's, and a binary sort
(``CAST(k AS BINARY)``) cannot use the index, so a range query per chunk would scan the whole
table per chunk. Instead each row's bucket is ``md5(canonical key) mod N`` (N = source rows /
chunk size): both engines compute it from the row alone, so a bucket is exactly the same set of
keys on both sides, whatever the key's type, collation or column count. Each side then makes
**one scan**: ``GROUP BY bucket`` with the row count and the sum of a 60-bit prefix of
``md5(canonical row)`` — only N small rows cross the wire, and source and target run in
parallel. A bucket that differs in count or sum is drilled into: one more scan per side
returns just the rows of the differing buckets, sorted by the key's md5 (an order both engines
and Python agree on), with an md5 per column; Python merges the two streams to find keys
missing on the target, extra on the target, and rows whose columns differ (named). Memory is
bounded throughout: N bucket sums, server-side cursors read in batches through a small queue,
and only the first ``max_keys`` keys per kind are kept (the smallest keys; totals are exact).

JSON columns are canonicalised in Python, so for tables with JSON the first pass streams the
rows (the bucket, the md5 of the SQL-computed columns and the JSON text) instead of aggregating
in SQL: exact, but several times slower (the json module's C code does the parsing and
writing; the drivers' row parsing and the GIL are the limit).

Each side's query is one statement, so each side is a consistent snapshot, but the two
snapshots are taken while the flow may still be applying changes: verify a flow that has caught
up (``run --once``, or a quiet source), or expect the rows in flight to show up as differences.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import pymysql
import pymysql.cursors

from .config import Config, FlowConfig, TableConfig
from .errors import ConfigError, ReplicatorError, SchemaError
from .mapping import ColumnInfo, TableInfo, TableMapping
from .mysql.catalog import describe_table as _my_describe
from .mysql.writer import connect as _my_connect
from .mysql.writer import converter_for
from .mysql.writer import quote as _my_quote
from .pg.catalog import describe_table as _pg_describe
from .pg.conn import connect as _pg_connect
from .pg.conn import first_line
from .records import TableId

DEFAULT_CHUNK_SIZE = 10_000
DEFAULT_MAX_KEYS = 20
_BATCH_ROWS = 5_000  # rows per fetch from a server-side cursor
_QUEUE_BATCHES = 4  # fetched batches waiting per stream: memory is bounded by their product

T = TypeVar("T")

# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class RowDifference:
    """A key present on both sides whose values differ in ``columns`` (source names)."""

    key: dict[str, Any]
    columns: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "columns": list(self.columns)}


@dataclass
class TableReport:
    """The outcome for one table of a flow.

    Keys are dicts of the *source* column names of the target's primary key; ``missing``
    keys (on the source, not on the target) carry source values, ``extra`` keys (only on the
    target) target values. The lists hold the smallest ``max_keys`` keys; ``*_total`` count
    them all. ``error`` says why a table could not be compared (then nothing else is known).
    """

    flow: str
    source: str
    target: str
    source_rows: int | None = None
    target_rows: int | None = None
    chunks: int = 0
    chunks_differing: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    missing_total: int = 0
    extra: list[dict[str, Any]] = field(default_factory=list)
    extra_total: int = 0
    different: list[RowDifference] = field(default_factory=list)
    different_total: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # source column -> target column
    error: str | None = None
    note: str | None = None
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return (
            self.error is None
            and self.chunks_differing == 0
            and self.missing_total == self.extra_total == self.different_total == 0
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "source": self.source,
            "target": self.target,
            "equal": self.equal,
            "error": self.error,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "chunks": self.chunks,
            "chunks_differing": self.chunks_differing,
            "missing": {"total": self.missing_total, "keys": self.missing},
            "extra": {"total": self.extra_total, "keys": self.extra},
            "different": {"total": self.different_total, "rows": [d.to_json() for d in self.different]},
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }


def reports_json(reports: Sequence[TableReport]) -> dict[str, Any]:
    """The whole outcome as one JSON document (``verify --json``)."""
    return {"equal": all(r.equal for r in reports), "tables": [r.to_json() for r in reports]}


def format_report(reports: Sequence[TableReport]) -> str:
    """The human-readable report: per flow and table, the verdict, rows, chunks and keys."""
    lines: list[str] = []
    flow = None
    for r in reports:
        if r.flow != flow:
            flow = r.flow
            lines.append(f"flow {flow}")
        head = f"  {r.source} -> {r.target}: "
        if r.error is not None:
            lines.append(head + f"ERROR {r.error}")
            continue
        chunks = f"{r.chunks} chunk{'s' if r.chunks != 1 else ''}"
        if r.equal:
            lines.append(head + f"equal ({r.source_rows} rows, {chunks}, {r.seconds:.1f} s)")
            continue
        lines.append(
            head + f"DIFFERENT (source {r.source_rows} rows, target {r.target_rows} rows,"
            f" {r.chunks_differing} of {chunks} differ, {r.seconds:.1f} s)"
        )
        for title, total, keys in (
            ("missing on target", r.missing_total, [_key_text(k) for k in r.missing]),
            ("extra on target", r.extra_total, [_key_text(k) for k in r.extra]),
            (
                "different",
                r.different_total,
                [
                    f"{_key_text(d.key)}: " + ", ".join(
                        f"{c} (target {r.renamed[c]})" if c in r.renamed else c for c in d.columns
                    )
                    for d in r.different
                ],
            ),
        ):
            if total:
                shown = f", first {len(keys)} shown" if len(keys) < total else ""
                lines.append(f"    {title}: {total}{shown}")
                lines.extend(f"      {k}" for k in keys)
        if r.note:
            lines.append(f"    note: {r.note}")
    differ = sum(1 for r in reports if not r.equal)
    n = len(reports)
    lines.append(
        f"{n} table{'s' if n != 1 else ''} equal." if not differ
        else f"{differ} of {n} table{'s' if n != 1 else ''} not equal."
    )
    return "\n".join(lines)


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in key.items())


# --------------------------------------------------------------------------- the API


def verify_flow(
    config: Config,
    flow: FlowConfig | str,
    tables: Sequence[str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> list[TableReport]:
    """Compare every table of ``flow`` (or those named in ``tables``: source or target name,
    with or without schema) between source and target.

    A table that cannot be compared (missing, a column the target lacks, types that cannot be
    compared, a failing query) gets a report with ``error``; a lost connection raises.
    """
    if isinstance(flow, str):
        flow = config.flow(flow)
    if chunk_size < 1:
        raise ConfigError("the chunk size must be at least 1")
    selected = select_tables(config, flow, tables) if tables else list(flow.tables)
    if not selected:
        known = ", ".join(t.source for t in flow.tables)
        raise ConfigError(f"flow {flow.name} has no table {', '.join(tables or [])} (tables: {known})")
    return [_verify_table(config, flow, t, chunk_size, max_keys) for t in selected]


def select_tables(config: Config, flow: FlowConfig, names: Sequence[str]) -> list[TableConfig]:
    """The tables of ``flow`` that any of ``names`` designates (source or target, as written in
    the config, as ``schema.table``, or the bare table name)."""
    wanted = set(names)
    out = []
    for t in flow.tables:
        src, dst = config.source_table(flow, t), config.target_table(flow, t)
        aliases = {t.source, t.target or "", str(src), str(dst), src.name, dst.name}
        if aliases & wanted:
            out.append(t)
    return out


# --------------------------------------------------------------------------- column kinds


@dataclass(frozen=True)
class _Col:
    """A column as verify sees it: its kind and, for ``char``/``dec``, a length or scale."""

    name: str
    type: str
    kind: str
    arg: int = 0


_NUMERIC = {"int", "bool", "bit", "dec", "money"}
_FLOAT = {"float4", "float8"}
_TEXT = {"text", "char", "other"}


@dataclass(frozen=True)
class _Expr:
    """How one side computes a column's canonical text: in SQL (``sql``; ``safe`` when the text
    can never contain a comma, so it needs no length prefix), or in Python (``py`` applied to
    the value of ``fetch``)."""

    sql: str | None = None
    safe: bool = True
    fetch: str | None = None
    py: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class _Pair:
    source: str
    target: str
    src: _Expr
    dst: _Expr


class _Incomparable(SchemaError):
    pass


class _QueryFailed(ReplicatorError):
    """A statement failed on one side (the message names the side)."""


# --------------------------------------------------------------------------- engines


class _Engine:
    """One connection to one side, and that engine's SQL for canonical texts and checksums."""

    engine = ""

    def __init__(self, role: str) -> None:
        self.role = role

    # -- connection
    def close(self) -> None:
        raise NotImplementedError

    def describe(self, table: TableId) -> tuple[TableInfo, dict[str, _Col]] | None:
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def batches(self, sql: str) -> Iterator[list[tuple[Any, ...]]]:
        raise NotImplementedError

    def failed(self, exc: BaseException) -> _QueryFailed:
        return _QueryFailed(f"a query on the {self.role} failed: {_db_message(exc)}")

    # -- naming
    def quote(self, name: str) -> str:
        raise NotImplementedError

    def table(self, t: TableId) -> str:
        return f"{self.quote(t.schema)}.{self.quote(t.name)}"

    # -- canonical texts (x: a quoted column)
    def numeric(self, c: _Col, x: str) -> str:
        raise NotImplementedError

    def float_value(self, c: _Col, x: str, mode: str) -> str:
        """A double: ``widen`` the column's value, ``shortest`` (a real's shortest text read as
        a double) or ``round32`` (rounded to float32, then widened)."""
        raise NotImplementedError

    def float_exact(self, v: str) -> str:
        raise NotImplementedError

    def text(self, c: _Col, x: str) -> str:
        raise NotImplementedError

    def rtrim_spaces(self, e: str) -> str:
        raise NotImplementedError

    def pad(self, c: _Col, x: str) -> str:
        return self.text(c, x)

    def hex(self, x: str) -> str:
        raise NotImplementedError

    def date(self, x: str, invalid_as_null: bool) -> str:
        raise NotImplementedError

    def micros(self, c: _Col, x: str, invalid_as_null: bool) -> str:
        raise NotImplementedError

    def json_fetch(self, x: str) -> str:
        return x

    # -- composition
    def piece(self, e: _Expr) -> str:
        raise NotImplementedError

    def concat(self, parts: Sequence[str]) -> str:
        raise NotImplementedError

    def md5(self, s: str) -> str:
        raise NotImplementedError

    def binary(self, s: str) -> str:
        """``s`` in an order that is the order of its UTF-8 bytes (= of its code points)."""
        return s

    def bucket(self, key_md5: str, n: int) -> str:
        raise NotImplementedError

    def hash60(self, md5: str) -> str:
        raise NotImplementedError

    def summary_sql(self, table: str, bucket: str, hash60: str) -> str:
        raise NotImplementedError

    def ordered_sql(self, select: str, table: str, where: str) -> str:
        raise NotImplementedError


class _Postgres(_Engine):
    engine = "postgresql"

    def __init__(self, url: str, role: str) -> None:
        super().__init__(role)
        self.conn = _pg_connect(url, role)
        for setting in (
            "SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
            "SET extra_float_digits = 1", "SET client_encoding = 'UTF8'",
            "SET jit = off",  # compiling the long canonical expressions costs more than it saves
        ):
            self.conn.execute(setting)  # type: ignore[arg-type]
        row = self.conn.execute("SHOW server_encoding").fetchone()
        self.utf8 = row is not None and str(row[0]).upper() in ("UTF8", "UTF-8")
        self._cursors = itertools.count()

    def close(self) -> None:
        self.conn.close()

    def describe(self, table: TableId) -> tuple[TableInfo, dict[str, _Col]] | None:
        try:
            return self._describe(table)
        except psycopg.Error as exc:
            raise self.failed(exc) from None

    def _describe(self, table: TableId) -> tuple[TableInfo, dict[str, _Col]] | None:
        info = _pg_describe(self.conn, table)
        if info is None:
            return None
        rows = self.conn.execute(
            "SELECT a.attname, format_type(bt.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod"
            " ELSE a.atttypmod END), bt.typtype, bt.typcategory"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self.table(table),),
        ).fetchall()
        return info, {str(r[0]): _pg_kind(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows}

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql).fetchall()  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise self.failed(exc) from None

    def batches(self, sql: str) -> Iterator[list[tuple[Any, ...]]]:
        try:
            with self.conn.transaction():
                with self.conn.cursor(name=f"verify_{next(self._cursors)}") as cur:
                    cur.itersize = _BATCH_ROWS
                    cur.execute(sql)  # type: ignore[arg-type]
                    while rows := cur.fetchmany(_BATCH_ROWS):
                        yield rows
        except psycopg.Error as exc:
            raise self.failed(exc) from None

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def numeric(self, c: _Col, x: str) -> str:
        if c.kind == "bool":
            return f"{x}::int::text"
        if c.kind == "dec":
            return f"trim_scale({x})::text"
        if c.kind == "money":
            return f"trim_scale({x}::numeric)::text"
        return f"{x}::text"

    def float_value(self, c: _Col, x: str, mode: str) -> str:
        if mode == "shortest":
            return f"{x}::text::float8"
        if mode == "round32":
            return f"{x}::float4::float8"
        return f"{x}::float8"

    def float_exact(self, v: str) -> str:
        # Normal numbers from their bits; subnormals (exponent field 0) by the same arithmetic
        # as MariaDB's (see _MySQL.float_exact), which needs no bits.
        v = f"({v})"
        bits = f"('x' || encode(float8send({v}), 'hex'))::bit(64)::bigint"
        exp_field = f"(({bits} >> 52) & 2047)"
        normal = f"(({bits} & 4503599627370495) + 4503599627370496)::text || 'p' || ({exp_field} - 1075)::text"
        a = f"abs({v})"
        e0 = f"least(greatest(floor(ln({a}) / ln(2::float8)), -1074), 1023)"
        r = f"({a} / power(2::float8, {e0}))"
        e = f"({e0} - ({r} < 1)::int + ({r} >= 2)::int)"
        h = f"floor((52 - {e}) / 2)"
        m = f"({a} * power(2::float8, {h}) * power(2::float8, 52 - {e} - {h}))"
        subnormal = f"{m}::bigint::text || 'p' || ({e} - 52)::int::text"
        return (
            f"CASE WHEN {v} = 0 THEN '0' WHEN {v} IN ('NaN', 'Infinity', '-Infinity') THEN {v}::text"
            f" ELSE CASE WHEN {v} < 0 THEN '-' ELSE '' END"
            f" || CASE WHEN {exp_field} = 0 THEN {subnormal} ELSE {normal} END END"
        )

    def text(self, c: _Col, x: str) -> str:
        return f"{x}::text"

    def rtrim_spaces(self, e: str) -> str:
        return f"rtrim({e}, ' ')"

    def pad(self, c: _Col, x: str) -> str:
        # pgoutput sends char(n) padded, and a varchar target keeps the padding
        return f"rpad({x}::text, {c.arg})" if c.kind == "char" and c.arg else self.text(c, x)

    def hex(self, x: str) -> str:
        return f"encode({x}, 'hex')"

    def date(self, x: str, invalid_as_null: bool) -> str:
        return f"{x}::text"

    def micros(self, c: _Col, x: str, invalid_as_null: bool) -> str:
        us = f"trim_scale(extract(epoch from {x}) * 1000000)::text"
        if c.kind == "interval":  # only whole days and times are TIME-like
            return f"CASE WHEN extract(year from {x}) = 0 AND extract(month from {x}) = 0 THEN {us} ELSE {x}::text END"
        return us

    def json_fetch(self, x: str) -> str:
        return f"{x}::text"

    def piece(self, e: _Expr) -> str:
        assert e.sql is not None
        if e.safe:
            return f"coalesce({e.sql}, 'N')"
        return f"coalesce(length({e.sql})::text || ':' || {e.sql}, 'N')"

    def concat(self, parts: Sequence[str]) -> str:
        return "(" + " || ".join(parts) + ")" if parts else "''"

    def md5(self, s: str) -> str:
        return f"md5({s})" if self.utf8 else f"md5(convert_to({s}, 'UTF8'))"

    def bucket(self, key_md5: str, n: int) -> str:
        return f"mod(('x' || left({key_md5}, 8))::bit(32)::bigint, {n})"

    def hash60(self, md5: str) -> str:
        return f"('x' || left({md5}, 15))::bit(60)::bigint"

    def summary_sql(self, table: str, bucket: str, hash60: str) -> str:
        return f"SELECT b, count(*), sum(h) FROM (SELECT {bucket} AS b, {hash60} AS h FROM {table}) s GROUP BY 1"

    def ordered_sql(self, select: str, table: str, where: str) -> str:
        return f'SELECT * FROM (SELECT {select} FROM {table}{where}) s ORDER BY "__kh" COLLATE "C", "__kc" COLLATE "C"'


class _MySQL(_Engine):
    engine = "mysql"

    def __init__(self, url: str, role: str) -> None:
        super().__init__(role)
        self.conn = _my_connect(url, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
            cur.execute("SET SESSION net_write_timeout = 3600")

    def close(self) -> None:
        try:
            self.conn.close()
        except pymysql.err.Error:
            pass

    def describe(self, table: TableId) -> tuple[TableInfo, dict[str, _Col]] | None:
        try:
            info = _my_describe(self.conn, table)
        except pymysql.err.Error as exc:
            raise self.failed(exc) from None
        if info is None:
            return None
        return info, {c.name: _my_kind(c) for c in info.columns}

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
        except pymysql.err.Error as exc:
            raise self.failed(exc) from None

    def batches(self, sql: str) -> Iterator[list[tuple[Any, ...]]]:
        try:
            cur = self.conn.cursor(pymysql.cursors.SSCursor)
            try:
                cur.execute(sql)
                while rows := cur.fetchmany(_BATCH_ROWS):
                    yield [tuple(r) for r in rows]
            finally:
                cur.close()
        except pymysql.err.Error as exc:
            raise self.failed(exc) from None

    def quote(self, name: str) -> str:
        return _my_quote(name)

    def numeric(self, c: _Col, x: str) -> str:
        if c.kind == "bit":
            return f"CAST({x} + 0 AS CHAR)"
        if c.kind == "dec" and c.arg > 0:
            return f"IF({x} = 0, '0', TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({x} AS CHAR))))"
        if c.kind == "dec":
            return f"IF({x} = 0, '0', CAST({x} AS CHAR))"
        return f"CAST({x} AS CHAR)"

    def float_value(self, c: _Col, x: str, mode: str) -> str:
        if mode == "round32":
            return f"CAST(CAST({x} AS FLOAT) AS DOUBLE)"
        return f"CAST({x} AS DOUBLE)"  # FLOAT widened exactly, DOUBLE unchanged

    def float_exact(self, v: str) -> str:
        # x = m * 2^(e-52) with e = floor(log2 |x|) and m an integer in [2^52, 2^53): LOG2 may be
        # off by one near a power of two, so e is corrected by the exact ratio |x| / 2^e; the
        # scaling by a power of two is split in two so that no factor leaves the double range.
        v = f"({v})"
        a = f"ABS({v})"
        e0 = f"LEAST(GREATEST(FLOOR(LOG2({a})), -1074), 1023)"
        r = f"({a} / POW(2, {e0}))"
        e = f"({e0} - ({r} < 1) + ({r} >= 2))"
        h = f"FLOOR((52 - {e}) / 2)"
        m = f"{a} * POW(2, {h}) * POW(2, 52 - {e} - {h})"
        return f"IF({v} = 0, '0', CONCAT(IF({v} < 0, '-', ''), CAST({m} AS SIGNED), 'p', CAST({e} - 52 AS SIGNED)))"

    def text(self, c: _Col, x: str) -> str:
        # one explicit collation for every text: CONCAT of columns in different collations fails
        return f"CONVERT({x} USING utf8mb4) COLLATE utf8mb4_bin"

    def rtrim_spaces(self, e: str) -> str:
        return f"TRIM(TRAILING ' ' FROM {e})"

    def hex(self, x: str) -> str:
        return f"LOWER(HEX({x}))"

    def date(self, x: str, invalid_as_null: bool) -> str:
        # zero and invalid dates: NULL where the flow writes them as NULL, else their own text
        return f"CAST({x} + INTERVAL 0 DAY AS CHAR)" if invalid_as_null else f"CAST({x} AS CHAR)"

    def micros(self, c: _Col, x: str, invalid_as_null: bool) -> str:
        if c.kind == "time":
            return f"CAST(CAST(TIME_TO_SEC({x}) * 1000000 AS SIGNED) AS CHAR)"
        us = f"CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {x}) AS CHAR)"
        return us if invalid_as_null else f"COALESCE({us}, CAST({x} AS CHAR))"

    def piece(self, e: _Expr) -> str:
        assert e.sql is not None
        if e.safe:
            return f"COALESCE({e.sql}, 'N')"
        return f"COALESCE(CONCAT(CHAR_LENGTH({e.sql}), ':', {e.sql}), 'N')"

    def concat(self, parts: Sequence[str]) -> str:
        return f"CONCAT({', '.join(parts)})" if parts else "''"

    def md5(self, s: str) -> str:
        return f"MD5({s})"

    def binary(self, s: str) -> str:
        return f"CAST({s} AS BINARY)"  # utf8mb4_bin pads with spaces when comparing

    def bucket(self, key_md5: str, n: int) -> str:
        return f"MOD(CAST(CONV(LEFT({key_md5}, 8), 16, 10) AS UNSIGNED), {n})"

    def hash60(self, md5: str) -> str:
        return f"CAST(CONV(LEFT({md5}, 15), 16, 10) AS UNSIGNED)"

    def summary_sql(self, table: str, bucket: str, hash60: str) -> str:
        # by position: a table column named like an alias would win in GROUP BY
        return f"SELECT {bucket}, COUNT(*), SUM({hash60}) FROM {table} GROUP BY 1"

    def ordered_sql(self, select: str, table: str, where: str) -> str:
        return f"SELECT {select} FROM {table}{where} ORDER BY 1, 2"


def _open(config: Config, system: str, role: str) -> _Engine:
    url = config.systems[system].url
    if config.systems[system].engine == "postgresql":
        return _Postgres(url, role)
    return _MySQL(url, role)


_TYPE_ARGS = re.compile(r"\(([^)]*)\)")


def _pg_kind(name: str, type_: str, typtype: str, category: str) -> _Col:
    t = type_.lower()
    base = _TYPE_ARGS.sub("", t).strip()
    if category == "A" or t.endswith("[]"):
        return _Col(name, type_, "array")
    if typtype == "e":
        return _Col(name, type_, "text")
    kind = "other"
    arg = 0
    if base in ("smallint", "integer", "bigint", "oid"):
        kind = "int"
    elif base == "boolean":
        kind = "bool"
    elif base == "numeric":
        kind = "dec"
    elif base == "money":
        kind = "money"
    elif base == "real":
        kind = "float4"
    elif base == "double precision":
        kind = "float8"
    elif base in ("text", "character varying", "name", '"char"', "citext", "uuid"):
        kind = "text"
    elif base == "character":
        m = _TYPE_ARGS.search(t)
        kind, arg = "char", int(m.group(1)) if m else 1
    elif base == "bpchar":
        kind = "text"
    elif base == "bytea":
        kind = "bytes"
    elif base == "date":
        kind = "date"
    elif base.startswith("timestamp"):
        kind = "ts"
    elif base.startswith("time") and "with time zone" not in base:
        kind = "time"
    elif base.startswith("interval"):
        kind = "interval"
    elif base in ("json", "jsonb"):
        kind = "json"
    return _Col(name, type_, kind, arg)


_MY_KINDS = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"), "int"),
    "bit": "bit",
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "dec"),
    "float": "float4",
    **dict.fromkeys(("double", "real"), "float8"),
    "char": "char",
    **dict.fromkeys(
        ("varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "uuid", "inet4", "inet6"), "text"
    ),
    **dict.fromkeys(
        ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point",
         "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"),
        "bytes",
    ),
    "date": "date",
    **dict.fromkeys(("datetime", "timestamp"), "ts"),
    "time": "time",
    "json": "json",
}


def _my_kind(col: ColumnInfo) -> _Col:
    t = col.type.lower()
    m = re.match(r"[a-z0-9]+", t)
    base = m.group(0) if m else t
    kind = _MY_KINDS.get(base, "other")
    if kind == "int" and base == "year":
        kind = "bit"  # read as a number (YEAR + 0), like BIT
    arg = 0
    if kind == "dec":
        args = _TYPE_ARGS.search(t)
        parts = args.group(1).split(",") if args else []
        arg = int(parts[1]) if len(parts) > 1 else 0
    return _Col(col.name, col.type, kind, arg)


# --------------------------------------------------------------------------- planning


def _pair(sc: _Col, dc: _Col, s: _Engine, d: _Engine, src_invalid_as_null: bool) -> _Pair:
    """The canonical text of source column ``sc`` and target column ``dc``, each on its side."""
    xs, xd = s.quote(sc.name), d.quote(dc.name)
    sk, dk = sc.kind, dc.kind
    both_pg = s.engine == d.engine == "postgresql"

    if sk in _NUMERIC and dk in _NUMERIC:
        return _Pair(sc.name, dc.name, _Expr(s.numeric(sc, xs)), _Expr(d.numeric(dc, xd)))
    if sk in _FLOAT and dk in _FLOAT:
        if sk == dk:
            modes = ("widen", "widen")
        elif sk == "float4":  # a real travels as its shortest text, FLOAT (binlog) widened
            modes = ("shortest" if s.engine == "postgresql" else "widen", "widen")
        else:  # a double into a float32 column
            modes = ("round32", "widen")
        sv, dv = s.float_value(sc, xs, modes[0]), d.float_value(dc, xd, modes[1])
        if both_pg:
            return _Pair(sc.name, dc.name, _Expr(f"{sv}::text"), _Expr(f"{dv}::text"))
        return _Pair(sc.name, dc.name, _Expr(s.float_exact(sv)), _Expr(d.float_exact(dv)))
    if sk in _TEXT and dk in _TEXT:
        src_e, dst_e = s.text(sc, xs), d.text(dc, xd)
        if dk == "char" and sk != "char":  # a fixed-width target drops trailing spaces
            src_e = s.rtrim_spaces(src_e)
        elif sk == "char" and dk != "char":  # a padded char(n) source is written padded
            src_e = s.pad(sc, xs)
        return _Pair(sc.name, dc.name, _Expr(src_e, safe=False), _Expr(dst_e, safe=False))
    if sk == dk == "bytes":
        return _Pair(sc.name, dc.name, _Expr(s.hex(xs)), _Expr(d.hex(xd)))
    if sk == dk == "date":
        return _Pair(sc.name, dc.name, _Expr(s.date(xs, src_invalid_as_null)), _Expr(d.date(xd, False)))
    if sk == dk == "ts" or (sk in ("time", "interval") and dk in ("time", "interval") and "time" in (sk, dk)):
        return _Pair(
            sc.name, dc.name, _Expr(s.micros(sc, xs, src_invalid_as_null)), _Expr(d.micros(dc, xd, False))
        )
    if sk == dk == "interval" or (sk == dk == "array" and both_pg):
        return _Pair(sc.name, dc.name, _Expr(f"{xs}::text", safe=False), _Expr(f"{xd}::text", safe=False))
    if sk == dk == "json":  # jsonb keeps a number's scale (1.50), the replicator may not
        return _Pair(
            sc.name, dc.name,
            _Expr(fetch=s.json_fetch(xs), py=canonical_json), _Expr(fetch=d.json_fetch(xd), py=canonical_json),
        )
    if sk == "array" and dk == "json" and s.engine == "postgresql" and d.engine == "mysql":
        as_json = converter_for(ColumnInfo(dc.name, "json"))

        def mirror(value: Any) -> str | None:  # the JSON text the MySQL writer makes of the list
            return None if value is None else canonical_json(as_json(value))

        return _Pair(sc.name, dc.name, _Expr(fetch=xs, py=mirror), _Expr(fetch=xd, py=canonical_json))
    raise _Incomparable(
        f"cannot compare source column {sc.name} ({sc.type}) with target column {dc.name} ({dc.type})"
    )


@dataclass
class _Plan:
    key: list[_Pair]  # the target's primary key, in its order
    rest: list[_Pair]
    renamed: dict[str, str]

    @property
    def sql_rest(self) -> list[_Pair]:
        return [p for p in self.rest if p.src.sql is not None]

    @property
    def py_rest(self) -> list[_Pair]:
        return [p for p in self.rest if p.src.sql is None]


def _plan(
    src: _Engine, dst: _Engine, s_info: TableInfo, s_cols: dict[str, _Col], d_cols: dict[str, _Col],
    mapping: TableMapping, src_invalid_as_null: bool,
) -> _Plan:
    names = s_info.column_names  # the report names columns in the source table's order
    to_source = {mapping.target_name(c): c for c in names}
    key_sources = [to_source[k] for k in mapping.target_key]
    pairs = {c: _pair(s_cols[c], d_cols[mapping.target_name(c)], src, dst, src_invalid_as_null) for c in names}
    for c in key_sources:
        if pairs[c].src.sql is None:
            raise _Incomparable(f"cannot verify a table keyed by the JSON column {c}")
    return _Plan(
        key=[pairs[c] for c in key_sources],
        rest=[p for c, p in pairs.items() if c not in key_sources],
        renamed={c: mapping.target_name(c) for c in names if mapping.target_name(c) != c},
    )


# --------------------------------------------------------------------------- canonical JSON


def canonical_json(value: Any) -> str | None:
    """A JSON document (text or bytes) in one canonical form: keys sorted, no whitespace,
    numbers by value (``1.0``, ``1`` and ``1e0`` alike; ``1.50`` and ``15e-1`` alike); a text
    that is not JSON stays itself, marked, so it can only equal the same text. None for NULL.

    Parsing and writing run in the json module's C code. Integral numbers become ints (written
    as their digits); any other number is replaced while parsing by its exact canonical text
    ``<digits>e<exponent>`` behind a NUL character, which no string of the document can start
    with unless the document spells ``\\u0000`` — such documents take a slower exact path
    that writes numbers bare, so a number never equals a string."""
    if value is None:
        return None
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, (bytes, bytearray)) else str(value)
    try:
        if "\\u0000" not in text:
            return _JSON_OUT.encode(_JSON_IN.decode(text))
        return _dump(json.loads(text, parse_float=Decimal, parse_constant=_Constant))
    except (ValueError, RecursionError):
        return "!" + text


def _marked(text: str) -> str:
    return "\x00" + text


_BIG = 400  # integral numbers up to 10^400 are written as ints, larger ones as digits/exponent


def _canonical_float(text: str) -> int | str:
    """A JSON number with a fraction or exponent: its int if integral, else ``\\x00<digits>e<exp>``
    (exactly :func:`_number`'s text), by string work alone."""
    negative = text[0] == "-"
    mantissa, _, exponent = text.lstrip("-").lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return 0
    stripped = digits.rstrip("0")
    exp = (int(exponent) if exponent else 0) - len(fraction) + len(digits) - len(stripped)
    sign = "-" if negative else ""
    if 0 <= exp + len(stripped) <= _BIG and exp >= 0:
        return int(sign + stripped + "0" * exp)
    return f"\x00{sign}{stripped}e{exp}"


def _canonical_int(text: str) -> int | str:
    """A JSON integer: itself, unless beyond 10^400 (then as :func:`_canonical_float`)."""
    return int(text) if len(text.lstrip("-")) <= _BIG else _canonical_float(text)


_JSON_IN = json.JSONDecoder(parse_float=_canonical_float, parse_int=_canonical_int, parse_constant=_marked)
_JSON_OUT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Constant(str):
    """NaN / Infinity, which Python's JSON parser accepts and databases do not."""


def _dump(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, _Constant):
        return "#" + v
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (int, Decimal)):
        return "#" + _number(Decimal(v))
    if isinstance(v, list):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _dump(v[k]) for k in sorted(v)) + "}"
    return json.dumps(str(v), ensure_ascii=False)


def _number(d: Decimal) -> str:
    if not d.is_finite():
        return str(d)
    if d.is_zero():
        return "0"
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    stripped = text.rstrip("0")
    return f"{'-' if sign else ''}{stripped}e{exponent + len(text) - len(stripped)}"


def _py_piece(text: str | None) -> str:
    return "N" if text is None else f"{len(text)}:{text}"


# --------------------------------------------------------------------------- comparing a table


def _verify_table(
    config: Config, flow: FlowConfig, table: TableConfig, chunk_size: int, max_keys: int
) -> TableReport:
    src_id, dst_id = config.source_table(flow, table), config.target_table(flow, table)
    report = TableReport(flow.name, str(src_id), str(dst_id))
    started = time.monotonic()
    engines: list[_Engine] = []
    try:
        src = _open(config, flow.source, "source")
        engines.append(src)
        dst = _open(config, flow.target, "target")
        engines.append(dst)
        s_desc, d_desc = src.describe(src_id), dst.describe(dst_id)
        if s_desc is None:
            raise SchemaError(f"source table {src_id} does not exist")
        if d_desc is None:
            raise SchemaError(f"target table {dst_id} does not exist")
        mapping = TableMapping(src_id, dst_id, table.columns)
        mapping.bind(s_desc[0], d_desc[0])
        invalid_as_null = src.engine == "mysql" and flow.zero_dates == "null"
        plan = _plan(src, dst, s_desc[0], s_desc[1], d_desc[1], mapping, invalid_as_null)
        report.renamed = plan.renamed
        _compare(src, dst, src_id, dst_id, plan, chunk_size, max_keys, report)
    except SchemaError as exc:
        report.error = str(exc)
    except _QueryFailed as exc:
        report.error = str(exc)
    finally:
        for e in engines:
            e.close()
        report.seconds = time.monotonic() - started
    return report


def _db_message(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.Error) and len(exc.args) > 1:
        return f"({exc.args[0]}) {exc.args[1]}"
    return first_line(exc)


@dataclass
class _SideSql:
    """One side's SQL for a table: canonical key text, row text, their md5s."""

    table: str
    key: str
    key_md5: str
    row_md5: str  # md5 of key | SQL columns
    rest_md5s: list[str]  # one md5 per SQL column of plan.rest (in order)
    py_fetch: list[str]  # raw values for plan.py_rest
    key_raw: list[str]


def _side_sql(e: _Engine, table: TableId, plan: _Plan, which: str) -> _SideSql:
    def expr(p: _Pair) -> _Expr:
        return p.src if which == "src" else p.dst

    def name(p: _Pair) -> str:
        return p.source if which == "src" else p.target

    key = e.concat(_join([e.piece(expr(p)) for p in plan.key], "','"))
    rest = e.concat(_join([e.piece(expr(p)) for p in plan.sql_rest], "','"))
    return _SideSql(
        table=e.table(table),
        key=key,
        key_md5=e.md5(key),
        row_md5=e.md5(e.concat([key, "'|'", rest])),
        rest_md5s=[e.md5(e.piece(expr(p))) for p in plan.sql_rest],
        py_fetch=[expr(p).fetch or "NULL" for p in plan.py_rest],
        key_raw=[e.quote(name(p)) for p in plan.key],
    )


def _py_functions(plan: _Plan, which: str) -> list[Callable[[Any], str | None]]:
    out = []
    for p in plan.py_rest:
        f = p.src.py if which == "src" else p.dst.py
        assert f is not None
        out.append(f)
    return out


def _join(parts: list[str], sep: str) -> list[str]:
    out: list[str] = []
    for i, p in enumerate(parts):
        if i:
            out.append(sep)
        out.append(p)
    return out


Summary = dict[int, tuple[int, int]]  # bucket -> (rows, sum of 60-bit row hashes)


def _summary(e: _Engine, q: _SideSql, pys: list[Callable[[Any], str | None]], n: int) -> Summary:
    bucket = e.bucket(q.key_md5, n)
    if not pys:
        return {int(b): (int(c), int(s)) for b, c, s in e.rows(e.summary_sql(q.table, bucket, e.hash60(q.row_md5)))}
    # JSON columns are canonicalised here: stream (bucket, md5 of the SQL part, JSON values)
    counts, sums = [0] * n, [0] * n
    sql = f"SELECT {bucket}, {q.row_md5}, {', '.join(q.py_fetch)} FROM {q.table}"
    md5, piece = hashlib.md5, _py_piece
    for row in _prefetch(e.batches(sql)):
        text = f"{row[1]}|" + ",".join([piece(f(v)) for f, v in zip(pys, row[2:])])
        b = int(row[0])
        counts[b] += 1
        sums[b] += int(md5(text.encode()).hexdigest()[:15], 16)
    return {b: (counts[b], sums[b]) for b in range(n) if counts[b]}


def _compare(
    src: _Engine, dst: _Engine, src_id: TableId, dst_id: TableId, plan: _Plan, chunk_size: int,
    max_keys: int, report: TableReport,
) -> None:
    sq, dq = _side_sql(src, src_id, plan, "src"), _side_sql(dst, dst_id, plan, "dst")
    count = int(src.rows(f"SELECT COUNT(*) FROM {sq.table}")[0][0])
    n = max(1, -(-count // chunk_size))
    src_py, dst_py = _py_functions(plan, "src"), _py_functions(plan, "dst")
    s_sum, d_sum = _parallel(lambda: _summary(src, sq, src_py, n), lambda: _summary(dst, dq, dst_py, n))
    report.chunks = n
    report.source_rows = sum(c for c, _ in s_sum.values())
    report.target_rows = sum(c for c, _ in d_sum.values())
    differing = sorted(b for b in set(s_sum) | set(d_sum) if s_sum.get(b) != d_sum.get(b))
    report.chunks_differing = len(differing)
    if not differing:
        return
    _drill(src, dst, sq, dq, plan, n, differing, max_keys, report)
    if not (report.missing_total or report.extra_total or report.different_total):
        report.note = (
            "the checksums differed but the rows read again match: the tables changed while"
            " verifying (is the flow still applying changes?)"
        )


def _drill(
    src: _Engine, dst: _Engine, sq: _SideSql, dq: _SideSql, plan: _Plan, n: int, buckets: list[int],
    max_keys: int, report: TableReport,
) -> None:
    """Stream both sides' rows of the differing buckets in key-md5 order and merge them."""

    def query(e: _Engine, q: _SideSql) -> str:
        cols = [f"{e.binary(q.key_md5)} AS __kh", f"{e.binary(q.key)} AS __kc", *q.key_raw, *q.rest_md5s, *q.py_fetch]
        where = "" if len(buckets) == n else f" WHERE {e.bucket(q.key_md5, n)} IN ({', '.join(map(str, buckets))})"
        return e.ordered_sql(", ".join(cols), q.table, where)

    nkey = len(plan.key)
    nsql = len(plan.sql_rest)
    src_py, dst_py = _py_functions(plan, "src"), _py_functions(plan, "dst")
    names = [p.source for p in plan.sql_rest] + [p.source for p in plan.py_rest]
    position = {p.source: i for i, p in enumerate(plan.rest)}  # columns named in the table's order
    key_names = [p.source for p in plan.key]

    def rows(e: _Engine, q: _SideSql, pys: list[Callable[[Any], str | None]]) -> Iterator[_Row]:
        for r in _prefetch(e.batches(query(e, q))):
            key = r[2 : 2 + nkey]
            values = list(r[2 + nkey : 2 + nkey + nsql]) + [f(v) for f, v in zip(pys, r[2 + nkey + nsql :])]
            yield _Row((_text(r[0]), _text(r[1])), key, values)

    missing, extra, different = _First(max_keys), _First(max_keys), _First(max_keys)
    s_it, d_it = rows(src, sq, src_py), rows(dst, dq, dst_py)
    s, d = next(s_it, None), next(d_it, None)
    while s is not None or d is not None:
        if d is None or (s is not None and s.order < d.order):
            assert s is not None
            missing.add(s.key, dict(zip(key_names, map(_jsonable, s.key))))
            s = next(s_it, None)
        elif s is None or s.order > d.order:
            extra.add(d.key, dict(zip(key_names, map(_jsonable, d.key))))
            d = next(d_it, None)
        else:
            cols = tuple(sorted((n for n, a, b in zip(names, s.values, d.values) if a != b), key=position.__getitem__))
            if cols:
                different.add(s.key, RowDifference(dict(zip(key_names, map(_jsonable, s.key))), cols))
            s, d = next(s_it, None), next(d_it, None)
    report.missing, report.missing_total = missing.items(), missing.total
    report.extra, report.extra_total = extra.items(), extra.total
    report.different, report.different_total = different.items(), different.total


def _text(v: Any) -> str:
    """A canonical key text or md5 as read: MariaDB gives binary strings as bytes."""
    return v.decode("utf-8", "surrogateescape") if isinstance(v, (bytes, bytearray)) else str(v)


@dataclass
class _Row:
    order: tuple[str, str]  # (md5 of the canonical key, the canonical key)
    key: tuple[Any, ...]  # the key's values as the driver loads them
    values: list[Any]  # per compared non-key column: md5 (SQL) or canonical text (Python)


class _First:
    """The ``limit`` smallest keys added (with their payload), and how many were added."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._items: list[tuple[tuple[Any, ...], int, Any]] = []

    def add(self, key: tuple[Any, ...], payload: Any) -> None:
        self.total += 1
        if self.limit <= 0:
            return
        sort_key = tuple(_sortable(v) for v in key)
        if len(self._items) >= self.limit and not sort_key < self._items[-1][0]:
            return
        bisect.insort(self._items, (sort_key, self.total, payload))
        del self._items[self.limit :]

    def items(self) -> list[Any]:
        return [p for _, _, p in self._items]


def _sortable(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, (int, float, Decimal)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, (bytes, bytearray)):
        return (2, bytes(v))
    return (3, str(v))


def _jsonable(v: Any) -> Any:
    """A key value as JSON shows it: numbers as numbers, everything else as readable text."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, Decimal):
        exponent = v.as_tuple().exponent
        return int(v) if v.is_finite() and isinstance(exponent, int) and exponent >= 0 else str(v)
    if isinstance(v, (bytes, bytearray)):
        return "\\x" + bytes(v).hex()
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    return str(v)


# --------------------------------------------------------------------------- plumbing


def _parallel(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """Run both (one per side) at once; the first exception wins, after both ended."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()


_END = object()


def _prefetch(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``batches``, fetched in a thread ahead of the consumer (both sides of a merge
    then read at once), at most _QUEUE_BATCHES batches ahead."""
    q: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BATCHES)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    thread = threading.Thread(target=run, name="verify-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from _rows(item)
    finally:
        stop.set()


def _rows(item: object) -> Iterable[tuple[Any, ...]]:
    assert isinstance(item, list)
    return item
