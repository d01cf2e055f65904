"""The PostgreSQL source: a logical replication slot streamed with pgoutput.

Streaming goes through psycopg's low-level ``pgconn`` because a replication connection speaks
COPY_BOTH, which the high-level cursor API refuses (see DESIGN.md). The loop is simple: read
CopyData frames, hand XLogData payloads to the pure :class:`PgOutputDecoder`, answer keepalives,
and send standby status updates carrying only the position the pipeline acknowledged — the
last position durably committed on the target — so the slot never discards WAL the target does
not hold yet.

A logical slot cannot be moved back: START_REPLICATION from before the slot's
``confirmed_flush_lsn`` silently starts at ``confirmed_flush_lsn``. To keep a flow rewindable
(``replicator checkpoint rewind``), ``hold_back`` seconds (the flow's ``rewind.window``) delay
the acknowledgement: a committed position is reported only once it was applied longer ago than
that, so the slot keeps that much WAL. Streaming still starts at the target's checkpoint — a
start after ``confirmed_flush_lsn`` is honoured (transactions whose commit record lies before it
are skipped by the server), so nothing is applied twice.

The session runs with ``TimeZone=UTC`` so timestamptz values arrive in UTC text.
"""

from __future__ import annotations

import select
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
from psycopg import pq, sql

from ..errors import CheckFailed, ReplicatorError, TransientError
from ..mapping import TableInfo
from ..records import Begin, Commit, Heartbeat, Item, Position, TableId
from .catalog import describe_table
from .conn import connect, first_line
from .pgoutput import PgOutputDecoder, lsn_to_str, str_to_lsn

_XLOG = struct.Struct(">QQQ")
_KEEPALIVE = struct.Struct(">QQB")
_STATUS = struct.Struct(">cQQQQB")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
STATUS_INTERVAL = 5.0


def _now_us() -> int:
    return int((datetime.now(timezone.utc) - _PG_EPOCH).total_seconds() * 1_000_000)


