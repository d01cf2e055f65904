"""Two-way flows: changes netted per key *with the row they were based on*, and resolved
against the target's current row before they are written.

A one-way batch keeps only each key's final state. Both ways, the writer must also know what
the source row was before the batch's first change to it (the *base*): if the target's row is
not that, the target changed it meanwhile -- a conflict, decided by the flow's rule
(:mod:`replicator.conflicts`) so that both systems end with the same row. The current rows are
read with ``FOR UPDATE`` inside the target transaction that writes the outcome, so a local
write on the target cannot slip in between the check and the write.

Bases are full rows under target names. PostgreSQL sends the old row only for tables with
``REPLICA IDENTITY FULL``; without it there is no base, and the flow stops with the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .batch import TableOps, raise_missing_identity
from .conflictlog import ConflictEntry
from .conflicts import ConflictPolicy, Outcome, decide
from .errors import SchemaError
from .mapping import TableMapping
from .records import DELETE, INSERT, READ, TRUNCATE, UPDATE, Change, Row, TableId

KEYS_PER_READ = 500


@dataclass
class KeyChange:
    key: tuple[object, ...]
    base: Row | None  # the target-named row the change was based on; None: it did not exist
    after: Row | None  # None: deleted


@dataclass
class TableChanges:
    mapping: TableMapping
    truncate: bool = False
    keys: dict[tuple[object, ...], KeyChange] = field(default_factory=dict)


class TwoWayBatch:
    """Like :class:`~replicator.batch.Batch`, netting per key, keeping each key's base."""

    def __init__(self) -> None:
        self._tables: dict[TableId, TableChanges] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, change: Change, mapping: TableMapping, base: Row | None = None) -> None:
        """Net ``change`` (target names in ``base``; ``change`` rows under source names unless
        ``mapping`` is the identity)."""
        t = self._tables.get(mapping.target)
        if t is None:
            t = self._tables[mapping.target] = TableChanges(mapping)
        if change.op == TRUNCATE:
            self.size -= len(t.keys)
            t.keys.clear()
            t.truncate = True
            return
        key_cols = mapping.target_key
        after = mapping.map_row(change.after) if change.after is not None else None
        if change.op in (INSERT, READ):
            assert after is not None
            self._put(t, _key(after, key_cols, mapping), None, after)
            return
        if base is None:
            raise SchemaError(
                f"two-way flow: a {'delete' if change.op == DELETE else 'update'} on {mapping.source} came"
                " without its old row, which conflict detection needs: on a PostgreSQL source run"
                f" ALTER TABLE {mapping.source} REPLICA IDENTITY FULL"
            )
        old_key = _key(base, key_cols, mapping)
        if change.op == DELETE:
            self._put(t, old_key, base, None)
            return
        assert change.op == UPDATE and after is not None
        if change.partial:  # unchanged TOASTed values: the old row has them
            after = {**base, **after}
        new_key = _key(after, key_cols, mapping)
        if new_key != old_key:  # a key change: the old row goes, a new one comes
            self._put(t, old_key, base, None)
            self._put(t, new_key, None, after)
            return
        self._put(t, old_key, base, after)

    def _put(self, t: TableChanges, key: tuple[object, ...], base: Row | None, after: Row | None) -> None:
        held = t.keys.get(key)
        if held is None:
            t.keys[key] = KeyChange(key, base, after)
            self.size += 1
        else:
            held.after = after  # the base stays the first change's

    def drain(self) -> list[TableChanges]:
        out = list(self._tables.values())
        self._tables = {}
        self.size = 0
        return out


def _key(row: Row, key_cols: tuple[str, ...], mapping: TableMapping) -> tuple[object, ...]:
    try:
        return tuple(row[k] for k in key_cols)
    except KeyError as exc:
        raise_missing_identity(mapping, str(exc))
        raise


