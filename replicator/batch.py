"""The batch buffer: many source changes netted per key, then written in few statements.

Within one target transaction only the final state of each row matters, because the whole
transaction commits atomically together with the checkpoint. So the buffer keeps, per target
table, one entry per primary key — the row to upsert, a partial row to update (a PostgreSQL
update that left TOASTed columns out), or a delete — plus a "truncate first" flag. A key change
is a delete of the old key and an upsert of the new row. Flushing turns that into, per table:
TRUNCATE, DELETE by keys, upsert rows grouped by column set, UPDATE partial rows.

The buffer counts its entries so the pipeline can flush it into the open target transaction
before it grows past ``max_rows``: a 10M-row source transaction streams through in bounded
memory and still commits once, with its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .mapping import TableMapping
from .records import DELETE, INSERT, READ, TRUNCATE, UPDATE, Change, Row, TableId

_UPSERT, _UPDATE, _DELETE = 0, 1, 2
_Entry = tuple[TableMapping, dict[tuple[object, ...], tuple[int, Row | None]]]  # a table's rows


@dataclass
class TableOps:
    """What to do on one target table, in this order: truncate, deletes, upserts, updates,
    then rekeys (``UPDATE … SET key = new, columns … WHERE key = old``)."""

    mapping: TableMapping
    truncate: bool = False
    deletes: list[tuple[object, ...]] = field(default_factory=list)
    upserts: list[Row] = field(default_factory=list)
    updates: list[Row] = field(default_factory=list)
    rekeys: list[tuple[tuple[object, ...], Row]] = field(default_factory=list)


class Batch:
    def __init__(self) -> None:
        self._tables: dict[TableId, tuple[TableMapping, dict[tuple[object, ...], tuple[int, Row | None]]]] = {}
        self._truncated: set[TableId] = set()
        self._done: list[TableOps] = []  # earlier segments, kept in order (see _rekey)
        self._last: tuple[TableId, _Entry] | None = None
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, change: Change, mapping: TableMapping) -> None:
        """Net one change into the buffer."""
        target = mapping.target
        last = self._last  # the entry of the previous change's table (TableId hashes in Python)
        entry: _Entry | None
        if last is not None and last[0] is target:
            entry = last[1]
        else:
            entry = self._tables.get(target)
            if entry is None:
                entry = self._tables[target] = (mapping, {})
            self._last = (target, entry)
        rows = entry[1]
        op = change.op
        if op == TRUNCATE:
            self.size -= len(rows)
            rows.clear()
            self._truncated.add(target)
            return
        key_cols = mapping.target_key
        if op == INSERT or op == READ:
            row = mapping.map_row(change.after)  # type: ignore[arg-type]
            key = (row[key_cols[0]],) if len(key_cols) == 1 else tuple(row[k] for k in key_cols)
            if key not in rows:
                self.size += 1
            rows[key] = (_UPSERT, row)
            return
        # Only the key is taken from an old row: without renames, its names are the target's.
        renamed = bool(mapping.renames)
        if op == DELETE:
            old = change.before or change.key or {}
            self._put(rows, _key(mapping.map_row(old) if renamed else old, key_cols, mapping), (_DELETE, None))
            return
        assert op == UPDATE
        row = mapping.map_row(change.after)  # type: ignore[arg-type]
        new_key = (row[key_cols[0]],) if len(key_cols) == 1 else tuple(row[k] for k in key_cols)
        if change.before is not None:
            before = change.before
            old_key = _key(mapping.map_row(before) if renamed else before, key_cols, mapping)
            if old_key != new_key:
                if change.partial:
                    held = rows.get(old_key)
                    if held is None or held[0] != _UPSERT:
                        self._rekey(mapping, old_key, row)
                        return
                    row = {**held[1], **row}  # type: ignore[dict-item]  # the full row we hold completes it
                self._put(rows, old_key, (_DELETE, None))
                self._put(rows, new_key, (_UPSERT, row))
                return
        if not change.partial:
            self._put(rows, new_key, (_UPSERT, row))
            return
        # A partial row (unchanged TOAST values left out): merge into what we hold for the key.
        prev = rows.get(new_key)
        if prev is not None and prev[0] != _DELETE:
            merged = dict(prev[1])  # type: ignore[arg-type]
            merged.update(row)
            self._put(rows, new_key, (prev[0], merged))
        else:
            self._put(rows, new_key, (_UPDATE, row))

    def _put(
        self, rows: dict[tuple[object, ...], tuple[int, Row | None]], key: tuple[object, ...], value: tuple[int, Row | None]
    ) -> None:
        if key not in rows:
            self.size += 1
        rows[key] = value

    def _rekey(self, mapping: TableMapping, old_key: tuple[object, ...], row: Row) -> None:
        """A key change whose new row is partial (unchanged TOAST values left out): the row
        must be moved on the target itself, so everything before it is closed off as a
        segment and the move is applied in order."""
        self._done.extend(self._drain_current())
        self._done.append(TableOps(mapping, rekeys=[(old_key, row)]))
        self.size += 1

    def drain(self) -> list[TableOps]:
        """The netted operations, in order, and an empty buffer."""
        out = self._done + self._drain_current()
        self._done = []
        self.size = 0
        return out

    def _drain_current(self) -> list[TableOps]:
        out: list[TableOps] = []
        for target, (mapping, rows) in self._tables.items():
            ops = TableOps(mapping, truncate=target in self._truncated)
            for key, (kind, row) in rows.items():
                if kind == _UPSERT:
                    ops.upserts.append(row)  # type: ignore[arg-type]
                elif kind == _DELETE:
                    ops.deletes.append(key)
                else:
                    ops.updates.append(row)  # type: ignore[arg-type]
            if ops.truncate or ops.deletes or ops.upserts or ops.updates:
                out.append(ops)
        self._tables.clear()
        self._last = None
        self._truncated.clear()
        return out


def _key(row: Row, key_cols: tuple[str, ...], mapping: TableMapping) -> tuple[object, ...]:
    try:
        if len(key_cols) == 1:
            return (row[key_cols[0]],)
        return tuple(row[k] for k in key_cols)
    except KeyError as exc:
        raise_missing_identity(mapping, str(exc))
        raise


def raise_missing_identity(mapping: TableMapping, column: str) -> None:
    from .errors import SchemaError

    raise SchemaError(
        f"a delete/update on {mapping.source} did not carry the key column {column} of target"
        f" {mapping.target}: make the target primary key match the source primary key or set"
        " REPLICA IDENTITY FULL on the source table"
    )


def group_by_columns(rows: list[Row]) -> list[tuple[tuple[str, ...], list[Row]]]:
    """Rows grouped by their column names (one statement or COPY per group)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.items())
