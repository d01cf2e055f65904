"""Automatic rollback: undo on the target what a flow applied after a point, from its audit trail.

The audit trail (``replicator.audit``) holds every operation the flow applied, as written, with
its before-image: an insert's undo deletes the row; an update's sets the changed columns back
to their old values; a delete's re-inserts the old row. Entries are undone newest first, all
in ONE target transaction together with what follows (so a failure leaves the target as it
was):

- the undone entries are marked (``decision = 'rolled back to P'``) and one ``rollback`` entry
  records what was done, so a second rollback never undoes an entry twice;
- then the flow is paused before its next transaction (default: the source presumably holds the
  bad changes; ``replicator resume FLOW`` goes on with whatever comes next), or, with
  ``--then rewind``, its checkpoint goes back to the point, so the source's changes since then
  are applied again (useful once the source was corrected, or to redo a target-side mistake).

Nothing is guessed: an update recorded without its old values (a PostgreSQL source table
without ``REPLICA IDENTITY FULL`` sends no old row), a delete recorded with only its key, or a
truncate refuses the whole rollback, naming the entry and the reason.

Values come back from the JSON of the audit trail and are converted through the target
column's type (read from the target's catalog): on PostgreSQL bound as text with an explicit
cast (``%s::numeric(12,2)``), on MySQL/MariaDB as text (integers as integers, bytes from their
hex, timestamps to naive UTC, ``TIME`` from a duration).

Positions: an entry is "after" the point when its transaction is (PostgreSQL: the commit LSN at
or after the point; MariaDB: its GTID past the point's state in its domain). MySQL sources
without GTIDs record no transaction position: refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .audit import AuditEntry, AuditTrail
from .config import Config, FlowConfig
from .guards import ANY_TRANSACTION, Pauses
from .protocols import Checkpoint, Sink
from .records import TableId
from .rewind import Point, RewindRefused, check_held, refuse_two_way, resolve, set_checkpoint
from .statedb import StateDB, loads

UNDOABLE = ("c", "u", "d")


@dataclass
class Undo:
    """One statement undoing one audit entry: kind (delete | update | insert), the table, the
    row's key, the values to set (update) or insert (insert)."""

    entry_id: int
    kind: str
    table: TableId
    key: dict[str, Any]
    values: dict[str, Any]


@dataclass
class RollbackPlan:
    checkpoint: Checkpoint
    point: Point
    undo: list[Undo]  # newest first
    entry_ids: list[int]


def undo_of(entry: AuditEntry, table: TableId, columns: list[str]) -> Undo:
    """The statement undoing ``entry`` (``columns``: the target table's); raises RewindRefused
    when the trail does not hold what the undo needs."""
    where = f"audit entry {entry.id} ({entry.op} on {table} key {json.dumps(entry.key, sort_keys=True)})"
    assert entry.id is not None
    if entry.op == "t":
        raise RewindRefused(f"{where}: a truncate cannot be undone from the audit trail")
    if not entry.key:
        raise RewindRefused(f"{where}: the entry has no key")
    if entry.op == "c":
        return Undo(entry.id, "delete", table, entry.key, {})
    if entry.op == "u":
        if entry.before is None:
            raise RewindRefused(f"{where}: the old values were not recorded (the source sent no old row; on a"
                                " PostgreSQL source set REPLICA IDENTITY FULL on the table): cannot undo the update")
        return Undo(entry.id, "update", table, entry.key, dict(entry.before))
    if entry.op == "d":
        before = entry.before or {}
        missing = [c for c in columns if c not in before]
        if missing:
            raise RewindRefused(f"{where}: only the deleted row's key was recorded, not {', '.join(missing)} (on a"
                                " PostgreSQL source set REPLICA IDENTITY FULL on the table): cannot re-insert it")
        return Undo(entry.id, "insert", table, entry.key, dict(before))
    raise RewindRefused(f"{where}: unknown operation")


def after_point(engine: str, entry_position: str | None, point: str) -> bool:
    """Whether the transaction at ``entry_position`` comes after the checkpoint ``point``."""
    if entry_position is None:
        raise RewindRefused("the audit trail holds entries without a source position: cannot tell which to undo")
    if engine == "postgresql":
        from .pg.pgoutput import str_to_lsn

        return bool(str_to_lsn(entry_position) >= str_to_lsn(point))
    from .mysql.positions import MariaGtid

    if ":" in point or entry_position.count("-") != 2:
        raise RewindRefused("rollback needs transaction positions: a PostgreSQL or a MariaDB (GTID) source")
    domain, _server, seq = (int(x) for x in entry_position.split("-"))
    return seq > MariaGtid.parse(point).seq(domain)


# -- values back from JSON --------------------------------------------------------------------