def current_rows(conn: Any, table: TableId, key_cols: Sequence[str], keys: list[tuple[object, ...]]) -> dict[tuple[object, ...], Row]:
    """The target's rows for ``keys``, locked until the transaction ends (both dialects)."""
    out: dict[tuple[object, ...], Row] = {}
    pg = isinstance(conn, psycopg.Connection)
    for i in range(0, len(keys), KEYS_PER_READ):
        chunk = keys[i:i + KEYS_PER_READ]
        one = "(" + ", ".join(["%s"] * len(key_cols)) + ")"
        params = [v for k in chunk for v in k]
        if pg:
            ident = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name)).as_string(None)
            cols = ", ".join(sql.Identifier(c).as_string(None) for c in key_cols)
        else:
            ident = f"`{table.schema.replace('`', '``')}`.`{table.name.replace('`', '``')}`"
            cols = ", ".join(f"`{c.replace('`', '``')}`" for c in key_cols)
        query = f"SELECT * FROM {ident} WHERE ({cols}) IN ({', '.join([one] * len(chunk))}) FOR UPDATE"
        if pg:
            cur = conn.execute(query.encode(), params)
            names = [d.name for d in cur.description]
            rows: Iterable[tuple[Any, ...]] = cur.fetchall()
        else:
            with conn.cursor() as c:
                c.execute(query, params)
                names = [d[0] for d in c.description]
                rows = c.fetchall()
        for r in rows:
            row = dict(zip(names, r))
            out[tuple(row[k] for k in key_cols)] = row
    return out


@dataclass
class Resolved:
    ops: list[TableOps]
    conflicts: list[ConflictEntry]
    parked: int = 0


def resolve(
    conn: Any, tables: list[TableChanges], policies: Mapping[TableId, ConflictPolicy], origin: str, target: str,
    flow: str, position: str | None,
) -> Resolved:
    """The writes that bring the target to the agreed rows, and the conflicts met on the way.

    A conflict is logged by one side only -- the target with the better priority -- because
    each one is seen twice, once by each direction's flow, when the crossing changes arrive."""
    out = Resolved([], [])
    for t in tables:
        policy = policies[t.mapping.target]
        logs = policy.better(origin, target) == target
        ops = TableOps(t.mapping, truncate=t.truncate)
        key_cols = t.mapping.target_key
        current = current_rows(conn, t.mapping.target, key_cols, [k for k in t.keys if not t.truncate]) \
            if t.keys else {}
        for kc in t.keys.values():
            cur = current.get(_norm(kc.key, current))
            outcome = decide(policy, origin, target, dict(zip(key_cols, kc.key)), kc.base, kc.after, cur)
            _apply(ops, outcome, kc, key_cols)
            if outcome.conflict:
                if outcome.action == "park":
                    out.parked += 1
                if logs or outcome.action == "park":
                    out.conflicts.append(ConflictEntry(
                        flow=flow, table=str(t.mapping.target), key=dict(zip(key_cols, kc.key)), origin=origin,
                        target=target, rule=policy.rule, winner=outcome.winner, columns=outcome.columns,
                        incoming=kc.after, current=cur, result=_result(outcome, kc, cur), action=outcome.action,
                        status="parked" if outcome.action == "park" else "resolved", position=position,
                        commit_time=None,
                    ))
        if ops.truncate or ops.deletes or ops.upserts:
            out.ops.append(ops)
    return out


def _norm(key: tuple[object, ...], current: dict[tuple[object, ...], Row]) -> tuple[object, ...]:
    """The key as the target's driver returned it (an int key may come back as Decimal...)."""
    if key in current:
        return key
    from .conflicts import same_value

    for k in current:
        if all(same_value(a, b) for a, b in zip(key, k)):
            return k
    return key


def _apply(ops: TableOps, outcome: Outcome, kc: KeyChange, key_cols: Sequence[str]) -> None:
    action = outcome.action
    if action == "apply":
        if kc.after is None:
            ops.deletes.append(kc.key)
        else:
            ops.upserts.append(kc.after)
    elif action == "write":
        assert outcome.row is not None
        ops.upserts.append(outcome.row)
    elif action == "delete":
        ops.deletes.append(kc.key)
    # "skip" and "park": the target row stays as it is


def _result(outcome: Outcome, kc: KeyChange, current: Row | None) -> Row | None:
    if outcome.action == "apply":
        return kc.after
    if outcome.action == "write":
        return outcome.row
    if outcome.action == "delete":
        return None
    return current
