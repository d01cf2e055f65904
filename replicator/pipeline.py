"""The pipeline: the one place that orders apply, checkpoint and acknowledgement.

For each flow: read the checkpoint from the target (the only truth), stream the source from
there, net changes into a :class:`~replicator.batch.Batch`, and at a source-transaction boundary
write the batch *and* the new checkpoint in one target transaction; only after that commit is
the source acknowledged. A crash anywhere therefore either loses an uncommitted target
transaction (re-streamed from the checkpoint) or leaves a committed one whose checkpoint
already records it (never re-applied).

Reading runs in a thread (:class:`Prefetcher`) feeding a small bounded queue, so decoding on
the source side overlaps with the target's work while memory stays bounded.

Transient errors (lost connections, restarting servers) close everything, wait with backoff and
start over from the target's checkpoint; any other error stops the flow.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import structlog
from typing import Any

from .audit import AuditEntry, AuditFile, AuditTrail, changed
from .batch import Batch
from .binding import BoundTable, bind_tables, ensure_checkpoint, open_sink, open_source
from .config import Config, FlowConfig, HttpConfig, LimitsConfig
from .conflictlog import ConflictLog
from .conflicts import ConflictPolicy
from .deadletter import DeadLetter, DeadLetters
from .errors import ConfigError, FlowPaused, ReplicatorError, SchemaError, TransientError
from .guards import ANY_TRANSACTION, Guard, GuardTripped, Pauses
from .history import History
from .loopguard import TaggedSink, decode, ensure_tag_table, tag_table
from .mapping import TableMapping
from .pg.passthrough import RawBatch, RawRows
from .progress import LogProgress
from .protocols import Checkpoint, Sink, Source
from .records import DELETE, TRUNCATE, UPDATE, Begin, Change, Commit, Heartbeat, Item, Position, SchemaChange, TableId
from .snapshot import SnapshotGate, Snapshotter
from .snapstate import FlowLock, SnapshotState
from .transform import Rejected, RowTransform
from .twoway import LastWriter, TableChanges, TwoWayBatch, resolve
from .lww import commit_times
from .telemetry import MONITORS
from .mysql.positions import FilePos, MariaGtid

log = structlog.get_logger("replicator")

IDLE_CHECKPOINT_SECONDS = 10.0
REQUEST_POLL_SECONDS = 2.0  # how often a running flow looks for `snapshot --table` requests
PAUSE_POLL_SECONDS = 2.0  # how often a paused flow looks whether it was resumed
AUDIT_PRUNE_SECONDS = 3600.0
SNAPSHOT_WORKERS = 4
LOCK_WAIT_SECONDS = 10.0  # a killed predecessor's lock lives until its server notices
SPOOL_MAX = 200_000  # changes held back for tables being copied; beyond, the flow waits
_END = object()


class Prefetcher:
    """Runs a source iterator in a thread; hands items over in chunks through a queue bounded
    by the number of rows in flight.

    The bound (``max_rows``) is larger than a batch, so the reader keeps decoding while the
    target applies a batch instead of stalling; memory stays bounded by that many rows. A chunk
    is handed over at every transaction end and heartbeat (latency) or once it holds ``chunk``
    rows (a :class:`~replicator.pg.passthrough.RawRows` item counts its rows).
    """

    def __init__(
        self, items: Iterator[Item], interrupt: Callable[[], None], chunk: int = 1000, max_rows: int = 50_000
    ) -> None:
        self._items = items
        self._interrupt = interrupt
        self._chunk = chunk
        self._max_rows = max_rows
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue()
        self._room = threading.Condition()
        self._rows = 0  # rows queued and not yet taken by the consumer
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf: list[Item] = []
        try:
            chunk = self._chunk
            closed = self._closed
            append = buf.append
            rows = 0
            for item in self._items:
                append(item)
                kind = type(item)
                if kind is RawRows:  # type: ignore[comparison-overlap]
                    rows += len(item.keys)  # type: ignore[union-attr]
                else:
                    rows += 1
                if rows >= chunk or kind is Commit or kind is Heartbeat:
                    self._put(buf, rows)
                    buf = []
                    append = buf.append
                    rows = 0
                    if closed.is_set():
                        return
            self._put(buf, rows)
            self._put(_END, 0)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc, 0)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, value: object, rows: int) -> None:
        with self._room:
            while self._rows and self._rows + rows > self._max_rows:
                if self._closed.is_set():
                    return
                self._room.wait(0.5)
            self._rows += rows
        self._queue.put((rows, value))

    def get(self, timeout: float) -> list[Item] | None:
        """The next chunk; None on timeout; raises what the reader raised."""
        try:
            rows, value = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if rows:
            with self._room:
                self._rows -= rows
                self._room.notify()
        if value is _END:
            raise StopIteration
        if isinstance(value, BaseException):
            raise value
        return value  # type: ignore[return-value]

    def empty(self) -> bool:
        return self._queue.empty()

    def close(self) -> None:
        self._closed.set()
        with self._room:
            self._room.notify_all()
        self._interrupt()
        self._thread.join(timeout=10)


class Writer:
    """Applies batches to the target in a thread, in submission order, while the pipeline nets
    the next batch: the target's work overlaps with reading and netting.

    One task waits while another runs, so memory stays bounded (a batch being built, one
    waiting, one being written). Tasks are the sink calls of one connection in the order the
    pipeline decided (apply..., then commit and acknowledge), so the ordering rules are those
    of a synchronous pipeline. The first error stops the writer: later tasks are dropped and
    the error is raised in the pipeline's thread at its next call of :meth:`run`,
    :meth:`check` or :meth:`finish`.
    """

    def __init__(self) -> None:
        self._tasks: queue.Queue[tuple[Callable[..., object], tuple[object, ...]] | None] = queue.Queue(1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="target-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                if self._error is None:
                    task[0](*task[1])
            except BaseException as exc:  # handed to the pipeline's thread
                self._error = exc
            finally:
                self._tasks.task_done()

    def run(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` (waits while another task waits)."""
        self.check()
        self._tasks.put((fn, args))

    def check(self) -> None:
        """Raise the error a task raised, if any."""
        if self._error is not None:
            raise self._error

    def finish(self) -> bool:
        """Wait until every queued task is done; raise its error if one failed."""
        self._tasks.join()
        self.check()
        return True

    def close(self) -> None:
        """Let the running task end, drop the others, stop the thread (never raises)."""
        if self._error is None:
            self._error = TransientError("the pipeline stopped before this batch was written")
        self._tasks.put(None)
        self._thread.join()


@dataclass
class FlowStats:
    changes: int = 0
    transactions: int = 0
    batches: int = 0
    conflicts: int = 0
    started: float = field(default_factory=time.monotonic)


