"""The MySQL/MariaDB target: multi-row upserts, deletes by key, checkpoint in the same txn.

Upserts are multi-row ``INSERT … VALUES (…), (…) ON DUPLICATE KEY UPDATE …`` statements of up
to ~1 MB, the fast path for InnoDB short of LOAD DATA. They are written here rather than by
pymysql's ``executemany`` (which does the same rewrite) because its generic escaping — four
calls per value — cost more CPU than decoding the binlog rows: :func:`sql_literal` writes the
usual types directly, exactly as pymysql would, and hands anything else to pymysql.
Values are converted per *target column type* once per column (JSON columns get JSON text,
timezone-aware datetimes become UTC, UUIDs text, booleans 0/1), and the session runs in UTC
with strict SQL mode, so a value the column cannot hold is an error, never a silent truncation.
The rows of one upsert are rendered column by column (:func:`_row_renderer`): a column whose
values share one common type (ints, strings, decimals, naive datetimes, dates, perhaps with
NULLs) becomes text through C-level ``map`` calls, strings are checked for characters needing
escapes over the whole column at once, and a row formatter generated per pattern of quoted
columns puts each row's texts together; every other value goes through :func:`sql_literal`,
and the text is the same either way (checked in ``tests/test_mysql_rows.py``). That is ~1.6x
cheaper per row than a generated row-by-row loop with the type checks inline, which itself
halved the cost of pymysql's escaping. The statements of an upsert are rendered one ahead of
the server (:class:`_Ahead`): the next is built while the server runs the previous one, which
took a third off the time to apply a batch to MariaDB. Connections share one TLS context
(:func:`pymysql_connect`).

MySQL and MariaDB differ only in the upsert's reference to the new row: MariaDB keeps
``VALUES(col)``, MySQL ≥ 8.0.20 wants a row alias. :class:`MariaDBSink` overrides just that.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import pymysql
from pymysql.constants import COMMAND, SERVER_STATUS

from ..batch import TableOps, group_by_columns
from ..pg.passthrough import RawTableOps
from ..history import History
from ..errors import DataError, SchemaError, TransientError
from ..mapping import ColumnInfo, TableInfo
from ..protocols import Checkpoint
from ..records import JSON_NULL, AddedColumn, JsonText, Row, TableId
from ..urls import parse
from .catalog import describe_table

_F32 = struct.Struct("f")
_TRANSIENT_CODES = {2003, 2006, 2013, 2055, 1053, 1927, 4031}
_BUSY_CODES = {1205, 1213}  # lock wait timeout, deadlock: retried from the checkpoint
_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
# Only for rows holding ENUM's error value '' (see MySQLSink._write_enum_errors).
_LAX_SQL_MODE = _SQL_MODE.replace("STRICT_ALL_TABLES,", "")
_ENUM_MEMBER = re.compile(r"'((?:[^']|'')*)'")
# Characters per multi-row statement: at most 4 bytes each in utf8mb4, so at most ~1 MB (the
# smallest max_allowed_packet a server is likely to have), as pymysql's executemany keeps.
_STATEMENT_CHARS = 250_000
_WARNED_COLUMN = re.compile(r"column '(.*)' at row", re.IGNORECASE)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def qtable(table: TableId) -> str:
    return f"{quote(table.schema)}.{quote(table.name)}"


_TLS_OPTIONS = frozenset({
    "ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_key_password", "ssl_verify_cert", "ssl_verify_identity",
    "ssl_disabled", "read_default_file",
})
_preferred_tls: list[Any] = []  # the one TLS context of pymysql's "preferred" mode, once built


def pymysql_connect(**kwargs: Any) -> pymysql.connections.Connection[Any]:
    """``pymysql.connect``, with one TLS context shared by the connections in pymysql's
    default TLS mode ("preferred": TLS when the server offers it, no certificate checks).

    pymysql builds that context again for every connection, loading the system's CA store
    each time: ~20 ms of CPU per connection, and a run opens five or six (catalog, target,
    binlog control and stream...). The shared context has the same settings and a context may
    serve many connections, so the connection does exactly what pymysql would; explicit TLS
    options, or a pymysql without that mode, take pymysql's own path. Also given to
    ``BinLogStreamReader`` (``pymysql_wrapper``) for its connections.
    """
    if _TLS_OPTIONS.intersection(kwargs) or not getattr(pymysql.connections, "SSL_ENABLED", False):
        return pymysql.connect(**kwargs)
    if not _preferred_tls:
        probe: Any = pymysql.connections.Connection(defer_connect=True)  # pymysql's own default
        if not (getattr(probe, "ssl", False) and getattr(probe, "_ssl_required", True) is False
                and getattr(probe, "ctx", None) is not None):
            return pymysql.connect(**kwargs)  # not the mode this function knows
        _preferred_tls.append(probe.ctx)
    defer = bool(kwargs.pop("defer_connect", False))
    conn: Any = pymysql.connect(**kwargs, ssl_disabled=True, defer_connect=True)
    conn.ssl = True  # what pymysql's __init__ sets in the preferred mode
    conn._ssl_required = False
    conn.ctx = _preferred_tls[0]
    if not defer:
        conn.connect()
    return conn  # type: ignore[no-any-return]


def connect(url: str, **kwargs: Any) -> pymysql.connections.Connection[Any]:
    p = parse(url)
    try:
        return pymysql_connect(
            host=p.host,
            port=p.port,
            user=p.user or "root",
            password=p.password or "",
            database=p.database,
            charset="utf8mb4",
            connect_timeout=10,
            **kwargs,
        )
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        msg = exc.args[1] if len(exc.args) > 1 else str(exc)
        if code in (1045, 1044, 1049):
            from ..errors import ReplicatorError

            raise ReplicatorError(f"cannot connect to {p.host}:{p.port}: {msg}") from None
        raise TransientError(f"cannot connect to {p.host}:{p.port}: {msg}") from None


def _json_default(value: Any) -> Any:
    """JSON_NULL is the JSON document null; anything else json cannot encode becomes text."""
    return None if value is JSON_NULL else str(value)


def _json_text(value: Any) -> Any:
    if value is None or isinstance(value, JsonText):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _utc_naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


_AS_IS = frozenset({int, str, Decimal, float, bytes, date, type(None)})


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    if value is JSON_NULL:
        return "null"
    if isinstance(value, datetime) and value.tzinfo is not None:
        return _utc_naive(value)
    return value


def sql_literal(conn: Any) -> Callable[[Any], str]:
    """The SQL literal pymysql would write on ``conn`` for the parameter ``_plain(value)``:
    the usual types directly (the same text as pymysql's encoders), anything else through
    ``_plain`` and ``conn.escape``. Build it again when the session's sql_mode may have
    changed (NO_BACKSLASH_ESCAPES)."""
    escape = conn.escape
    backslashes = not conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
    escape_string = pymysql.converters.escape_string

    def literal(value: Any) -> str:
        t = type(value)
        if t is str and backslashes:
            return f"'{escape_string(value)}'"
        if t is int:
            return str(value)
        if value is None:
            return "NULL"
        if t is Decimal:
            if value.is_finite():
                return format(value, "f")
        elif t is datetime:
            if value.tzinfo is None:
                return f"'{value.isoformat(' ')}'"
        elif t is date:
            return f"'{value.isoformat()}'"
        text: str = escape(_plain(value))
        return text

    return literal


Renderer = Callable[[list[Row]], list[str]]

# The characters pymysql's escape_string changes (its _escape_table).
_SPECIAL = ("'", "\\", '"', "\0", "\n", "\r", "\x1a")
_K_PLAIN, _K_NUMBER, _K_OTHER = 0, 1, 2
_NONE = type(None)
_tzinfo = attrgetter("tzinfo")
_iso_datetime = datetime.isoformat
_iso_date = date.isoformat
_is_finite = Decimal.is_finite


def _needs_escape(text: str) -> bool:
    return any(c in text for c in _SPECIAL)


def _typed_texts(values: list[Any], t: type, kind: int, backslashes: bool) -> tuple[list[str], bool] | None:
    """The SQL texts of ``values``, all of exact type ``t``, computed for the whole column at
    once (C-level ``map`` calls instead of a Python branch chain per value), and whether they
    still need quotes around them; None when ``t`` has no such path here. The texts are those
    :func:`sql_literal` writes."""
    if t is _NONE:
        return ["NULL"] * len(values), False
    if kind == _K_OTHER:
        return None
    if t is int:
        return list(map(str, values)), False
    if t is Decimal:
        if not all(map(_is_finite, values)):
            return None
        # str() is format(x, 'f') unless it uses an exponent (1E+2, 1E-7, 'e' if the decimal
        # context says so): half the cost.
        texts = list(map(str, values))
        joined = "".join(texts)
        if "E" in joined or "e" in joined:
            return list(map(format, values, repeat("f"))), False
        return texts, False
    if kind != _K_PLAIN:
        return None
    if t is str:
        if not backslashes:
            return None
        # One scan per special character over the whole column instead of seven per value.
        if not _needs_escape("".join(values)):
            return values, True
        return list(map(pymysql.converters.escape_string, values)), True
    if t is datetime:
        if set(map(_tzinfo, values)) == {None}:
            return list(map(_iso_datetime, values, repeat(" "))), True
        return None
    if t is date:
        return list(map(_iso_date, values)), True
    return None


def _column_texts(
    values: list[Any], kind: int, slow: Callable[[Any], str], backslashes: bool
) -> tuple[list[str], bool]:
    """The SQL texts of one column of a multi-row statement, and whether they need quotes.

    A column holds one value type in the common case (perhaps with NULLs): its texts are made
    by :func:`_typed_texts` for all values at once. Anything else goes value by value through
    ``slow`` (the column's converter and :func:`sql_literal`), which gives the same texts.
    """
    types = set(map(type, values))
    if len(types) == 1:
        done = _typed_texts(values, types.pop(), kind, backslashes)
        if done is not None:
            return done
    elif len(types) == 2 and _NONE in types:
        types.discard(_NONE)
        present = [v for v in values if v is not None]
        done = _typed_texts(present, types.pop(), kind, backslashes)
        if done is not None:
            texts, quoted = done
            it = iter([f"'{x}'" for x in texts] if quoted else texts)
            return ["NULL" if v is None else next(it) for v in values], False
    return list(map(slow, values)), False


def _row_renderer(
    cols: Sequence[str], converters: Sequence[Callable[[Any], Any]], literal: Callable[[Any], str], backslashes: bool
) -> Renderer:
    """A function turning rows into their ``(v1,v2,…)`` texts for a multi-row statement.

    It works column by column (:func:`_column_texts`): the values of a column are taken out
    of all rows at once, and a column of one type (ints, strings, finite decimals, naive
    datetimes, dates, with or without NULLs) is turned into text by C-level ``map`` calls
    instead of a Python type dispatch per value; strings are checked for the characters that
    need escaping over the whole column joined. The texts are then put together by a row
    formatter generated per pattern of quoted columns (an f-string per row), cached. Every
    text is what :func:`sql_literal` writes for ``converter(value)`` (a column without a
    converter: for the value itself), which anything unusual still goes through. With the
    grouping shortcut (:func:`_groups`) that made the writer's Python work per row ~1.6x
    cheaper than a generated per-row loop with the type checks inline.
    """
    n = len(cols)
    getters = [itemgetter(c) for c in cols]
    kinds: list[int] = []
    slows: list[Callable[[Any], str]] = []
    for f in converters:
        if f is _plain:
            kinds.append(_K_PLAIN)
            slows.append(literal)
        else:
            kinds.append(_K_NUMBER if isinstance(f, _Number) else _K_OTHER)
            slows.append(lambda x, f=f: literal(f(x)))  # type: ignore[misc]
    formatters: dict[tuple[bool, ...], Callable[..., list[str]]] = {}

    def formatter(quoted: tuple[bool, ...]) -> Callable[..., list[str]]:
        names = [f"c{i}" for i in range(n)]
        slots = ",".join(f"'{{{x}}}'" if q else f"{{{x}}}" for x, q in zip(names, quoted))
        source = (
            f"def fmt({', '.join(names)}):\n"
            f"    return [f\"({slots})\" for {', '.join(names)}, in zip({', '.join(names)})]"
        )
        ns: dict[str, Any] = {}
        exec(compile(source, "<mysql row formatter>", "exec"), ns)
        fmt: Callable[..., list[str]] = ns["fmt"]
        formatters[quoted] = fmt
        return fmt

    def render(rows: list[Row]) -> list[str]:
        columns: list[list[str]] = []
        quoted: list[bool] = []
        for i in range(n):
            texts, q = _column_texts(list(map(getters[i], rows)), kinds[i], slows[i], backslashes)
            columns.append(texts)
            quoted.append(q)
        key = tuple(quoted)
        return (formatters.get(key) or formatter(key))(*columns)

    return render


_FIRST_STATEMENT_ROWS = 200  # rows of the first statement of an upsert (then sized by length)


class _Ahead:
    """Sends statements one ahead of their results on a pymysql connection, so that the
    writer renders the next statement while the server runs this one.

    The writer's thread used to render a whole batch and then send its statements one by one,
    waiting for each: against a MariaDB target the server's time per statement then came on
    top of the rendering (which also waits for the GIL while the reader decodes). pymysql has
    no asynchronous query, so this splits ``Connection.query`` into its two halves (send the
    command; read the result, which raises the server's error) -- private pymysql methods, so
    without them it falls back to ``cursor.execute``. At most one statement is in flight, and
    its result is always read before anything else is sent on the connection.
    """

    def __init__(self, conn: Any, cur: Any) -> None:
        self.conn = conn
        self.cur = cur
        self.split = hasattr(conn, "_execute_command") and hasattr(conn, "_read_query_result")
        self.pending = False

    def send(self, sql: str) -> None:
        self.wait()
        if not self.split:
            self.cur.execute(sql)
            return
        self.conn._execute_command(COMMAND.COM_QUERY, sql.encode(self.conn.encoding))
        self.pending = True

    def wait(self) -> None:
        """Read the result of the statement in flight (raises the server's error)."""
        if self.pending:
            self.pending = False
            self.conn._affected_rows = self.conn._read_query_result()

    def abandon(self) -> None:
        """After an error of ours: read the statement in flight, so the connection can still
        roll back; the error being raised is the one to report."""
        try:
            self.wait()
        except pymysql.err.Error:
            pass


def _statements(head: str, tail: str, texts: list[str], limit: int) -> Iterator[str]:
    """``head`` + texts joined by commas + ``tail``, as few statements as keep the joined texts
    of each within ``limit`` characters (a text longer than that alone)."""
    start = total = 0
    for j, n in enumerate(map(len, texts)):
        total += n + 1
        if total > limit and j > start:
            yield head + ",".join(texts[start:j]) + tail
            start, total = j, n + 1
    if start < len(texts):
        yield head + ",".join(texts[start:]) + tail


def _groups(rows: list[Row]) -> list[tuple[tuple[str, ...], list[Row]]]:
    """Rows grouped by column set, as :func:`~replicator.batch.group_by_columns` does, with
    a shortcut for the usual case, every row with the first row's columns (checked in C:
    comparing the key views costs less than building and hashing a tuple per row)."""
    if not rows:
        return []
    first = rows[0].keys()
    if all(map(first.__eq__, map(dict.keys, rows))):
        return [(tuple(first), rows)]
    return group_by_columns(rows)


def converter_for(column: ColumnInfo, table: TableId | None = None) -> Callable[[Any], Any]:
    """How a Python value becomes a parameter for this MySQL column type."""
    kind = column.type.lower()
    if kind == "json":
        return _json_text
    if kind.startswith(("decimal", "numeric", "float", "double", "real")):
        where = f"column {column.name!r} ({column.type})" + (f" of target table {table}" if table else "")
        return _Number(where, kind.startswith("float"))
    return _plain


class _Number:
    """The converter of a DECIMAL/FLOAT/DOUBLE column: NaN and infinity are errors (MySQL has
    neither), and a float for a FLOAT column is sent as its float32 value."""

    def __init__(self, where: str, single: bool) -> None:
        self.where = where
        self.single = single

    def __call__(self, value: Any) -> Any:
        if isinstance(value, float | Decimal):
            finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
            if not finite:
                raise DataError(
                    f"{self.where} cannot hold the value {value}: MySQL/MariaDB numbers have no NaN"
                    " or infinity (change the value on the source, or map the column to text)"
                )
            if self.single and isinstance(value, float):
                # A PostgreSQL real arrives as the double nearest its shortest text, which can
                # lie just beyond the float32 range (3.4028235e38): send the float32 value.
                try:
                    value = _F32.unpack(_F32.pack(value))[0]
                except OverflowError:
                    pass  # out of FLOAT's range: the server reports it
        return _plain(value)


class MySQLSink:
    """Writes netted batches to MySQL (8.0.20+)."""

    def __init__(self, url: str, state_schema: str = "_replicator") -> None:
        self.url = url
        self.state_schema = state_schema
        self.conn = connect(url, autocommit=False)
        self._columns: dict[TableId, dict[str, ColumnInfo]] = {}
        self._renderers: dict[tuple[TableId, tuple[str, ...], bool], Renderer] = {}
        with self._guard():
            session_setup(self.conn)

    # -- dialect differences ---------------------------------------------------------------
    def upsert_parts(self, table: TableId, cols: Sequence[str], key: Sequence[str]) -> tuple[str, str]:
        """The upsert's text before and after its rows (``VALUES`` then ``(…), (…)``)."""
        non_key = [c for c in cols if c not in key] or [key[0]]
        return (
            f"INSERT INTO {qtable(table)} ({', '.join(map(quote, cols))}) VALUES ",
            f" AS new ON DUPLICATE KEY UPDATE {', '.join(f'{quote(c)} = new.{quote(c)}' for c in non_key)}",
        )

    def upsert_sql(self, table: TableId, cols: Sequence[str], key: Sequence[str]) -> str:
        """The upsert of one row, with ``%s`` parameters."""
        head, tail = self.upsert_parts(table, cols, key)
        return f"{head}({', '.join(['%s'] * len(cols))}){tail}"

    # -- catalog ---------------------------------------------------------------------------
    def ensure_state(self) -> None:
        with self._guard():
            with self.conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote(self.state_schema)}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {quote(self.state_schema)}.checkpoints ("
                    " flow VARCHAR(64) NOT NULL PRIMARY KEY,"
                    " position TEXT NOT NULL,"
                    " source_commit_time DATETIME(6) NULL,"
                    " changes_applied BIGINT NOT NULL DEFAULT 0,"
                    " transactions_applied BIGINT NOT NULL DEFAULT 0,"
                    " updated_at DATETIME(6) NOT NULL"
                    ") ENGINE=InnoDB"
                )
            History(self.conn, self.state_schema).ensure()
            self.conn.commit()

    def describe(self, table: TableId) -> TableInfo | None:
        with self._guard():
            info = describe_table(self.conn, table)
            self.conn.commit()
        if info is not None:
            self._columns[table] = {c.name: c for c in info.columns}
            self._renderers = {k: v for k, v in self._renderers.items() if k[0] != table}
        return info

    def read_checkpoint(self, flow: str) -> Checkpoint | None:
        with self._guard():
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT position, source_commit_time, changes_applied, transactions_applied,"
                    f" updated_at FROM {quote(self.state_schema)}.checkpoints WHERE flow = %s",
                    (flow,),
                )
                row = cur.fetchone()
            self.conn.commit()
        if row is None:
            return None
        utc = timezone.utc
        return Checkpoint(
            flow,
            row[0],
            row[1].replace(tzinfo=utc) if row[1] else None,
            int(row[2]),
            int(row[3]),
            row[4].replace(tzinfo=utc) if row[4] else None,
        )

    # -- writing ---------------------------------------------------------------------------
    def apply(self, ops: list[TableOps]) -> None:
        with self._guard(), self.conn.cursor() as cur:
            for o in ops:
                if o.truncate:
                    # TRUNCATE commits implicitly in MySQL; DELETE keeps it inside our transaction.
                    cur.execute(f"DELETE FROM {qtable(o.mapping.target)}")
            for o in ops:
                table, key = o.mapping.target, o.mapping.target_key
                if o.deletes:
                    self._delete(cur, table, key, o.deletes)
                for cols, rows in _groups(o.upserts):
                    stmt = self.upsert_sql(table, cols, key)
                    enum_cols = self._enum_error_columns(table, cols)
                    odd = [r for r in rows if any(r[c] == "" for c in enum_cols)] if enum_cols else []
                    if odd:
                        rows = [r for r in rows if not any(r[c] == "" for c in enum_cols)]
                        self._write_enum_errors(cur, stmt, table, cols, odd, enum_cols)
                    if rows:
                        self._upsert(cur, table, cols, key, rows)
                for cols, rows in _groups(o.updates):
                    set_cols = [c for c in cols if c not in key]
                    if not set_cols:
                        continue
                    stmt = (
                        f"UPDATE {qtable(table)} SET {', '.join(f'{quote(c)} = %s' for c in set_cols)}"
                        f" WHERE {' AND '.join(f'{quote(c)} = %s' for c in key)}"
                    )
                    cur.executemany(stmt, self._params(table, [*set_cols, *key], rows))
                for old_key, row in o.rekeys:  # move a row in place, keeping what the change left out
                    rcols = list(row)
                    cur.execute(
                        f"UPDATE {qtable(table)} SET {', '.join(f'{quote(c)} = %s' for c in rcols)}"
                        f" WHERE {' AND '.join(f'{quote(c)} = %s' for c in key)}",
                        [*self._params(table, rcols, [row])[0], *[f(v) for f, v in zip(self._converters(table, key), old_key)]],
                    )

    def _enum_error_columns(self, table: TableId, cols: Sequence[str]) -> list[str]:
        """Target ENUM columns without a '' member: there '' is the error value (index 0)."""
        known = self._columns.get(table, {})
        out = []
        for c in cols:
            info = known.get(c)
            if info is not None and info.type.lower().startswith("enum("):
                if "" not in [m.replace("''", "'") for m in _ENUM_MEMBER.findall(info.type[5:])]:
                    out.append(c)
        return out

    def _write_enum_errors(
        self, cur: Any, stmt: str, table: TableId, cols: Sequence[str], rows: list[Row], enum_cols: list[str]
    ) -> None:
        """Rows holding ENUM's error value '': a value MySQL/MariaDB store (a MySQL source
        replicates it) but refuse to write in strict mode. They go one by one without strict
        mode; any warning other than that value's own truncation notice stops the flow."""
        cur.execute(f"SET SESSION sql_mode = '{_LAX_SQL_MODE}'")
        try:
            for row, params in zip(rows, self._params(table, cols, rows)):
                cur.execute(stmt, params)
                cur.execute("SHOW WARNINGS")
                expected = {c for c in enum_cols if row[c] == ""}
                for _level, code, message in cur.fetchall():
                    m = _WARNED_COLUMN.search(str(message))
                    if not (int(code) == 1265 and m is not None and m.group(1) in expected):
                        raise DataError(f"target table {table} cannot hold a value: ({code}) {message}")
        finally:
            cur.execute(f"SET SESSION sql_mode = '{_SQL_MODE}'")

    def _converters(self, table: TableId, cols: Sequence[str]) -> list[Callable[[Any], Any]]:
        known = self._columns.get(table, {})
        out = []
        for c in cols:
            info = known.get(c)
            if info is None:
                raise SchemaError(f"target table {table} has no column {c!r}")
            out.append(converter_for(info, table))
        return out

    def _renderer(self, table: TableId, cols: Sequence[str]) -> Renderer:
        conn: Any = self.conn
        backslashes = not conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
        cache_key = (table, tuple(cols), backslashes)
        render = self._renderers.get(cache_key)
        if render is None:
            literal = sql_literal(self.conn)
            render = _row_renderer(cols, self._converters(table, cols), literal, backslashes)
            self._renderers[cache_key] = render
        return render

    def _upsert(self, cur: Any, table: TableId, cols: Sequence[str], key: Sequence[str], rows: list[Row]) -> None:
        """Multi-row upserts of at most _STATEMENT_CHARS characters each, rendered a statement
        ahead: the next one is rendered while the server runs the previous one
        (:class:`_Ahead`)."""
        head, tail = self.upsert_parts(table, cols, key)
        render = self._renderer(table, cols)
        limit = _STATEMENT_CHARS - len(head) - len(tail)
        ahead = _Ahead(self.conn, cur)
        try:
            step = _FIRST_STATEMENT_ROWS
            i = 0
            while i < len(rows):
                texts = render(rows[i : i + step])
                i += len(texts)
                size = sum(map(len, texts)) + len(texts)
                if size <= limit:
                    ahead.send(head + ",".join(texts) + tail)
                else:
                    for stmt in _statements(head, tail, texts, limit):
                        ahead.send(stmt)
                # rows per statement from here on: ~90% of the limit at this average length
                step = max(1, int(0.9 * limit * len(texts) / size))
        except BaseException:
            ahead.abandon()
            raise
        ahead.wait()

    def _params(self, table: TableId, cols: Sequence[str], rows: list[Row]) -> list[list[Any]]:
        conv = self._converters(table, cols)
        return [[f(row[c]) for c, f in zip(cols, conv)] for row in rows]

    def _delete(self, cur: Any, table: TableId, key: Sequence[str], keys: list[tuple[object, ...]]) -> None:
        conv = self._converters(table, key)
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            if len(key) == 1:
                cond = f"{quote(key[0])} IN ({', '.join(['%s'] * len(chunk))})"
                params: list[Any] = [conv[0](k[0]) for k in chunk]
            else:
                one = "(" + ", ".join(["%s"] * len(key)) + ")"
                cond = f"({', '.join(map(quote, key))}) IN ({', '.join([one] * len(chunk))})"
                params = [f(v) for k in chunk for f, v in zip(conv, k)]
            cur.execute(f"DELETE FROM {qtable(table)} WHERE {cond}", params)

    # -- passthrough: rows as SQL texts (see replicator.mysql.passthrough) -------------------
    @property
    def raw_format(self) -> str | None:
        """The text passthrough rows must have for :meth:`apply_raw`: ``mysql`` (rows as
        ``(…)`` texts of SQL literals with backslash escapes); None while the session has
        NO_BACKSLASH_ESCAPES (the texts would need other escapes)."""
        conn: Any = self.conn
        return None if conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES else "mysql"

    def apply_raw(self, ops: list[RawTableOps]) -> None:
        """Write netted passthrough rows inside the open transaction: per table its deletes,
        then its rows as multi-row upserts (the same statements :meth:`apply` sends)."""
        with self._guard(), self.conn.cursor() as cur:
            for o in ops:
                mapping = o.mapping
                table, key = mapping.target, mapping.target_key
                if o.deletes:
                    keys = [k if isinstance(k, tuple) else (k,) for k in o.deletes]
                    self._delete(cur, table, key, keys)  # type: ignore[arg-type]
                rows = o.upserts + o.inserts
                if rows:
                    head, tail = self.upsert_parts(table, [mapping.target_name(n) for n in o.names], key)
                    self._send_texts(cur, head, tail, [row[0] for row in rows])  # type: ignore[misc]

    def _send_texts(self, cur: Any, head: str, tail: str, texts: list[str]) -> None:
        """``head`` + texts joined by commas + ``tail`` in statements of at most
        _STATEMENT_CHARS characters, each sent while the previous one runs (:class:`_Ahead`)."""
        ahead = _Ahead(self.conn, cur)
        try:
            for stmt in _statements(head, tail, texts, _STATEMENT_CHARS - len(head) - len(tail)):
                ahead.send(stmt)
        except BaseException:
            ahead.abandon()
            raise
        ahead.wait()

    # -- following source DDL ------------------------------------------------------------------
    def _definition(self, name: str, column: AddedColumn, source_engine: str) -> str:
        if source_engine != "mysql":
            raise SchemaError(f"cannot translate column {name} from {source_engine} yet")
        default = f" DEFAULT {column.default_sql}" if column.default_sql is not None else ""
        return f"{quote(name)} {column.type_sql}{' NOT NULL' if column.not_null else ' NULL'}{default}"

    def add_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        self._ddl(
            f"ALTER TABLE {qtable(table)} ADD COLUMN IF NOT EXISTS {self._definition(name, column, source_engine)}",
            f"cannot add column {name} to {table}",
        )

    def modify_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        self._ddl(
            f"ALTER TABLE {qtable(table)} MODIFY COLUMN {self._definition(name, column, source_engine)}",
            f"cannot change column {name} of {table}",
        )

    def _ddl(self, statement: str, what: str) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
            self.conn.commit()
        except pymysql.err.Error as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if isinstance(exc, pymysql.err.InterfaceError) or code in _TRANSIENT_CODES:
                raise TransientError(f"lost the target connection: {exc.args[-1]}") from None
            self.rollback()
            raise SchemaError(f"{what}: {exc.args[-1]}; change the target by hand, then restart") from None

    def commit(self, checkpoint: Checkpoint) -> None:
        with self._guard(), self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {quote(self.state_schema)}.checkpoints (flow, position,"
                " source_commit_time, changes_applied, transactions_applied, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(6))"
                " ON DUPLICATE KEY UPDATE position = VALUES(position),"
                " source_commit_time = VALUES(source_commit_time),"
                " changes_applied = VALUES(changes_applied),"
                " transactions_applied = VALUES(transactions_applied),"
                " updated_at = VALUES(updated_at)",
                (
                    checkpoint.flow,
                    checkpoint.position,
                    _utc_naive(checkpoint.source_commit_time),
                    checkpoint.changes_applied,
                    checkpoint.transactions_applied,
                ),
            )
            cur.execute(  # the history row (see replicator.history)
                f"INSERT INTO {quote(self.state_schema)}.checkpoint_history (flow, position,"
                " source_commit_time, changes_applied, transactions_applied, recorded_at)"
                " VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(6))",
                (
                    checkpoint.flow,
                    checkpoint.position,
                    _utc_naive(checkpoint.source_commit_time),
                    checkpoint.changes_applied,
                    checkpoint.transactions_applied,
                ),
            )
            self.conn.commit()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except pymysql.err.Error:
            pass

    def close(self) -> None:
        try:
            self.conn.close()
        except pymysql.err.Error:
            pass

    def _guard(self) -> _Guard:
        return _Guard(self)


class MariaDBSink(MySQLSink):
    """MariaDB: the upsert refers to the new row as ``VALUES(col)``."""

    def upsert_parts(self, table: TableId, cols: Sequence[str], key: Sequence[str]) -> tuple[str, str]:
        non_key = [c for c in cols if c not in key] or [key[0]]
        return (
            f"INSERT INTO {qtable(table)} ({', '.join(map(quote, cols))}) VALUES ",
            f" ON DUPLICATE KEY UPDATE {', '.join(f'{quote(c)} = VALUES({quote(c)})' for c in non_key)}",
        )


def session_setup(conn: Any) -> None:
    """The target session every writer uses: UTC, strict SQL mode, no foreign key checks
    (rows were checked on the source), READ COMMITTED."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute(f"SET SESSION sql_mode = '{_SQL_MODE}'")
        cur.execute("SET SESSION foreign_key_checks = 0")
        # Deleting a key the target never had must not gap-lock its neighbours.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    conn.commit()


def open_mysql_sink(url: str, state_schema: str) -> MySQLSink:
    """MySQL or MariaDB, decided by the server's version string."""
    probe = connect(url)
    try:
        with probe.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
            version = str(row[0]) if row else ""
    finally:
        probe.close()
    cls = MariaDBSink if "mariadb" in version.lower() else MySQLSink
    return cls(url, state_schema)


class _Guard:
    def __init__(self, sink: MySQLSink) -> None:
        self.sink = sink

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, pymysql.err.Error):
            return
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        msg = exc.args[1] if len(exc.args) > 1 else str(exc)
        if isinstance(exc, pymysql.err.InterfaceError) or code in _TRANSIENT_CODES:
            raise TransientError(f"lost the target connection: {msg}") from None
        self.sink.rollback()
        if code in _BUSY_CODES:  # another session held the rows: the whole transaction again, later
            raise TransientError(f"the target was busy ({code}) {msg}") from None
        raise DataError(f"the target rejected a write: ({code}) {msg}") from None
