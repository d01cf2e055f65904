"""MariaDB → MariaDB snapshot rows as text: formatted by the source server, loaded by the target.

For a table whose target columns have the source's very types, no value needs to become a
Python object: the source formats each row as one line of ``LOAD DATA``'s default text
format (tab-separated, backslash escapes, ``\\N`` for NULL) in SQL, with
``character_set_results = binary`` so every byte arrives as stored; the target loads the lines
with ``LOAD DATA LOCAL INFILE … CHARACTER SET binary`` from a FIFO that a thread fills. Python
only moves one byte string per row.

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
from .writer import qtable, quote

# Column types whose text goes through as it is (no tab, newline or backslash inside).
_PLAIN = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
          "double", "real", "date", "datetime", "timestamp", "time", "year")
_ESCAPED = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json",
            "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")


class LoadRejected(Exception):
    """The target reported warnings for a loaded chunk: the rows were not taken as they are."""


def _base(column: ColumnInfo) -> str:
    return column.type.lower().split("(")[0].split(" ")[0]


def supported(info: TableInfo) -> bool:
    """Whether every column's text round-trips through LOAD DATA exactly."""
    return all(_base(c) in _PLAIN or _base(c) in _ESCAPED or _base(c) == "float" for c in info.columns)


def _expr(column: ColumnInfo) -> str:
    col = quote(column.name)
    base = _base(column)
    if base == "float":
        col = f"CAST({col} AS DOUBLE)"  # FLOAT's own text has six digits; the target rounds back
    elif base in _ESCAPED:
        for char, escaped in (("\\\\", "\\\\\\\\"), ("\\t", "\\\\t"), ("\\n", "\\\\n"), ("\\r", "\\\\r"), ("\\0", "\\\\0")):
            col = f"REPLACE({col}, '{char}', '{escaped}')"
    return f"IFNULL({col}, '\\\\N')"


def select_lines(info: TableInfo, columns: tuple[str, ...]) -> str:
    by_name = {c.name: c for c in info.columns}
    return f"SELECT CONCAT_WS('\\t', {', '.join(_expr(by_name[c]) for c in columns)}) FROM {qtable(info.table)}"


def source_lines(conn: Any, info: TableInfo, columns: tuple[str, ...]) -> Iterator[bytes]:
    """The table's rows as LOAD DATA lines (without the newline), streamed."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION character_set_results = binary")
        cur.execute(select_lines(info, columns))
        for (line,) in cur.fetchall_unbuffered():
            yield line


def _batches(lines: Iterator[bytes], limit: int, size: int = 2000) -> Iterator[list[bytes]]:
    """Up to ``limit`` lines in lists of ``size`` (one write per list, not per line)."""
    left = limit
    while left > 0:
        batch = list(islice(lines, min(size, left)))
        if not batch:
            return
        left -= len(batch)
        yield batch


def load_chunk(conn: Any, table: TableId, columns: list[str], lines: Iterator[bytes], limit: int) -> int:
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
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {qtable(table)} CHARACTER SET binary"
                    " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
                    f" ({', '.join(map(quote, columns))})",
                    (fifo,),
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