_TD = re.compile(r"(?:(-?\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _seconds(text: str) -> float | None:
    """A ``str(timedelta)`` as seconds (None if it is not one)."""
    m = _TD.fullmatch(text)
    if not m:
        return None
    return int(m.group(1) or 0) * 86400 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))


def pg_text(value: Any, pg_type: str) -> Any:
    """A JSON value as PostgreSQL input text for a column of ``pg_type`` (bound with a cast)."""
    if value is None:
        return None
    if pg_type.endswith("[]") and isinstance(value, list):
        return [pg_text(v, pg_type[:-2]) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and pg_type == "interval" and _seconds(value) is not None:
        return value.replace(",", "")  # '1 day, 2:00:00' -> '1 day 2:00:00'
    return str(value)


def my_value(value: Any, data_type: str) -> Any:
    """A JSON value as MySQL/MariaDB takes it for a column of ``data_type`` (information_schema)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if data_type in ("binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob") and text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    if data_type in ("datetime", "timestamp"):
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return text
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        return dt.isoformat(sep=" ")
    if data_type == "time":
        secs = _seconds(text)
        if secs is not None:
            sign, secs = ("-" if secs < 0 else ""), abs(secs)
            whole = int(secs)
            frac = f"{secs - whole:.6f}"[1:] if secs != whole else ""
            return f"{sign}{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}{frac}"
    return text


# -- the target's side ------------------------------------------------------------------------

def column_types(conn: Any, table: TableId, is_pg: bool) -> dict[str, str]:
    """Column -> type, from the catalog, in the open transaction: PostgreSQL's declared type
    (``numeric(12,2)``, ``text[]``), MySQL's bare type name (``datetime``, ``varbinary``)."""
    if is_pg:
        from .pg.catalog import describe_table as describe_pg

        info = describe_pg(conn, table)
        return {} if info is None else {c.name: c.type.lower() for c in info.columns}
    from .mysql.catalog import base_type, describe_table as describe_my

    info = describe_my(conn, table)
    return {} if info is None else {c.name: base_type(c) for c in info.columns}


def _pg_statement(u: Undo, types: dict[str, str]) -> tuple[Any, list[Any]]:
    from psycopg import sql

    def val(col: str, v: Any) -> tuple[sql.Composable, Any]:
        return sql.SQL("%s::{}").format(sql.SQL(types[col])), pg_text(v, types[col])

    tbl = sql.Identifier(u.table.schema, u.table.name)
    params: list[Any] = []
    conds = []
    for c, v in u.key.items():
        ph, p = val(c, v)
        conds.append(sql.SQL("{} = ").format(sql.Identifier(c)) + ph)
        params.append(p)
    where = sql.SQL(" AND ").join(conds)
    if u.kind == "delete":
        return sql.SQL("DELETE FROM {} WHERE {}").format(tbl, where), params
    if u.kind == "update":
        sets, sparams = [], []
        for c, v in u.values.items():
            ph, p = val(c, v)
            sets.append(sql.SQL("{} = ").format(sql.Identifier(c)) + ph)
            sparams.append(p)
        return sql.SQL("UPDATE {} SET {} WHERE {}").format(tbl, sql.SQL(", ").join(sets), where), sparams + params
    cols = list(u.values)
    phs, ins_params = [], []
    for c in cols:
        ph, p = val(c, u.values[c])
        phs.append(ph)
        ins_params.append(p)
    rest = [c for c in cols if c not in u.key]
    conflict = sql.SQL("DO NOTHING") if not rest else sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in rest))
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        tbl, sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(phs),
        sql.SQL(", ").join(map(sql.Identifier, u.key)), conflict)
    return q, ins_params


def _my_statement(u: Undo, types: dict[str, str]) -> tuple[str, list[Any]]:
    from .mysql.writer import qtable, quote

    tbl = qtable(u.table)
    where = " AND ".join(f"{quote(c)} = %s" for c in u.key)
    kparams = [my_value(v, types[c]) for c, v in u.key.items()]
    if u.kind == "delete":
        return f"DELETE FROM {tbl} WHERE {where}", kparams
    if u.kind == "update":
        sets = ", ".join(f"{quote(c)} = %s" for c in u.values)
        return f"UPDATE {tbl} SET {sets} WHERE {where}", [my_value(v, types[c]) for c, v in u.values.items()] + kparams
    cols = list(u.values)
    rest = [c for c in cols if c not in u.key] or cols[:1]
    q = (f"INSERT INTO {tbl} ({', '.join(map(quote, cols))}) VALUES ({', '.join(['%s'] * len(cols))})"
         f" ON DUPLICATE KEY UPDATE {', '.join(f'{quote(c)} = VALUES({quote(c)})' for c in rest)}")
    return q, [my_value(u.values[c], types[c]) for c in cols]


