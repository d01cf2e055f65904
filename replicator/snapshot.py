"""Snapshots: copy a flow's tables as of one consistent source instant, then hand over to streaming.

How the copy joins the stream without gap or duplicate. The flow's checkpoint (its slot, or
its binlog position) is recorded *before* the copy starts, so the stream holds every change
from then on. Each table is read under a consistent snapshot whose source position is known
(:mod:`replicator.pg.snapshot`, :mod:`replicator.mysql.snapshot`); when the table is fully
copied that position is stored in the ``snapshots`` state table (:mod:`replicator.snapstate`).
Streaming then drops exactly the changes of that table whose transaction the snapshot already
holds (``Source.covered``) and applies everything later. While a table is being copied the
pipeline holds back changes to it (:class:`SnapshotGate`); other tables keep streaming.

Fast: tables, and key ranges of large tables with an integer key (PostgreSQL sources), are
copied by a pool of workers, each with its own source and target connections. A PostgreSQL
table going to a PostgreSQL table with the same column types travels as COPY text (no value
is parsed); otherwise rows are decoded exactly as streaming decodes them and written by the
flow's sink. Each chunk of rows commits together with its progress row, so progress survives
a crash.

Resumable: a table whose copy did not finish (``copying`` after a crash) is copied again from
the start under a new snapshot: consistent snapshots do not outlive their connections, and a
half-copied table read under two different instants could not be joined exactly. Tables
already ``done`` are kept.

The target table's rows are replaced: it is truncated before the copy (a snapshot makes the
target equal the source).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import psycopg
import structlog
from psycopg import sql

from .batch import TableOps
from .binding import BoundTable
from .config import Config, FlowConfig, TableConfig
from .errors import ConfigError, ReplicatorError
from .progress import Progress
from .protocols import Sink
from .records import Position, TableId
from .transform import Rejected, RowTransform
from .snapstate import FlowLock, SnapshotState, TableSnapshotState

log = structlog.get_logger("replicator")

CHUNK_ROWS = 50_000  # rows per target transaction (one progress step)
PART_ROWS = 100_000  # rows per key range of a large table
APPLY_ROWS = 5_000  # rows per write through a sink (bounds memory per worker)


class SnapshotInterrupted(ReplicatorError):
    """The snapshot was asked to stop; unfinished tables are copied again next time."""


class SnapshotReader(Protocol):
    def open(self) -> None: ...

    def reader(self) -> tuple[Any, Position]:
        """A connection reading at a consistent snapshot, and that snapshot's position."""

    def estimate(self, conn: Any, table: TableId) -> int: ...

    def ranges(self, conn: Any, info: Any, rows: int, part_rows: int, max_parts: int) -> list[Any]: ...

    def rows(self, conn: Any, info: Any, columns: tuple[str, ...], part: Any) -> Iterator[tuple[Any, ...]]: ...

    def close(self) -> None: ...


def open_snapshot_reader(config: Config, flow: FlowConfig) -> SnapshotReader:
    system = config.systems[flow.source]
    if system.engine == "postgresql":
        from .pg.snapshot import PgSnapshotReader

        return PgSnapshotReader(system.url)
    from .mysql.snapshot import MariaDBSnapshotReader

    return MariaDBSnapshotReader(system.url, zero_dates=flow.zero_dates)


