"""``replicator check``: every prerequisite, verified on the real systems, each with its fix.

Checks never stop at the first problem: a user fixing their setup wants the whole list. A
problem is (where, what is wrong, how to fix it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, FlowConfig, TableConfig
from .errors import ReplicatorError
from .mapping import TableMapping
from .transform import MappingError
from .transform import build as build_transform
from .binding import open_sink, open_source
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
    source_ok: dict[str, bool] = {}
    for flow in config.flows:
        if flow.mode == "poll":  # no log is read: no replication settings to demand
            polled = f"{flow.source} (polled)"
            if polled not in source_ok:
                source_ok[polled] = _check_poll_source(config, flow.source, ok, problems)
            _check_flow(config, flow, source_ok[polled], ok, problems)
            continue
        if flow.source not in source_ok:
            check = _check_pg_source if config.systems[flow.source].engine == "postgresql" else _check_mysql_source
            source_ok[flow.source] = check(config, flow.source, ok, problems)
        _check_flow(config, flow, source_ok[flow.source], ok, problems)
    return ok, problems


def _check_pg_source(config: Config, name: str, ok: list[str], problems: list[Problem]) -> bool:
    where = f"system {name}"
    try:
        conn = connect(config.systems[name].url, "source")
    except ReplicatorError as exc:
        problems.append(Problem(where, str(exc), _CONNECT_FIX))
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


def _check_mysql_source(config: Config, name: str, ok: list[str], problems: list[Problem]) -> bool:
    from .mysql.source import binlog_problems
    from .mysql.writer import connect as mysql_connect

    where = f"system {name}"
    try:
        conn = mysql_connect(config.systems[name].url)
    except ReplicatorError as exc:
        problems.append(Problem(where, str(exc), _CONNECT_FIX))
        return False
    try:
        found = binlog_problems(conn)
        for what, fix in found:
            problems.append(Problem(where, what, fix))
        if not found:
            ok.append(f"{where}: binlog on, ROW format, FULL row image and metadata")
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(str(r[0]) for r in cur.fetchall()).upper()
        if "ALL PRIVILEGES ON *.*" in grants or "REPLICATION SLAVE" in grants or "REPLICATION REPLICA" in grants:
            ok.append(f"{where}: user may read the binlog")
        else:
            problems.append(
                Problem(where, "the user lacks the REPLICATION SLAVE privilege", "GRANT REPLICATION SLAVE ON *.* TO <user>")
            )
    finally:
        conn.close()
    return True


_CONNECT_FIX = "check the URL, the user's password and that the server runs"


def _check_poll_source(config: Config, name: str, ok: list[str], problems: list[Problem]) -> bool:
    """A polled source needs a connection and SELECT rights only (checked per table)."""
    from .poll.dialect import dialect_for

    where = f"system {name}"
    dialect = dialect_for(config.systems[name].engine)
    try:
        conn = dialect.connect(config.systems[name].url, "source")
    except ReplicatorError as exc:
        problems.append(Problem(where, str(exc), _CONNECT_FIX))
        return False
    conn.close()
    ok.append(f"{where}: reachable (polled: no replication settings needed)")
    return True


def _check_polled(source: object, flow: FlowConfig, table: TableConfig, info: object, where: str, ok: list[str],
                  problems: list[Problem]) -> None:
    """A polled table: a primary key, its poll column (NOT NULL), and the right to read them."""
    from .mapping import TableInfo
    from .poll.source import PollSource

    assert isinstance(source, PollSource) and isinstance(info, TableInfo)
    src = info.table
    column = flow.poll_column(table) or ""
    col = info.column(column)
    if not info.primary_key:
        problems.append(Problem(where, f"polled table {src} has no primary key (rows are read in key order and"
                                " deletes found by key)", f"add a primary key to {src}"))
    if col is None:
        problems.append(Problem(where, f"polled table {src} has no column {column!r} to poll by",
                                f"add a column that every write sets (e.g. updated_at), or set tables[].poll_column"))
        return
    if col.nullable:
        problems.append(Problem(where, f"poll column {src}.{column} may be NULL: rows where it is NULL are never read",
                                f"fill it and make it NOT NULL (with a default, e.g. the current time)"))
    reason = source._io(lambda: source.d.can_read(source.conn, src, column))
    if reason is not None:
        problems.append(Problem(where, f"cannot read {src}: {reason}", f"GRANT SELECT ON {src} TO <user>"))
        return
    ok.append(f"{where}: polled table {src} can be read by {column}")


def _check_creatable(
    config: Config, flow: FlowConfig, table: TableConfig, where: str, ok: list[str], problems: list[Problem]
) -> None:
    """A missing target table is fine if the snapshot can create it from the source's."""
    from .schema import plan_tables

    dst = config.target_table(flow, table)
    try:
        plan_tables(config, flow, [table])
    except ReplicatorError as exc:
        problems.append(Problem(where, f"target table {dst} does not exist and cannot be created: {exc}",
                                f"create {dst} on system {flow.target} by hand"))
        return
    ok.append(f"{where}: target table {dst} does not exist yet: the snapshot creates it")