class PostgresSource:
    """One flow's view of a PostgreSQL database: its slot and its publication."""

    def __init__(self, url: str, slot: str, publication: str, hold_back: float = 0.0) -> None:
        self.url = url
        self.slot = slot
        self.publication = publication
        self.hold_back = hold_back
        self._ack = 0
        self._ack_lock = threading.Lock()
        self._held: deque[tuple[float, int]] = deque()  # (applied at, position) not yet reported
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._interrupted = threading.Event()
        self._passthrough: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def set_passthrough(self, tables: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]],
                        text_format: str = "copy") -> None:
        """Stream these tables' simple changes as raw text (see :mod:`replicator.pg.passthrough`):
        table -> (source column names, source columns of the target key). pgoutput's text
        suits COPY only (``text_format`` ``copy``)."""
        self._passthrough = dict(tables) if text_format == "copy" else {}

    @property
    def conn(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, "source")
        return self._conn

    def _run(self, query: str | sql.Composable, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            cur = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
        except psycopg.errors.ConfigurationLimitExceeded as exc:  # not an outage: retrying cannot help
            raise CheckFailed(f"the source refused: {first_line(exc)} (raise max_replication_slots, or drop"
                              " the slots of flows that are gone: SELECT pg_drop_replication_slot(name))") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise TransientError(f"lost the source connection: {first_line(exc)}") from None

    # -- catalog ---------------------------------------------------------------------------
    def describe(self, table: TableId) -> TableInfo | None:
        try:
            return describe_table(self.conn, table)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise TransientError(f"lost the source connection: {first_line(exc)}") from None

    def current_position(self) -> Position:
        row = self._run("SELECT pg_current_wal_lsn()::text")
        return str_to_lsn(str(row[0][0]))

    def initial_position(self) -> Position:
        pos = self.slot_position()
        if pos is None:
            raise ReplicatorError(f"replication slot {self.slot} does not exist (prepare() creates it)")
        return pos

    def slot_position(self) -> int | None:
        """The slot's confirmed_flush_lsn, or None when the slot does not exist."""
        rows = self._run(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
        )
        if not rows:
            return None
        return str_to_lsn(str(rows[0][0])) if rows[0][0] else 0

    # -- setup -----------------------------------------------------------------------------
    def prepare(self, tables: list[TableId]) -> None:
        """Create the publication (or add missing tables to it) and the slot, if missing."""
        try:
            exists = self._run("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,))
            idents = [sql.Identifier(t.schema, t.name) for t in tables]
            if not exists:
                self._run(
                    sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                        sql.Identifier(self.publication), sql.SQL(", ").join(idents)
                    )
                )
            else:
                have = {
                    (str(r[0]), str(r[1]))
                    for r in self._run(
                        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                        (self.publication,),
                    )
                }
                for t, ident in zip(tables, idents):
                    if (t.schema, t.name) not in have:
                        self._run(
                            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                                sql.Identifier(self.publication), ident
                            )
                        )
            if self.slot_position() is None:
                self._run(
                    "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,)
                )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CheckFailed(
                f"cannot create publication/slot on the source: {first_line(exc)}"
                " (grant the REPLICATION role attribute and table ownership, or create them yourself)"
            ) from None
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise CheckFailed(f"cannot create the replication slot: {first_line(exc)}") from None
        except (psycopg.errors.ProgramLimitExceeded, psycopg.errors.ConfigurationLimitExceeded) as exc:
            raise CheckFailed(
                f"cannot create the replication slot: {first_line(exc)} (raise max_replication_slots)"
            ) from None

    def drop(self) -> None:
        """Remove the flow's slot and publication (used by tests and ``reset``)."""
        if self.slot_position() is not None:
            self._run("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self._run(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication)))

    # -- streaming -------------------------------------------------------------------------
    def acknowledge(self, position: Position) -> None:
        with self._ack_lock:
            if self.hold_back <= 0:
                if position > self._ack:
                    self._ack = position
                return
            now = time.monotonic()
            if self._held and now - self._held[-1][0] < 1.0:
                self._held[-1] = (self._held[-1][0], max(self._held[-1][1], position))  # one per second
            else:
                self._held.append((now, position))
        self._release()

    def release(self, position: Position) -> None:
        """Report ``position`` now: the pipeline knows from the checkpoint history that it was
        applied longer ago than the window (in an earlier process: ``run --once`` from cron
        would otherwise never move the slot)."""
        with self._ack_lock:
            if position > self._ack:
                self._ack = position

    def _release(self) -> None:
        """Report the newest position applied longer ago than ``hold_back``."""
        cutoff = time.monotonic() - self.hold_back
        with self._ack_lock:
            held = self._held
            while held and held[0][0] <= cutoff:
                position = held.popleft()[1]
                if position > self._ack:
                    self._ack = position

    def covered(self, transaction: Position, snapshot: Position) -> bool:
        """A transaction is in an exported snapshot exactly when its commit record starts
        before the snapshot's consistent point (logical decoding's own rule)."""
        return bool(transaction < snapshot)

    def format_position(self, position: Position) -> str:
        return lsn_to_str(position)

    def parse_position(self, text: str) -> Position:
        return str_to_lsn(text)

    def stream(self, start: Position | None, stop_at: Position | None = None) -> Iterator[Item]:
        """Yield committed transactions after ``start`` until ``stop_at`` (or forever)."""
        start_lsn = int(start or 0)
        # With a hold-back window the slot stays where it is (status updates repeat its
        # confirmed_flush_lsn, which keeps the connection alive and moves nothing).
        first_ack = (self.slot_position() or 0) if self.hold_back > 0 else start_lsn
        with self._ack_lock:
            self._ack = max(self._ack, first_ack)
        repl = connect(
            self.url,
            "source (replication connection)",
            replication="database",
            options="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres"
            " -c extra_float_digits=3 -c client_encoding=UTF8",
        )
        try:
            yield from self._stream(repl, start_lsn, stop_at)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise TransientError(f"lost the replication connection: {first_line(exc)}") from None
        finally:
            repl.close()

    def _stream(
        self, repl: psycopg.Connection[tuple[object, ...]], start_lsn: int, stop_at: Position | None
    ) -> Iterator[Item]:
        pgconn = repl.pgconn
        publication = self.publication.replace("'", "''")
        cmd = (
            f'START_REPLICATION SLOT "{self.slot}" LOGICAL {lsn_to_str(start_lsn)}'
            f" (proto_version '1', publication_names '\"{publication}\"')"
        )
        res = pgconn.exec_(cmd.encode())
        if res.status != pq.ExecStatus.COPY_BOTH:
            msg = (res.error_message or b"").decode(errors="replace").strip()
            if "is active for PID" in msg:
                raise TransientError(f"replication slot {self.slot} is still in use: {msg}")
            if "does not exist" in msg:
                raise TransientError(f"replication slot {self.slot} is missing: {msg}")
            raise ReplicatorError(f"START_REPLICATION failed: {msg}")
        decoder = PgOutputDecoder()
        if self._passthrough:
            decoder.set_passthrough(self._passthrough)
        in_txn = False
        sent_ack = -1
        last_status = 0.0
        sock = pgconn.socket
        interrupted = self._interrupted
        get_copy_data = pgconn.get_copy_data
        decode = decoder.decode
        busy = 0  # messages since the last clock and interrupt check
        while True:
            ack = self._ack  # an int read is atomic; acknowledge() holds the lock to update it
            if ack != sent_ack:
                self._send_status(pgconn, ack)
                sent_ack, last_status = ack, time.monotonic()
            n, buf = get_copy_data(1)
            busy += 1
            if n == 0 or busy >= 1024:  # idle, or a long run of buffered messages
                busy = 0
                if interrupted.is_set():
                    break
                if self._held:
                    self._release()
                now = time.monotonic()
                if now - last_status > STATUS_INTERVAL:
                    self._send_status(pgconn, ack)
                    last_status = now
                if n == 0:
                    select.select([sock], [], [], 1.0)
                    pgconn.consume_input()
                    continue
            if n < 0:
                result = pgconn.get_result()
                msg = (pgconn.error_message or b"").decode(errors="replace").strip()
                if result is not None and result.error_message:
                    msg = result.error_message.decode(errors="replace").strip()
                raise TransientError(f"the replication stream ended: {msg or 'server closed it'}")
            kind = buf[0]
            if kind == 0x77:  # 'w' XLogData
                for item in decode(buf[25:]):
                    if isinstance(item, Begin):
                        in_txn = True
                    elif isinstance(item, Commit):
                        in_txn = False
                        yield item
                        if stop_at is not None and item.position >= stop_at:
                            return
                        continue
                    yield item
            elif kind == 0x6B:  # 'k' keepalive
                wal_end, _, reply = _KEEPALIVE.unpack_from(buf, 1)
                if reply:
                    sent_ack = -1  # answer on the next turn of the loop
                if not in_txn:
                    yield Heartbeat(wal_end)
                    if stop_at is not None and wal_end >= stop_at:
                        return

    def interrupt(self) -> None:
        """Make a running :meth:`stream` return soon (called from another thread)."""
        self._interrupted.set()

    @staticmethod
    def _send_status(pgconn: pq.abc.PGconn, ack: int) -> None:
        if ack <= 0:
            return
        pgconn.put_copy_data(_STATUS.pack(b"r", ack, ack, ack, _now_us(), 0))
        pgconn.flush()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