class SnapshotGate:
    """What the pipeline needs to know about snapshots, shared with the copying threads.

    ``hold(table)``: the table is being copied; the pipeline holds its changes back.
    ``release(table, position)``: copied as of ``position``; changes of transactions that
    position covers are dropped, later ones applied; the table waits in :attr:`released` until
    the pipeline has applied what it held back and marked the table done, in one target
    transaction. ``fail(exc)``: the copy failed; the pipeline raises it.
    """

    def __init__(self, covered: Callable[[Position, Position], bool]) -> None:
        self.covered = covered
        self.positions: dict[TableId, Position] = {}
        self._held: dict[TableId, threading.Event] = {}
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.released: list[TableId] = []  # copied, not yet marked done by the pipeline

    def hold(self, table: TableId) -> None:
        with self._lock:
            self._held[table] = threading.Event()
            self.positions.pop(table, None)

    def release(self, table: TableId, position: Position) -> None:
        with self._lock:
            self.positions[table] = position
            self.released.append(table)
            event = self._held.pop(table, None)
        if event is not None:
            event.set()

    def take_released(self) -> list[TableId]:
        with self._lock:
            out, self.released = self.released, []
        return out

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.error = exc
            held = list(self._held.values())
        for event in held:
            event.set()

    def is_held(self, table: TableId) -> bool:
        return table in self._held

    @property
    def busy(self) -> bool:
        return bool(self._held)

    def wait(self, table: TableId, stop: threading.Event) -> bool:
        """Wait until ``table`` is copied; False if ``stop`` was set first. Raises the copy's error."""
        event = self._held.get(table)
        while event is not None and not event.wait(0.2):
            if stop.is_set():
                return False
        if self.error is not None:
            raise self.error
        return True

    def wait_all(self, stop: threading.Event) -> bool:
        for table in list(self._held):
            if not self.wait(table, stop):
                return False
        if self.error is not None:
            raise self.error
        return True

    def passed(self, position: Position) -> None:
        """The stream committed up to ``position``: forget snapshots it is past -- except
        those of tables copied but not yet taken by the pipeline (:meth:`take_released`),
        whose position it still needs to filter what it held back and to mark them done."""
        if self.positions:
            with self._lock:
                for t, p in list(self.positions.items()):
                    if position >= p and t not in self.released:
                        del self.positions[t]


@dataclass
class _TablePlan:
    bound: BoundTable
    estimate: int
    parts: list[Any]
    remaining: int = 0
    position: Position | None = None


def _truncate(sink: Sink, tables: list[TableId]) -> None:
    """Empty the target tables (in the sink's open transaction on PostgreSQL). PostgreSQL
    refuses to TRUNCATE a table another one references unless both are in the statement: the
    flow's tables go in one statement, and a table referenced from outside the set (a refresh
    of one table) is emptied with DELETE, which the replica session role allows."""
    conn: Any = sink.conn
    if isinstance(conn, psycopg.Connection):
        names = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("TRUNCATE {}").format(names))
        except psycopg.errors.FeatureNotSupported:
            for t in tables:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(t.schema, t.name)))
    else:
        from .mysql.writer import qtable

        with conn.cursor() as cur:
            for t in tables:
                cur.execute(f"TRUNCATE TABLE {qtable(t)}")


