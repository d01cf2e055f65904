"""The sampler: every few seconds, each flow's source and target as seen from outside.

The pipeline knows what it applied, but not what it has not been told: a flow that is paused
or reconnecting reads nothing, and a target that went away unnoticed between two idle
checkpoints would look healthy. So a separate thread, with its own short connections, asks
each source for its log position and each target for the flow's checkpoint, and derives:
``source_up``/``target_up`` (for ``/readyz``), the position lag (WAL bytes, or GTID
transactions for MariaDB), and for flows that are not streaming whether they are behind.
It also raises the ``lag`` notification when a flow's lag crosses the configured threshold.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from .binding import open_sink, open_source
from .config import Config, FlowConfig
from .mysql.positions import FilePos, MariaGtid
from .protocols import Sink, Source
from .telemetry import FlowMonitor, Monitors

log = structlog.get_logger("replicator")

SAMPLE_SECONDS = 2.0


def position_lag(now: Any, applied: Any) -> tuple[int | None, str]:
    """How far the source's log end ``now`` is ahead of the checkpoint ``applied``: WAL bytes
    (PostgreSQL LSNs, or a binlog file/position in the same file), or transactions summed over
    GTID domains (MariaDB). None when the two cannot be compared."""
    if isinstance(now, int) and isinstance(applied, int):
        return max(0, now - applied), "bytes"
    if isinstance(now, MariaGtid) and isinstance(applied, MariaGtid):
        return sum(max(0, seq - applied.seq(d)) for d, _s, seq in now.domains), "transactions"
    if isinstance(now, FilePos) and isinstance(applied, FilePos) and now.file == applied.file:
        return max(0, now.pos - applied.pos), "bytes"
    return None, "bytes"


class _Probe:
    """One flow's connections for sampling (reopened after a failure)."""

    def __init__(self, config: Config, flow: FlowConfig, mon: FlowMonitor) -> None:
        self.config, self.flow, self.mon = config, flow, mon
        self.source: Source | None = None
        self.sink: Sink | None = None

    def sample(self) -> None:
        mon, flow = self.mon, self.flow
        applied: Any = None
        try:
            if self.sink is None:
                self.sink = open_sink(self.config, flow)
            cp = self.sink.read_checkpoint(flow.name)
            self.sink.conn.commit()
            mon.target_up = True
        except Exception:  # noqa: BLE001 -- any failure means "not reachable now"
            mon.target_up = False
            self._close_sink()
            cp = None
        try:
            if self.source is None:
                self.source = open_source(self.config, flow)
            now = self.source.current_position()
            mon.source_up = True
            mon.source_position = self.source.format_position(now)
            if cp is not None:
                applied = self.source.parse_position(cp.position)
                mon.lag_position, mon.lag_unit = position_lag(now, applied)
        except Exception:  # noqa: BLE001
            mon.source_up = False
            self._close_source()
        if mon.state not in ("running", "snapshotting") and mon.lag_position is not None:
            # not streaming: only the positions tell whether changes wait
            if mon.lag_position > 0:
                mon.fell_behind(None)
            else:
                mon.caught_up()

    def _close_sink(self) -> None:
        self.sink, end = None, self.sink
        _quietly_close(end)

    def _close_source(self) -> None:
        self.source, end = None, self.source
        _quietly_close(end)

    def close(self) -> None:
        self._close_sink()
        self._close_source()


def _quietly_close(end: Any) -> None:
    if end is not None:
        try:
            end.close()
        except Exception:  # noqa: BLE001 -- it is gone already
            pass


class Sampler:
    """Samples every flow every :data:`SAMPLE_SECONDS` in one thread (see module docstring)."""

    def __init__(self, config: Config, flows: list[FlowConfig], monitors: Monitors, notifier: Any = None) -> None:
        self.monitors = monitors
        self.notifier = notifier
        self.threshold = config.notifications.lag_threshold_s
        self._probes = [_Probe(config, f, monitors.flow(f.name, f.source, f.target)) for f in flows]
        self._alerted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                for p in self._probes:
                    p.sample()
                    self._lag_alert(p.mon)
                if self._stop.wait(SAMPLE_SECONDS):
                    return
        finally:
            for p in self._probes:
                p.close()

    def _lag_alert(self, mon: FlowMonitor) -> None:
        lag = mon.lag_seconds()
        if mon.state == "scheduled":
            return  # batch mode lags by design between its runs
        if lag > self.threshold and mon.name not in self._alerted:
            self._alerted.add(mon.name)
            log.warning("flow lag over threshold", flow=mon.name, lag_s=round(lag, 1), threshold_s=self.threshold)
            if self.notifier is not None:
                self.notifier.send("lag", mon.name, lag_seconds=round(lag, 3), threshold_seconds=self.threshold,
                                   position=mon.position)
        elif lag <= self.threshold / 2:
            self._alerted.discard(mon.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
