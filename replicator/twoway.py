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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .batch import TableOps, raise_missing_identity
from .conflictlog import ConflictEntry
from .conflicts import ConflictPolicy, Outcome, decide, same_row
from .errors import SchemaError
from .mapping import TableMapping
from .records import DELETE, INSERT, READ, TRUNCATE, UPDATE, Change, Row, TableId

KEYS_PER_READ = 500


@dataclass
class KeyChange:
    key: tuple[object, ...]
    base: Row | None  # the target-named row the change was based on; None: it did not exist
    after: Row | None  # None: deleted
    time: datetime | None = None  # the source commit time of the last change to the key


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
        self._when: datetime | None = None

    def __len__(self) -> int:
        return self.size

    def add(self, change: Change, mapping: TableMapping, base: Row | None = None, when: datetime | None = None) -> bool:
        """Net ``change`` (target names in ``base``; ``change`` rows under source names unless
        ``mapping`` is the identity), made in a source transaction committed at ``when``.

        False (nothing added) when the change was not based on the row the batch holds for its
        key: something the stream skipped changed the row in between -- the flow back wrote
        the outcome of a conflict there. The two cannot be netted into one (the first base
        would hide that the second change accepted that outcome): the caller applies the
        batch, then adds the change again."""
        self._when = when
        self._clash = False
        t = self._tables.get(mapping.target)
        if t is None:
            t = self._tables[mapping.target] = TableChanges(mapping)
        if change.op == TRUNCATE:
            self.size -= len(t.keys)
            t.keys.clear()
            t.truncate = True
            return True
        key_cols = mapping.target_key
        after = mapping.map_row(change.after) if change.after is not None else None
        if change.op in (INSERT, READ):
            assert after is not None
            key = _key(after, key_cols, mapping)
            if self._clashes(t, key, None):
                return False
            self._put(t, key, None, after)
            return True
        if base is None:
            raise SchemaError(
                f"two-way flow: a {'delete' if change.op == DELETE else 'update'} on {mapping.source} came"
                " without its old row, which conflict detection needs: on a PostgreSQL source run"
                f" ALTER TABLE {mapping.source} REPLICA IDENTITY FULL"
            )
        old_key = _key(base, key_cols, mapping)
        if self._clashes(t, old_key, base):
            return False
        if change.op == DELETE:
            self._put(t, old_key, base, None)
            return True
        assert change.op == UPDATE and after is not None
        if change.partial:  # unchanged TOASTed values: the old row has them
            after = {**base, **after}
        new_key = _key(after, key_cols, mapping)
        if new_key != old_key:  # a key change: the old row goes, a new one comes
            if self._clashes(t, new_key, None):
                return False
            self._put(t, old_key, base, None)
            self._put(t, new_key, None, after)
            return True
        self._put(t, old_key, base, after)
        return True

    @staticmethod
    def _clashes(t: TableChanges, key: tuple[object, ...], base: Row | None) -> bool:
        held = t.keys.get(key)
        return held is not None and not same_row(held.after, base, None if base is None else base.keys())

    def _put(self, t: TableChanges, key: tuple[object, ...], base: Row | None, after: Row | None) -> None:
        held = t.keys.get(key)
        if held is None:
            t.keys[key] = KeyChange(key, base, after, self._when)
            self.size += 1
        else:
            held.after = after  # the base stays the first change's
            held.time = self._when

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


_COMMIT_TS = "__replicator_commit_ts"


def current_rows(conn: Any, table: TableId, key_cols: Sequence[str], keys: list[tuple[object, ...]],
                 times: dict[tuple[object, ...], datetime] | None = None) -> dict[tuple[object, ...], Row]:
    """The target's rows for ``keys``, locked until the transaction ends (both dialects);
    with ``times`` (PostgreSQL), also each row's commit time into it."""
    out: dict[tuple[object, ...], Row] = {}
    extra = f", pg_xact_commit_timestamp(xmin) AS {_COMMIT_TS}" if times is not None else ""
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
        query = f"SELECT *{extra} FROM {ident} WHERE ({cols}) IN ({', '.join([one] * len(chunk))}) FOR UPDATE"
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
            key = tuple(row[k] for k in key_cols)
            if times is not None:
                when = row.pop(_COMMIT_TS)
                if when is not None:
                    times[key] = when
            out[key] = row
    return out


@dataclass
class LastWriter:
    """What ``last_writer_wins`` needs besides the incoming change's own commit time
    (see replicator.lww): PostgreSQL targets read it with the rows; MySQL targets ask the
    record of the other half's reader (``times``, after ``wait``), and for a key it does not
    know, look at the other system's row now (``other_row``) to mirror its decision."""

    pg: bool
    times: Any = None  # lww.CommitTimes of the target system
    wait: Callable[[], None] | None = None
    other_row: Callable[[TableChanges, tuple[object, ...]], Row | None] | None = None


@dataclass
class Resolved:
    ops: list[TableOps]
    conflicts: list[ConflictEntry]
    parked: int = 0


def resolve(
    conn: Any, tables: list[TableChanges], policies: Mapping[TableId, ConflictPolicy], origin: str, target: str,
    flow: str, position: str | None, lww: LastWriter | None = None,
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
        times: dict[tuple[object, ...], datetime] | None = {} if lww is not None and lww.pg else None
        current = current_rows(conn, t.mapping.target, key_cols, [k for k in t.keys if not t.truncate], times) \
            if t.keys else {}
        if lww is not None and lww.wait is not None and current:
            lww.wait()  # the other half's reader has read every change of the locked rows
        for kc in t.keys.values():
            found = _norm(kc.key, current)
            cur = current.get(found)
            target_time = None
            if lww is not None:
                target_time = times.get(found) if times is not None else lww.times.get(t.mapping.target, found)
            outcome = decide(policy, origin, target, dict(zip(key_cols, kc.key)), kc.base, kc.after, cur,
                             origin_time=kc.time, target_time=target_time)
            if (outcome.conflict and lww is not None and not lww.pg and target_time is None
                    and lww.other_row is not None and outcome.action != "park"):
                outcome = _mirrored(outcome, cur, lww.other_row(t, kc.key), origin, target)
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


def _mirrored(outcome: Outcome, current: Row | None, other_now: Row | None, origin: str, target: str) -> Outcome:
    """No commit time for the target's row: the other system decided this conflict already
    (see replicator.lww), and its row as it is now is the agreed one: take it."""
    if same_row(current, other_now):
        return Outcome("skip", None, True, target, outcome.columns)
    if other_now is None:
        return Outcome("delete", None, True, origin, outcome.columns)
    return Outcome("write", other_now, True, origin, outcome.columns)


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
