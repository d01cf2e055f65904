"""Operator actions on a flow's mapping: preview it, retry or discard dead letters, resume.

Library functions behind ``replicator preview``, ``dlq …`` and ``resume`` (the CLI only prints).
They bind the flow's tables exactly as ``run`` does, so a preview shows what ``run`` would
write, and a retry applies the mapping as it is configured *now*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .batch import TableOps
from .binding import BoundTable, bind_tables, open_sink, open_source
from .config import Config, FlowConfig, reverse_name
from .deadletter import DeadLetter, DeadLetters
from .errors import ConfigError, ReplicatorError
from .guards import ANY_TRANSACTION, Pause, Pauses
from .records import Row
from .snapshot import select_tables
from .statedb import jsonable
from .transform import Rejected


@dataclass
class PreviewRow:
    source: Row  # sanitized: excluded columns left out, masked ones masked
    target: Row | None  # None: not written
    outcome: str  # "write" | "filtered out" | "rejected: <rule>: <reason>"


def _bound(config: Config, flow: FlowConfig, table: str) -> BoundTable:
    chosen = select_tables(config, flow, [table])
    source, sink = open_source(config, flow), open_sink(config, flow)
    try:
        return bind_tables(config, flow, source, sink, chosen)[0]
    finally:
        source.close()
        sink.close()


def _fetch(config: Config, flow: FlowConfig, b: BoundTable, key: Row | None, limit: int | None) -> list[Row]:
    system = config.systems[flow.source]
    columns = b.source.column_names
    if system.engine == "postgresql":
        from .pg.snapshot import fetch_rows

        rows = fetch_rows(system.url, b.source, columns, key, limit)
    else:
        from .mysql.snapshot import fetch_rows as my_fetch

        rows = my_fetch(system.url, b.source, columns, key, limit, flow.zero_dates)
    return [dict(zip(columns, r)) for r in rows]


def preview(config: Config, flow: FlowConfig, table: str, limit: int = 10) -> list[PreviewRow]:
    """Source rows next to the rows the flow would write for them. Reads only."""
    b = _bound(config, flow, table)
    out: list[PreviewRow] = []
    for row in _fetch(config, flow, b, None, limit):
        tr = b.transform
        if tr is None:
            out.append(PreviewRow(row, b.mapping.map_row(row), "write"))
            continue
        shown = tr.sanitize(row) or {}
        try:
            written = tr.written(row)
            if written is None:
                out.append(PreviewRow(shown, None, "filtered out"))
                continue
        except Rejected as exc:
            out.append(PreviewRow(shown, None, f"rejected: {exc.rule}: {exc.reason}"))
            continue
        out.append(PreviewRow(shown, written, "write"))
    return out


@dataclass
class RetryOutcome:
    letter: DeadLetter
    result: str  # "written" | "deleted" | "still rejected: …" | "skipped: …"


def dlq_list(config: Config, flow: FlowConfig, status: str | None = "open", ids: list[int] | None = None,
             limit: int | None = None) -> list[DeadLetter]:
    sink = open_sink(config, flow)
    try:
        letters = DeadLetters(sink.conn, config.state_schema)
        letters.ensure()
        found = letters.list(flow.name, status, ids, limit)
        sink.conn.commit()
        return found
    finally:
        sink.close()


def dlq_discard(config: Config, flow: FlowConfig, ids: list[int]) -> int:
    sink = open_sink(config, flow)
    try:
        letters = DeadLetters(sink.conn, config.state_schema)
        letters.ensure()
        found = letters.list(flow.name, "open", ids or None)
        for d in found:
            assert d.id is not None
            letters.set_status(d.id, "discarded")
        sink.conn.commit()
        return len(found)
    finally:
        sink.close()


def dlq_retry(config: Config, flow: FlowConfig, ids: list[int]) -> list[RetryOutcome]:
    """Re-read each dead letter's row from the source by its key and write it through the
    current mapping; each in its own target transaction with its status change."""
    sink = open_sink(config, flow)
    out: list[RetryOutcome] = []
    bound: dict[str, BoundTable] = {}
    try:
        letters = DeadLetters(sink.conn, config.state_schema)
        letters.ensure()
        todo = letters.list(flow.name, "open", ids or None)
        sink.conn.commit()
        for d in todo:
            assert d.id is not None
            b = bound.get(d.source_table)
            if b is None:
                try:
                    b = bound[d.source_table] = _bound(config, flow, d.source_table)
                except ConfigError as exc:
                    out.append(RetryOutcome(d, f"skipped: {exc}"))
                    continue
                sink.describe(b.mapping.target)  # the sink learns the target's column types
            if not d.key:
                out.append(RetryOutcome(d, "skipped: the dead letter has no key to read the row by"))
                continue
            rows = _fetch(config, flow, b, d.key, 1)
            tr = b.transform
            mapping = b.mapping if tr is None else tr.output
            try:
                if not rows:
                    ops = TableOps(mapping, deletes=[_target_key(b, d.key)])
                    result = "deleted (the row is gone from the source)"
                else:
                    row = rows[0]
                    written = tr.written(row) if tr is not None else b.mapping.map_row(row)
                    if written is None:
                        ops = TableOps(mapping, deletes=[_target_key(b, d.key)])
                        result = "deleted (the row no longer matches the filter)"
                    else:
                        ops = TableOps(mapping, upserts=[written])
                        result = "written"
            except Rejected as exc:
                letters.set_status(d.id, "open", f"{exc.rule}: {exc.reason}")
                sink.conn.commit()
                out.append(RetryOutcome(d, f"still rejected: {exc.rule}: {exc.reason}"))
                continue
            sink.apply([ops])
            letters.set_status(d.id, "retried")
            sink.conn.commit()
            out.append(RetryOutcome(d, result))
        return out
    finally:
        sink.rollback()
        sink.close()


def _target_key(b: BoundTable, key: Row) -> tuple[Any, ...]:
    written = b.transform.key(key) if b.transform is not None else b.mapping.map_row(key)
    return tuple(written[k] for k in b.mapping.target_key)


def resume(config: Config, flow: FlowConfig) -> Pause | None:
    """Let a flow paused by a change limit go on (the transaction that tripped it passes)."""
    sink = open_sink(config, flow)
    try:
        pauses = Pauses(sink.conn, config.state_schema)
        pauses.ensure()
        sink.conn.commit()
        return pauses.resume(flow.name)
    finally:
        sink.close()


def pause(config: Config, flow: FlowConfig, reason: str) -> None:
    """An operator's pause: a running flow commits what it has and waits for ``resume``."""
    sink = open_sink(config, flow)
    try:
        pauses = Pauses(sink.conn, config.state_schema)
        pauses.ensure()
        sink.conn.commit()
        current = pauses.get(flow.name)
        if current is not None and current.status == "paused":
            sink.conn.commit()
            raise ReplicatorError(f"flow {flow.name} is already paused ({current.reason})")
        pauses.pause(flow.name, reason, ANY_TRANSACTION)
        sink.conn.commit()
    finally:
        sink.close()


