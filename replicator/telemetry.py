"""Live numbers of the flows running in this process: what ``status``, ``/metrics`` and the
dashboard show.

The pipeline's hot loop must not pay for being watched: it bumps plain attributes of a
:class:`FlowMonitor` (one thread writes each; readers tolerate a value one batch old) and
everything derived -- percentiles, Prometheus families, lag -- is computed when someone asks.
So a scrape costs the scraper, never the replication.

Lag in seconds is the age of the oldest source change the flow knows of and has not applied:
0 when caught up; while behind, "now" minus the later of (the source commit time of the last
applied transaction, the moment the flow fell behind). The second term keeps a flow that was
idle for an hour from reporting an hour of lag for the first new change. A flow that is not
streaming (paused, reconnecting) learns that it is behind from the :class:`Sampler`, which
compares the source's position with the target's checkpoint every few seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = structlog.get_logger("replicator")

# Batch duration histogram buckets (seconds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OPS = ("insert", "update", "delete", "truncate")
_OP_NAMES = {"c": "insert", "u": "update", "d": "delete", "t": "truncate"}  # records.INSERT, …


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Event:
    """Something an operator wants to see on the dashboard (errors, conflicts, pauses)."""

    at: datetime
    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "message": self.message, **self.detail}


class FlowMonitor:
    """One flow's live state. Written by its pipeline (and its writer thread), read anywhere."""

    def __init__(self, name: str, source: str, target: str) -> None:
        self.name, self.source, self.target = name, source, target
        self.state = "starting"  # starting | running | snapshotting | paused | reconnecting | failed | stopped
        self.reason: str | None = None
        self.started_at = _now()
        # (source table, op code) -> changes applied since start; keys as the pipeline has them
        self.counts: dict[tuple[Any, str], int] = {}
        self.changes_total = 0  # as recorded in the checkpoint (all runs)
        self.transactions = 0  # since start
        self.batches = 0
        self.errors = 0
        self.conflicts = 0
        self.dead_letters = 0
        self.position: str | None = None  # the committed checkpoint
        self.last_sync: datetime | None = None  # when the last batch with changes committed
        self.applied_commit_time: datetime | None = None  # source commit time of the last applied txn
        self.behind_since: datetime | None = None  # None: caught up
        self.source_position: str | None = None  # from the sampler
        self.lag_position: int | None = None  # WAL bytes (PostgreSQL) / transactions (MariaDB GTID)
        self.lag_unit = "bytes"
        self.source_up: bool | None = None
        self.target_up: bool | None = None
        self._durations: deque[float] = deque(maxlen=2048)  # recent batch durations, seconds
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self.events: deque[Event] = deque(maxlen=50)
        self.lag_history: deque[tuple[float, float]] = deque(maxlen=900)  # (unix time, lag s)

    # -- written by the pipeline ----------------------------------------------------------
    def set_state(self, state: str, reason: str | None = None) -> None:
        if state != self.state or reason != self.reason:
            self.state, self.reason = state, reason

    def fell_behind(self, commit_time: datetime | None) -> None:
        """A source transaction was read that is not applied yet."""
        if self.behind_since is None:
            self.behind_since = commit_time or _now()

    def caught_up(self) -> None:
        self.behind_since = None

    def applied(self, counts: dict[tuple[Any, str], int], transactions: int, position: str,
                commit_time: datetime | None, changes_total: int, seconds: float) -> None:
        """A target transaction committed (run by the writer thread, after the commit)."""
        for k, n in counts.items():
            self.counts[k] = self.counts.get(k, 0) + n
        self.transactions += transactions
        self.batches += 1
        self.position = position
        self.changes_total = changes_total
        if commit_time is not None:
            self.applied_commit_time = commit_time
        if counts:
            self.last_sync = _now()
        self._durations.append(seconds)
        self._duration_sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self._buckets[i] += 1
                break
        else:
            self._buckets[-1] += 1

    def event(self, kind: str, message: str, **detail: Any) -> None:
        if kind == "error":
            self.errors += 1
        self.events.append(Event(_now(), kind, message, detail))

    # -- derived, for readers ---------------------------------------------------------------
    def lag_seconds(self, now: datetime | None = None) -> float:
        if self.behind_since is None:
            return 0.0
        now = now or _now()
        since = self.behind_since
        if self.applied_commit_time is not None and self.applied_commit_time > since:
            since = self.applied_commit_time
        return max(0.0, (now - since).total_seconds())

    def batch_ms(self) -> dict[str, float | None]:
        d = sorted(self._durations)
        if not d:
            return {"last": None, "p50": None, "p99": None}

        def pct(p: float) -> float:
            return round(d[min(len(d) - 1, int(p * len(d)))] * 1000, 2)

        return {"last": round(self._durations[-1] * 1000, 2), "p50": pct(0.5), "p99": pct(0.99)}

    def by_table(self) -> list[tuple[str, str, int]]:
        """(source table, op name, changes) since start, sorted."""
        return sorted((str(t), _OP_NAMES.get(op, op), n) for (t, op), n in list(self.counts.items()))

    def by_op(self) -> dict[str, int]:
        out = dict.fromkeys(OPS, 0)
        for _table, op, n in self.by_table():
            out[op] = out.get(op, 0) + n
        return out

    def histogram(self) -> tuple[list[tuple[str, float]], float]:
        cumulative, buckets = 0, []
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self._buckets):
            cumulative += n
            buckets.append((bound, float(cumulative)))
        return buckets, self._duration_sum

    def snapshot(self) -> dict[str, Any]:
        """The live fields as JSON (``/status.json``, ``replicator status``)."""
        now = _now()
        return {
            "flow": self.name,
            "source": self.source,
            "target": self.target,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at.isoformat(),
            "last_sync": self.last_sync.isoformat() if self.last_sync else None,
            "position": self.position,
            "source_position": self.source_position,
            "lag_seconds": round(self.lag_seconds(now), 3),
            "lag_position": self.lag_position,
            "lag_unit": self.lag_unit,
            "source_up": self.source_up,
            "target_up": self.target_up,
            "since_start": {**self.by_op(), "transactions": self.transactions, "batches": self.batches},
            "by_table": [{"table": t, "op": op, "changes": n} for t, op, n in self.by_table()],
            "changes_total": self.changes_total,
            "errors": self.errors,
            "conflicts": self.conflicts,
            "dead_letters": self.dead_letters,
            "batch_ms": self.batch_ms(),
            "events": [e.as_json() for e in list(self.events)[::-1]],
            "lag_history": [[round(t, 1), round(v, 3)] for t, v in list(self.lag_history)],
        }


