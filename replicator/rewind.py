"""Checkpoint rewind: move a flow back to an earlier source position (or time).

Re-applying is harmless — every write is an upsert or a delete by key — so moving a flow's
checkpoint back and running it again ends exact, *provided the source still holds the log from
that position*. That is the one thing this module is careful about:

- PostgreSQL: a logical slot cannot move back. START_REPLICATION from before the slot's
  ``confirmed_flush_lsn`` silently starts at ``confirmed_flush_lsn`` — the changes in between
  would be skipped without a word. So a rewind before it is refused; the flow's
  ``rewind.window`` keeps the slot that far behind the checkpoint (see ``replicator.pg.source``).
- MariaDB: the binlogs must still hold the position (``replicator.mysql.binlogs``).

A time resolves to a position: on PostgreSQL from the checkpoint history (the newest checkpoint
whose last transaction committed before that time — batch granularity: a few transactions just
before the time may be re-applied too), on MariaDB from the binlog's event times.

A rewind needs the flow stopped (its lock on the target, taken without waiting) and writes the
checkpoint and a history row in one target transaction. Counters are left as they are: they
count applications, and a rewind re-applies. Two-way flows are refused: re-sending a stretch
of changes would meet the other direction's writes as conflicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from .binding import open_sink
from .config import Config, FlowConfig
from .errors import ConfigError, ReplicatorError
from .history import History, HistoryRow
from .protocols import Checkpoint, Sink
from .snapstate import FlowLock
from .statedb import StateDB

_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_GTID = re.compile(r"\d+-\d+-\d+(,\s*\d+-\d+-\d+)*")
_FILEPOS = re.compile(r".+:\d+")


class RewindRefused(ReplicatorError):
    """The rewind cannot be done as asked (nothing was changed)."""


@dataclass
class Point:
    """Where to go back to: a position in the source's text form, with the source commit time
    of the last transaction before it when known, and how it was found."""

    position: str
    commit_time: datetime | None
    how: str


def looks_like_position(engine: str, text: str) -> bool:
    text = text.strip()
    if engine == "postgresql":
        return bool(_LSN.fullmatch(text))
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):  # a date (GTIDs do not zero-pad)
        return False
    return bool(_GTID.fullmatch(text) or _FILEPOS.fullmatch(text) and not text[:4].isdigit())


def compare(engine: str, a: str, b: str) -> int:
    """-1, 0, 1 as position ``a`` is before, at, after ``b`` (MariaDB: per domain)."""
    if engine == "postgresql":
        from .pg.pgoutput import str_to_lsn

        x, y = str_to_lsn(a), str_to_lsn(b)
        return (x > y) - (x < y)
    from .mysql.positions import FilePos, MariaGtid

    if ":" in a or ":" in b:
        fa, fb = FilePos.parse(a), FilePos.parse(b)
        return (fa > fb) - (fa < fb)
    ga, gb = MariaGtid.parse(a), MariaGtid.parse(b)
    if ga == gb:
        return 0
    return -1 if ga <= gb else 1


def refuse_two_way(flow: FlowConfig, what: str) -> None:
    if flow.two_way:
        raise RewindRefused(f"flow {flow.name} is one half of a two-way flow: {what} is not supported there"
                            " (re-sent changes would meet the other direction's writes as conflicts)")


@contextmanager
def stopped(config: Config, flow: FlowConfig) -> Iterator[Sink]:
    """The flow's sink, while holding its lock (refused at once if the flow is running)."""
    lock = FlowLock(config.systems[flow.target].url, flow.name)
    if not lock.acquire(wait=0.0):
        raise RewindRefused(f"flow {flow.name} is running (a replicator process holds its lock on the target):"
                            " stop the flow first")
    try:
        sink = open_sink(config, flow)
        try:
            sink.ensure_state()
            yield sink
        finally:
            sink.rollback()
            sink.close()
    finally:
        lock.release()


