"""The one record shape every source produces and every writer consumes.

A change record is source-neutral: PostgreSQL's pgoutput and MySQL's binlog both decode into
:class:`Change`. The pipeline only ever sees these, so mapping, batching and writing are written
once. Operations use Debezium's tiny alphabet (``r`` snapshot read, ``c`` create, ``u`` update,
``d`` delete, ``t`` truncate).

Rows are plain ``dict`` objects keyed by *source* column name. A column whose value the source
did not send (PostgreSQL's unchanged-TOAST marker) is simply absent from the dict, never ``None``:
``None`` always means SQL NULL. Writers must therefore update only the columns a row carries.

A primary-key change is represented by an update whose ``before`` key differs from the ``after``
key; writers turn it into delete(old key) + upsert(new row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Row = dict[str, Any]

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
    the transaction, if any (the loop guard uses it).
    """

    xid: int
    commit_time: datetime | None
    origin: str | None = None


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


Item = Begin | Change | Commit | Heartbeat
