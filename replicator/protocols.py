"""Interfaces between the pipeline and the databases.

A :class:`Sink` owns a target connection and its DML; the pipeline owns the ordering: it opens
a target transaction, applies netted batches, writes the checkpoint *in that transaction*,
commits, and only then acknowledges the source. Sources and sinks never decide that order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .batch import TableOps
from .mapping import TableInfo
from .records import AddedColumn, Item, Position, TableId


@dataclass(frozen=True)
class Checkpoint:
    """Where a flow stands, as committed on its target."""

    flow: str
    position: str  # the source's own textual form (LSN '0/16B3748', GTID set, …)
    source_commit_time: datetime | None
    changes_applied: int
    transactions_applied: int
    updated_at: datetime | None = None


class Sink(Protocol):
    """A target database. Every write must be idempotent (upsert/delete by key)."""

    conn: Any  # the DB-API connection (snapshots write their progress rows through it)

    def ensure_state(self) -> None:
        """Create the state schema/tables if missing."""

    def read_checkpoint(self, flow: str) -> Checkpoint | None: ...

    def describe(self, table: TableId) -> TableInfo | None:
        """The target table's columns and key, or None if it does not exist."""

    def apply(self, ops: list[TableOps]) -> None:
        """Write netted operations inside the open transaction (opened implicitly)."""

    def add_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        """Add a column the source gained (idempotent: IF NOT EXISTS); commits."""

    def modify_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        """Change a column's type as the source did; raises SchemaError if it cannot."""

    def commit(self, checkpoint: Checkpoint) -> None:
        """Store the checkpoint in the open transaction and commit it."""

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class Source(Protocol):
    """A database log, read from a position onwards."""

    def describe(self, table: TableId) -> TableInfo | None: ...

    def prepare(self, tables: list[TableId]) -> None:
        """Create what streaming needs (publication, slot) if missing."""

    def initial_position(self) -> Position:
        """Where a flow without checkpoint starts: the slot's start / the log's end now."""

    def current_position(self) -> Position:
        """The end of the source's log now (for lag and ``run --once``)."""

    def stream(self, start: Position | None, stop_at: Position | None) -> Iterator[Item]:
        """Committed transactions after ``start``; Heartbeats while idle; ends at ``stop_at``."""

    def interrupt(self) -> None:
        """Make a running :meth:`stream` return soon (called from another thread)."""

    def acknowledge(self, position: Position) -> None:
        """The target durably holds everything up to ``position``: the source may discard it."""

    def covered(self, transaction: Position, snapshot: Position) -> bool:
        """Whether a snapshot taken at ``snapshot`` already holds the transaction whose
        :attr:`~replicator.records.Begin.position` is ``transaction``."""

    def format_position(self, position: Position) -> str: ...

    def parse_position(self, text: str) -> Position: ...

    def close(self) -> None: ...