class FlowRunner:
    """Runs one flow until stopped (or, with ``once``, until it caught up with the start)."""

    def __init__(self, config: Config, flow: FlowConfig, *, once: bool = False, stop: threading.Event | None = None,
                 notifier: Any = None) -> None:
        self.config = config
        self.flow = flow
        self.once = once
        self.stop = stop or threading.Event()
        self.stats = FlowStats()
        self.mon = MONITORS.flow(flow.name, flow.source, flow.target)  # what status and /metrics show
        self.notifier = notifier  # replicator.notify.Notifier, or None
        # Notifications and counts of the open target transaction, released after its commit
        # (a rolled-back conflict or dead letter is never announced). Written by the writer.
        self._unsent: list[tuple[str, Any]] = []  # (event, its record: ConflictEntry, DeadLetter, dict)
        self.log = log.bind(flow=flow.name)
        self._stop_at: Position | None = None
        self._crash_after = int(os.environ.get("REPLICATOR_TEST_CRASH_AFTER_COMMIT", "0"))
        self._streaming = False  # the current session has received data from the source
        # Tables streamed as raw text (PostgreSQL -> PostgreSQL, see replicator.pg.passthrough):
        # table -> (source column names, source columns of the target key).
        self._passthrough: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._bound: list[BoundTable] = []
        self._snapshots: list[threading.Thread] = []  # copying threads of this session
        self._snapshot_stop = threading.Event()
        self._transforms: dict[TableId, RowTransform] = {}
        self._raw: dict[TableId, BoundTable] = {}  # tables whose mapping runs on passthrough text
        self._guard: Guard | None = None
        self._audit_file = AuditFile(flow.audit.file) if flow.audit is not None and flow.audit.file else None
        self._next_prune = 0.0
        self._next_history_prune = 0.0
        # Loop guard (see replicator.loopguard): tag what we write when the target is read by
        # another flow; a flow with one back to its source never writes on echoes alone.
        self._tagging = any(f.source == flow.target for f in config.flows)
        self._loop = any(f.source == flow.target and f.target == flow.source for f in config.flows)
        self._tagged_source = any(f.target == flow.source for f in config.flows)  # markers to read
        self._policies: dict[TableId, ConflictPolicy] = {}  # two-way: per target table
        self._lww: LastWriter | None = None  # conflicts: last_writer_wins
        # last_writer_wins with a MySQL source: the flow back needs the commit times read here
        self._records_times = flow.two_way and flow.conflicts == "last_writer_wins" \
            and config.systems[flow.source].engine == "mysql"

    # -- outer loop: retries -----------------------------------------------------------------
    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            self._streaming = False
            try:
                if self._session():
                    return
            except TransientError as exc:
                if self._streaming:
                    delay = 1.0  # the session worked: a new outage, not the previous one going on
                self.log.warning("connection problem, retrying", error=str(exc), retry_in_s=delay)
                self.mon.set_state("reconnecting", str(exc))
                self.mon.event("error", str(exc))
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    # -- one connected session ---------------------------------------------------------------
    def _session(self) -> bool:
        """Returns True when the flow is finished (``--once`` caught up, or stopped)."""
        lock = FlowLock(self.config.systems[self.flow.target].url, self.flow.name)
        if not lock.acquire(wait=LOCK_WAIT_SECONDS):
            raise ReplicatorError(
                f"flow {self.flow.name} is already running: another replicator process holds its"
                " lock on the target (stop it first)"
            )
        sink: Sink = open_sink(self.config, self.flow)
        if self._tagging:
            sink = TaggedSink(sink, self.flow.name, self.flow.source, self.config.state_schema)  # type: ignore[assignment]
        source: Source | None = None
        self._snapshot_stop = threading.Event()
        self._snapshots = []
        self._unsent = []
        try:
            source = open_source(self.config, self.flow)
            schema = self.config.state_schema
            state = SnapshotState(sink.conn, schema)
            with _state_ddl(sink):
                sink.ensure_state()
                state.ensure()
                DeadLetters(sink.conn, schema).ensure()
                Pauses(sink.conn, schema).ensure()
                if self.flow.audit is not None:
                    AuditTrail(sink.conn, schema).ensure()
                if self.flow.two_way:
                    ConflictLog(sink.conn, schema).ensure()
                sink.conn.commit()
            if self.flow.audit is not None:
                self._prune_audit(sink)
            self._prune_history(sink)
            self._guard = self._wait_if_paused(sink)
            if self.flow.snapshot == "initial":
                self._create_missing(source, sink)
            self._bound = bind_tables(self.config, self.flow, source, sink)
            mappings = {b.mapping.source: b.mapping for b in self._bound}
            self._transforms = {b.mapping.source: b.transform for b in self._bound if b.transform is not None}
            self._raw = {b.mapping.source: b for b in self._bound if b.raw is not None}
            for b in self._bound:
                if b.transform is not None:
                    self.log.info("table mapping", table=b.name, target=str(b.mapping.target),
                                  runs_on="passthrough text" if b.raw is not None else "values")
            self._passthrough = {
                b.mapping.source: (b.source.column_names, b.passthrough)
                for b in self._bound if b.passthrough is not None
            }
            if self.flow.mode == "poll":  # the poll source compares keys with the target's
                source.bind(self._bound)  # type: ignore[attr-defined]
                self._passthrough = {}
            text_format = getattr(sink, "raw_format", None)  # None: the sink takes no text rows
            if self._passthrough and text_format is not None and hasattr(source, "set_passthrough"):
                source.set_passthrough(self._passthrough, text_format)
                self.log.info("rows travel as text", tables=sorted(map(str, self._passthrough)), format=text_format)
            watched = [m.source for m in mappings.values()]
            if self._tagged_source and self.config.systems[self.flow.source].engine == "mysql":
                # the marker rows of the flow writing into our source (see replicator.loopguard)
                ensure_tag_table(source.conn, schema)  # type: ignore[attr-defined]
                watched.append(tag_table(schema))
            source.prepare(watched)
            if self.flow.two_way:
                self._policies = {b.mapping.target: self._policy(b) for b in self._bound}
                if self.flow.conflicts == "last_writer_wins":
                    self._lww = self._last_writer(sink)
            checkpoint = ensure_checkpoint(self.flow, source, sink)
            start = source.parse_position(checkpoint.position)
            self.mon.position, self.mon.changes_total = checkpoint.position, checkpoint.changes_applied
            self._release_window(source, sink, start)
            if self.once and self._stop_at is None:
                self._stop_at = source.current_position()
            gate = SnapshotGate(source.covered)
            states = state.load(self.flow.name)
            sink.conn.commit()
            todo: list[BoundTable] = []
            for b in self._bound:
                st = states.get(b.name)
                if st is not None and st.status == "done" and st.position is not None \
                        and st.target == str(b.mapping.target):
                    gate.positions[b.mapping.source] = source.parse_position(st.position)
                elif st is not None or self.flow.snapshot == "initial":
                    todo.append(b)  # never copied (to this target), interrupted, or requested
            if self.flow.mode == "poll":
                todo = []  # a poll flow's first round is its copy
            for name in states.keys() - {b.name for b in self._bound}:
                state.forget(self.flow.name, name)  # left the flow: copied again if it returns
            sink.conn.commit()
            gate.passed(start)
            if todo and self._guard is not None and self._guard.hold is not None:
                # Paused by a limit: a copy now would copy the source as it is after the held
                # transaction. Copies start once the flow is resumed; until then the tables'
                # changes before the held transaction are applied as they come.
                self.log.info("table copies wait until the flow is resumed", tables=[b.name for b in todo])
                todo = []
            self._start_snapshot(todo, gate, source)
            self.mon.set_state("snapshotting" if todo else "running")
            times = commit_times(self.flow.source) if self._records_times else None
            if times is not None:
                times.begin(start)
            try:
                return self._stream(source, sink, checkpoint, start, mappings, gate, lock)
            except GuardTripped as exc:
                self._paused(sink, exc)
                return False  # resumed: a new session lets the transaction through
        except _Stopped:  # stopped while paused
            return True
        finally:
            if self._records_times:
                commit_times(self.flow.source).end()
            self._snapshot_stop.set()
            for thread in self._snapshots:
                thread.join()
            sink.rollback()
            sink.close()
            if source is not None:
                source.close()
            lock.release()

    def _create_missing(self, source: Source, sink: Sink) -> None:
        """Create the target tables the snapshot will fill, once everything else is known to
        fit: the tables that exist bind, and every missing one can be translated."""
        from .schema import create_missing, plan_tables

        plans = plan_tables(self.config, self.flow)  # reads only; raises on untranslatable types
        missing = {str(p.source) for p in plans if not p.exists}
        if not missing:
            return
        present = [t for t in self.flow.tables if str(self.config.source_table(self.flow, t)) not in missing]
        bind_tables(self.config, self.flow, source, sink, present)
        for plan in create_missing(self.config, self.flow):
            if not plan.exists:
                self.log.info("created target table", table=str(plan.target), source=str(plan.source))

    def _start_snapshot(self, tables: list[BoundTable], gate: SnapshotGate, source: Source) -> None:
        """Copy ``tables`` in a background thread; their changes wait at the gate meanwhile."""
        if not tables:
            return
        for b in tables:
            gate.hold(b.mapping.source)
        snapshotter = Snapshotter(
            self.config, self.flow, lambda: open_sink(self.config, self.flow),
            progress=LogProgress(self.flow.name), stop=self._snapshot_stop, workers=SNAPSHOT_WORKERS,
        )

        def work() -> None:
            try:
                snapshotter.run(tables, source.format_position, gate.release, mark_done=False)
            except BaseException as exc:  # handed to the pipeline through the gate
                gate.fail(exc)

        thread = threading.Thread(target=work, name=f"snapshot-{self.flow.name}", daemon=True)
        self._snapshots.append(thread)
        thread.start()

    def _requested(self, lock: FlowLock, gate: SnapshotGate) -> list[BoundTable]:
        """Tables ``replicator snapshot --table`` asked this running flow to copy again."""
        states = lock.state(self.config.state_schema).load(self.flow.name)
        return [
            b for b in self._bound
            if (st := states.get(b.name)) is not None and st.status == "requested" and not gate.is_held(b.mapping.source)
        ]

    def _stream(
        self,
        source: Source,
        sink: Sink,
        checkpoint: Checkpoint | None,
        start: Position | None,
        mappings: dict[TableId, TableMapping],
        gate: SnapshotGate,
        lock: FlowLock,
    ) -> bool:
        flow = self.flow
        max_rows = flow.batch.max_rows
        max_delay = flow.batch.max_delay_ms / 1000
        changes_total = checkpoint.changes_applied if checkpoint else 0
        txns_total = checkpoint.transactions_applied if checkpoint else 0
        committed_pos: Position | None = start
        if self._stop_at is not None and start is not None and start >= self._stop_at:
            if gate.wait_all(self.stop):  # --once: nothing to stream, but finish the copies
                for table in gate.take_released():
                    self._mark_done(sink, str(table), source.format_position(gate.positions[table]))
                sink.conn.commit()
            return True

        two_way = flow.two_way
        batch: Batch | TwoWayBatch = TwoWayBatch() if two_way else Batch()
        raw = RawBatch()  # passthrough rows; only one of the two buffers holds rows at a time
        batch_used = False  # batch may hold changes (a truncate does not count in its size)
        last_table: TableId | None = None  # the table of the previous change...
        last_mapping: TableMapping | None = None  # ...and its mapping
        pending_changes = 0  # changes of complete, uncommitted source transactions
        pending_txns = 0
        txn_changes = 0  # changes of the source transaction in progress
        in_txn = False
        position: Position | None = committed_pos  # the newest transaction-boundary position
        commit_time: datetime | None = checkpoint.source_commit_time if checkpoint else None
        oldest_pending = 0.0
        last_checkpoint_write = time.monotonic()
        next_poll = time.monotonic() + REQUEST_POLL_SECONDS
        gated = bool(gate.positions or gate.busy)  # snapshots to join in this transaction
        txn_position: Position | None = None
        hold_back = False  # the current table's changes are held back (it is being copied)
        # Changes of tables being copied, held back in stream order with their transaction's
        # position until the copy is done. Nothing of them is lost in a crash: a table whose
        # copy did not finish is copied again, under a snapshot newer than any checkpoint.
        spools: dict[TableId, list[tuple[Position, Item | RawRows]]] = {}
        spooled = 0
        transforms = self._transforms
        raw_plans = self._raw
        guard = self._guard
        auditing = flow.audit is not None
        letters: list[DeadLetter] = []
        audits: list[AuditEntry] = []
        txn_commit_time: datetime | None = None
        txn_text: list[str | None] = []  # the open transaction's position as text, once needed
        key_columns: dict[TableId, list[str]] = {}  # per table: the source columns of the target key
        # Loop guard (replicator.loopguard): the open source transaction's tag and origin
        # system (known at its first synced change), whether it is skipped as an echo, and
        # the origin of what the open target transaction holds.
        tagging = self._tagging
        marker = tag_table(self.config.state_schema) if self._tagged_source else None
        txn_tag = None
        txn_origin: str | None = None
        skipping = False
        batch_origin: str | None = None
        echo_only = True  # since the last checkpoint the source only moved by echoes
        acked: Position | None = start
        source_columns = {b.mapping.source: len(b.source.columns) for b in self._bound}
        # A binlog heartbeat stands for transactions of other tables (ours are tagged); a
        # PostgreSQL keepalive may stand for our own writes (say, checkpoints of the flow back).
        heartbeat_echo = self.config.systems[flow.source].engine == "postgresql"
        mon = self.mon
        op_counts: dict[tuple[TableId, str], int] = {}  # changes taken since the last commit, by table and op

        def position_text() -> str | None:
            if not txn_text:
                txn_text.append(_txn_position_text(source, txn_position))
            return txn_text[0]

        def source_key(change: Change, mapping: TableMapping) -> tuple[object, ...]:
            cols = key_columns.get(change.table)
            if cols is None:
                cols = key_columns[change.table] = [
                    s for s, t in mapping._names.items() if t in mapping.target_key
                ] or list(mapping.target_key)
            row = change.key or change.after or change.before or {}
            return tuple(row.get(c) for c in cols)

        def count(item: Item | RawRows, mapping: TableMapping) -> None:
            """Count a change against the flow's limits, in its transaction, as it is read
            (also when it is held back while its table is copied)."""
            assert guard is not None
            if isinstance(item, RawRows):
                keys: list[object] = list(item.keys)
            elif item.op != TRUNCATE:  # type: ignore[union-attr]
                keys = [source_key(item, mapping) if guard.counts_keys else None]  # type: ignore[arg-type]
            else:
                return
            for key in keys:
                alert = guard.change(item.table, key)  # type: ignore[union-attr]
                if alert:
                    self.log.warning("change limit exceeded (action: alert)", reason=alert, position=position_text())

        def take_change(change: Change, mapping: TableMapping, counted: bool) -> int:
            """A change through the table's transform, guards and audit; the number of source
            changes it accounts for (0: filtered out)."""
            if guard is not None and not counted:
                count(change, mapping)
            tr = transforms.get(change.table)
            out_mapping = mapping
            out: list[Change] = [change]
            if tr is not None:
                try:
                    out = tr.convert(change)
                except Rejected as exc:
                    letters.append(self._dead_letter(tr, mapping, change, exc, position_text(), txn_commit_time))
                    return 1
                out_mapping = tr.output
            if two_way:
                base = self._base(change, mapping, tr, source_columns)
                for c in out:
                    if not batch.add(c, out_mapping, base, txn_commit_time):  # type: ignore[call-arg, func-returns-value]
                        apply_batch()  # the key's row changed in between: decide the batch first
                        batch.add(c, out_mapping, base, txn_commit_time)  # type: ignore[call-arg]
            else:
                for c in out:
                    batch.add(c, out_mapping)
            if auditing:
                for c in out:
                    audits.append(self._audit_entry(c, change, tr, mapping, out_mapping, position_text(), txn_commit_time))
                if len(audits) >= max_rows:
                    writer.run(self._record, sink, [], audits[:])
                    del audits[:]
            if batch.size >= max_rows:
                apply_batch()  # bounded memory in big transactions
            return 1 if out else 0

        def apply_batch() -> None:
            ops = batch.drain()
            if ops:
                if two_way:
                    writer.run(self._resolve_apply, sink, ops, batch_origin, position_text(), txn_commit_time)
                else:
                    writer.run(sink.apply, ops)

        # changes need more than netting
        checked = bool(transforms) or guard is not None or auditing or two_way

        def take(item: Item | RawRows, mapping: TableMapping, counted: bool = False) -> int:
            """Put a change (or a passthrough group) into the open target transaction's
            buffers, keeping the order between the two kinds; the number of row changes."""
            nonlocal batch_used
            if isinstance(item, RawRows):
                if batch_used:  # keep the order: earlier normal changes go first
                    apply_batch()
                    batch_used = False
                if checked:
                    if guard is not None and not counted:
                        count(item, mapping)
                    bound = raw_plans.get(item.table)
                    if bound is not None:
                        groups, rejected = self._raw_apply(bound, item)
                        for bad_key, row, exc in rejected:
                            letters.append(self._raw_dead_letter(bound, item, bad_key, row, exc, position_text(),
                                                                 txn_commit_time))
                        for group in groups:
                            raw.add(group, bound.transform.output)  # type: ignore[union-attr]
                        if raw.size >= max_rows:
                            writer.run(sink.apply_raw, raw.drain())  # type: ignore[attr-defined]
                        return len(item.keys)
                raw.add(item, mapping)
                if raw.size >= max_rows:
                    writer.run(sink.apply_raw, raw.drain())  # type: ignore[attr-defined]
                return len(item.keys)
            if raw.size:  # keep the order: earlier passthrough rows go first
                writer.run(sink.apply_raw, raw.drain())  # type: ignore[attr-defined]
            batch_used = True
            if checked:
                return take_change(item, mapping, counted)  # type: ignore[arg-type]
            batch.add(item, mapping)  # type: ignore[arg-type]
            if batch.size >= max_rows:
                apply_batch()  # bounded memory in big transactions
            return 1

        def finish_copies() -> int:
            """Tables whose copy just ended: apply what was held back for them that their
            snapshot does not hold, and mark them done, in the open target transaction."""
            nonlocal spooled
            replayed = 0
            for table in gate.take_released():
                snap = gate.positions.get(table)
                mapping = mappings[table]
                for txn, item in spools.pop(table, []):
                    n = len(item.keys) if isinstance(item, RawRows) else 1
                    spooled -= n
                    if not (snap is not None and txn is not None and gate.covered(txn, snap)):
                        got = take(item, mapping, counted=True)  # counted against limits when it was read
                        if got:
                            k = (item.table, item.op)  # type: ignore[union-attr]
                            op_counts[k] = op_counts.get(k, 0) + got  # for status and /metrics
                        replayed += got
                assert snap is not None
                # the position's text now: the gate forgets positions the stream has passed
                writer.run(self._mark_done, sink, str(table), source.format_position(snap))
            return replayed

        def admit(table: TableId, mapping: TableMapping | None) -> tuple[TableMapping | None, bool]:
            """Whether this transaction's changes to ``table`` are applied (its mapping), held
            back (the table is being copied: True), or dropped (its snapshot holds them: None)."""
            if mapping is None:
                return None, False
            if gate.is_held(table):
                if spooled < SPOOL_MAX:
                    return mapping, True
                self.log.info("too many changes held back: waiting for the copy of a table", table=str(table))
                if not gate.wait(table, self.stop):
                    raise _Stopped
            if gate.released:
                nonlocal pending_changes
                pending_changes += finish_copies()
            snap = gate.positions.get(table)
            if snap is not None and txn_position is not None and gate.covered(txn_position, snap):
                return None, False
            return mapping, False

        def commit() -> None:
            nonlocal pending_changes, pending_txns, changes_total, txns_total, committed_pos
            nonlocal last_checkpoint_write, echo_only, acked
            t0 = time.perf_counter()
            apply_batch()
            if raw.size:
                writer.run(sink.apply_raw, raw.drain())  # type: ignore[attr-defined]
            if letters or audits:
                writer.run(self._record, sink, letters[:], audits[:])
                del letters[:], audits[:]
            changes_total += pending_changes
            txns_total += pending_txns
            assert position is not None
            done = Checkpoint(flow.name, source.format_position(position), commit_time, changes_total, txns_total)
            writer.run(self._commit, sink, source, done, position, pending_changes, pending_txns, t0, dict(op_counts))
            op_counts.clear()
            committed_pos = acked = position  # handed to the writer, which commits before anything later
            last_checkpoint_write = time.monotonic()
            pending_changes = pending_txns = 0
            echo_only = True

        def settle() -> None:
            """Record the position reached. A flow with a flow back to its source does not
            write a checkpoint for a stretch of echoes only (the flow back would see that write,
            and so on, for ever): the source is told directly that it is done with them."""
            nonlocal acked
            if pending_txns or not (self._loop and echo_only):
                commit()
            elif position is not None and position != acked:
                writer.run(source.acknowledge, position)
                acked = position

        writer = Writer()
        items = source.stream(start, self._stop_at)
        if self._records_times:
            # the other half's writer needs the commit times of this system's rows
            items = commit_times(flow.source).record(items, {b.mapping.source: b.source.primary_key for b in self._bound})
        reader = Prefetcher(
            items,
            source.interrupt,
            max_rows=max(2 * max_rows, 10_000),  # read ahead while the target applies a batch
        )
        try:
            while True:
                writer.check()
                if gate.error is not None:
                    raise gate.error
                if gate.released:
                    pending_changes += finish_copies()
                    if not in_txn and position is not None:
                        commit()  # the tables are done now, with what was held back
                if not in_txn and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + REQUEST_POLL_SECONDS
                    if mon.state in ("running", "snapshotting"):
                        mon.set_state("snapshotting" if gate.busy else "running")
                    with _lost_target():
                        paused = self._pause_requested(lock)
                        requested = self._requested(lock, gate)
                    if paused:
                        if position != committed_pos:
                            settle()
                        writer.finish()  # everything before the pause is committed
                        with _lost_target():
                            self._hold(lock)
                        requested = []  # asked again at the next poll
                    if requested:
                        if position != committed_pos:
                            commit()
                        writer.finish()  # nothing of these tables is left uncommitted
                        self._start_snapshot(requested, gate, source)
                        gated = True
                if self.stop.is_set():
                    if not in_txn and position != committed_pos:
                        settle()
                    return writer.finish()
                if pending_txns:
                    # (at most 1 s: a stop is noticed while a long max_delay runs, e.g. a scheduled run's)
                    wait = min(1.0, max(0.0, oldest_pending + max_delay - time.monotonic()))
                else:
                    wait = 0.5
                try:
                    chunk = reader.get(timeout=wait)
                except StopIteration:
                    if gate.busy and not gate.wait_all(self.stop):
                        return writer.finish()
                    if gate.released:
                        pending_changes += finish_copies()
                        commit()
                    elif position != committed_pos:
                        settle()
                    return writer.finish()
                if chunk is None:
                    if pending_txns and time.monotonic() - oldest_pending >= max_delay:
                        commit()
                    elif not in_txn and not pending_txns:
                        mon.caught_up()  # the source has nothing more for now
                    continue
                self._streaming = True
                for item in chunk:
                    kind = type(item)
                    if kind is Change or kind is RawRows:  # type: ignore[comparison-overlap]
                        table = item.table  # type: ignore[union-attr]
                        if table is not last_table:
                            last_table, last_mapping = table, mappings.get(table)
                            hold_back = False
                            if gated:
                                last_mapping, hold_back = admit(table, last_mapping)
                        if last_mapping is None:
                            if marker is not None and table == marker and item.after is not None:  # type: ignore[union-attr]
                                txn_tag = decode(item.after.get("tag"))  # type: ignore[union-attr]
                            continue
                        if txn_origin is None:  # the transaction's first synced change
                            txn_origin = txn_tag.origin if txn_tag is not None else flow.source
                            skipping = txn_tag is not None and txn_tag.returns_to(flow.target)
                            if tagging and not skipping and txn_origin != batch_origin:
                                # one origin per target transaction: close the one open
                                if pending_txns:
                                    commit()
                                writer.run(sink.set_origin, txn_origin)  # type: ignore[attr-defined]
                                batch_origin = txn_origin
                        if skipping:
                            continue
                        if hold_back:
                            if guard is not None:
                                count(item, last_mapping)
                            spools.setdefault(table, []).append((txn_position, item))
                            spooled += len(item.keys) if isinstance(item, RawRows) else 1
                            continue
                        got = take(item, last_mapping)
                        if got:
                            k = (table, item.op)  # type: ignore[union-attr]
                            op_counts[k] = op_counts.get(k, 0) + got  # for status and /metrics
                            txn_changes += got
                    elif kind is Begin:
                        in_txn = True
                        txn_changes = 0
                        if mon.behind_since is None:
                            mon.fell_behind(item.commit_time)  # type: ignore[union-attr]
                        txn_tag = decode(item.origin)  # type: ignore[union-attr]
                        txn_origin = None
                        skipping = False
                        last_table = None  # snapshots are joined per transaction
                        txn_position = item.position  # type: ignore[union-attr]
                        gated = bool(gate.positions or gate.busy)
                        if checked:
                            txn_commit_time = item.commit_time  # type: ignore[union-attr]
                            del txn_text[:]
                            if guard is not None:
                                guard.begin(position_text(), txn_commit_time)
                                if guard.holds(position_text()):
                                    # the paused transaction: everything before it is applied
                                    if position != committed_pos:
                                        commit()
                                    writer.finish()
                                    raise GuardTripped(guard.hold_reason, position_text())
                    elif kind is Commit:
                        in_txn = False
                        if txn_tag is None or not txn_tag.returns_to(flow.target):
                            echo_only = False
                        position = item.position  # type: ignore[union-attr]
                        commit_time = item.commit_time  # type: ignore[union-attr]
                        if txn_changes:
                            if not pending_txns:
                                oldest_pending = time.monotonic()
                            pending_changes += txn_changes
                            pending_txns += 1
                        if pending_changes >= max_rows or (
                            pending_txns and time.monotonic() - oldest_pending >= max_delay
                        ):
                            commit()
                        if gated and gate.positions:
                            gate.passed(position)
                    elif kind is SchemaChange:
                        mapping = mappings.get(item.table)  # type: ignore[union-attr]
                        if mapping is not None:
                            if gate.is_held(mapping.source) and not gate.wait(mapping.source, self.stop):
                                raise _Stopped
                            if gate.released:
                                pending_changes += finish_copies()
                            if pending_txns:
                                commit()  # a MySQL target commits implicitly on DDL
                            writer.finish()  # the sink is the writer's until it is idle
                            self._follow(sink, mapping, item)  # type: ignore[arg-type]
                    elif kind is Heartbeat and not in_txn:
                        hb = item.position  # type: ignore[union-attr]
                        if position is None or hb > position:
                            position = hb
                            if not heartbeat_echo:
                                echo_only = False
                        if not pending_txns:
                            mon.caught_up()
                        if not pending_txns and position != committed_pos and (
                            self.once or time.monotonic() - last_checkpoint_write >= IDLE_CHECKPOINT_SECONDS
                        ):
                            settle()
        except _Stopped:  # stopped while waiting for a snapshot: the open transaction is dropped
            return writer.finish()
        finally:
            reader.close()
            writer.close()

    # -- mapping, dead letters, audit, guards ------------------------------------------------
    def _dead_letter(self, tr: RowTransform, mapping: TableMapping, change: Change, exc: Rejected,
                     position: str | None, commit_time: datetime | None) -> DeadLetter:
        row = change.after if change.after is not None else change.before
        key_cols = [s for s, t in mapping._names.items() if t in mapping.target_key]
        src_row = change.key or row or {}
        key = {c: src_row[c] for c in key_cols if c in src_row}
        self.log.warning("change not written: sent to the dead letters", table=str(mapping.source),
                         rule=exc.rule, reason=exc.reason, position=position)
        return DeadLetter(self.flow.name, str(mapping.source), str(mapping.target), tr.sanitize(key), change.op,
                          exc.rule, exc.reason, position, commit_time, tr.sanitize(row))

    def _raw_apply(self, b: BoundTable, item: RawRows) -> tuple[list[RawRows], list[tuple[object, dict[str, object], Rejected]]]:
        from .pg.rawtransform import Replan, plan

        assert b.raw is not None and b.transform is not None
        try:
            return b.raw.apply(item)
        except Replan:  # the source table's columns changed: plan again for the new list
            fresh = plan(b.config, b.transform, b.source, b.target, item.names)
            if fresh is None:
                raise SchemaError(
                    f"flow {self.flow.name}: the columns of {item.table} changed and its mapping can no"
                    " longer run on passthrough text: restart the flow"
                ) from None
            b.raw = fresh
            return fresh.apply(item)

    def _raw_dead_letter(self, b: BoundTable, item: RawRows, key: object, row: dict[str, object], exc: Rejected,
                         position: str | None, commit_time: datetime | None) -> DeadLetter:
        assert b.passthrough is not None and b.raw is not None
        key_row = b.raw.key_row(key, b.passthrough)
        self.log.warning("change not written: sent to the dead letters", table=str(b.mapping.source),
                         rule=exc.rule, reason=exc.reason, position=position)
        return DeadLetter(self.flow.name, str(b.mapping.source), str(b.mapping.target), key_row, item.op,
                          exc.rule, exc.reason, position, commit_time, row)

    @staticmethod
    def _audit_entry(c: Change, orig: Change, tr: RowTransform | None, mapping: TableMapping,
                     out_mapping: TableMapping, position: str | None, commit_time: datetime | None) -> AuditEntry:
        def written(row: dict[str, object] | None) -> dict[str, object] | None:
            if row is None:
                return None
            if tr is None:
                return mapping.map_row(row)
            try:
                return tr.row(row)
            except Rejected:
                return tr.key(row)

        if c.op == TRUNCATE:
            return AuditEntry("", str(mapping.source), str(out_mapping.target), None, c.op, None, None,
                              position, commit_time)
        # the written row (or, for a delete, its key) under the target's names
        if tr is not None:
            row = c.after if c.after is not None else c.before
        else:
            row = written(c.after if c.after is not None else (orig.before or orig.key))
        key: dict[str, object] = {k: (row or {}).get(k) for k in out_mapping.target_key}
        before: dict[str, object] | None = None
        after = row if c.after is not None else None
        if c.op == DELETE:
            full = orig.op == DELETE and orig.before is not None and (tr is None or tr.full(orig.before))
            before = written(orig.before) if full else key
        elif c.op == UPDATE and orig.before is not None:
            before, after = changed(written(orig.before), after)
        return AuditEntry("", str(mapping.source), str(out_mapping.target), key, c.op, before, after,
                          position, commit_time)

    @staticmethod
    def _base(change: Change, mapping: TableMapping, tr: RowTransform | None,
              source_columns: dict[TableId, int]) -> dict[str, object] | None:
        """Two-way: the row an update or delete was based on, as the target would hold it;
        None when the source did not send the whole old row (or it cannot be mapped)."""
        before = change.before
        if change.op not in (UPDATE, DELETE) or before is None or len(before) < source_columns.get(change.table, 0):
            return None
        if tr is None:
            return mapping.map_row(before)
        try:
            return tr.row(before)
        except Rejected:
            return None

    def _resolve_apply(self, sink: Sink, tables: list[TableChanges], origin: str | None, position: str | None,
                       commit_time: datetime | None) -> None:
        """Run by the writer, in the open target transaction: decide each key against the
        target's current row (locked), log the conflicts, write the outcome."""
        res = resolve(sink.conn, tables, self._policies, origin or self.flow.source, self.flow.target,
                      self.flow.name, position, self._lww)
        if res.conflicts:
            for e in res.conflicts:
                e.commit_time = commit_time
            ConflictLog(sink.conn, self.config.state_schema).add(res.conflicts)
            self.stats.conflicts += len(res.conflicts)
            self._unsent.extend(("conflict", e) for e in res.conflicts)
            self.log.warning("conflicts resolved", count=len(res.conflicts), rule=self.flow.conflicts,
                             tables=sorted({e.table for e in res.conflicts}), position=position)
        if res.ops:
            sink.apply(res.ops)

    def _record(self, sink: Sink, letters: list[DeadLetter], audits: list[AuditEntry]) -> None:
        """Run by the writer, in the open target transaction."""
        schema = self.config.state_schema
        if letters:
            DeadLetters(sink.conn, schema).add(letters)
            self._unsent.extend(("dead_letter", d) for d in letters)
        if audits:
            for e in audits:
                e.flow = self.flow.name
            AuditTrail(sink.conn, schema).add(audits)
            if self._audit_file is not None:
                self._audit_file.append(audits, datetime.now(timezone.utc))

    def _prune_audit(self, sink: Sink) -> None:
        if self.flow.audit is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + AUDIT_PRUNE_SECONDS
        pruned = AuditTrail(sink.conn, self.config.state_schema).prune(self.flow.audit.retention_days, self.flow.name)
        if pruned:
            self.log.info("audit trail pruned", entries=pruned, retention_days=self.flow.audit.retention_days)

    def _release_window(self, source: Source, sink: Sink, start: Position) -> None:
        """A source holding back its acknowledgements (``rewind.window``) may let go of what
        was applied longer ago than the window, in earlier processes too, never past the
        checkpoint (which a rewind may have moved back)."""
        release = getattr(source, "release", None)
        if release is None or self.flow.rewind.window <= 0:
            return
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.flow.rewind.window)
        row = History(sink.conn, self.config.state_schema).newest_before(self.flow.name, cutoff)
        sink.conn.commit()
        if row is not None:
            release(min(source.parse_position(row.position), start))

    def _prune_history(self, sink: Sink) -> None:
        """Checkpoint history older than ``rewind.history_days``: at start, then hourly."""
        if time.monotonic() < self._next_history_prune:
            return
        self._next_history_prune = time.monotonic() + AUDIT_PRUNE_SECONDS
        History(sink.conn, self.config.state_schema).prune(self.flow.rewind.history_days, self.flow.name)

    def _last_writer(self, sink: Sink) -> LastWriter:
        """Where last_writer_wins finds the commit time of the target's rows (replicator.lww)."""
        if self.config.systems[self.flow.target].engine == "postgresql":
            on = sink.conn.execute("SHOW track_commit_timestamp").fetchone()[0]
            sink.conn.commit()
            if on != "on":
                raise SchemaError(
                    f"flow {self.flow.name}: conflicts: last_writer_wins needs the commit time of"
                    f" {self.flow.target}'s rows: set track_commit_timestamp = on there and restart the server"
                )
            return LastWriter(pg=True)
        times = commit_times(self.flow.target)
        by_target = {b.mapping.target: b for b in self._bound}

        mariadb = "mariadb" in str(sink.conn.get_server_info()).lower()

        def wait() -> None:  # the target's binlog position now: its reader must get there
            with sink.conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.gtid_binlog_pos" if mariadb else "SHOW MASTER STATUS")
                row = cur.fetchone()
            times.wait_past(MariaGtid.parse(str(row[0] or "")) if mariadb else FilePos(str(row[0]), int(row[1])))

        def other_row(t: TableChanges, key: tuple[object, ...]) -> dict[str, object] | None:
            return self._source_row(by_target[t.mapping.target], dict(zip(t.mapping.target_key, key)))

        return LastWriter(pg=False, times=times, wait=wait, other_row=other_row)

    def _source_row(self, b: BoundTable, target_key: dict[str, object]) -> dict[str, object] | None:
        """The source's row now, by the target's key, under target names (None: gone)."""
        names = b.mapping._names
        key = {s: target_key[t] for s, t in names.items() if t in target_key}
        system = self.config.systems[self.flow.source]
        cols = b.source.column_names
        if system.engine == "postgresql":
            from .pg.snapshot import fetch_rows

            rows = fetch_rows(system.url, b.source, cols, key, 1)
        else:
            from .mysql.snapshot import fetch_rows as my_fetch_rows

            rows = my_fetch_rows(system.url, b.source, cols, key, 1, self.flow.zero_dates)
        if not rows:
            return None
        row = dict(zip(cols, rows[0]))
        return b.transform.row(row) if b.transform is not None else b.mapping.map_row(row)

    def _policy(self, b: BoundTable) -> ConflictPolicy:
        """How conflicts on this table are decided: the flow's rule, the systems' priorities,
        and the columns' owners under target names (the rules were declared for the flow's
        declared direction: in its reverse half the target column is the rule's own key)."""
        owners: dict[str, str] = {}
        for col, rule in b.config.columns.items():
            if rule.owner is not None:
                owners[col if b.config.reversed else (rule.name or col)] = rule.owner
        return ConflictPolicy(
            rule=self.flow.conflicts,
            priorities={name: s.priority for name, s in self.config.systems.items()},
            owners=owners,
            clock_skew_s=self.flow.clock_skew_ms / 1000,
        )

    def _wait_if_paused(self, sink: Sink) -> Guard | None:
        """The flow's guard; waits while a change limit keeps the flow paused."""
        pauses = Pauses(sink.conn, self.config.state_schema)
        pause = pauses.get(self.flow.name)
        sink.conn.commit()
        paused = pause is not None and pause.status == "paused"
        if self.flow.limits is None and not paused:
            return None
        assert pause is not None or self.flow.limits is not None
        guard = Guard(self.flow.limits or LimitsConfig())
        if pause is not None and pause.status == "resumed":
            guard.allowed = pause.position
        elif pause is not None:
            # stream up to the transaction that tripped the limit, then wait there
            guard.hold, guard.hold_reason = pause.position, pause.reason
        return guard

    def _await_resume(self, sink: Sink, reason: str) -> None:
        name = self.flow.name
        if self.once:
            if self._guard is not None and self._guard.hold == ANY_TRANSACTION:  # `pause`, rollback
                raise FlowPaused(f"flow {name} is paused ({reason}): `replicator resume {name}` continues")
            raise FlowPaused(f"flow {name} is paused by a change limit ({reason}): check the change,"
                                  f" then `replicator resume {name}` lets it through")
        self.log.warning("flow is paused by a change limit: nothing of the transaction was written;"
                         f" `replicator resume {name}` lets it through", reason=reason)
        self._wait_resumed(sink.conn, reason)

    def _wait_resumed(self, conn: Any, reason: str) -> None:
        """Wait until the flow's pause is lifted (``replicator resume``); _Stopped on stop."""
        pauses = Pauses(conn, self.config.state_schema)
        self.mon.set_state("paused", reason)
        while not self.stop.wait(PAUSE_POLL_SECONDS):
            pause = pauses.get(self.flow.name)
            conn.commit()
            if pause is None or pause.status != "paused":
                self.log.info("flow resumed")
                self.mon.set_state("running")
                return
        raise _Stopped

    def _pause_requested(self, lock: FlowLock) -> bool:
        """Whether ``replicator pause`` (or a rollback) asked this running flow to stop where it
        is. (A flow starting paused so holds its first transaction: see :meth:`Guard.holds`.)"""
        pause = Pauses(lock.conn, self.config.state_schema).get(self.flow.name)
        return pause is not None and pause.status == "paused" and pause.position == ANY_TRANSACTION

    def _hold(self, lock: FlowLock) -> None:
        """Paused by an operator: everything read so far is committed; wait for ``resume``."""
        if self.once:
            raise FlowPaused(f"flow {self.flow.name} is paused: `replicator resume {self.flow.name}` continues")
        self.log.warning(f"flow paused by an operator: `replicator resume {self.flow.name}` continues")
        self.mon.event("paused", "paused by an operator")
        self._notify("paused", reason="paused by an operator", position=self.mon.position, by="operator")
        self._wait_resumed(lock.conn, "paused by an operator")

    def _notify(self, event: str, **data: Any) -> None:
        if self.notifier is not None:
            self.notifier.send(event, self.flow.name, **data)

    def _announce(self) -> None:
        """After a commit: count and send what the committed transaction recorded."""
        unsent, self._unsent = self._unsent, []
        for event, record in unsent:
            if event == "conflict":
                self.mon.conflicts += 1
                self.mon.event("conflict", f"{record.table} {record.key}: {record.winner or 'parked'} ({record.rule})")
            elif event == "dead_letter":
                self.mon.dead_letters += 1
                self.mon.event("dead_letter", f"{record.source_table} {record.key}: {record.reason}")
            if self.notifier is not None:  # the whole record only for a webhook
                self._notify(event, **(record if isinstance(record, dict) else dataclasses.asdict(record)))

    def _paused(self, sink: Sink, exc: GuardTripped) -> None:
        """A guard tripped: drop the open target transaction and record the pause; the next
        session applies what came before the transaction and waits there. Or the pipeline
        reached the paused transaction: wait for ``resume``."""
        sink.rollback()
        if self._guard is not None and self._guard.holds(exc.position):
            self._await_resume(sink, exc.reason)
            return
        Pauses(sink.conn, self.config.state_schema).pause(self.flow.name, exc.reason, exc.position)
        sink.conn.commit()
        self.mon.event("paused", exc.reason, position=exc.position)
        self._notify("paused", reason=exc.reason, position=exc.position, by="change limit")
        self.log.warning("a change limit was exceeded: pausing the flow before that transaction",
                         reason=exc.reason, position=exc.position)

    def _mark_done(self, sink: Sink, table: str, position: str) -> None:
        """In the open target transaction: the table's copy is done, as of its snapshot."""
        SnapshotState(sink.conn, self.config.state_schema).finish(self.flow.name, table, position)
        self._unsent.append(("snapshot_finished", {"table": table, "position": position}))
        self.log.info("table copied; streaming continues after its snapshot", table=table, position=position)

    def _commit(
        self, sink: Sink, source: Source, checkpoint: Checkpoint, position: Position,
        changes: int, transactions: int, t0: float, counts: dict[tuple[TableId, str], int],
    ) -> None:
        """Run by the writer: commit the target transaction with its checkpoint, then (only
        then) acknowledge the source; then tell the monitors and the webhooks."""
        sink.commit(checkpoint)
        self.stats.batches += 1
        if self._crash_after and self.stats.batches >= self._crash_after:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: crash between commit and ack
        source.acknowledge(position)
        self.mon.applied(counts, transactions, checkpoint.position, checkpoint.source_commit_time,
                         checkpoint.changes_applied, time.perf_counter() - t0)
        self._announce()
        self._prune_history(sink)
        if changes:
            self.stats.changes += changes
            self.stats.transactions += transactions
            self.log.info(
                "applied batch",
                changes=changes,
                transactions=transactions,
                position=checkpoint.position,
                ms=round((time.perf_counter() - t0) * 1000, 1),
            )

    def _follow(self, sink: Sink, mapping: TableMapping, change: SchemaChange) -> None:
        """Make the target follow a source DDL where it can; stop clearly where it cannot."""
        where = f"flow {self.flow.name}: source table {change.table}"
        if change.unsupported:
            raise SchemaError(
                f"{where}: {change.unsupported} ({change.statement[:120]!r}); the target cannot"
                " follow: change the target and the mapping by hand, then restart"
            )
        engine = self.config.systems[self.flow.source].engine
        target = sink.describe(mapping.target)
        if target is None:
            raise SchemaError(f"{where}: target table {mapping.target} disappeared")
        for old, new in change.renamed:
            # Renames are not guessed at: the user renames the target column (or maps the new
            # name in 'columns'); once the target has it, replaying this statement passes.
            name = mapping.renames.get(new, new)
            if target.column(name) is None:
                old_name = mapping.renames.get(old, old)
                raise SchemaError(
                    f"{where}: column {old} was renamed to {new} ({change.statement[:120]!r}):"
                    f" rename the target column too (ALTER TABLE {mapping.target} RENAME COLUMN"
                    f" {old_name} TO {name}) or map '{new}' in the flow's columns, then restart"
                )
        for col in change.added:
            name = mapping.renames.get(col.name, col.name)
            if target.column(name) is None:
                sink.add_column(mapping.target, name, col, engine)
                self.log.info("target follows source DDL", table=str(mapping.target), added=name)
        for col in change.modified:
            name = mapping.renames.get(col.name, col.name)
            sink.modify_column(mapping.target, name, col, engine)
            self.log.info("target follows source DDL", table=str(mapping.target), modified=name)
        for dropped in change.dropped:
            self.log.info(
                "source column dropped; the target keeps its column (new rows leave it NULL or default)",
                table=str(mapping.target),
                column=mapping.renames.get(dropped, dropped),
            )
        refreshed = sink.describe(mapping.target)
        assert refreshed is not None
        mapping.refresh_target(refreshed)