class Snapshotter:
    """Copies tables of one flow (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        flow: FlowConfig,
        open_sink: Callable[[], Sink],
        *,
        progress: Progress,
        stop: threading.Event | None = None,
        workers: int = 4,
        chunk_rows: int = CHUNK_ROWS,
        part_rows: int = PART_ROWS,
    ) -> None:
        self.config = config
        self.flow = flow
        self.open_sink = open_sink
        self.progress = progress
        self.stop = stop or threading.Event()
        self.workers = max(1, workers)
        self.chunk_rows = chunk_rows
        self.part_rows = part_rows
        self.log = log.bind(flow=flow.name)
        self._abort = threading.Event()

    def run(
        self,
        tables: list[BoundTable],
        format_position: Callable[[Position], str],
        on_table_done: Callable[[TableId, Position], None] | None = None,
        mark_done: bool = True,
    ) -> dict[TableId, Position]:
        """Copy ``tables``; returns each table's snapshot position. Raises the first error
        (the other tables stop at their next chunk and stay ``copying``). ``mark_done=False``:
        the caller (a running pipeline) marks each table done, with what it held back."""
        if not tables:
            return {}
        reader = open_snapshot_reader(self.config, self.flow)
        control = self.open_sink()
        state = SnapshotState(control.conn, self.config.state_schema)
        if any(b.transform is not None for b in tables):
            from .deadletter import DeadLetters

            DeadLetters(control.conn, self.config.state_schema).ensure()
            control.conn.commit()
        plans: dict[TableId, _TablePlan] = {}
        done: dict[TableId, Position] = {}
        try:
            reader.open()
            conn, _ = reader.reader()
            try:
                for b in tables:
                    est = reader.estimate(conn, b.mapping.source)
                    parts = reader.ranges(conn, b.source, est, self.part_rows, 2 * self.workers)
                    plans[b.mapping.source] = _TablePlan(b, est, parts, len(parts))
            finally:
                conn.close()
            _truncate(control, [plan.bound.mapping.target for plan in plans.values()])
            for plan in plans.values():
                state.start(self.flow.name, plan.bound.name, str(plan.bound.mapping.target), plan.estimate)
                control.conn.commit()
                self.progress.add(plan.bound.name, plan.estimate)
                self.log.info("snapshot of table started", table=plan.bound.name,
                              target=str(plan.bound.mapping.target), rows_estimated=plan.estimate,
                              parts=len(plan.parts), route=self._route(plan.bound))
            jobs = [(plan, part) for plan in plans.values() for part in plan.parts]
            with ThreadPoolExecutor(self.workers, thread_name_prefix=f"snapshot-{self.flow.name}") as pool:
                futures: dict[Future[Position], _TablePlan] = {
                    pool.submit(self._copy_part, reader, plan, part): plan for plan, part in jobs
                }
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in finished:
                        plan = futures[fut]
                        exc = fut.exception()
                        if exc is not None:
                            self._abort.set()
                            for other in pending:
                                other.cancel()
                            raise exc
                        plan.position = fut.result()
                        plan.remaining -= 1
                        if plan.remaining == 0:
                            table = plan.bound.mapping.source
                            if mark_done:
                                state.finish(self.flow.name, plan.bound.name, format_position(plan.position))
                                control.conn.commit()
                            self.progress.finish(plan.bound.name)
                            done[table] = plan.position
                            if on_table_done is not None:
                                on_table_done(table, plan.position)
            return done
        finally:
            self._abort.set()
            reader.close()
            control.rollback()
            control.close()
            self.progress.close()

    def _copy_part(self, reader: SnapshotReader, plan: _TablePlan, part: Any) -> Position:
        b = plan.bound
        sink = self.open_sink()
        conn, position = reader.reader()
        try:
            sink.describe(b.mapping.target)
            columns = b.source.column_names
            route = self._route(b)
            if route == "copy text":  # PostgreSQL -> PostgreSQL
                lines = reader.raw_rows(conn, b.source, columns, part)  # type: ignore[attr-defined]  # PostgreSQL readers only
                self._commit_chunks(b, sink.conn, self._copy_lines(sink, b, columns, lines))
                return position
            if route != "values":
                from .mysql.load import LoadRejected, pg_source_lines

                try:
                    if route == "load data":
                        self._load_data(reader, conn, b, columns)
                    else:
                        lines = pg_source_lines(conn, b.source, columns)
                        self._commit_chunks(b, sink.conn, self._copy_lines(sink, b, columns, lines))
                    return position
                except (LoadRejected, psycopg.errors.DataError) as exc:
                    sink.rollback()
                    # A value the text route cannot carry as it is (a zero date, ENUM's error
                    # value): copy again, value by value, under a new snapshot (the exact path
                    # reports such values, or writes NULL, as the flow's policy says).
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    self.log.info("text route refused; copying the table value by value", table=b.name, why=why)
                    conn.close()
                    conn, position = reader.reader()
                    _truncate(sink, [b.mapping.target])
                    SnapshotState(sink.conn, self.config.state_schema).start(
                        self.flow.name, b.name, str(b.mapping.target), plan.estimate
                    )
                    sink.conn.commit()
            self._commit_chunks(b, sink.conn, self._decoded_chunks(reader, conn, sink, b, columns, part))
            return position
        finally:
            try:
                conn.close()
            finally:
                sink.rollback()
                sink.close()

    def _commit_chunks(self, b: BoundTable, target: Any, chunks: Iterator[int]) -> None:
        """Each chunk's rows are in ``target``'s open transaction: add the progress row, commit."""
        state = SnapshotState(target, self.config.state_schema)
        for rows in chunks:
            state.chunk_done(self.flow.name, b.name, rows)
            target.commit()
            self.progress.advance(b.name, rows)

    def _route(self, b: BoundTable) -> str:
        """How the table's rows travel: ``copy text`` (PostgreSQL -> PostgreSQL, same types:
        COPY text straight through), ``load data`` (MariaDB -> MariaDB, same types: text the
        source formats, LOAD DATA), ``source text`` (MariaDB -> PostgreSQL columns that read the
        source's text exactly: COPY), else ``values`` (decoded one by one, as streaming does)."""
        source = self.config.systems[self.flow.source].engine
        if b.transform is not None:
            return "values"  # through the table's mapping
        if source == "postgresql":
            return "copy text" if b.passthrough is not None else "values"
        if not b.config.plain or os.environ.get("REPLICATOR_TEST_NO_TEXT_ROUTES"):
            return "values"
        from .mysql.load import pg_supported, supported

        if self.config.systems[self.flow.target].engine == "mysql":
            return "load data" if b.same_types and supported(b.source) else "values"
        target_types = {c.name: c.type for c in b.target.columns}
        types = [target_types[b.mapping.target_name(c.name)] for c in b.source.columns]
        return "source text" if pg_supported(b.source, types) else "values"

    def _load_data(self, reader: Any, conn: Any, b: BoundTable, columns: tuple[str, ...]) -> None:
        import pymysql

        from .mysql.load import LOCAL_INFILE_OFF, LoadRejected, load_chunk, load_columns, source_lines
        from .mysql.writer import connect, session_setup

        target = connect(self.config.systems[self.flow.target].url, autocommit=False, local_infile=True)
        try:
            session_setup(target)
            lines = source_lines(conn, b.source, columns)
            column_list = load_columns(b.source, columns, [b.mapping.target_name(c) for c in columns])

            def chunks() -> Iterator[int]:
                while True:
                    self._check_stop()
                    try:
                        n = load_chunk(target, b.mapping.target, column_list, lines, self.chunk_rows)
                    except pymysql.err.Error as exc:
                        if exc.args and exc.args[0] in LOCAL_INFILE_OFF:
                            raise LoadRejected(f"the target refuses LOAD DATA LOCAL ({exc.args[-1]})") from None
                        raise
                    if n:
                        yield n
                    if n < self.chunk_rows:
                        return

            self._commit_chunks(b, target, chunks())
        finally:
            target.close()

    def _check_stop(self) -> None:
        if self._abort.is_set() or self.stop.is_set():
            raise SnapshotInterrupted("the snapshot was stopped; unfinished tables are copied again next time")

    def _decoded_chunks(self, reader: SnapshotReader, conn: Any, sink: Sink, b: BoundTable,
                        columns: tuple[str, ...], part: Any) -> Iterator[int]:
        """Write the part in chunks through the sink (values as streaming decodes them);
        yields each chunk's row count with its transaction still open."""
        mapping = b.mapping
        source_rows = reader.rows(conn, b.source, columns, part)
        if b.transform is not None:
            yield from self._transformed_chunks(sink, b, b.transform, columns, source_rows)
            return
        copy_rows = getattr(sink, "copy_rows", None)  # a COPY into the emptied table, if the sink has one
        target_cols = [mapping.target_name(c) for c in columns]
        while True:
            self._check_stop()
            if copy_rows is not None:
                n = copy_rows(mapping.target, target_cols, islice(source_rows, self.chunk_rows))
            else:  # in pieces, so memory holds a few thousand rows, not a chunk
                n = 0
                while n < self.chunk_rows:
                    piece = [mapping.map_row(dict(zip(columns, values)))
                             for values in islice(source_rows, min(APPLY_ROWS, self.chunk_rows - n))]
                    if not piece:
                        break
                    sink.apply([TableOps(mapping, upserts=piece)])
                    n += len(piece)
            if n:
                yield n
            if n < self.chunk_rows:
                return

    def _transformed_chunks(self, sink: Sink, b: BoundTable, tr: RowTransform, columns: tuple[str, ...],
                            source_rows: Iterator[tuple[Any, ...]]) -> Iterator[int]:
        """Rows through the table's mapping: those outside the filter are skipped, those the
        mapping rejects become dead letters in the chunk's transaction."""
        from .deadletter import DeadLetter, DeadLetters

        letters = DeadLetters(sink.conn, self.config.state_schema)
        key_cols = [s for s, t in tr.mapping._names.items() if t in tr.target_key]
        while True:
            self._check_stop()
            n = 0
            while n < self.chunk_rows:
                piece, rejected = [], []
                got = 0
                for values in islice(source_rows, min(APPLY_ROWS, self.chunk_rows - n)):
                    got += 1
                    row = dict(zip(columns, values))
                    try:
                        out = tr.written(row)
                        if out is None:
                            continue
                    except Rejected as exc:
                        rejected.append(DeadLetter(
                            self.flow.name, str(b.mapping.source), str(b.mapping.target),
                            tr.sanitize({c: row[c] for c in key_cols}), "r", exc.rule, exc.reason, None, None,
                            tr.sanitize(row)))
                        continue
                    piece.append(out)
                if piece:
                    sink.apply([TableOps(tr.output, upserts=piece)])
                if rejected:
                    letters.add(rejected)
                    self.log.warning("rows not copied: sent to the dead letters", table=b.name, rows=len(rejected),
                                     first_reason=f"{rejected[0].rule}: {rejected[0].reason}")
                n += got
                if not got:
                    break
            if n:
                yield n
            if n < self.chunk_rows:
                return

    def _copy_lines(self, sink: Sink, b: BoundTable, columns: tuple[str, ...], lines: Iterator[Any]) -> Iterator[int]:
        """COPY text lines (each with its newline) into the target, chunk by chunk; yields each
        chunk's row count with its transaction still open."""
        target = b.mapping.target
        tconn: psycopg.Connection[Any] = sink.conn
        copy_in = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(target.schema), sql.Identifier(target.name),
            sql.SQL(", ").join(sql.Identifier(b.mapping.target_name(c)) for c in columns),
        )
        limit = self.chunk_rows
        while True:
            self._check_stop()
            n = 0
            with tconn.cursor().copy(copy_in) as copy:
                write = copy.write
                while n < limit:
                    batch = list(islice(lines, min(1000, limit - n)))
                    if not batch:
                        break
                    write(b"".join(batch))
                    n += len(batch)
            if n:
                yield n
            if n < limit:
                return


