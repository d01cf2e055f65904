"""MariaDB snapshot rows as text, formatted by the source server: for MariaDB targets (LOAD DATA)
and PostgreSQL targets (COPY).

For a table whose target columns have the source's very types, no value needs to become a
Python object: the source formats each row as one line of ``LOAD DATA``'s default text
format (tab-separated, backslash escapes, ``\\N`` for NULL) in SQL, with
text in utf8mb4 and binary values as hex (loaded through ``UNHEX``, so bytes never meet a
character set, while characters are converted into each target column's character set as an
insert would); the target loads the lines with ``LOAD DATA LOCAL INFILE`` from a FIFO that a
thread fills. Python only moves one byte string per row.

The same idea feeds PostgreSQL targets: the source writes COPY text lines (the same escapes;
binary values as ``\\x`` hex, TIMESTAMP with its ``+00``), for target columns whose type reads
that text exactly as it reads the value streaming writes (:func:`pg_supported`); a value
PostgreSQL refuses (a zero date) fails the COPY and the caller falls back the same way.

``LOAD DATA LOCAL`` turns data errors into warnings (the server cannot stop the client's
upload), so any warning fails the chunk with :class:`LoadRejected`; the caller then copies the
table through the exact, slower path, which reports such values properly (a zero date under
the ``error`` policy, ENUM's error value …).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from itertools import islice
from typing import Any

from ..mapping import ColumnInfo, TableInfo
from ..records import TableId
from .catalog import base_type
from .writer import qtable, quote

# Column types whose text goes through as it is (no tab, newline or backslash inside).
_PLAIN = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
          "double", "real", "date", "datetime", "timestamp", "time", "year")
_ESCAPED = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json")
_BINARY = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")


# Server errors meaning "LOAD DATA LOCAL is disabled here" (MySQL 8 turns local_infile off).
LOCAL_INFILE_OFF = frozenset({1148, 3948, 4166})


class LoadRejected(Exception):
    """The target reported warnings for a loaded chunk: the rows were not taken as they are."""


def _escape(col: str, nul: bool) -> str:
    """``col``'s text escaped as LOAD DATA and COPY read it: backslash, tab, newline,
    carriage return, and NUL for LOAD DATA (PostgreSQL text cannot hold a NUL anyway)."""
    pairs = (("\\\\", "\\\\\\\\"), ("\\t", "\\\\t"), ("\\n", "\\\\n"), ("\\r", "\\\\r"), ("\\0", "\\\\0"))
    for char, escaped in pairs if nul else pairs[:-1]:
        col = f"REPLACE({col}, '{char}', '{escaped}')"
    return col


def supported(info: TableInfo) -> bool:
    """Whether every column's text round-trips through LOAD DATA exactly."""
    return all(base_type(c) in _PLAIN or base_type(c) in _ESCAPED or base_type(c) in _BINARY or base_type(c) == "float"
               for c in info.columns)


def _expr(column: ColumnInfo) -> str:
    col = quote(column.name)
    base = base_type(column)
    if base == "float":
        col = f"CAST({col} AS DOUBLE)"  # FLOAT's own text has six digits; the target rounds back
    elif base in _BINARY:
        col = f"HEX({col})"  # loaded through UNHEX: bytes never meet a character set
    elif base in _ESCAPED:
        col = _escape(col, nul=True)
    return f"IFNULL({col}, '\\\\N')"


