"""``replicator sync-now``: ask a running flow to poll (or run a scheduled batch) right away.

A flow whose ``run`` is active holds its lock on the target (:class:`~replicator.snapstate.FlowLock`),
so another process cannot run it; instead it leaves a request row in the target's state schema
(``<state_schema>.sync_requests``, one row per flow), which the running flow's poll loop (or a
scheduler) takes — deletes — within a second and answers by starting a round at once. The row
is written through :class:`~replicator.statedb.StateDB`, so both target dialects work, and it
holds no secret: the flow's name and when it was asked.

:func:`request` and :func:`take` are all a consumer needs; :func:`pending` lets the asking
command wait until its request was taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .statedb import StateDB

TABLE = "sync_requests"


def ensure(conn: Any, schema: str) -> None:
    """Create the request table if missing (commits)."""
    import psycopg

    db = StateDB(conn, schema)
    try:
        db.exec(f"CREATE TABLE IF NOT EXISTS {db.table(TABLE)} (flow {db.short} PRIMARY KEY,"
                f" requested_at {db.ts} NOT NULL){db.suffix}")
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
        conn.rollback()  # another flow on this target created it at the same moment
        return
    db.commit()


def request(conn: Any, schema: str, flow: str) -> None:
    """Ask ``flow`` to sync now (idempotent: one request per flow; commits)."""
    ensure(conn, schema)
    db = StateDB(conn, schema)
    if db.is_pg:
        db.exec(f"INSERT INTO {db.table(TABLE)} (flow, requested_at) VALUES (%s, {db.now})"
                " ON CONFLICT (flow) DO UPDATE SET requested_at = EXCLUDED.requested_at", (flow,))
    else:
        db.exec(f"INSERT INTO {db.table(TABLE)} (flow, requested_at) VALUES (%s, {db.now})"
                " ON DUPLICATE KEY UPDATE requested_at = VALUES(requested_at)", (flow,))
    db.commit()


def take(conn: Any, schema: str, flow: str) -> bool:
    """True if ``flow`` was asked to sync now; the request is removed (commits). A missing
    table means no request."""
    db = StateDB(conn, schema)
    return _unless_missing(conn, lambda: db.exec_count(f"DELETE FROM {db.table(TABLE)} WHERE flow = %s", (flow,)) > 0)


def pending(conn: Any, schema: str, flow: str) -> bool:
    """Whether ``flow``'s request is still waiting to be taken."""
    db = StateDB(conn, schema)
    return _unless_missing(conn, lambda: bool(db.exec(f"SELECT 1 FROM {db.table(TABLE)} WHERE flow = %s", (flow,))))


def _unless_missing(conn: Any, query: Callable[[], bool]) -> bool:
    """``query()`` committed; False when the request table does not exist (yet)."""
    try:
        answer = query()
    except Exception as exc:
        if _missing_table(exc):
            conn.rollback()
            return False
        raise
    conn.commit()
    return answer


def _missing_table(exc: Exception) -> bool:
    import psycopg
    import pymysql

    if isinstance(exc, psycopg.errors.UndefinedTable):
        return True
    return isinstance(exc, pymysql.err.ProgrammingError) and bool(exc.args) and exc.args[0] == 1146