@dataclass
class TableOutcome:
    table: str
    status: str
    rows: int
    position: str | None
    seconds: float | None


def has_table(config: Config, flow: FlowConfig, name: str) -> bool:
    """Whether ``name`` designates one of the flow's tables (:meth:`Config.table_names`)."""
    return any(name in config.table_names(flow, t) for t in flow.tables)


def select_tables(config: Config, flow: FlowConfig, names: list[str] | tuple[str, ...]) -> list[TableConfig]:
    """The flow's tables named by ``--table`` (source or target name, plain or schema.name)."""
    if not names:
        return list(flow.tables)
    chosen: list[TableConfig] = []
    for name in names:
        match = [t for t in flow.tables if name in config.table_names(flow, t)]
        if not match:
            known = ", ".join(t.source for t in flow.tables)
            raise ConfigError(f"flow {flow.name} has no table {name!r} (its tables: {known})")
        chosen += [t for t in match if t not in chosen]
    return chosen


def snapshot_flow(
    config: Config,
    flow: FlowConfig,
    tables: list[TableConfig],
    *,
    progress: Progress,
    stop: threading.Event | None = None,
    workers: int = 4,
    wait_seconds: float = 3600.0,
) -> list[TableOutcome]:
    """``replicator snapshot``: copy ``tables`` now. If a ``run`` of the flow is active (it
    holds the flow's lock), ask it to copy them instead and wait until it has: the running
    pipeline is the one place that can join a copy with its stream."""
    from .binding import bind_tables, ensure_checkpoint, open_sink, open_source

    stop = stop or threading.Event()
    names = [str(config.source_table(flow, t)) for t in tables]
    lock = FlowLock(config.systems[flow.target].url, flow.name)
    if not lock.acquire(wait=3.0):
        outcome = _request(config, flow, names, progress, stop, wait_seconds, lock)
        if outcome is not None:
            return outcome
        # the running flow stopped before copying: this process holds the lock now
    sink = open_sink(config, flow)
    source = open_source(config, flow)
    try:
        sink.ensure_state()
        state = SnapshotState(sink.conn, config.state_schema)
        state.ensure()
        sink.conn.commit()
        every = bind_tables(config, flow, source, sink)
        source.prepare([b.mapping.source for b in every])
        ensure_checkpoint(flow, source, sink)  # streaming resumes from before the copies
        chosen = [b for b in every if b.name in names]
        t0 = time.monotonic()
        Snapshotter(config, flow, lambda: open_sink(config, flow), progress=progress, stop=stop,
                    workers=workers).run(chosen, source.format_position)
        elapsed = time.monotonic() - t0
        states = state.load(flow.name)
        sink.conn.commit()
        return [_outcome(states[n], elapsed) for n in names]
    finally:
        sink.rollback()
        sink.close()
        source.close()
        lock.release()