# MariaDB type -> how PostgreSQL target column types (format_type) read its text exactly as
# they read the value streaming decodes (TIME is left out: an interval's text would differ).
_PG_TARGETS: dict[str, tuple[str, ...]] = {
    **{t: ("smallint", "integer", "bigint", "numeric") for t in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bit")},
    "decimal": ("numeric",), "numeric": ("numeric",),
    "float": ("real", "double precision"), "double": ("real", "double precision"), "real": ("real", "double precision"),
    "date": ("date",), "datetime": ("timestamp without time zone",), "timestamp": ("timestamp with time zone",),
    **{t: ("text", "character varying", "character") for t in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set")},
    "json": ("jsonb", "json"),
    **{t: ("bytea",) for t in _BINARY},
}


def _pg_type_fits(source: ColumnInfo, target_type: str) -> bool:
    plain = target_type.split("(")[0].strip()
    if "(" in target_type and target_type.endswith("zone"):  # timestamp(6) with time zone
        plain = target_type.split("(")[0] + target_type.split(")")[1]
    return plain in _PG_TARGETS.get(base_type(source), ())


def pg_supported(info: TableInfo, target_types: list[str]) -> bool:
    """Whether every column's text, formatted by :func:`pg_select_lines`, reads on the
    PostgreSQL target as exactly what streaming would write (``target_types`` in the source
    columns' order)."""
    return all(_pg_type_fits(c, t) for c, t in zip(info.columns, target_types))


def _pg_expr(column: ColumnInfo) -> str:
    col = quote(column.name)
    base = base_type(column)
    if base in ("float",):
        col = f"CAST({col} AS DOUBLE)"
    elif base == "bit":
        col = f"CAST({col} AS UNSIGNED)"
    elif base == "timestamp":
        col = f"CONCAT({col}, '+00')"  # the session is in UTC
    elif base in _BINARY:
        col = f"CONCAT('\\\\\\\\x', HEX({col}))"  # COPY text '\\x…' is bytea's hex input
    elif base in _ESCAPED:
        col = _escape(col, nul=False)
    return f"IFNULL({col}, '\\\\N')"


def pg_source_lines(conn: Any, info: TableInfo, columns: tuple[str, ...]) -> Iterator[bytes]:
    """The table's rows as PostgreSQL COPY text lines (with their newline), streamed."""
    by_name = {c.name: c for c in info.columns}
    with conn.cursor() as cur:
        cur.execute("SET SESSION character_set_results = utf8mb4")
        cur.execute(
            f"SELECT CONCAT(CONCAT_WS('\\t', {', '.join(_pg_expr(by_name[c]) for c in columns)}), '\\n')"
            f" FROM {qtable(info.table)}"
        )
        for (line,) in cur.fetchall_unbuffered():
            yield line.encode() if isinstance(line, str) else line


def select_lines(info: TableInfo, columns: tuple[str, ...]) -> str:
    by_name = {c.name: c for c in info.columns}
    return f"SELECT CONCAT_WS('\\t', {', '.join(_expr(by_name[c]) for c in columns)}) FROM {qtable(info.table)}"


def source_lines(conn: Any, info: TableInfo, columns: tuple[str, ...]) -> Iterator[bytes]:
    """The table's rows as LOAD DATA lines (without the newline), streamed: text in utf8mb4
    (the target converts characters into each column's character set, as an insert does)."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION character_set_results = utf8mb4")
        cur.execute(select_lines(info, columns))
        for (line,) in cur.fetchall_unbuffered():
            yield line.encode() if isinstance(line, str) else line


def load_columns(info: TableInfo, columns: tuple[str, ...], target_names: list[str]) -> str:
    """The LOAD DATA column list and SET clause: binary columns arrive as hex."""
    by_name = {c.name: c for c in info.columns}
    fields: list[str] = []
    sets: list[str] = []
    for i, (c, name) in enumerate(zip(columns, target_names)):
        if base_type(by_name[c]) in _BINARY:
            fields.append(f"@h{i}")
            sets.append(f"{quote(name)} = UNHEX(@h{i})")
        else:
            fields.append(quote(name))
    return f"({', '.join(fields)})" + (f" SET {', '.join(sets)}" if sets else "")


def _batches(lines: Iterator[bytes], limit: int, size: int = 2000) -> Iterator[list[bytes]]:
    """Up to ``limit`` lines in lists of ``size`` (one write per list, not per line)."""
    left = limit
    while left > 0:
        batch = list(islice(lines, min(size, left)))
        if not batch:
            return
        left -= len(batch)
        yield batch


def load_chunk(conn: Any, table: TableId, column_list: str, lines: Iterator[bytes], limit: int) -> int:
    """``LOAD DATA LOCAL`` up to ``limit`` lines into ``table`` in the open transaction of
    ``conn`` (opened with ``local_infile=True``); the number loaded. Raises LoadRejected on any
    warning."""
    with tempfile.TemporaryDirectory(prefix="replicator-load-") as tmp:
        fifo = os.path.join(tmp, "rows")
        os.mkfifo(fifo, 0o600)
        count = [0]
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                with open(fifo, "wb", buffering=0) as out:
                    n = 0
                    for batch in _batches(lines, limit):
                        out.write(b"\n".join(batch) + b"\n")
                        n += len(batch)
                    count[0] = n
            except BrokenPipeError:
                pass  # the statement failed: reported by the caller
            except BaseException as exc:  # the source failed: re-raised below
                failure.append(exc)

        writer = threading.Thread(target=feed, name="load-data-feed", daemon=True)
        writer.start()
        try:
            with conn.cursor() as cur:
                loaded = cur.execute(
                    f"LOAD DATA LOCAL INFILE {conn.escape(fifo)} INTO TABLE {qtable(table)} CHARACTER SET utf8mb4"
                    " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
                    f" {column_list}"
                )
                cur.execute("SELECT @@warning_count")
                warnings = int(cur.fetchone()[0])
        finally:
            while writer.is_alive():  # the statement ended without reading: unblock the feeder
                try:
                    fd: int | None = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    fd = None
                writer.join(0.1)
                if fd is not None:
                    os.close(fd)  # a writer blocked on a full pipe now gets EPIPE
        if failure:
            raise failure[0]
        if warnings or loaded != count[0]:
            raise LoadRejected(f"{table}: {warnings} warning(s), {loaded} of {count[0]} rows loaded")
        return int(loaded)