def resolve(config: Config, flow: FlowConfig, sink: Sink, to: str | datetime) -> Point:
    """The position to go back to (a position given as text is taken as it is)."""
    engine = config.systems[flow.source].engine
    history = History(sink.conn, config.state_schema)
    if isinstance(to, str):
        if not looks_like_position(engine, to):
            raise ConfigError(f"--to {to!r}: not a position of a {engine} source"
                              " (PostgreSQL: an LSN like 0/16B3748; MariaDB: a GTID like 0-1-123)")
        known = history.at(flow.name, to.strip())
        sink.conn.commit()
        return Point(to.strip(), known.source_commit_time if known else None, "as given")
    if engine == "postgresql":
        row = history.before(flow.name, to)
        oldest = history.oldest(flow.name)
        sink.conn.commit()
        if row is None:
            since = f" (it starts at {oldest.recorded_at:%Y-%m-%d %H:%M:%S} UTC)" if oldest and oldest.recorded_at else ""
            raise RewindRefused(f"flow {flow.name}: the checkpoint history does not reach back to {to.isoformat()}"
                                f"{since}: give a position instead")
        return Point(row.position, row.source_commit_time,
                     f"the checkpoint saved at {row.recorded_at} (last source commit {row.source_commit_time})")
    from .mysql.binlogs import state_at
    from .mysql.source import MySQLSource, server_id_for

    source = MySQLSource(config.systems[flow.source].url, flow.name)
    try:
        if not source.is_mariadb:
            raise RewindRefused("a time resolves to a position only on MariaDB (GTID) and PostgreSQL sources:"
                                " give a binlog position (file:offset) instead")
    finally:
        source.close()
    state, last = state_at(config.systems[flow.source].url, to, server_id_for(flow.name + ":rewind"))
    return Point(str(state), last, "the binlog's event times")


def check_held(config: Config, flow: FlowConfig, position: str) -> None:
    """Refuse (RewindRefused) unless the source still holds everything after ``position``."""
    system = config.systems[flow.source]
    if system.engine == "postgresql":
        from .pg.conn import connect
        from .pg.pgoutput import str_to_lsn

        conn = connect(system.url, "source")
        try:
            row = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                               (flow.slot_name,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise RewindRefused(f"flow {flow.name}: replication slot {flow.slot_name} does not exist on"
                                f" {flow.source}: there is no log to rewind into")
        if row[0] is not None and str_to_lsn(position) < str_to_lsn(str(row[0])):
            raise RewindRefused(
                f"flow {flow.name}: the source no longer holds {position}: slot {flow.slot_name} starts at"
                f" {row[0]} (a PostgreSQL slot cannot go back); raise the flow's rewind.window to keep more"
            )
        return
    from .mysql.binlogs import holds
    from .mysql.positions import FilePos, MariaGtid
    from .mysql.writer import connect as my_connect

    my = my_connect(system.url, autocommit=True)
    try:
        pos = FilePos.parse(position) if ":" in position else MariaGtid.parse(position)
        why = holds(my, pos)
    finally:
        my.close()
    if why is not None:
        raise RewindRefused(f"flow {flow.name}: the source no longer holds {position}: {why}"
                            " (raise the server's binlog retention to keep more)")


def plan(config: Config, flow: FlowConfig, sink: Sink, to: str | datetime) -> tuple[Checkpoint, Point]:
    """The flow's checkpoint now and the point to go back to, checked (nothing written)."""
    refuse_two_way(flow, "rewind")
    current = sink.read_checkpoint(flow.name)
    if current is None:
        raise RewindRefused(f"flow {flow.name} has no checkpoint yet: nothing to rewind")
    point = resolve(config, flow, sink, to)
    engine = config.systems[flow.source].engine
    if compare(engine, point.position, current.position) > 0:
        raise RewindRefused(f"flow {flow.name}: {point.position} is after the checkpoint ({current.position}):"
                            " a rewind only moves back")
    check_held(config, flow, point.position)
    return current, point


def set_checkpoint(config: Config, flow: FlowConfig, sink: Sink, current: Checkpoint, point: Point,
                   event: str) -> None:
    """In the caller's open transaction: the checkpoint at ``point`` (counters kept), and the
    history row saying so."""
    db = StateDB(sink.conn, config.state_schema)
    db.exec(
        f"UPDATE {db.table('checkpoints')} SET position = %s, source_commit_time = %s, updated_at = {db.now}"
        " WHERE flow = %s",
        (point.position, db.ts_value(point.commit_time), flow.name),
    )
    History(sink.conn, config.state_schema).record(HistoryRow(
        flow.name, point.position, point.commit_time, current.changes_applied, current.transactions_applied,
        None, event,
    ))


def rewind(config: Config, flow: FlowConfig, sink: Sink, current: Checkpoint, point: Point) -> None:
    """Move the checkpoint back (commits)."""
    set_checkpoint(config, flow, sink, current, point, f"rewind from {current.position}")
    sink.conn.commit()
