"""How a source table maps onto a target table: names, column renames, the key.

Pure and precomputed once per table, so the per-row work on the hot path is a dict lookup per
column. Unlisted source columns keep their name. The key used on the target is the *target*
table's primary key (translated back to source names), so upserts and deletes always address
exactly the row the target considers the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SchemaError
from .records import Row, TableId


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # the engine's declared type, e.g. "integer", "varchar(20)", "json"
    nullable: bool = True


@dataclass(frozen=True)
class TableInfo:
    """What the catalog says about one table."""

    table: TableId
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    replica_identity: str = "d"  # PostgreSQL: d default, f full, i index, n nothing

    def column(self, name: str) -> ColumnInfo | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass
class TableMapping:
    """Source table → target table, with the rename map and the target key."""

    source: TableId
    target: TableId
    renames: Mapping[str, str]
    target_key: tuple[str, ...] = ()
    target_columns: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()  # source columns never written (excluded, computed over)
    _names: dict[str, str] = field(default_factory=dict)
    _same: set[str] = field(default_factory=set)  # checked source columns of the same name

    def target_name(self, source_column: str) -> str:
        try:
            return self._names[source_column]
        except KeyError:
            name = self.renames.get(source_column, source_column)
            if self.target_columns and name not in self.target_columns:
                raise SchemaError(
                    f"target table {self.target} has no column {name!r}"
                    f" (source column {self.source}.{source_column}): add it or map the column"
                ) from None
            self._names[source_column] = name
            if name == source_column:
                self._same.add(name)
            return name

    def map_row(self, row: Row) -> Row:
        """The row under target column names; the row itself when no column is renamed
        (rows are never changed in place once built)."""
        if row.keys() <= self._same:
            return row
        names = self._names
        try:
            return {names[k]: v for k, v in row.items()}
        except KeyError:
            return {self.target_name(k): v for k, v in row.items()}

    def refresh_target(self, target: TableInfo) -> None:
        """The target table changed (it followed a source DDL): re-learn its columns."""
        self.target_columns = frozenset(target.column_names)
        self._names.clear()
        self._same.clear()

    def bind(self, source: TableInfo, target: TableInfo) -> None:
        """Check source and target fit together; raises SchemaError naming what is missing."""
        self.target_columns = frozenset(target.column_names)
        self._names.clear()
        self._same.clear()
        for name in self.renames:
            if source.column(name) is None and name not in self.skip:
                raise SchemaError(
                    f"column {name!r} in the mapping of {self.source} does not exist in the source"
                    " table: fix the 'columns' entry"
                )
        for col in source.columns:
            if col.name not in self.skip:
                self.target_name(col.name)
        if not target.primary_key:
            raise SchemaError(
                f"target table {self.target} has no primary key: add one (rows are upserted by key)"
            )
        mapped = set(self._names.values())
        missing = [c for c in target.primary_key if c not in mapped]
        if missing:
            raise SchemaError(
                f"the primary key column(s) {', '.join(missing)} of target table {self.target}"
                f" are not fed by any column of {self.source}"
            )
        self.target_key = target.primary_key

