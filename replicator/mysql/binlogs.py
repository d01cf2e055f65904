"""What a MySQL/MariaDB server's binlogs still hold, and which position stood at a given time.

A rewind must never ask the server for a position it no longer has (the reader would stop at
error 1236, and the changes in between would be lost to the flow). The binlog files the server
keeps are ``SHOW BINARY LOGS``; on MariaDB the first event after each file's header is a
``Gtid_list`` event: the GTID state at the start of that file. A GTID state is held exactly when
it is at or past the oldest file's ``Gtid_list`` in every domain. (MySQL file:position
positions: the file must still be listed.)

A time is resolved from the binlog's own event times: the binlogs are read from the oldest
file, GTID events only, and the position is the GTID state just before the first transaction
that started at or after the time (binlog times are whole seconds; a transaction's GTID event
carries the time its commit was written). This reads the whole retained binlog (headers only,
no row decoding): seconds per gigabyte.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, MariadbGtidEvent

from ..errors import ReplicatorError
from ..urls import parse
from .positions import FilePos, MariaGtid
from .writer import pymysql_connect


def binlog_files(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [str(r[0]) for r in cur.fetchall()]


def oldest_state(conn: Any) -> tuple[str, MariaGtid]:
    """The oldest binlog file kept and the MariaDB GTID state at its start."""
    files = binlog_files(conn)
    if not files:
        raise ReplicatorError("the source keeps no binary logs")
    with conn.cursor() as cur:
        cur.execute(f"SHOW BINLOG EVENTS IN '{files[0]}' LIMIT 5")  # a name the server itself listed
        for row in cur.fetchall():
            if str(row[2]) == "Gtid_list":
                m = re.search(r"\[(.*)\]", str(row[5]))
                return files[0], MariaGtid.parse(m.group(1) if m else "")
    raise ReplicatorError(f"binlog {files[0]} has no Gtid_list event: not a MariaDB binlog with GTIDs")


def holds(conn: Any, position: MariaGtid | FilePos) -> str | None:
    """None when the binlogs still hold everything after ``position``; else why not."""
    if isinstance(position, FilePos):
        files = binlog_files(conn)
        if position.file in files:
            return None
        return f"binlog {position.file} is gone (the oldest kept is {files[0] if files else 'none'})"
    first, state = oldest_state(conn)
    if position >= state:
        return None
    return f"the oldest binlog kept ({first}) starts after GTID {state}"


_NO_SCHEMA = "replicator: no schema"  # a name no database has


def state_at(url: str, when: datetime, server_id: int) -> tuple[MariaGtid, datetime | None]:
    """The MariaDB GTID state just before the first transaction at or after ``when``, and the
    time of the last transaction before it (None: none is left in the binlogs)."""
    p = parse(url)
    control = pymysql_connect(host=p.host, port=p.port, user=p.user or "root", password=p.password or "",
                              autocommit=True)
    try:
        _first, state = oldest_state(control)
        with control.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            end = MariaGtid.parse(str(cur.fetchone()[0] or ""))
    finally:
        control.close()
    reader = BinLogStreamReader(
        connection_settings={"host": p.host, "port": p.port, "user": p.user or "root",
                             "password": p.password or "", "charset": "utf8mb4", "connect_timeout": 10},
        # blocking: a non-blocking dump (MariaDB 10.11) reset the connection midway through
        # large binlogs; the end is the GTID state read above, or a heartbeat (nothing more)
        server_id=server_id, blocking=True, slave_heartbeat=1.0, is_mariadb=True, auto_position=str(state),
        only_events=[MariadbGtidEvent, HeartbeatLogEvent], enable_logging=False, pymysql_wrapper=pymysql_connect,
        # only GTID events are wanted: keep the library from describing every table it meets
        only_schemas=[_NO_SCHEMA], freeze_schema=True,
    )
    cutoff = when.timestamp()
    last: datetime | None = None
    start = state
    try:
        while not state >= end:
            ev = reader.fetchone()
            if ev is None or isinstance(ev, HeartbeatLogEvent):
                break
            if ev.timestamp >= cutoff:
                if last is None and start.domains:  # the transactions just before may be purged
                    raise ReplicatorError(f"the source's binlogs do not reach back to {when.isoformat()}"
                                          f" (the oldest kept starts at GTID {start} with a later transaction)")
                break
            state = state.advance(ev.domain_id, ev.server_id, ev.gtid_seq_no)
            last = datetime.fromtimestamp(ev.timestamp, when.tzinfo)
    except pymysql.err.OperationalError as exc:
        raise ReplicatorError(f"cannot read the source's binlogs: {exc.args[-1]}") from None
    finally:
        reader.close()
    return state, last