def conflicts_list(config: Config, flow: FlowConfig, status: str | None = None,
                   limit: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """A two-way flow's conflicts (on its target): how many there are, and the newest ``limit``."""
    from .conflictlog import ConflictLog

    sink = open_sink(config, flow)
    try:
        log = ConflictLog(sink.conn, config.state_schema)
        log.ensure()
        total = sum(n for (f, st), n in log.counts().items() if f == flow.name and status in (None, st))
        found = log.list(flow.name, status, None, limit)
        sink.conn.commit()
        return total, found
    finally:
        sink.close()



@dataclass
class Resolution:
    entry: dict[str, Any]
    outcome: str


def conflicts_resolve(config: Config, flow: FlowConfig, ids: list[int], take: str) -> list[Resolution]:
    """Decide parked conflicts of a two-way flow (``conflicts: manual``): ``take`` names the
    system whose version wins. Its row as it is *now* is read by key and written to the other
    system, tagged as coming from ``take`` (so the flow back does not return it); the parked
    entries of the key on both sides are marked taken. One target transaction per conflict."""
    from .conflictlog import ConflictLog
    from .loopguard import TaggedSink

    pair = next((f for f in config.flows if f.two_way and f.source == flow.target and f.target == flow.source
                 and (f.name == reverse_name(flow.name) or flow.name == reverse_name(f.name))), None)
    if pair is None:
        raise ConfigError(f"flow {flow.name} is not one half of a `direction: both` flow")
    if take not in (flow.source, flow.target):
        raise ConfigError(f"--take names one of the flow's systems: {flow.source} or {flow.target}")
    # winner -> loser: the flow that carries the winner's rows; keys of `flow`'s entries are
    # in its target's names (the names of `pair`'s source)
    carrier = flow if take == flow.source else pair
    sink = open_sink(config, flow)
    other = open_sink(config, pair)
    out: list[Resolution] = []
    try:
        here, there = ConflictLog(sink.conn, config.state_schema), ConflictLog(other.conn, config.state_schema)
        here.ensure()
        there.ensure()
        todo = here.list(flow.name, "parked", ids)
        sink.conn.commit()
        other.conn.commit()
        missing = set(ids) - {e["id"] for e in todo}
        if missing:
            raise ConfigError(f"no parked conflict with id {', '.join(map(str, sorted(missing)))} in flow {flow.name}")
        for e in todo:
            b = _bound(config, pair, e["table"])  # source: flow's target table, target: flow's source table
            key_here = dict(e["key"] or {})
            key_there = b.mapping.map_row(key_here) if b.transform is None else b.transform.key(key_here)
            cb = b if carrier is pair else _bound(config, flow, e["table"])
            read_key = key_here if carrier is pair else key_there
            rows = _fetch(config, carrier, cb, read_key, 1)
            mapping = cb.mapping if cb.transform is None else cb.transform.output
            if rows:
                row = rows[0]
                written = cb.transform.written(row) if cb.transform is not None else cb.mapping.map_row(row)
            else:
                written = None
            write_key = key_there if carrier is pair else key_here
            ops = TableOps(mapping, upserts=[written]) if written is not None else \
                TableOps(mapping, deletes=[tuple(write_key[k] for k in mapping.target_key)])
            loser = other if carrier is pair else sink
            tagged = TaggedSink(loser, f"{carrier.name}.resolve", take, config.state_schema)
            tagged.origin = take
            tagged.ensure_state()
            loser.describe(mapping.target)  # the sink learns the target's column types
            tagged.apply([ops])
            for log, flow_name, k in ((here, flow.name, key_here), (there, pair.name, key_there)):
                for parked in log.list(flow_name, "parked"):
                    if parked["key"] == jsonable(k):
                        log.set_status(parked["id"], "taken")
            # the write (with its side's entries) first: a crash before the other commit leaves
            # an entry parked, and resolving it again rewrites the same row
            loser.conn.commit()
            (other if loser is sink else sink).conn.commit()
            out.append(Resolution(e, f"{take}'s version written to {carrier.target}" if written is not None
                                  else f"deleted on {carrier.target} (the row is gone from {take})"))
        return out
    finally:
        sink.rollback()
        other.rollback()
        sink.close()
        other.close()