# -- plan and run ------------------------------------------------------------------------------

def plan(config: Config, flow: FlowConfig, sink: Sink, to: str | datetime) -> RollbackPlan:
    """What a rollback to ``to`` would undo, checked (nothing written)."""
    refuse_two_way(flow, "rollback")
    if flow.audit is None:
        raise RewindRefused(f"flow {flow.name} has no audit trail (audit: true): there is nothing to undo from")
    current = sink.read_checkpoint(flow.name)
    if current is None:
        raise RewindRefused(f"flow {flow.name} has no checkpoint yet: nothing to roll back")
    point = resolve(config, flow, sink, to)
    if point.commit_time is not None and \
            point.commit_time < datetime.now(timezone.utc) - timedelta(days=flow.audit.retention_days):
        raise RewindRefused(f"flow {flow.name}: {point.position} is older than the audit trail's retention"
                            f" ({flow.audit.retention_days:g} days): entries since then may be gone")
    engine = config.systems[flow.source].engine
    db = StateDB(sink.conn, config.state_schema)
    trail = AuditTrail(sink.conn, config.state_schema)
    trail.ensure()
    since = point.commit_time - timedelta(minutes=5) if point.commit_time is not None else None
    rows = db.exec(
        f"SELECT id, target_table, row_key, op, before_values, after_values, position FROM {trail.t}"
        " WHERE flow = %s AND op IN ('c', 'u', 'd', 't') AND (decision IS NULL OR decision NOT LIKE 'rolled back%%')"
        + (" AND (commit_time IS NULL OR commit_time >= %s)" if since is not None else "")
        + " ORDER BY id DESC",
        [flow.name] + ([db.ts_value(since)] if since is not None else []),
    )
    targets = {str(config.target_table(flow, t)): config.target_table(flow, t) for t in flow.tables}
    types: dict[TableId, dict[str, str]] = {}
    undo: list[Undo] = []
    for r in rows:
        if not after_point(engine, r[6], point.position):
            continue
        table = targets.get(str(r[1]))
        if table is None:
            raise RewindRefused(f"audit entry {r[0]}: table {r[1]} is no longer in flow {flow.name}")
        if table not in types:
            types[table] = column_types(sink.conn, table, db.is_pg)
        entry = AuditEntry(flow.name, "", str(r[1]), loads(r[2]), str(r[3]), loads(r[4]), loads(r[5]), r[6], None,
                           id=int(r[0]))
        u = undo_of(entry, table, list(types[table]))
        unknown = [c for c in [*u.key, *u.values] if c not in types[table]]
        if unknown:
            raise RewindRefused(f"audit entry {r[0]}: target table {table} has no column {', '.join(unknown)} any more:"
                                " cannot undo it")
        undo.append(u)
    sink.conn.commit()
    return RollbackPlan(current, point, undo, [u.entry_id for u in undo])


def run(config: Config, flow: FlowConfig, sink: Sink, p: RollbackPlan, then: str) -> None:
    """Undo, mark, then pause or rewind: one target transaction."""
    schema = config.state_schema
    db = StateDB(sink.conn, schema)
    pauses = Pauses(sink.conn, schema)
    pauses.ensure()  # DDL first: MySQL commits implicitly on DDL
    trail = AuditTrail(sink.conn, schema)
    sink.conn.commit()
    if then == "rewind":
        check_held(config, flow, p.point.position)
    types: dict[TableId, dict[str, str]] = {}
    for u in p.undo:
        if u.kind == "update" and not u.values:
            continue  # an update that changed nothing the target holds
        if u.table not in types:
            types[u.table] = column_types(sink.conn, u.table, db.is_pg)
        if db.is_pg:
            q, params = _pg_statement(u, types[u.table])
            sink.conn.execute(q, params)
        else:
            mq, params = _my_statement(u, types[u.table])
            db.exec(mq, params)
    mark = f"rolled back to {p.point.position}"
    for i in range(0, len(p.entry_ids), 1000):
        ids = p.entry_ids[i:i + 1000]
        db.exec(f"UPDATE {trail.t} SET decision = %s WHERE id IN ({', '.join(['%s'] * len(ids))})", [mark, *ids])
    trail.add([AuditEntry(flow.name, "", "", None, "rollback", None,
                          {"to": p.point.position, "undone": len(p.undo), "then": then,
                           "checkpoint": p.checkpoint.position},
                          p.point.position, p.point.commit_time)])
    if then == "rewind":
        set_checkpoint(config, flow, sink, p.checkpoint, p.point,
                       f"rollback to {p.point.position} from {p.checkpoint.position}")
    else:
        pauses.pause(flow.name, f"rolled back to {p.point.position}: check the source, then resume", ANY_TRANSACTION)
    sink.conn.commit()
