"""Reading where flows stand: the target's checkpoint next to the source's current position."""

from __future__ import annotations

from typing import Any

from .config import Config, FlowConfig
from .errors import ReplicatorError
from .binding import open_sink, open_source
from .snapstate import SnapshotState


def checkpoint_rows(config: Config, flows: list[FlowConfig], *, counts: bool = False) -> list[dict[str, Any]]:
    """Per flow: the checkpoint and snapshots on the target, the source's position now and the
    lag between them; with ``counts``, also the state tables' figures (see :func:`_state_counts`)."""
    from .probe import position_lag

    rows: list[dict[str, Any]] = []
    for flow in flows:
        sink = open_sink(config, flow)
        try:
            sink.ensure_state()
            cp = sink.read_checkpoint(flow.name)
            state = SnapshotState(sink.conn, config.state_schema)
            state.ensure()
            snapshots = state.load(flow.name)
            sink.conn.commit()
            extra = _state_counts(sink.conn, config.state_schema, flow.name) if counts else {}
        finally:
            sink.close()
        source = open_source(config, flow)
        try:
            now = source.current_position()
            now_text = source.format_position(now)
            lag: int | None = None
            unit = "bytes"
            if cp is not None:
                try:
                    lag, unit = position_lag(now, source.parse_position(cp.position))
                except (ValueError, ReplicatorError):
                    lag = None
        finally:
            source.close()
        rows.append(
            {
                "flow": flow.name,
                "source": flow.source,
                "target": flow.target,
                "position": cp.position if cp else None,
                "source_commit_time": cp.source_commit_time.isoformat() if cp and cp.source_commit_time else None,
                "updated_at": cp.updated_at.isoformat() if cp and cp.updated_at else None,
                "changes_applied": cp.changes_applied if cp else 0,
                "transactions_applied": cp.transactions_applied if cp else 0,
                "source_position": now_text,
                "lag_bytes": lag if unit == "bytes" else None,
                "lag_position": lag,
                "lag_unit": unit,
                "snapshots": [
                    {
                        "table": st.table,
                        "status": st.status,
                        "position": st.position,
                        "rows_copied": st.rows_copied,
                        "rows_estimated": st.rows_estimated,
                        "finished_at": st.finished_at.isoformat() if st.finished_at else None,
                    }
                    for st in sorted(snapshots.values(), key=lambda st: st.table)
                ],
                **extra,
            }
        )
    return rows


def _state_counts(conn: Any, schema: str, flow: str) -> dict[str, Any]:
    """Open dead letters, conflicts (all, and parked) and the pause of a flow, from the
    target's state tables (a table that does not exist yet counts nothing)."""
    from .statedb import StateDB

    db = StateDB(conn, schema)
    out: dict[str, Any] = {"dead_letters_open": 0, "conflicts_total": 0, "conflicts_parked": 0, "pause": None}
    queries = {
        "dead_letters_open": f"SELECT count(*) FROM {db.table('dead_letters')} WHERE flow = %s AND status = 'open'",
        "conflicts_total": f"SELECT count(*) FROM {db.table('conflicts')} WHERE flow = %s",
        "conflicts_parked": f"SELECT count(*) FROM {db.table('conflicts')} WHERE flow = %s AND status = 'parked'",
    }
    for name, query in queries.items():
        try:
            out[name] = int(db.exec(query, (flow,))[0][0])
        except Exception:  # noqa: BLE001 -- the table is created by the first run that needs it
            conn.rollback()
    try:
        rows = db.exec(f"SELECT status, reason, position, paused_at FROM {db.table('pauses')} WHERE flow = %s", (flow,))
        if rows and rows[0][0] == "paused":
            out["pause"] = {"reason": rows[0][1], "position": rows[0][2], "since": jsonable_time(db.ts_read(rows[0][3]))}
    except Exception:  # noqa: BLE001
        conn.rollback()
    conn.commit()
    return out


def jsonable_time(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def live_status(config: Config, timeout: float = 2.0) -> tuple[dict[str, Any] | None, str | None]:
    """The running instance's /status.json (None and why when there is none)."""
    import httpx

    if config.http is None:
        return None, "no http endpoint configured (http.listen): live fields need one"
    headers = {"Authorization": f"Bearer {config.http.token}"} if config.http.token else {}
    host = config.http.host if config.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{config.http.port}/status.json"
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return None, f"no replicator run answers at {host}:{config.http.port}"
    if response.status_code != 200:
        return None, f"{host}:{config.http.port} answered HTTP {response.status_code}"
    doc: dict[str, Any] = response.json()
    return doc, None


def flow_status(config: Config, flows: list[FlowConfig]) -> dict[str, Any]:
    """``replicator status``: per flow, what the target records (checkpoint, totals, pauses,
    dead letters, conflicts), the source's position, and -- when a ``run`` answers on the
    configured endpoint -- its live state, counts since start, errors and batch times."""
    live, why = live_status(config)
    live_flows = {f["flow"]: f for f in (live or {}).get("flows", [])}
    out = []
    for row in checkpoint_rows(config, flows, counts=True):
        lv: dict[str, Any] = live_flows.get(row["flow"], {})
        pause = row["pause"]
        if lv:
            state, reason = lv["state"], lv["reason"]
        elif pause is not None:
            state, reason = "paused", pause["reason"]
        else:
            state, reason = "not running", why
        out.append({
            **{k: row[k] for k in ("flow", "source", "target")},
            "state": state, "reason": reason,
            "last_sync": lv.get("last_sync") or row["updated_at"],
            "position": row["position"], "source_position": row["source_position"],
            "lag_seconds": lv["lag_seconds"] if lv else (0.0 if row["lag_position"] == 0 else None),
            "lag_position": row["lag_position"], "lag_unit": row["lag_unit"],
            "changes_total": row["changes_applied"], "transactions_total": row["transactions_applied"],
            **{k: lv.get(k) for k in ("since_start", "by_table", "errors", "conflicts", "dead_letters", "batch_ms")},
            **{k: row[k] for k in ("dead_letters_open", "conflicts_total", "conflicts_parked", "pause", "snapshots")},
        })
    return {"running": live is not None, "webhooks": (live or {}).get("webhooks"), "flows": out}
