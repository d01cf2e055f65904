"""The polling source: for tables whose log cannot be read, changes found by a column.

Some databases give no access to their log (no replication privilege, a managed MariaDB
without binlog access). A ``mode: poll`` flow reads such tables every ``interval_s`` seconds
instead: the rows whose ``updated_at`` (or any ever-increasing column: a version counter, an
auto-increment id for insert-only tables) is at or past the table's watermark, ordered by
(column, primary key), in pages. Each page is handed to the pipeline as one source
transaction whose :class:`~replicator.records.Commit` carries the new watermarks
(:mod:`replicator.poll.position`), so the watermarks are checkpointed on the target with the
rows, exactly like a log position, and a restart resumes from the last committed page. Rows
are read with the same value loaders the log decoders use, so a polled row is written exactly
as a streamed one; each is an update without old row (an upsert; one that no longer matches
the table's ``filter`` is deleted on the target).

Deletes leave nothing to poll. Every ``deletes_every_s`` seconds (and in every ``run --once``)
the target's keys are read in key order, a page at a time, and the source is asked which of
each page's keys it still holds (``WHERE (key) IN (…)``): the others are deleted. The target
is the durable memory of what the source held, so this also works after a restart; memory
stays bounded by a page whatever the table's size. Before comparing, the source waits (a
while) until the target committed what it already handed out. Only keys the target holds are
ever deleted, so a row the ``filter`` keeps off the target cannot cause a delete; the target
key must be source columns copied unchanged (renames only) — :meth:`PollSource.bind` refuses
other mappings.

What a poll cannot see: intermediate versions between two polls (only the row as it is when
read), updates that do not change the column, rows whose column is NULL, and a row written
with a column value more than ``overlap_s`` older than rows already read (for PostgreSQL's
``now()`` that is a transaction running longer than ``overlap_s``). Numeric columns re-read
their watermark's value but have no overlap: they must grow in commit order.

``replicator sync-now`` leaves a request (:mod:`replicator.syncnow`) that the waiting loop
takes within a second to start a round at once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ReplicatorError, SchemaError, TransientError
from ..mapping import TableInfo
from ..records import DELETE, UPDATE, Begin, Change, Commit, Heartbeat, Item, Position, TableId
from .dialect import PollDialect, dialect_for
from .position import (
    LowerBound, Mark, PollPosition, advance, encode_value, finish, lower_bound, missing_keys, observe,
)

if TYPE_CHECKING:
    from ..binding import BoundTable

ACK_WAIT_SECONDS = 30.0  # how long a key comparison waits for the target to commit what was read
REQUEST_CHECK_SECONDS = 1.0
RECENT_MAX = 100_000  # rows per table remembered to skip unchanged re-reads in the overlap


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 5.0
    deletes_every_s: float = 60.0
    overlap_s: float = 10.0
    page_rows: int = 10_000
    key_page_rows: int = 5_000


@dataclass
class PolledTable:
    """One table as the poll loop reads it."""

    source: TableId
    target: TableId
    column: str
    info: TableInfo | None = None
    order_key: tuple[str, ...] = ()  # the source's primary key: pages are ordered by (column, key)
    target_key: tuple[str, ...] = ()  # the target's primary key...
    key_sources: tuple[str, ...] = ()  # ...and the source columns it is copied from, in order


class PollSource:
    """A :class:`~replicator.protocols.Source` reading tables by polling (see module docstring)."""

    def __init__(
        self, url: str, engine: str, tables: list[PolledTable], *, flow: str, target_url: str,
        target_engine: str, state_schema: str, settings: PollSettings, snapshot: str = "initial",
        zero_dates: str = "error",
    ) -> None:
        self.url = url
        self.d: PollDialect = dialect_for(engine, zero_dates)
        self.td: PollDialect = dialect_for(target_engine)
        self.tables = tables
        self.flow = flow
        self.target_url = target_url
        self.state_schema = state_schema
        self.settings = settings
        self.snapshot = snapshot
        self._conn: Any = None
        self._target: Any = None
        self._catalog: Any = None
        self._last_take = 0.0  # when the sync-now requests were last looked at
        self._interrupted = threading.Event()
        self._ack: PollPosition = PollPosition()
        self._handed: PollPosition = PollPosition()  # the newest position with changes handed out
        self._ack_lock = threading.Lock()
        self._xid = itertools.count(1)
        # rows read near the watermark: per table, key -> (column value, digest of the row as
        # read) (an unchanged row read
        # again in the overlap is not written again); pruned below the next rounds' lower bound
        self._recent: dict[TableId, dict[tuple[Any, ...], tuple[Any, bytes]]] = {}
        self._bound = False

    # -- connections ---------------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self.d.connect(self.url, "source")
        return self._conn

    @property
    def catalog(self) -> Any:
        """The source through the driver's typed values (the catalog code expects those)."""
        if self._catalog is None:
            self._catalog = self.d.connect_typed(self.url, "source")
        return self._catalog

    @property
    def target(self) -> Any:
        if self._target is None:
            self._target = self.td.connect_typed(self.target_url, "target")
        return self._target

    def _io(self, fn: Callable[[], Any], what: str = "source") -> Any:
        """Run a query; a lost connection is transient (the pipeline retries from the checkpoint)."""
        import psycopg
        import pymysql

        try:
            return fn()
        except (psycopg.OperationalError, psycopg.InterfaceError, pymysql.err.OperationalError,
                pymysql.err.InterfaceError) as exc:
            self.close()
            code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else 0
            if code == 1054:  # unknown column
                raise TransientError(f"a polled table changed ({_first_line(exc)}): reading its definition"
                                     " again") from None
            if code in (1142, 1143):
                raise ReplicatorError(f"cannot read the {what}: {exc.args[-1]} (GRANT SELECT on the polled"
                                      " tables)") from None
            raise TransientError(f"lost the {what} connection: {_first_line(exc)}") from None
        except psycopg.errors.UndefinedColumn as exc:
            self.close()
            raise TransientError(f"a polled table changed ({_first_line(exc)}): reading its definition"
                                 " again") from None
        except (psycopg.Error, pymysql.err.MySQLError) as exc:
            self.close()
            raise ReplicatorError(f"polling the {what} failed: {_first_line(exc)}") from None

    # -- Source ----------------------------------------------------------------------------------
    def describe(self, table: TableId) -> TableInfo | None:
        return self._io(lambda: self.d.describe(self.catalog, table))  # type: ignore[no-any-return]

    def bind(self, bound: list[BoundTable]) -> None:
        """Learn each table's key on both sides from the flow's bound mappings; refuses a table
        without primary key, without its poll column, or whose target key is not copied
        unchanged from source columns (the key comparison would delete the wrong rows)."""
        by_source = {b.mapping.source: b for b in bound}
        for t in self.tables:
            b = by_source.get(t.source)
            if b is None:
                continue
            info = b.source
            where = f"flow {self.flow}: polled table {t.source}"
            if not info.primary_key:
                raise SchemaError(f"{where} has no primary key: add one (polled rows are ordered and"
                                  " compared by key)")
            if info.column(t.column) is None:
                raise SchemaError(f"{where} has no column {t.column!r} to poll by: add it, or set"
                                  " poll.column / tables[].poll_column to a column that changes with every write")
            names = b.mapping._names
            special: set[str] = set()
            if b.transform is not None:
                special = set(b.transform._special)
            back = {tgt: src for src, tgt in names.items() if src not in special}
            missing = [k for k in b.mapping.target_key if k not in back]
            if missing:
                raise ConfigError(
                    f"{where}: the target key column(s) {', '.join(missing)} of {b.mapping.target} are not"
                    " copied unchanged from a source column: a poll flow compares keys to find deletes,"
                    " so the key may be renamed but not transformed or computed")
            t.info = info
            t.order_key = info.primary_key
            t.target_key = tuple(b.mapping.target_key)
            t.key_sources = tuple(back[k] for k in t.target_key)
        self._bound = True

    def prepare(self, tables: list[TableId]) -> None:
        """Nothing to create on the source; checks the tables were bound."""
        if not self._bound:
            raise ReplicatorError("poll source used before bind()")

    def initial_position(self) -> Position:
        """``snapshot: initial``: nothing read yet (the first round copies every row);
        ``snapshot: never``: every table's watermark at its column's current maximum (the
        first round reads the rows past it: no overlap below)."""
        if self.snapshot == "initial":
            return PollPosition()
        marks: dict[str, Mark] = {}
        for t in self.tables:
            info = t.info
            assert info is not None
            value = self._io(lambda: self.d.max_value(self.conn, info, t.column))
            if value is not None:  # the rounds read what comes after it
                marks[str(t.source)] = Mark(value, None, value)
        return PollPosition(self._now(), 0, marks)

    def current_position(self) -> Position:
        """The source's clock now: a round started after it reads everything committed before."""
        return PollPosition(self._now(), 0, {})

    def _now(self) -> datetime:
        return self._io(lambda: self.d.now(self.conn))  # type: ignore[no-any-return]

    def covered(self, transaction: Position, snapshot: Position) -> bool:
        return False  # poll flows take no snapshot: the first round is the copy

    def format_position(self, position: Position) -> str:
        return position.format() if isinstance(position, PollPosition) else str(position)

    def parse_position(self, text: str) -> Position:
        return PollPosition.parse(text)

    def acknowledge(self, position: Position) -> None:
        with self._ack_lock:
            if isinstance(position, PollPosition) and position > self._ack:
                self._ack = position

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        for conn in (self._conn, self._target, self._catalog):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        self._conn = self._target = self._catalog = None

    # -- the poll loop -------------------------------------------------------------------------
    def stream(self, start: Position | None, stop_at: Position | None = None) -> Iterator[Item]:
        """Rounds every ``interval_s`` (or at a sync-now request); with ``stop_at`` (``run
        --once``), one round with a key comparison, then the end."""
        from .. import syncnow

        pos: PollPosition = start if isinstance(start, PollPosition) else PollPosition()
        with self._ack_lock:
            if pos > self._ack:
                self._ack = pos
        self._handed = pos
        self._interrupted.clear()
        self._io(lambda: syncnow.ensure(self.target, self.state_schema), "target")
        next_deletes = 0.0
        while not self._interrupted.is_set():
            began = time.monotonic()
            now = self._now()
            pos = replace(pos, round=max(now, pos.round + timedelta(microseconds=1)), seq=0)
            pos = replace(pos, marks={k: observe(m, pos.round) for k, m in pos.marks.items()})
            if stop_at is not None or began >= next_deletes:
                pos = yield from self._deletes(pos)
                next_deletes = began + self.settings.deletes_every_s
            for t in self.tables:
                if self._interrupted.is_set():
                    return
                self._same_columns(t)
                pos = yield from self._poll(t, pos)
            end = self._now()  # every row read so far committed before this: the marks are known since
            pos = replace(pos, marks={k: observe(finish(m), end) for k, m in pos.marks.items()}, seq=pos.seq + 1)
            yield Heartbeat(pos)
            if stop_at is not None:
                return
            if self._wait(began + self.settings.interval_s):
                next_deletes = 0.0  # sync-now: a whole round, deletes included

    def _same_columns(self, t: PolledTable) -> None:
        """A table whose columns changed is bound again by a new session (the pipeline retries
        a transient error): new columns are then read (and must exist on the target)."""
        now = self.describe(t.source)
        if t.info is not None and (now is None or now.columns != t.info.columns or now.primary_key != t.order_key):
            raise TransientError(f"the columns of polled table {t.source} changed: reading its definition again")

    def _wait(self, until: float) -> bool:
        """Sleep until ``until``; True if a sync-now request came first."""
        from .. import syncnow

        while not self._interrupted.is_set():
            now = time.monotonic()
            if now - self._last_take >= REQUEST_CHECK_SECONDS:  # also between short intervals
                self._last_take = now
                if self._io(lambda: syncnow.take(self.target, self.state_schema, self.flow), "target"):
                    return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            if self._interrupted.wait(min(left, REQUEST_CHECK_SECONDS)):
                return False
        return False

    def _poll(self, t: PolledTable, pos: PollPosition) -> Generator[Item, None, PollPosition]:
        """One round over a table: pages of rows from its lower bound, each one transaction."""
        info = t.info
        assert info is not None
        name = str(t.source)
        overlap = timedelta(seconds=self.settings.overlap_s)
        round_time = pos.round
        bound = lower_bound(pos.mark(name), overlap, round_time)
        names = info.column_names
        col = names.index(t.column)
        order = [names.index(k) for k in t.order_key]
        keys = [names.index(k) for k in t.key_sources]
        limit = self.settings.page_rows
        recent = self._recent.setdefault(t.source, {})
        prune_at = 2 * limit
        while True:
            page_bound = bound
            rows = self._io(lambda: self.d.page(self.conn, info, t.column, t.order_key, bound, limit))
            if not rows:
                return pos
            last = rows[-1]
            done = len(rows) < limit
            changes = []
            for row in rows:
                okey = tuple(row[i] for i in order)
                digest = _digest(row)
                seen = recent.get(okey)
                if seen is not None and seen[1] == digest:
                    continue  # read by an earlier round, unchanged
                recent[okey] = (row[col], digest)
                values = dict(zip(names, row))
                key = {names[i]: row[i] for i in keys}
                changes.append(Change(UPDATE, t.source, key, None, values))
            pos = pos.with_mark(name, advance(pos.mark(name), last[col], tuple(last[i] for i in order), done))
            if len(recent) > prune_at:  # bounded memory: forget what the next rounds never read again
                floor = lower_bound(finish(pos.mark(name)), overlap, round_time).value
                for k in [k for k, (value, _d) in recent.items() if _before(value, floor)]:
                    del recent[k]
                if len(recent) > RECENT_MAX:
                    recent.clear()  # a mass update inside the window: not worth the memory
                prune_at = max(2 * limit, 2 * len(recent))
            if changes:
                yield Begin(next(self._xid), pos.round, None, _identity("rows", name, page_bound))
                yield from changes
                yield Commit(pos, pos.round)
                self._handed = pos
            if done or self._interrupted.is_set():
                return pos
            bound = lower_bound(pos.mark(name), overlap, round_time)

    def _deletes(self, pos: PollPosition) -> Generator[Item, None, PollPosition]:
        """Delete on the target the keys the source no longer holds, a page of keys at a time."""
        self._wait_committed()
        page = self.settings.key_page_rows
        for t in self.tables:
            info = t.info
            assert info is not None
            after: tuple[Any, ...] | None = None
            while not self._interrupted.is_set():
                held = self._io(lambda: self.td.keys_after(self.target, t.target, t.target_key, after, page), "target")
                if not held:
                    break
                after = held[-1]
                present = self._io(lambda: self.d.present(self.conn, info, t.key_sources, held))
                gone = missing_keys(held, present)
                if gone:
                    pos = replace(pos, seq=pos.seq + 1)
                    yield Begin(next(self._xid), pos.round, None, _identity("deletes", str(t.target), held[0]))
                    for k in gone:
                        key = dict(zip(t.key_sources, k))
                        yield Change(DELETE, t.source, key, dict(key), None)
                    yield Commit(pos, pos.round)
                    self._handed = pos
                    self._recent.pop(t.source, None)  # a key deleted now may come back unchanged
                if len(held) < page:
                    break
        return pos

    def _wait_committed(self) -> None:
        """Wait (a while) until the target committed every change handed out: a key compared
        before its insert is committed would only be deleted at the next comparison."""
        deadline = time.monotonic() + ACK_WAIT_SECONDS
        while not self._interrupted.is_set() and time.monotonic() < deadline:
            with self._ack_lock:
                if self._ack >= self._handed:
                    return
            self._interrupted.wait(0.05)


def _identity(kind: str, table: str, start: Any) -> str:
    """A poll transaction's identity (:attr:`Begin.position`): what it reads, from where. The
    same checkpoint and source data give the same identity in the next session, so a change
    limit's pause (replicator.guards) finds the transaction that tripped it again, and
    ``replicator resume`` lets exactly that one through."""
    if isinstance(start, LowerBound):
        where: Any = None if start.everything else [encode_value(start.value),
                                                     None if start.key is None else [encode_value(k) for k in start.key]]
    else:
        where = [encode_value(v) for v in start]
    return f"poll {kind} {table} from " + json.dumps(where, separators=(",", ":"))


def _digest(row: tuple[Any, ...]) -> bytes:
    """A row's fingerprint (its values' reprs are exact: Decimal, datetime, bytes, dicts)."""
    return hashlib.blake2b(repr(row).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, Exception) and exc.args and type(exc).__module__.startswith("pymysql"):
        return str(exc.args[-1])
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _before(value: Any, floor: Any) -> bool:
    try:
        return bool(value < floor)
    except TypeError:
        if isinstance(value, datetime) and isinstance(floor, datetime):
            value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            floor = floor if floor.tzinfo else floor.replace(tzinfo=timezone.utc)
            return bool(value < floor)
        return True