@contextmanager
def _state_ddl(sink: Sink) -> Iterator[None]:
    """Flows sharing a PostgreSQL target create its state tables one at a time: two
    concurrent ``CREATE TABLE IF NOT EXISTS`` of one table can both try to create it (the
    loser fails on a catalog unique index). MySQL's metadata locks serialize them already."""
    import psycopg

    if not isinstance(sink.conn, psycopg.Connection):
        yield
        return
    sink.conn.execute("SELECT pg_advisory_lock(%s)", (_STATE_DDL_LOCK,))
    try:
        yield
    except BaseException:
        try:  # the session's lock ends with the session anyway
            sink.conn.rollback()
            sink.conn.execute("SELECT pg_advisory_unlock(%s)", (_STATE_DDL_LOCK,))
            sink.conn.commit()
        except psycopg.Error:
            pass
        raise
    sink.conn.execute("SELECT pg_advisory_unlock(%s)", (_STATE_DDL_LOCK,))
    sink.conn.commit()


_STATE_DDL_LOCK = 0x7265706C  # "repl": the key of the state-DDL advisory lock


@contextmanager
def _lost_target() -> Iterator[None]:
    """Errors of the lock's own connection to the target (polls for requests and pauses)
    are a lost connection like any other: retried from the checkpoint."""
    import psycopg
    import pymysql

    try:
        yield
    except (psycopg.OperationalError, pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
        raise TransientError(f"lost the target connection: {exc}") from None


class _Stopped(Exception):
    """Stop requested while the pipeline waited for a snapshot in mid-transaction."""


def _txn_position_text(source: Source, position: Position) -> str | None:
    """A transaction's position (Begin.position) as text: an LSN, or a MariaDB GTID."""
    if position is None:
        return None
    if isinstance(position, tuple):
        return "-".join(str(p) for p in position)
    return source.format_position(position)


def run_flows(config: Config, flows: list[FlowConfig], *, once: bool, stop: threading.Event,
              http: HttpConfig | None = None) -> list[tuple[str, BaseException]]:
    """Run flows in threads until they finish or ``stop`` is set; returns the failures. With
    ``http``, serve /metrics, /readyz, /status.json and the dashboard meanwhile."""
    from .endpoint import Endpoint
    from .notify import Notifier
    from .probe import Sampler
    from .telemetry import sample_lag_history

    failures: list[tuple[str, BaseException]] = []
    lock = threading.Lock()
    # Each flow's reader thread decodes without pause while its writer thread waits on the
    # target: hand the GIL over every 1 ms instead of 5 ms, so a finished target round trip
    # is followed up sooner (measured ~10% faster on a target-bound stream, neutral otherwise).
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    # A batch allocates ~150k short-lived objects (changes, rows, keys): with the default
    # thresholds the collector rescans them constantly (-13% CPU on a MariaDB catch-up).
    gc.set_threshold(100_000, 50, 1000)

    hooks = config.notifications.webhooks
    notifier = Notifier(hooks) if hooks else None
    MONITORS.webhooks = notifier
    for f in flows:
        MONITORS.flow(f.name, f.source, f.target).set_state("starting")
    watching = threading.Event()
    helpers: list[Callable[[], None]] = []
    if http is not None:
        endpoint = Endpoint(http, MONITORS)  # first: a port in use fails before anything runs
        endpoint.start()
        helpers.append(endpoint.stop)
        history = threading.Thread(target=sample_lag_history, args=(MONITORS, watching), name="lag-history", daemon=True)
        history.start()
        log.info("http endpoint listening", url=f"http://{http.listen}/", metrics=f"http://{http.listen}/metrics")
    if http is not None or notifier is not None:
        sampler = Sampler(config, flows, MONITORS, notifier)
        sampler.start()
        helpers.append(sampler.stop)

    def target(flow: FlowConfig) -> None:
        mon = MONITORS.flow(flow.name)
        try:
            if flow.schedule is not None:  # batch mode: runs at set times (replicator.schedule)
                from .schedule import run_flow

                run_flow(config, flow, once=once, stop=stop, notifier=notifier)
            else:
                FlowRunner(config, flow, once=once, stop=stop, notifier=notifier).run()
            mon.set_state("stopped")
        except BaseException as exc:
            with lock:
                failures.append((flow.name, exc))
            mon.set_state("failed", str(exc))
            mon.event("error", str(exc))
            if notifier is not None:
                notifier.send("failed", flow.name, error=str(exc))
            if not isinstance(exc, ReplicatorError):
                log.exception("flow crashed", flow=flow.name)
            elif not isinstance(exc, ConfigError):  # the command line says what is wrong with the config
                log.error("flow stopped", flow=flow.name, error=str(exc))

    threads = [threading.Thread(target=target, args=(f,), name=f"flow-{f.name}") for f in flows]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    finally:
        watching.set()
        for stop_helper in helpers:
            stop_helper()
        if notifier is not None:
            notifier.close(wait=5.0)  # a moment for the last notifications
    return failures