class Monitors:
    """The flows of this process (a registry: the HTTP endpoint and the sampler read it)."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowMonitor] = {}
        self._lock = threading.Lock()
        self.webhooks: Any = None  # the Notifier, when configured (its delivery counters)

    def flow(self, name: str, source: str = "", target: str = "") -> FlowMonitor:
        with self._lock:
            mon = self._flows.get(name)
            if mon is None:
                mon = self._flows[name] = FlowMonitor(name, source, target)
            return mon

    def all(self) -> list[FlowMonitor]:
        with self._lock:
            return list(self._flows.values())

    def clear(self) -> None:
        with self._lock:
            self._flows.clear()

    def registry(self) -> CollectorRegistry:
        reg = CollectorRegistry(auto_describe=True)
        reg.register(_Collector(self))
        return reg


MONITORS = Monitors()


class _Collector(Collector):
    """Prometheus families computed from the monitors at scrape time."""

    def __init__(self, monitors: Monitors) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[Any]:
        flows = self.monitors.all()
        events = CounterMetricFamily("replicator_changes", "Source changes applied to the target since start",
                                     labels=["flow", "table", "op"])
        txns = CounterMetricFamily("replicator_transactions", "Source transactions applied since start", labels=["flow"])
        errors = CounterMetricFamily("replicator_errors", "Errors (lost connections, failures) since start", labels=["flow"])
        conflicts = CounterMetricFamily("replicator_conflicts", "Two-way conflicts resolved or parked since start",
                                        labels=["flow"])
        letters = CounterMetricFamily("replicator_dead_letters", "Changes sent to the dead-letter table since start",
                                      labels=["flow"])
        lag = GaugeMetricFamily("replicator_lag_seconds", "Age of the oldest unapplied source change (0: caught up)",
                                labels=["flow"])
        lag_bytes = GaugeMetricFamily("replicator_source_lag_bytes",
                                      "WAL bytes between the source's current position and the checkpoint (PostgreSQL)",
                                      labels=["flow"])
        lag_txns = GaugeMetricFamily("replicator_source_lag_transactions",
                                     "GTID transactions between the source's position and the checkpoint (MariaDB)",
                                     labels=["flow"])
        up = GaugeMetricFamily("replicator_flow_up", "1 when the flow is streaming or copying", labels=["flow", "state"])
        last = GaugeMetricFamily("replicator_last_sync_timestamp_seconds", "When the last batch with changes committed",
                                 labels=["flow"])
        hist = HistogramMetricFamily("replicator_batch_duration_seconds", "Apply + checkpoint commit time of a batch",
                                     labels=["flow"])
        for m in flows:
            for table, op, n in m.by_table():
                events.add_metric([m.name, table, op], n)
            txns.add_metric([m.name], m.transactions)
            errors.add_metric([m.name], m.errors)
            conflicts.add_metric([m.name], m.conflicts)
            letters.add_metric([m.name], m.dead_letters)
            lag.add_metric([m.name], m.lag_seconds())
            if m.lag_position is not None:
                (lag_bytes if m.lag_unit == "bytes" else lag_txns).add_metric([m.name], m.lag_position)
            up.add_metric([m.name, m.state], 1.0 if m.state in ("running", "snapshotting") else 0.0)
            if m.last_sync is not None:
                last.add_metric([m.name], m.last_sync.timestamp())
            buckets, total = m.histogram()
            hist.add_metric([m.name], buckets, total)
        yield from (events, txns, errors, conflicts, letters, lag, lag_bytes, lag_txns, up, last, hist)
        hooks = self.monitors.webhooks
        if hooks is not None:
            sent = CounterMetricFamily("replicator_webhooks_delivered", "Webhook notifications delivered", labels=[])
            sent.add_metric([], hooks.delivered)
            failed = CounterMetricFamily("replicator_webhook_failures", "Failed webhook delivery attempts", labels=[])
            failed.add_metric([], hooks.failures)
            pending = GaugeMetricFamily("replicator_webhooks_pending", "Webhook notifications waiting for delivery")
            pending.add_metric([], hooks.pending())
            yield from (sent, failed, pending)


def sample_lag_history(monitors: Monitors, stop: threading.Event, every: float = 1.0) -> None:
    """Record each flow's lag once a second for the dashboard's chart (a thread's body)."""
    while not stop.wait(every):
        t = time.time()
        for m in monitors.all():
            m.lag_history.append((t, m.lag_seconds()))
