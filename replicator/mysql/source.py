"""The MySQL/MariaDB source: the binlog, read as a replica through python-mysql-replication.

The library provides the replication connection and parses every event but the rows events
and repeated table maps of known tables; the packet framing is ours (:class:`_PacketFeed`). We
keep its pitfalls out (DESIGN.md): its silent reconnect — which restarts from the *original*
position and replays forever — is disabled, and every lost connection surfaces as a
:class:`TransientError`, after which the pipeline reconnects from the last position committed
on the target. ``freeze_schema`` makes the library parse each table map once per table id (a
table gets a new id after an ALTER, and the cache is dropped at every binlog rotation); row
images are decoded by our own exact and lean :mod:`replicator.mysql.rows`, with the column
metadata of the table map in force at that event — not today's schema.

Speed: MariaDB logs a table map and a rows event for every row-changing *statement*, so a
workload of single-row INSERTs is two events per row, and building the library's event objects
for them cost more than decoding the rows. Once the library has parsed a table map (and the
first rows event of that map confirmed where the rows start, :func:`_checked_layout`), the
reader takes the packets of that table's rows events and of its repeated table maps straight
from the replication connection (:class:`_PacketFeed`); every other packet — GTID, XID,
queries, rotations, new table maps — still goes through ``BinLogStreamReader.fetchone``.
Per row the fast path does as little Python as it can: a packet is looked at where it lies in
the feed's buffer (no copy of it, no call per packet), the row images are decoded from there,
and the decoder's event reader builds the :class:`~replicator.records.Change` records in its
own loop over the rows (:meth:`RowDecoder.read_event`). With the decoder's own savings that
took ~20% off reading (and decoding) a single-row-INSERT workload and ~10% off a bulk UPDATE
(``scripts/profile_mariadb.py --stages read``). The binlog connections share one TLS context
(:func:`~replicator.mysql.writer.pymysql_connect`), and ``sqlglot`` is loaded only when a
statement may be DDL: both are start-up time of every run.

Passthrough (:mod:`replicator.mysql.passthrough`): for a table the flow marked with
:meth:`MySQLSource.set_passthrough`, a rows event is read straight into the target's text (COPY
lines or SQL rows) and the rows of consecutive events of one table and kind are emitted as one
:class:`~replicator.pg.passthrough.RawRows` group (``pending``: emitted before anything else,
so order is kept); an event the text reader does not take is read as change records.

Transactions: MariaDB writes ``GTID … rows … XID`` (no BEGIN), DDL as ``GTID`` + a query, and
non-transactional tables as ``GTID … rows … COMMIT``. Begin is emitted lazily at the first row
of a synced table, so transactions touching nothing of ours become Heartbeats that still
advance the position. Positions: the MariaDB GTID state after each transaction; on MySQL the
binlog file and the end offset of its commit event.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pymysql
import pymysqlreplication.binlogstream as _binlogstream
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from ..errors import CheckFailed, DataError, ReplicatorError, TransientError
from ..mapping import TableInfo
from ..pg.passthrough import RAW_ROWS_MAX, RawRows
from ..records import DELETE, INSERT, TRUNCATE, UPDATE, JsonText, Begin, Change, Commit, Heartbeat, Item, Position, TableId
from ..urls import parse
from .catalog import describe_table
from .positions import FilePos, MariaGtid
from .rows import COPY_TEXT, MYSQL_VALUES, NotRaw, RawFormat, RowDecoder, rows_body
from .writer import connect, pymysql_connect

# The library silently reconnects on these codes from its ORIGINAL start position, replaying
# forever. We want every lost connection to reach the pipeline, which resumes from the
# target's checkpoint.
_binlogstream.MYSQL_EXPECTED_ERROR_CODES.clear()

_REQUIRED = {
    "log_bin": ("ON", "start the server with --log-bin"),
    "binlog_format": ("ROW", "set binlog_format=ROW"),
    "binlog_row_image": ("FULL", "set binlog_row_image=FULL"),
    "binlog_row_metadata": ("FULL", "set binlog_row_metadata=FULL (rows carry column names)"),
}
_KINDS = {WriteRowsEvent: "write", UpdateRowsEvent: "update", DeleteRowsEvent: "delete"}
_HEARTBEAT_SECONDS = 1.0


def server_id_for(flow: str) -> int:
    """A stable replica server id per flow, far from typical hand-picked ids."""
    return 1_000_000 + zlib.crc32(flow.encode()) % 1_000_000_000


def binlog_problems(conn: Any) -> list[tuple[str, str]]:
    """(what is wrong, fix) for each binlog setting a row-based reader needs."""
    with conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN"
            " ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')"
        )
        values = {str(k).lower(): str(v).upper() for k, v in cur.fetchall()}
    problems = []
    for name, (wanted, fix) in _REQUIRED.items():
        have = values.get(name, "missing")
        if have != wanted:
            problems.append((f"{name} is {have}", fix + " in the server configuration and restart"))
    return problems


class MySQLSource:
    """One flow's view of a MySQL/MariaDB server's binlog."""

    def __init__(self, url: str, flow: str, *, server_id: int | None = None, zero_dates: str = "error") -> None:
        self.url = url
        self.flow = flow
        self.server_id = server_id or server_id_for(flow)
        self.zero_dates = zero_dates
        self._conn: Any = None
        self._mariadb: bool | None = None
        self._tables: dict[TableId, TableInfo] = {}
        self._reader: BinLogStreamReader | None = None
        self._interrupted = False
        # tables whose rows go to the target as text (see replicator.mysql.passthrough):
        # source column names at binding -> the target key's source columns; and the format
        self._passthrough: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._raw_format: RawFormat = COPY_TEXT

    def set_passthrough(self, tables: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]],
                        text_format: str = "copy") -> None:
        """Stream these tables' simple changes as :class:`RawRows` whose rows are texts in the
        target's ``text_format`` (``copy``: PostgreSQL COPY lines; ``mysql``: SQL ``(…)`` rows;
        see :mod:`replicator.mysql.passthrough`): per table its column names when it was bound
        (a table map with other columns is read as change records) and the target key's
        source columns."""
        self._passthrough = dict(tables)
        self._raw_format = {"copy": COPY_TEXT, "mysql": MYSQL_VALUES}[text_format]

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = connect(self.url, autocommit=True)
            with self._conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                self._mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
        return self._conn

    @property
    def is_mariadb(self) -> bool:
        _ = self.conn
        assert self._mariadb is not None
        return self._mariadb

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        except pymysql.err.OperationalError as exc:
            self.close()
            raise TransientError(f"lost the source connection: {exc.args[-1]}") from None

    # -- catalog -----------------------------------------------------------------------------
    def describe(self, table: TableId) -> TableInfo | None:
        try:
            info = describe_table(self.conn, table)
        except pymysql.err.OperationalError as exc:
            self.close()
            raise TransientError(f"lost the source connection: {exc.args[-1]}") from None
        if info is not None:
            self._tables[table] = info
        return info

    def prepare(self, tables: list[TableId]) -> None:
        problems = binlog_problems(self.conn)
        if problems:
            what, fix = problems[0]
            raise CheckFailed(f"the source's binlog cannot be read row by row: {what}: {fix}")
        for table in tables:
            if table not in self._tables:
                self.describe(table)

    def current_position(self) -> Position:
        if self.is_mariadb:
            return MariaGtid.parse(str(self._query("SELECT @@GLOBAL.gtid_binlog_pos")[0][0] or ""))
        rows = self._query("SHOW MASTER STATUS")
        if not rows:
            raise CheckFailed("the source has no binary log: start it with --log-bin")
        return FilePos(str(rows[0][0]), int(rows[0][1]))

    def initial_position(self) -> Position:
        return self.current_position()

    def acknowledge(self, position: Position) -> None:
        """Nothing to tell a MySQL server: binlog retention is its own (expire_logs_days)."""

    def covered(self, transaction: Position, snapshot: Position) -> bool:
        """A transaction (its GTID, as Begin carries it) is in a snapshot taken at a GTID state
        when that state has reached its sequence number in its domain."""
        if transaction is None or not isinstance(snapshot, MariaGtid):
            return False
        domain, _server, seq = transaction
        return bool(snapshot.seq(domain) >= seq)

    def format_position(self, position: Position) -> str:
        return str(position)

    def parse_position(self, text: str) -> Position:
        return FilePos.parse(text) if ":" in text else MariaGtid.parse(text)

    def interrupt(self) -> None:
        self._interrupted = True

    # -- streaming ---------------------------------------------------------------------------
    def stream(self, start: Position | None, stop_at: Position | None = None) -> Iterator[Item]:
        if start is None:
            start = self.initial_position()
        p = parse(self.url)
        settings = {
            "host": p.host,
            "port": p.port,
            "user": p.user or "root",
            "password": p.password or "",
            "charset": "utf8mb4",
            "connect_timeout": 10,
            "read_timeout": 30,
        }
        kwargs: dict[str, Any] = {}
        if isinstance(start, MariaGtid):
            kwargs.update(is_mariadb=True, auto_position=str(start))
        else:
            assert isinstance(start, FilePos)
            kwargs.update(log_file=start.file, log_pos=start.pos)
        reader = BinLogStreamReader(
            connection_settings=settings,
            server_id=self.server_id,
            blocking=True,
            resume_stream=True,
            only_events=[
                MariadbGtidEvent, XidEvent, QueryEvent, RotateEvent, HeartbeatLogEvent,
                TableMapEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent,
            ],
            only_schemas=sorted({t.schema for t in self._tables}),
            freeze_schema=True,
            slave_heartbeat=_HEARTBEAT_SECONDS,
            enable_logging=False,
            pymysql_wrapper=pymysql_connect,  # one TLS context for all connections
            **kwargs,
        )
        self._reader = reader
        try:
            yield from self._events(reader, start, stop_at)
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else 0
            msg = exc.args[-1] if exc.args else str(exc)
            if code == 1236:
                raise ReplicatorError(
                    f"the source no longer holds the binlog at {start}: {msg} — the changes since"
                    " then are gone; re-snapshot the flow (and raise binlog retention)"
                ) from None
            raise TransientError(f"lost the binlog connection: ({code}) {msg}") from None
        except (pymysql.err.InterfaceError, ConnectionError, OSError) as exc:
            raise TransientError(f"lost the binlog connection: {exc}") from None
        finally:
            self._reader = None
            reader.close()

    def _events(self, reader: BinLogStreamReader, start: Position, stop_at: Position | None) -> Iterator[Item]:
        position = start
        mariadb = isinstance(start, MariaGtid)
        log_file = start.file if isinstance(start, FilePos) else ""
        gtid: tuple[int, int, int] | None = None
        began = False
        commit_time: datetime | None = None
        decoders: dict[int, _TableState] = {}  # by table id
        synced = self._tables
        feed: _PacketFeed | None = None
        u32, u64 = _U32, _U64
        fast_kinds = _FAST_KINDS
        table_maps: dict[int, Any] = reader.table_map
        # The packet feed's buffer, position in it and next sequence number, kept here as
        # locals between hand-overs to the library (see _PacketFeed).
        buf = b""
        pos = seq = 0
        pending: RawRows | None = None  # passthrough rows not emitted yet
        if stop_at is not None and position >= stop_at:
            return
        while not self._interrupted:
            if feed is None:
                ev = reader.fetchone()
                table_maps = reader.table_map
                conn = getattr(reader, "_stream_connection", None)
                if conn is not None:
                    feed = _PacketFeed(conn)
                    buf, pos, seq = feed.buf, feed.pos, feed.seq
            else:
                # Fast path: the next packet is looked at where it lies in the feed's buffer
                # (pkt[s:e]); the rows of a known table map are decoded from there, the maps
                # of known tables skipped; anything else goes to the library (fetchone).
                n = len(buf)
                pkt, s, e = buf, -1, 0
                if pos + 4 <= n:
                    header = u32(buf, pos)[0]  # 3 bytes length, 1 byte sequence number
                    length = header & 0xFFFFFF
                    e = pos + 4 + length
                    if e <= n and length != 0xFFFFFF and header >> 24 == seq:
                        s = pos + 4
                        pos = e
                        seq = (seq + 1) & 255
                if s < 0:  # not all in the buffer (or a long packet): read it the slow way
                    feed.pos, feed.seq = pos, seq
                    pkt = feed.read_slow()
                    s, e = 0, len(pkt)
                    buf, pos, seq = feed.buf, feed.pos, feed.seq
                if pkt[s] == 0:
                    etype = pkt[s + 5]
                    # the 6-byte table id, read with the 2 flag bytes after it
                    if etype == _TABLE_MAP_EVENT:
                        if u64(pkt, s + 20)[0] & 0xFFFFFFFFFFFF in table_maps:
                            continue  # freeze_schema: the library would skip a known table's map too
                    else:
                        rkind = fast_kinds.get(etype)
                        if rkind is not None:
                            table_id = u64(pkt, s + 20)[0] & 0xFFFFFFFFFFFF
                            state = decoders.get(table_id)
                            if state is not None and state.checksum is not None and state.table_map is table_maps.get(table_id):
                                if state.decoder is None:
                                    continue  # a table of the schema that this flow does not sync
                                x = s + 28  # after the table id and the flags
                                if etype < 30 and pkt[x] < 251:  # v1, fewer than 251 columns
                                    at, ncols = x + 1, pkt[x]
                                else:
                                    at, ncols = _rows_layout(pkt, etype, s) or (-1, 0)
                                if at > 0:
                                    if not began:
                                        began = True
                                        yield Begin(gtid[2] if gtid else 0, commit_time, None, gtid)
                                    if state.raw is not None:
                                        group = state.raw_rows(rkind, pkt, at, e - state.checksum, ncols)
                                        if group is not None:
                                            # consecutive events of one table and kind: one group
                                            if (pending is not None and pending.table is group.table
                                                    and pending.op is group.op and pending.names is group.names
                                                    and len(pending.keys) < RAW_ROWS_MAX):
                                                pending.keys += group.keys
                                                pending.fields += group.fields
                                            else:
                                                if pending is not None:
                                                    yield pending  # type: ignore[misc]  # a RawRows item
                                                pending = group
                                            continue
                                    if pending is not None:
                                        yield pending  # type: ignore[misc]  # a RawRows item
                                        pending = None
                                    changes = state.read(rkind, pkt, at, e - state.checksum, ncols, state.records[rkind])
                                    if len(changes) == 1:
                                        yield changes[0]
                                    else:
                                        yield from changes
                                    continue
                if pending is not None:  # before anything else: the group goes first
                    yield pending  # type: ignore[misc]  # a RawRows item
                    pending = None
                feed.pending = pkt[s:e] if s or e != len(pkt) else pkt
                feed.pos, feed.seq = pos, seq
                ev = reader.fetchone()
                table_maps = reader.table_map
                buf, pos, seq = feed.buf, feed.pos, feed.seq
            if ev is None:
                raise TransientError("the binlog stream ended")
            kind = type(ev)
            if kind in _KINDS:
                table_obj = reader.table_map.get(ev.table_id)
                state = decoders.get(ev.table_id)
                if state is None or state.table_map is not table_obj:
                    tid = TableId(ev.schema, ev.table)
                    info = synced.get(tid)
                    if info is None:
                        state = _TableState(table_obj, None, tid, (), (), 0)
                    else:
                        decoder = RowDecoder(table_obj, key_columns=info.primary_key, zero_date=self.zero_dates)
                        json_cols = tuple(c.name for c in info.columns if c.type == "json")
                        state = _TableState(table_obj, decoder, tid, info.primary_key, json_cols, _checked_layout(ev))
                        state.pass_through(self._passthrough.get(tid), self._raw_format)
                    decoders[ev.table_id] = state
                if state.decoder is None:
                    continue
                if not began:
                    began = True
                    yield Begin(gtid[2] if gtid else 0, commit_time, None, gtid)
                body, ncols = rows_body(ev)
                group = state.raw_rows(_KINDS[kind], body, 0, len(body), ncols) if state.raw is not None else None
                if group is not None:
                    yield group  # type: ignore[misc]  # a RawRows item
                else:
                    yield from state.changes(_KINDS[kind], body, 0, len(body), ncols)
                continue
            if kind is MariadbGtidEvent:
                gtid = (ev.domain_id, ev.server_id, ev.gtid_seq_no)
                commit_time = datetime.fromtimestamp(ev.timestamp, timezone.utc)
                began = False
                continue
            if kind is QueryEvent:
                query = ev.query
                if not _ends_transaction(query):
                    continue
                schema = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema)
                from .ddl import parse_ddl  # here: it loads sqlglot (~50 ms at start-up)

                ddl = parse_ddl(query, schema, synced)
                if ddl is not None:
                    # Rows after this statement carry a new table map: never reuse the old one.
                    reader.table_map.clear()
                    decoders.clear()
                    yield ddl
                truncated = _truncated_table(query, schema)
                if truncated is not None and truncated in synced:
                    if not began:
                        began = True
                        yield Begin(gtid[2] if gtid else 0, commit_time, None, gtid)
                    yield Change(TRUNCATE, truncated, None, None, None)
                elif _is_dml(query) and schema in {t.schema for t in synced}:
                    raise DataError(
                        f"statement-based event in the binlog ({query[:60]!r}): rows cannot be"
                        " replicated exactly; set binlog_format=ROW for every session"
                    )
            if kind is XidEvent or kind is QueryEvent:
                if mariadb:
                    if gtid is not None:
                        position = position.advance(*gtid)  # type: ignore[union-attr]
                else:
                    position = FilePos(log_file, ev.packet.log_pos)
                item: Item = Commit(position, commit_time) if began else Heartbeat(position)
                began = False
                gtid = None
                yield item
                if stop_at is not None and position >= stop_at:
                    return
                continue
            if kind is HeartbeatLogEvent:
                if gtid is None:
                    yield Heartbeat(position)
                continue
            if kind is RotateEvent:
                log_file = ev.next_binlog
                # Table ids live as long as the server process: after a restart (always a new
                # binlog file) the same id names another table. The library forgets its table
                # maps only at rotations written in the log, not at the switch to the next file
                # (a "fake" rotation, timestamp 0, e.g. after a crash or a clean stop), and with
                # freeze_schema it would keep decoding rows with the old table's map.
                reader.table_map.clear()
                decoders.clear()
                continue

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except pymysql.err.Error:
                pass
            self._conn = None


class _TableState:
    """What the reader keeps per table id: the library's table map it was built for, our row
    decoder (None: a table this flow does not sync), the table, its key and JSON columns,
    the checksum length when the fast path was checked for this map (None: not usable), and
    how its change records are made (``records`` per event kind, ``read``)."""

    __slots__ = ("table_map", "decoder", "table", "key", "json_columns", "checksum", "records", "read", "raw")

    def __init__(
        self,
        table_map: Any,
        decoder: RowDecoder | None,
        table: TableId,
        key: tuple[str, ...],
        json_columns: tuple[str, ...],
        checksum: int | None,
    ) -> None:
        self.table_map = table_map
        self.decoder = decoder
        self.table = table
        self.key = key
        self.json_columns = json_columns  # MariaDB JSON (LONGTEXT + json_valid): JSON text
        self.checksum = checksum
        # Change(op, table, key, before, after) per rows event kind: the decoder's event
        # reader builds the change records in its loop over the rows.
        self.records = {
            "write": partial(Change, INSERT, table),
            "update": partial(Change, UPDATE, table),
            "delete": partial(Change, DELETE, table),
        }
        # read(kind, buf, start, end, ncols, record): the change records of one rows event,
        # its body being buf[start:end] -- the decoder itself unless JSON text is to be marked
        self.read: Any = self._json_changes if json_columns or decoder is None else decoder.read_event
        # passthrough (see pass_through): (column names, key positions, format)
        self.raw: tuple[tuple[str, ...], tuple[int, ...], RawFormat] | None = None

    def pass_through(self, spec: tuple[tuple[str, ...], tuple[str, ...]] | None, fmt: RawFormat) -> None:
        """Read rows as text in format ``fmt`` (:meth:`raw_rows`) if the table is in
        passthrough with these very columns and the decoder can write all of them so."""
        decoder = self.decoder
        if spec is None or decoder is None or self.json_columns or decoder.column_names != spec[0]:
            return
        if decoder.raw_kinds(fmt) is not None:
            names = decoder.column_names
            self.raw = (names, tuple(names.index(k) for k in spec[1]), fmt)

    def raw_rows(self, rkind: str, buf: bytes, start: int, end: int, ncols: int) -> RawRows | None:
        """The rows of one rows event as one :class:`RawRows` of texts, or None: read it with
        :meth:`changes` instead (see RowDecoder.read_raw)."""
        assert self.raw is not None and self.decoder is not None
        names, key_idx, fmt = self.raw
        try:
            keys, rows = self.decoder.read_raw(rkind, buf, start, end, ncols, key_idx, fmt)
        except NotRaw:
            return None
        return RawRows(self.table, names, _RAW_OPS[rkind], keys, rows)  # type: ignore[arg-type]

    def changes(self, rkind: str, buf: bytes, start: int, end: int, ncols: int) -> list[Change]:
        """The change records of one rows event, whose body is ``buf[start:end]``."""
        changes: list[Change] = self.read(rkind, buf, start, end, ncols, self.records[rkind])
        return changes

    def _json_changes(self, rkind: str, buf: bytes, start: int, end: int, ncols: int, record: Any) -> list[Change]:
        decoder = self.decoder
        assert decoder is not None
        json_cols = self.json_columns
        rows = decoder.read_event(rkind, buf, start, end, ncols)
        for before, after in rows:  # JSON text marked before the key is taken
            _mark_json(before, json_cols)
            _mark_json(after, json_cols)
        tid, key = self.table, self.key
        if rkind == "write":
            return [Change(INSERT, tid, {c: after[c] for c in key}, None, after) for _, after in rows]
        if rkind == "update":
            return [Change(UPDATE, tid, {c: before[c] for c in key}, before, after) for before, after in rows]
        return [Change(DELETE, tid, {c: before[c] for c in key}, before, None) for before, _ in rows]


_RAW_OPS = {"write": INSERT, "update": UPDATE, "delete": DELETE}

# Rows event types (v1: MariaDB and MySQL 5.1-5.5, v2: MySQL >= 5.6) and the table map's.
_FAST_KINDS = {23: "write", 24: "update", 25: "delete", 30: "write", 31: "update", 32: "delete"}
_TABLE_MAP_EVENT = 19
# A binlog packet: 1 byte OK marker, the 19-byte event header, then the event.
_EVENT_START = 20
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from


class _PacketFeed:
    """Reads the binlog packets itself and lets the reader see each one before the library.

    The library builds several Python objects per event (packet wrapper, event, the table
    map's ``data`` dict...), which costs more than decoding the rows: with MariaDB's
    ``TABLE_MAP + WRITE_ROWS`` per single-row INSERT statement it was most of the reading
    time. So :meth:`MySQLSource._events` reads the packets itself, decodes the rows of a
    known table map from the packet, skips the maps of known tables (as the library does under
    ``freeze_schema``), and hands any other packet back through ``pending``: the stream
    connection's ``_read_packet`` is replaced by :meth:`_next`, which returns that packet to
    ``BinLogStreamReader.fetchone`` (as pymysql would: a ``MysqlPacket``, an error packet
    raised) before reading the next one. The reader cuts the packets that lie whole in
    ``buf`` itself, with ``pos`` and ``seq`` in local variables that it writes back before
    anything else reads from the feed (:meth:`read_slow`, the library); the rest come from
    :meth:`read_slow`.

    Framing (pymysql's ``_read_packet`` took a third of the reading time for 2 packets per
    row): a 4-byte header (payload length, sequence number) before each payload, a payload of
    16 MiB - 1 bytes continued by the next packet. The bytes come from the connection's
    buffered socket file in chunks of up to 256 KiB, so one system call brings many packets;
    the packets are cut out of the chunk. The sequence numbers are checked and kept in the
    connection as pymysql does; a lost connection raises pymysql's OperationalError 2013.
    """

    _CHUNK = 1 << 18
    _MAX = 0xFFFFFF

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.rfile: Any = conn._rfile
        self.buf = b""
        self.pos = 0
        self.seq: int = conn._next_seq_id
        self.pending: bytes | None = None
        conn._read_packet = self._next

    def read(self) -> bytes:
        """The payload of the next packet (the library's reads; the reader's own fast path
        cuts the packets out of ``buf`` itself)."""
        buf, pos = self.buf, self.pos
        if pos + 4 <= len(buf):
            n = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + n
            if end <= len(buf) and n != 0xFFFFFF and buf[pos + 3] == self.seq:
                self.pos = end
                self.seq = (self.seq + 1) & 255
                return buf[pos + 4 : end]
        return self.read_slow()

    def read_slow(self) -> bytes:
        """The payload of the next packet, reading from the socket as needed."""
        parts = []
        while True:
            head = self._take(4)
            n = head[0] | head[1] << 8 | head[2] << 16
            if head[3] != self.seq:
                self.conn._force_close()
                if head[3] == 0:  # MariaDB sends an error packet numbered 0 when shutting down
                    raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
                raise pymysql.err.InternalError(
                    f"Packet sequence number wrong - got {head[3]} expected {self.seq}"
                )
            self.seq = (self.seq + 1) & 255
            parts.append(self._take(n))
            if n < self._MAX:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take(self, n: int) -> bytes:
        buf, pos = self.buf, self.pos
        while len(buf) - pos < n:
            try:
                chunk = self.rfile.read1(max(self._CHUNK, n - (len(buf) - pos)))
            except InterruptedError:
                continue
            except OSError as exc:
                self.conn._force_close()
                raise pymysql.err.OperationalError(2013, f"Lost connection to MySQL server during query ({exc})") from None
            if not chunk:
                self.conn._force_close()
                raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
            buf = buf[pos:] + chunk
            pos = 0
        self.buf = buf
        self.pos = pos + n
        return buf[pos : pos + n]

    def _next(self, packet_type: Any = MysqlPacket) -> Any:
        data = self.pending
        if data is None:
            data = self.read()
        else:
            self.pending = None
        self.conn._next_seq_id = self.seq
        packet = packet_type(data, self.conn.encoding)
        if packet.is_error_packet():
            packet.raise_for_error()
        return packet


def _rows_layout(data: bytes, event_type: int, at: int = 0) -> tuple[int, int] | None:
    """(offset of the columns-present bitmap, number of columns) in a rows event packet
    starting at ``data[at]``."""
    pos = at + _EVENT_START + 8  # 6-byte table id, 2-byte flags
    if event_type >= 30:  # v2: extra data, its length counting its own 2 bytes
        pos += data[pos] | data[pos + 1] << 8
    n = data[pos]
    if n < 251:
        return pos + 1, n
    if n == 252:
        return pos + 3, data[pos + 1] | data[pos + 2] << 8
    return None


def _checked_layout(event: Any) -> int | None:
    """The checksum length for the fast path, if :func:`_rows_layout` finds the rows of this
    event (just built by the library, rows not read yet) where the library found them; None
    (the library keeps reading this table map's events) if not."""
    try:
        wrapper = event.packet
        data = wrapper.packet.get_all_data()
        bitmaps = len(event.columns_present_bitmap) + len(getattr(event, "columns_present_bitmap2", b"") or b"")
        start = _EVENT_START + int(wrapper.read_bytes) - bitmaps
        checksum = len(data) - _EVENT_START - int(event.event_size)
        layout = _rows_layout(data, int(event.event_type))
    except (AttributeError, IndexError, TypeError):
        return None
    if layout is None or layout != (start, int(event.number_of_columns)) or checksum not in (0, 4):
        return None
    return checksum


def _mark_json(row: dict[str, Any] | None, columns: tuple[str, ...]) -> None:
    if row is not None:
        for c in columns:
            v = row.get(c)
            if type(v) is str:
                row[c] = JsonText(v)


_TRUNCATE = re.compile(
    r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:`((?:[^`]|``)+)`|(\w+))(?:\.(?:`((?:[^`]|``)+)`|(\w+)))?\s*$",
    re.IGNORECASE,
)


def _ends_transaction(query: str) -> bool:
    """Every query event but BEGIN/XA START ends its GTID transaction (COMMIT, DDL)."""
    q = query.lstrip()[:8].upper()
    return not (q.startswith("BEGIN") or q.startswith("XA START"))


def _truncated_table(query: str, default_schema: str) -> TableId | None:
    m = _TRUNCATE.match(query)
    if m is None:
        return None
    first = (m.group(1) or m.group(2) or "").replace("``", "`")
    second = (m.group(3) or m.group(4) or "").replace("``", "`")
    return TableId(first, second) if second else TableId(default_schema, first)


def _is_dml(query: str) -> bool:
    q = query.lstrip()[:7].upper()
    return q.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))
