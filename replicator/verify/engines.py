"""Each engine's SQL for the canonical text of a column, its md5 and its bucket.

One class per engine (:class:`_Postgres`, :class:`_MySQL`) over a common :class:`_Engine`:
the connection (session settings, server-side cursors read in batches), the catalog read into
column *kinds*, and the SQL expressions that turn a column of a kind into the canonical text
the package docstring tables. :func:`_pair` decides, for one source/target column pair, which
expression each side uses (or that the pair cannot be compared). Separate from the comparison
because this is where the engines differ; the comparison only composes these expressions.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pymysql.cursors

from ..config import Config
from ..errors import ReplicatorError, SchemaError
from ..mapping import ColumnInfo, TableInfo
from ..mysql.catalog import describe_table as _my_describe
from ..mysql.writer import connect as _my_connect
from ..mysql.writer import converter_for
from ..mysql.writer import quote as _my_quote
from ..pg.catalog import describe_table as _pg_describe
from ..pg.conn import connect as _pg_connect
from ..pg.conn import first_line
from ..records import TableId
from .canonical import canonical_json

_BATCH_ROWS = 5_000  # rows per fetch from a server-side cursor

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


def _db_message(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.Error) and len(exc.args) > 1:
        return f"({exc.args[0]}) {exc.args[1]}"
    return first_line(exc)


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