def _check_flow(config: Config, flow: FlowConfig, source_ok: bool, ok: list[str], problems: list[Problem]) -> None:
    where = f"flow {flow.name}"
    sink = None
    try:
        sink = open_sink(config, flow)
    except ReplicatorError as exc:
        problems.append(Problem(f"system {flow.target}", str(exc), _CONNECT_FIX))
    source = open_source(config, flow) if source_ok else None
    try:
        if sink is not None and config.systems[flow.target].engine == "postgresql" \
                and any(f.source == flow.target for f in config.flows):
            _check_origin_rights(sink, flow, where, ok, problems)
        if sink is not None and flow.two_way and flow.conflicts == "last_writer_wins" \
                and config.systems[flow.target].engine == "postgresql":
            on = sink.conn.execute("SHOW track_commit_timestamp").fetchone()[0]  # type: ignore[attr-defined]
            sink.conn.rollback()  # type: ignore[attr-defined]
            if on != "on":
                problems.append(Problem(f"system {flow.target}", "track_commit_timestamp is off: last_writer_wins"
                                        " needs the commit time of the rows", "set track_commit_timestamp = on in"
                                        " postgresql.conf and restart the server"))
            else:
                ok.append(f"system {flow.target}: track_commit_timestamp = on")
        if flow.schedule is not None and source_ok:
            _check_retention(config, flow, where, ok, problems)
        for table in flow.tables:
            src = config.source_table(flow, table)
            dst = config.target_table(flow, table)
            src_info = source.describe(src) if source is not None else None
            if source is not None:
                if src_info is None:
                    problems.append(Problem(where, f"source table {src} does not exist", "create it or fix 'tables[].source'"))
                elif not src_info.primary_key and src_info.replica_identity not in ("f", "i"):
                    fix = (
                        f"add a primary key, or ALTER TABLE {src} REPLICA IDENTITY FULL"
                        if config.systems[flow.source].engine == "postgresql"
                        else f"add a primary key to {src}"
                    )
                    problems.append(Problem(where, f"source table {src} has no primary key or replica identity", fix))
                else:
                    ok.append(f"{where}: source table {src} has a key")
                if src_info is not None and flow.mode == "poll":
                    _check_polled(source, flow, table, src_info, where, ok, problems)
                if src_info is not None and flow.two_way and config.systems[flow.source].engine == "postgresql":
                    if src_info.replica_identity != "f":
                        problems.append(Problem(
                            where, f"source table {src} does not send its old rows, which two-way conflict"
                            " detection compares with the target's", f"ALTER TABLE {src} REPLICA IDENTITY FULL"))
                    else:
                        ok.append(f"{where}: source table {src} sends old rows (REPLICA IDENTITY FULL)")
            if sink is None:
                continue
            dst_info = sink.describe(dst)
            if dst_info is None:
                if flow.snapshot == "initial" and src_info is not None:
                    _check_creatable(config, flow, table, where, ok, problems)
                else:
                    problems.append(Problem(
                        where, f"target table {dst} does not exist",
                        f"create {dst} on system {flow.target} (`replicator snapshot --schema-only` creates it)",
                    ))
                continue
            if src_info is not None:
                try:
                    if table.plain:
                        TableMapping(src, dst, table.renames).bind(src_info, dst_info)
                    else:
                        build_transform(table, src_info, dst_info)
                    ok.append(f"{where}: {src} -> {dst} columns match")
                except MappingError as exc:
                    problems.append(Problem(f"{where}.{exc.path}", exc.message, "fix the table's mapping in the config"))
                except ReplicatorError as exc:
                    problems.append(Problem(where, str(exc), "fix the target table or the 'columns' mapping"))
    finally:
        if sink is not None:
            sink.close()
        if source is not None:
            source.close()


