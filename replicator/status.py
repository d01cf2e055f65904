"""Reading where flows stand: the target's checkpoint next to the source's current position."""

from __future__ import annotations

from typing import Any

from .config import Config, FlowConfig
from .errors import ReplicatorError
from .binding import open_sink, open_source
from .snapstate import SnapshotState


def checkpoint_rows(config: Config, flows: list[FlowConfig]) -> list[dict[str, Any]]:
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
        finally:
            sink.close()
        source = open_source(config, flow)
        try:
            now = source.current_position()
            now_text = source.format_position(now)
            lag: int | None = None
            if cp is not None:
                try:
                    lag = max(0, int(now) - int(source.parse_position(cp.position)))
                except (TypeError, ValueError, ReplicatorError):
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
                "lag_bytes": lag,
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
            }
        )
    return rows