def _outcome(st: TableSnapshotState, elapsed: float | None = None) -> TableOutcome:
    seconds = elapsed
    if st.started_at is not None and st.finished_at is not None:
        seconds = (st.finished_at - st.started_at).total_seconds()
    return TableOutcome(st.table, st.status, st.rows_copied, st.position, seconds)


def _request(config: Config, flow: FlowConfig, names: list[str], progress: Progress,
             stop: threading.Event, wait_seconds: float, lock: FlowLock) -> list[TableOutcome] | None:
    """Ask the running flow to copy ``names`` and wait for it; None if the flow stopped
    (``lock`` is then held by this process)."""
    from .binding import open_sink

    sink = open_sink(config, flow)
    try:
        state = SnapshotState(sink.conn, config.state_schema)
        for name in names:
            state.request(flow.name, name)
        sink.conn.commit()
        log.info("flow is running: asked it to copy the tables", flow=flow.name, tables=names)
        shown: dict[str, int] = {}
        deadline = time.monotonic() + wait_seconds
        while True:
            states = state.load(flow.name)
            sink.conn.commit()
            for name in names:
                st = states.get(name)
                if st is None:
                    continue
                if st.status != "requested" and name not in shown:
                    progress.add(name, st.rows_estimated)
                    shown[name] = 0
                if name in shown and st.rows_copied > shown[name]:
                    progress.advance(name, st.rows_copied - shown[name])
                    shown[name] = st.rows_copied
            if all(states.get(n) is not None and states[n].status == "done" for n in names):
                for name in names:
                    progress.finish(name)
                progress.close()
                return [_outcome(states[n]) for n in names]
            if lock.acquire():
                return None  # nobody runs the flow any more: this process copies
            if stop.is_set() or time.monotonic() > deadline:
                raise ReplicatorError(
                    "gave up waiting for the running flow to copy the tables (they stay requested;"
                    " `replicator checkpoint show` tells when they are done)"
                )
            time.sleep(0.5)
    finally:
        sink.rollback()
        sink.close()
