"""``replicator check``: every prerequisite, verified on the real systems, each with its fix.

Checks never stop at the first problem: a user fixing their setup wants the whole list. A
problem is (where, what is wrong, how to fix it).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .config import Config, FlowConfig
from .errors import ReplicatorError
from .mapping import TableMapping
from .pipeline import open_sink
from .pg.catalog import describe_table
from .pg.conn import connect


@dataclass(frozen=True)
class Problem:
    where: str
    what: str
    fix: str


def check_config(config: Config) -> tuple[list[str], list[Problem]]:
    """Returns (passed checks, problems)."""
    ok: list[str] = []
    problems: list[Problem] = []
    pg_ok: dict[str, bool] = {}
    for flow in config.flows:
        if flow.source not in pg_ok:
            pg_ok[flow.source] = _check_pg_source(config, flow.source, ok, problems)
        _check_flow(config, flow, pg_ok[flow.source], ok, problems)
    return ok, problems


def _check_pg_source(config: Config, name: str, ok: list[str], problems: list[Problem]) -> bool:
    where = f"system {name}"
    try:
        conn = connect(config.systems[name].url, "source")
    except ReplicatorError as exc:
        problems.append(Problem(where, str(exc), "check the URL, the user's password and that the server runs"))
        return False
    with conn:
        wal_level = str(conn.execute("SHOW wal_level").fetchone()[0])  # type: ignore[index]
        if wal_level != "logical":
            problems.append(
                Problem(where, f"wal_level is {wal_level}", "set wal_level = logical in postgresql.conf and restart the server")
            )
        else:
            ok.append(f"{where}: wal_level = logical")
        role = conn.execute(
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not role or not role[0]:
            problems.append(
                Problem(where, "the user lacks the REPLICATION attribute", "ALTER ROLE <user> WITH REPLICATION")
            )
        else:
            ok.append(f"{where}: user may replicate")
        slots = conn.execute("SHOW max_replication_slots").fetchone()
        if slots and int(str(slots[0])) < 1:
            problems.append(Problem(where, "max_replication_slots is 0", "set max_replication_slots >= 1 and restart"))
    return True


def _check_flow(config: Config, flow: FlowConfig, source_ok: bool, ok: list[str], problems: list[Problem]) -> None:
    where = f"flow {flow.name}"
    sink = None
    try:
        sink = open_sink(config, flow)
    except ReplicatorError as exc:
        problems.append(
            Problem(f"system {flow.target}", str(exc), "check the URL, the user's password and that the server runs")
        )
    source_conn: psycopg.Connection[tuple[object, ...]] | None = None
    if source_ok:
        try:
            source_conn = connect(config.systems[flow.source].url, "source")
        except ReplicatorError:
            source_conn = None
    try:
        for table in flow.tables:
            src = config.source_table(flow, table)
            dst = config.target_table(flow, table)
            src_info = describe_table(source_conn, src) if source_conn is not None else None
            if source_conn is not None:
                if src_info is None:
                    problems.append(Problem(where, f"source table {src} does not exist", "create it or fix 'tables[].source'"))
                elif not src_info.primary_key and src_info.replica_identity not in ("f", "i"):
                    problems.append(
                        Problem(
                            where,
                            f"source table {src} has no primary key or replica identity",
                            f"add a primary key, or ALTER TABLE {src} REPLICA IDENTITY FULL",
                        )
                    )
                else:
                    ok.append(f"{where}: source table {src} has a key")
            if sink is None:
                continue
            dst_info = sink.describe(dst)
            if dst_info is None:
                problems.append(Problem(where, f"target table {dst} does not exist", f"create {dst} on system {flow.target}"))
                continue
            if src_info is not None:
                try:
                    TableMapping(src, dst, table.columns).bind(src_info, dst_info)
                    ok.append(f"{where}: {src} -> {dst} columns match")
                except ReplicatorError as exc:
                    problems.append(Problem(where, str(exc), "fix the target table or the 'columns' mapping"))
    finally:
        if sink is not None:
            sink.close()
        if source_conn is not None:
            source_conn.close()
