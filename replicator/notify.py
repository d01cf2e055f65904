"""Webhook notifications: conflicts, dead letters, pauses, failures, lag, finished copies.

Replication never waits for a receiver: :meth:`Notifier.send` only appends to a bounded
in-memory queue; one thread per configured URL delivers in order, retrying with exponential
backoff (1 s doubling to 60 s) for as long as the process runs, so a receiver that is down for
a while gets everything later. What cannot wait is dropped and counted: when a queue holds
``max_pending`` notifications, the oldest goes (``dropped`` in status and /metrics).

Every body is JSON; the ``X-Replicator-Signature`` header is ``sha256=<hex HMAC-SHA256 of the
raw body with the URL's secret>`` (verify it before trusting a body), ``X-Replicator-Event``
names the event and ``X-Replicator-Delivery`` is a unique id (the same across retries: a
receiver can drop duplicates). In order per URL, at-least-once while the process runs: the
queues live in memory, so what is still pending when ``run`` exits (it waits up to 5 s) is
dropped, with a warning saying how many -- the conflicts and dead letters themselves stay in
their tables on the target (``conflicts list``, ``dlq list``).

Events are sent after the target transaction that records them commits (see the pipeline), so
a receiver never hears of a conflict or dead letter that a crash then rolled back.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Any

import httpx
import json
import structlog

from .config import WebhookConfig
from .statedb import jsonable

log = structlog.get_logger("replicator")

EVENTS = ("conflict", "dead_letter", "paused", "failed", "lag", "snapshot_finished")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Note:
    """A notification as queued: serialized by the delivering thread, once, not by the
    pipeline's writer that sends it."""

    __slots__ = ("event", "flow", "data", "at", "_body")

    def __init__(self, event: str, flow: str, data: dict[str, Any]) -> None:
        self.event, self.flow, self.data, self.at = event, flow, data, _utc()
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            doc = {**jsonable(self.data), "event": self.event, "flow": self.flow, "at": self.at}
            self._body = json.dumps(doc, ensure_ascii=False).encode()
        return self._body


class _Delivery:
    """One URL's queue and its delivering thread."""

    def __init__(self, hook: WebhookConfig, notifier: Notifier) -> None:
        self.hook = hook
        self.notifier = notifier
        self.queue: deque[tuple[_Note, str]] = deque()  # (notification, delivery id)
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self.thread.start()

    def put(self, note: _Note) -> None:
        with self.cond:
            if len(self.queue) >= self.notifier.max_pending:
                self.queue.popleft()
                self.notifier.dropped += 1
            self.queue.append((note, uuid.uuid4().hex))
            self.cond.notify()

    def _run(self) -> None:
        stop = self.notifier.stop
        client = httpx.Client(timeout=self.hook.timeout_s)
        delay = 1.0
        try:
            while not stop.is_set():
                with self.cond:
                    while not self.queue and not stop.is_set():
                        self.cond.wait(0.5)
                    if stop.is_set():
                        return
                    note, delivery = self.queue[0]
                event, body = note.event, note.body()
                headers = {"content-type": "application/json", "x-replicator-event": event,
                           "x-replicator-delivery": delivery, "user-agent": "replicator"}
                if self.hook.secret:
                    headers["x-replicator-signature"] = sign(self.hook.secret, body)
                try:
                    response = client.post(self.hook.url, content=body, headers=headers)
                    ok = response.status_code < 300
                    problem = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, problem = False, type(exc).__name__
                if ok:
                    with self.cond:
                        self.queue.popleft()
                    self.notifier.delivered += 1
                    delay = 1.0
                    continue
                self.notifier.failures += 1
                self.notifier.last_error = f"{self.hook.name}: {problem} ({_utc()})"
                log.warning("webhook delivery failed, retrying", webhook=self.hook.name, error=problem, retry_in_s=delay)
                if stop.wait(delay):
                    return
                delay = min(delay * 2, 60.0)
        finally:
            client.close()


class Notifier:
    """Fans events out to the configured webhooks (see the module docstring)."""

    def __init__(self, hooks: list[WebhookConfig], max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self.stop = threading.Event()
        self.delivered = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._deliveries = [_Delivery(h, self) for h in hooks]

    def send(self, event: str, flow: str, /, **data: Any) -> None:
        """Queue a notification for every webhook that wants ``event`` (never blocks)."""
        wanted = [d for d in self._deliveries if event in d.hook.events]
        if not wanted:
            return
        note = _Note(event, flow, data)
        for d in wanted:
            d.put(note)

    def pending(self) -> int:
        return sum(len(d.queue) for d in self._deliveries)

    def status(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed_attempts": self.failures, "pending": self.pending(),
                "dropped": self.dropped, "last_error": self.last_error}

    def close(self, wait: float = 0.0) -> None:
        """Stop delivering; with ``wait``, first give the queues up to that many seconds."""
        if wait:
            deadline = threading.Event()
            for _ in range(int(wait * 10)):
                if not self.pending() or deadline.wait(0.1):
                    break
        self.stop.set()
        if self.pending():
            log.warning("notifications not delivered before exit are dropped (they are kept in memory only)",
                        pending=self.pending())
        for d in self._deliveries:
            with d.cond:
                d.cond.notify_all()


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat()
