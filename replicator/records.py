"""The one record shape every source produces and every writer consumes.

A change record is source-neutral: PostgreSQL's pgoutput and MySQL's binlog both decode into
:class:`Change`. The pipeline only ever sees these, so mapping, batching and writing are written
once. Operations use Debezium's tiny alphabet (``r`` snapshot read, ``c`` create, ``u`` update,
``d`` delete, ``t`` truncate).

Rows are plain ``dict`` objects keyed by *source* column name. A column whose value the source
did not send (PostgreSQL's unchanged-TOAST marker) is simply absent from the dict, never ``None``:
``None`` always means SQL NULL. Writers must therefore update only the columns a row carries.
Two value types keep what plain Python values would lose: :data:`JSON_NULL` (a json value that
is JSON ``null``, not SQL NULL) and :class:`Interval` (a timedelta that keeps months and years).

A primary-key change is represented by an update whose ``before`` key differs from the ``after``
key; writers turn it into delete(old key) + upsert(new row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Row = dict[str, Any]


class JsonNull:
    """JSON's own ``null`` as a whole json/jsonb value: not SQL NULL (``None``), and not lost.

    A json column may hold SQL NULL or the JSON document ``null``; both load as ``None`` in
    psycopg, so sources give the latter as the singleton :data:`JSON_NULL`. Writers store it as
    the JSON text ``null`` (see :func:`json_default`).
    """

    _instance: JsonNull | None = None

    def __new__(cls) -> JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __reduce__(self) -> str:
        return "JSON_NULL"


JSON_NULL = JsonNull()


def json_default(value: Any) -> Any:
    """``default=`` for :func:`json.dumps`: :data:`JSON_NULL` becomes ``null``."""
    if value is JSON_NULL:
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class JsonText(str):
    """A JSON document as the source stored it (MariaDB's JSON is text): writers put the text
    into JSON columns verbatim instead of encoding it as a JSON string a second time."""

    __slots__ = ()


class Interval(timedelta):
    """A PostgreSQL interval: the ``timedelta`` psycopg computes, plus the exact source text.

    A timedelta cannot hold months or years (psycopg counts a month as 30 days and a year as
    365), so ``'1 mon'`` would come back as ``'30 days'`` — a different interval to PostgreSQL
    (``date '2024-01-31' + interval '1 mon'``). Writers for PostgreSQL targets write ``text``.
    """

    __slots__ = ("text",)

    text: str

    def __new__(cls, value: timedelta, text: str) -> Interval:
        self = super().__new__(cls, value.days, value.seconds, value.microseconds)
        self.text = text
        return self

    def __reduce__(self) -> Any:
        return (Interval, (timedelta(self.days, self.seconds, self.microseconds), self.text))

INSERT = "c"
UPDATE = "u"
DELETE = "d"
TRUNCATE = "t"
READ = "r"


@dataclass(frozen=True, slots=True)
class TableId:
    """A source or target table: ``schema`` is the PostgreSQL schema or the MySQL database."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(slots=True)
class Change:
    """One row-level change (or a truncate) inside a source transaction.

    ``key`` holds the primary-key columns identifying the row *before* the change for updates
    and deletes (the old key), and the new row's key for inserts. ``after`` is ``None`` for
    deletes and truncates; ``before`` is whatever the source sent (key only, full old row, or
    ``None``). ``partial`` marks an update whose ``after`` row leaves columns out: writers then
    update just the columns it has (an upsert would need every column).
    """

    op: str
    table: TableId
    key: Row | None
    before: Row | None
    after: Row | None
    partial: bool = False  # ``after`` lacks columns the source did not send (unchanged TOAST)


Position = Any
"""A source position: PostgreSQL = commit end LSN (int); MySQL = GTID set / file:pos (str).
Each source knows how to turn its positions into text for the checkpoint table and back."""


@dataclass(slots=True)
class Begin:
    """Start of a committed source transaction. Its changes follow, then a :class:`Commit`.

    Transactions are streamed, never held whole: a 10M-row transaction is a Begin, 10M Changes
    and a Commit, so memory stays bounded. ``origin`` names the replication origin that wrote
    the transaction, if any (the loop guard uses it). ``position`` identifies the transaction
    in the source's order before its changes arrive (PostgreSQL: the commit record's LSN;
    MariaDB: its GTID): :meth:`~replicator.protocols.Source.covered` tells from it whether a
    snapshot already holds the transaction's changes.
    """

    xid: int
    commit_time: datetime | None
    origin: str | None = None
    position: Any = None


@dataclass(slots=True)
class Commit:
    """End of a source transaction: ``position`` is where streaming resumes after it."""

    position: Position
    commit_time: datetime | None


@dataclass(slots=True)
class Heartbeat:
    """The source is idle up to ``position`` with no transaction in flight.

    Lets the pipeline advance the checkpoint (and so the source's retained log) on an idle
    source, and tells ``run --once`` it has caught up.
    """

    position: Position


@dataclass(frozen=True, slots=True)
class AddedColumn:
    """A column added on the source, as the source's own SQL (MySQL dialect today)."""

    name: str
    type_sql: str  # e.g. "INT UNSIGNED", "VARCHAR(20)"
    not_null: bool
    default_sql: str | None  # the DEFAULT expression, or None
    definition_sql: str  # the whole column definition, for a target of the same engine


@dataclass(slots=True)
class SchemaChange:
    """DDL on a synced source table, in log order, between two transactions.

    Rows before it were decoded with the old definition and rows after it with the new one
    (each binlog row event carries the table map in force). The pipeline makes the target
    follow what it can (added columns) and stops with a clear error on what it cannot.
    """

    table: TableId
    statement: str
    added: list[AddedColumn] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    modified: list[AddedColumn] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new) column names
    unsupported: str | None = None  # why the target cannot follow, if it cannot


Item = Begin | Change | Commit | Heartbeat | SchemaChange