def _check_retention(config: Config, flow: FlowConfig, where: str, ok: list[str], problems: list[Problem]) -> None:
    """A scheduled flow leaves the source's log unread between runs: it must be kept that long."""
    from datetime import datetime, timezone

    from .schedule import next_run

    assert flow.schedule is not None
    sched = flow.schedule.plan()
    first = next_run(sched, datetime.now(timezone.utc))
    gap = (next_run(sched, first, last_start=first) - first).total_seconds()
    system = config.systems[flow.source]
    if system.engine == "postgresql":
        with connect(system.url, "source") as conn:
            keep = str(conn.execute("SHOW max_slot_wal_keep_size").fetchone()[0])  # type: ignore[index]
        bound = "no limit" if keep == "-1" else f"at most max_slot_wal_keep_size = {keep}, then the slot is lost"
        ok.append(f"{where}: scheduled ({sched.text}, runs up to {gap / 3600:.3g} h apart): the source keeps the"
                  f" WAL of that time in slot {flow.slot_name} ({bound})")
        return
    import pymysql

    from .mysql.writer import connect as mysql_connect

    my = mysql_connect(system.url)
    try:
        with my.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.expire_logs_days")
            seconds = float((cur.fetchone() or [0])[0] or 0) * 86400
            try:  # MySQL 8 and MariaDB 10.6+ (on MySQL it replaces expire_logs_days)
                cur.execute("SELECT @@GLOBAL.binlog_expire_logs_seconds")
                seconds = float((cur.fetchone() or [0])[0] or 0) or seconds
            except pymysql.err.Error:
                pass
    finally:
        my.close()
    if seconds and seconds < gap * 2:
        problems.append(Problem(where, f"binlogs expire after {seconds / 3600:g} h, while the schedule ({sched.text})"
                                f" runs up to {gap / 3600:.3g} h apart: a missed run would find its binlogs purged",
                                "keep binlogs longer: SET GLOBAL binlog_expire_logs_seconds (and in the server's"
                                " config) to at least twice the interval"))
    else:
        kept = f"{seconds / 3600:g} h" if seconds else "until purged by hand"
        ok.append(f"{where}: scheduled ({sched.text}, runs up to {gap / 3600:.3g} h apart): binlogs are kept {kept}")


def _check_origin_rights(sink: object, flow: FlowConfig, where: str, ok: list[str], problems: list[Problem]) -> None:
    """The loop guard tags what the flow writes with replication origins (superuser-only
    functions unless granted): another flow reads this target."""
    conn = sink.conn  # type: ignore[attr-defined]
    names = ("pg_replication_origin_create(text)", "pg_replication_origin_session_setup(text)",
             "pg_replication_origin_session_reset()", "pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)",
             "pg_replication_origin_oid(text)")
    missing = [n for n in names if not conn.execute("SELECT has_function_privilege(%s, 'EXECUTE')", (n,)).fetchone()[0]]
    conn.rollback()
    if missing:
        problems.append(Problem(
            where, "the target user may not tag its writes with replication origins (the loop guard needs"
            " them: another flow reads this target)",
            "; ".join(f"GRANT EXECUTE ON FUNCTION {n} TO <user>" for n in missing)))
    else:
        ok.append(f"{where}: writes can be tagged with replication origins")

