"""PostgreSQL -> PostgreSQL passthrough: rows travel as pgoutput's own text, never as Python values.

Why: pgoutput already sends every value in PostgreSQL's text output format, and COPY's text
format reads exactly that format (with four characters escaped). When a synced table has the
same column types on both sides and no value transform, converting each value to a Python object
and back (psycopg loaders, then dumpers) is pure overhead -- by far the largest share of the
per-row CPU time. In passthrough the decoder emits :class:`RawRows` records (rows as lists of
COPY text fields, plus their keys as raw text), :class:`RawBatch` nets them per key exactly like
:class:`~replicator.batch.Batch` does, and the PostgreSQL sink writes them with COPY: straight into
the table for rows new to the target (an upsert if a key is there after all), else into its
staging table, then one ``UPDATE … FROM`` the stage and an insert of the rows it did not find.

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

from collections.abc import Callable
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


RAW_ROWS_MAX = 1000  # rows per RawRows item

RawKey = bytes | tuple[bytes, ...]
"""The unescaped text of a row's target-key columns: a bytes object for a one-column key,
else a tuple of them, in target-key order."""


@dataclass(slots=True)
class RawRows:
    """Consecutive passthrough changes of one kind to one source relation, in one transaction.

    ``op`` is ``c`` (insert), ``u`` (update: full row, key unchanged) or ``d`` (delete).
    ``keys[i]`` is row i's key; ``fields[i]`` its COPY text fields (escaped, SQL NULL as
    :data:`NULL`), one per column of ``names`` (the relation's source column names); ``fields``
    is empty for deletes. One record for up to :data:`RAW_ROWS_MAX` rows: the reader, the
    hand-over between threads, the pipeline loop and the batch pay per group, not per row.
    """

    table: TableId
    names: tuple[str, ...]
    op: str
    keys: list[RawKey]
    fields: list[list[bytes]]


def escape(value: bytes) -> bytes:
    """A text value as a COPY text field."""
    return (
        value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    )


def _key_type_ok(type_name: str) -> bool:
    return type_name in KEY_TYPES or type_name.startswith(_KEY_TYPE_PREFIXES)


def passthrough_key(
    table: TableConfig, mapping: TableMapping, source: TableInfo, target: TableInfo,
    fits: Callable[[str, str], bool] = str.__eq__, key_fits: Callable[[str], bool] = _key_type_ok,
) -> tuple[str, ...] | None:
    """The source column names of the target key, in target-key order, if the table can use
    passthrough; None if it cannot (a transform is configured, types differ, unsafe key type).

    ``fits(source type, target type)`` says whether a column's rows can travel as text into its
    target column (here: the very same type); ``key_fits(target type)`` whether the key's text
    nets exactly. :mod:`replicator.mysql.passthrough` passes its own rules."""
    if not table.plain:
        return None
    target_types = {c.name: c.type for c in target.columns}
    by_target: dict[str, str] = {}
    for col in source.columns:
        name = mapping.target_name(col.name)
        dst = target_types.get(name)
        if dst is None or not fits(col.type, dst):
            return None
        by_target[name] = col.name
    key: list[str] = []
    for name in mapping.target_key:
        src = by_target.get(name)
        if src is None or not key_fits(target_types[name]):
            return None
        key.append(src)
    return tuple(key) if key else None


@dataclass
class RawTableOps:
    """What to do on one target table, in this order: deletes, upserts, inserts.

    Rows are lists of COPY text fields for the source columns ``names``. ``inserts`` holds rows
    whose key the batch first saw in an insert: most likely new to the target, so the sink may
    COPY them straight into the table (falling back to an upsert on a key conflict). A batch
    spanning a change of the source table's columns gives one RawTableOps per column list.
    """

    mapping: TableMapping
    names: tuple[str, ...]
    deletes: list[RawKey] = field(default_factory=list)
    upserts: list[list[bytes]] = field(default_factory=list)
    inserts: list[list[bytes]] = field(default_factory=list)


_MISSING: list[bytes] = []


class _Table:
    """One target table's netted rows: key -> fields (None: delete). A row is an upsert if its
    key is in ``upserted``, else an insert (new to the target as far as the batch knows)."""

    __slots__ = ("mapping", "rows", "upserted", "deleted", "names", "odd")

    def __init__(self, mapping: TableMapping, names: tuple[str, ...]) -> None:
        self.mapping = mapping
        self.rows: dict[RawKey, list[bytes] | None] = {}
        self.upserted: set[RawKey] = set()
        self.deleted = False  # some row is (or was) a delete
        self.names = names  # the column list of (almost) every row
        self.odd: dict[RawKey, tuple[str, ...]] = {}  # rows with another column list


class RawBatch:
    """Nets :class:`RawRows` per target table and key, like :class:`~replicator.batch.Batch`.

    A group of inserts or updates of keys the batch does not hold yet (the common case) is
    merged with two C-level dictionary operations; other groups row by row.
    """

    def __init__(self) -> None:
        self._tables: dict[TableId, _Table] = {}
        self._last: _Table | None = None
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, item: RawRows, mapping: TableMapping) -> None:
        table = self._last
        if table is None or table.mapping is not mapping:
            table = self._tables.get(mapping.target)
            if table is None:
                table = self._tables[mapping.target] = _Table(mapping, item.names)
            self._last = table
        rows, upserted, keys = table.rows, table.upserted, item.keys
        before = len(rows)
        op = item.op
        if op == DELETE:
            rows.update(dict.fromkeys(keys))
            upserted.difference_update(keys)
            table.deleted = True
        elif rows.keys().isdisjoint(keys):
            rows.update(zip(keys, item.fields))
            if op != INSERT:
                upserted.update(keys)  # an update of a row the target holds
        else:
            for key, fields in zip(keys, item.fields):
                prev = rows.get(key, _MISSING)
                # New to the target only if the batch first saw the key inserted and has not
                # deleted it since: an insert over a held key (after a delete), an update of an
                # unseen or deleted row are upserts; an update of a held row keeps its kind.
                if (prev is not _MISSING) if op == INSERT else (prev is _MISSING or prev is None):
                    upserted.add(key)
                rows[key] = fields
        self.size += len(rows) - before
        if item.names is not table.names:
            odd = table.odd
            if item.names == table.names:
                for key in keys:
                    odd.pop(key, None)
            else:  # the source table's columns changed within the batch
                for key in keys:
                    odd[key] = item.names

    def drain(self) -> list[RawTableOps]:
        """The netted operations per table, and an empty buffer."""
        out: list[RawTableOps] = []
        for table in self._tables.values():
            ops = RawTableOps(table.mapping, table.names)
            out.append(ops)
            rows, upserted, odd = table.rows, table.upserted, table.odd
            if not table.deleted and not odd and not upserted:
                ops.inserts = list(rows.values())  # type: ignore[arg-type]
                continue
            if not table.deleted and not odd and len(upserted) == len(rows):
                ops.upserts = list(rows.values())  # type: ignore[arg-type]
                continue
            extra: dict[tuple[str, ...], RawTableOps] = {}
            for key, fields in rows.items():
                if fields is None:
                    ops.deletes.append(key)
                    continue
                target = ops
                if odd and key in odd:
                    names = odd[key]
                    target = extra.get(names)  # type: ignore[assignment]
                    if target is None:
                        target = extra[names] = RawTableOps(table.mapping, names)
                (target.upserts if key in upserted else target.inserts).append(fields)
            out.extend(extra.values())
        self._tables.clear()
        self._last = None
        self.size = 0
        return out
