"""PostgreSQL -> PostgreSQL passthrough: rows travel as pgoutput's own text, never as Python values.

Why: pgoutput already sends every value in PostgreSQL's text output format, and COPY's text
format reads exactly that format (with four characters escaped). When a synced table has the
same column types on both sides and no value transform, converting each value to a Python object
and back (psycopg loaders, then dumpers) is pure overhead -- by far the largest share of the
per-row CPU time. In passthrough the decoder emits :class:`RawChange` records (the row as a list
of COPY text fields, plus its key as raw text), :class:`RawBatch` nets them per key exactly like
:class:`~replicator.batch.Batch` does, and the PostgreSQL sink writes them with COPY (straight into
the table for rows new to the target, through its staging table and an upsert otherwise).

Only the simple, common shapes take this path: inserts, updates whose key did not change and
that carry every column, deletes. Everything else (a key change, an unchanged-TOAST column,
a truncate, a table that is not eligible) arrives as a normal :class:`~replicator.records.Change`;
the pipeline flushes whichever buffer holds earlier changes into the open target transaction
before it buffers a change of the other kind, so the order of changes is kept.

Netting by the raw text of the key is only exact when equal values always have the same text.
That holds for the types in :data:`KEY_TYPES` (not for ``numeric``: ``1.0`` and ``1.00`` are
equal); a table keyed by another type is not eligible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..records import DELETE, INSERT, TableId

if TYPE_CHECKING:
    from ..config import TableConfig
    from ..mapping import TableInfo, TableMapping

NULL = b"\\N"
"""SQL NULL as a COPY text field (the decoder uses this very object, compared with ``is``)."""

KEY_TYPES = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "text",
        "uuid",
        "date",
        "boolean",
        "bytea",
        "oid",
        "timestamp without time zone",
        "timestamp with time zone",  # the replication session runs with TimeZone=UTC
    }
)
_KEY_TYPE_PREFIXES = ("character varying", "character(")

# TableConfig keys that passthrough supports; any other key set on a table (a future value
# transform, filter, mask...) makes the table take the normal path.
_PLAIN_TABLE_KEYS = frozenset({"source", "target", "columns"})


@dataclass(slots=True)
class RawChange:
    """An insert, update (full row, key unchanged) or delete of a passthrough table.

    ``values`` holds one COPY text field per column of ``names`` (the source relation's
    columns, in order): escaped, SQL NULL as :data:`NULL`; ``None`` for deletes. ``key`` is the
    unescaped text of the target key's columns (a bytes object for a one-column key, else a
    tuple of them), in the order of the target key.
    """

    op: str
    table: TableId
    names: tuple[str, ...]
    key: bytes | tuple[bytes, ...]
    values: list[bytes] | None


def escape(value: bytes) -> bytes:
    """A text value as a COPY text field."""
    return (
        value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    )


def _key_type_ok(type_name: str) -> bool:
    return type_name in KEY_TYPES or type_name.startswith(_KEY_TYPE_PREFIXES)


def passthrough_key(
    table: TableConfig, mapping: TableMapping, source: TableInfo, target: TableInfo
) -> tuple[str, ...] | None:
    """The source column names of the target key, in target-key order, if the table can use
    passthrough; None if it cannot (types differ, a transform is configured, unsafe key type)."""
    if not table.model_fields_set <= _PLAIN_TABLE_KEYS:
        return None
    target_types = {c.name: c.type for c in target.columns}
    by_target: dict[str, str] = {}
    for col in source.columns:
        name = mapping.target_name(col.name)
        if target_types.get(name) != col.type:
            return None
        by_target[name] = col.name
    key: list[str] = []
    for name in mapping.target_key:
        src = by_target.get(name)
        if src is None or not _key_type_ok(target_types[name]):
            return None
        key.append(src)
    return tuple(key) if key else None


_INSERT, _UPSERT, _DELETE = 0, 1, 2

Entry = tuple[int, tuple[str, ...] | None, list[bytes] | None]


@dataclass
class RawTableOps:
    """What to do on one target table, in this order: deletes, upserts, inserts.

    Rows are ``(names, fields)`` pairs: source column names and COPY text fields. ``inserts``
    holds rows whose key the batch first saw in an insert: most likely new to the target, so the
    sink may COPY them straight into the table (falling back to an upsert on a key conflict).
    """

    mapping: TableMapping
    deletes: list[bytes | tuple[bytes, ...]] = field(default_factory=list)
    upserts: list[tuple[tuple[str, ...], list[bytes]]] = field(default_factory=list)
    inserts: list[tuple[tuple[str, ...], list[bytes]]] = field(default_factory=list)


class RawBatch:
    """Nets :class:`RawChange` records per target table and key (see :class:`~replicator.batch.Batch`)."""

    def __init__(self) -> None:
        self._tables: dict[TableId, tuple[TableMapping, dict[bytes | tuple[bytes, ...], Entry]]] = {}
        self._last: tuple[TableMapping, dict[bytes | tuple[bytes, ...], Entry]] | None = None
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, change: RawChange, mapping: TableMapping) -> None:
        last = self._last
        if last is not None and last[0] is mapping:
            rows = last[1]
        else:
            entry = self._tables.get(mapping.target)
            if entry is None:
                entry = self._tables[mapping.target] = (mapping, {})
            self._last = entry
            rows = entry[1]
        key = change.key
        prev = rows.get(key)
        if prev is None:
            self.size += 1
        op = change.op
        if op == DELETE:
            rows[key] = (_DELETE, None, None)
        elif prev is None:
            rows[key] = (_INSERT if op == INSERT else _UPSERT, change.names, change.values)
        else:
            # An insert after a delete, or an update of a row held: new to the target only if
            # the batch first saw it inserted and has not deleted it since.
            rows[key] = (_INSERT if prev[0] == _INSERT else _UPSERT, change.names, change.values)

    def drain(self) -> list[RawTableOps]:
        """The netted operations per table, and an empty buffer."""
        out: list[RawTableOps] = []
        for mapping, rows in self._tables.values():
            ops = RawTableOps(mapping)
            deletes, upserts, inserts = ops.deletes, ops.upserts, ops.inserts
            for key, (kind, names, values) in rows.items():
                if kind == _INSERT:
                    inserts.append((names, values))  # type: ignore[arg-type]
                elif kind == _UPSERT:
                    upserts.append((names, values))  # type: ignore[arg-type]
                else:
                    deletes.append(key)
            out.append(ops)
        self._tables.clear()
        self._last = None
        self.size = 0
        return out
