"""The HTTP endpoint of ``run``: ``/metrics``, ``/livez``, ``/readyz``, ``/status.json`` and the
status dashboard at ``/``.

A small threaded stdlib server is enough: scrapes and a dashboard refreshing every second are
a handful of requests, and everything they show is computed from the in-process monitors
(replicator.telemetry) without touching a database. Bound to 127.0.0.1 by default; anywhere
else a bearer token is required (config), sent as ``Authorization: Bearer …`` or, for a
browser opening the dashboard, as ``?token=…`` (the page passes it on to its requests).
``/livez`` and ``/readyz`` stay open for orchestrators' probes: they reveal no data.
"""

from __future__ import annotations

import hmac
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import HttpConfig
from .telemetry import Monitors

log = structlog.get_logger("replicator")

STREAMING = ("running", "snapshotting", "scheduled")  # "scheduled": a batch-mode flow between runs


def readiness(monitors: Monitors, max_lag_s: float) -> list[str]:
    """Why the process is not ready (empty: ready): every flow streaming or copying, its
    source and target reachable, and its lag under ``max_lag_s``."""
    problems = []
    for m in monitors.all():
        if m.state not in STREAMING:
            problems.append(f"{m.name}: {m.state}" + (f" ({m.reason})" if m.reason else ""))
        elif m.target_up is False:
            problems.append(f"{m.name}: target {m.target} unreachable")
        elif m.source_up is False:
            problems.append(f"{m.name}: source {m.source} unreachable")
        elif m.state != "scheduled" and (lag := m.lag_seconds()) > max_lag_s:  # batch mode lags by design
            problems.append(f"{m.name}: lag {lag:.1f}s over {max_lag_s:g}s")
    return problems


def status_document(monitors: Monitors, max_lag_s: float) -> dict[str, Any]:
    problems = readiness(monitors, max_lag_s)
    hooks = monitors.webhooks
    return {
        "now": datetime.now(timezone.utc).isoformat(),
        "ready": not problems,
        "problems": problems,
        "flows": [m.snapshot() for m in monitors.all()],
        "webhooks": hooks.status() if hooks is not None else None,
    }


class Endpoint:
    """Serves the monitors over HTTP in a daemon thread (see the module docstring)."""

    def __init__(self, config: HttpConfig, monitors: Monitors) -> None:
        self.config = config
        self.monitors = monitors
        self.registry = monitors.registry()
        self.page = resources.files("replicator").joinpath("dashboard.html").read_bytes()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 -- the stdlib's name
                try:
                    endpoint._handle(self)
                except Exception as exc:  # noqa: BLE001 -- a bug here must not look like an outage
                    log.exception("http endpoint error", path=self.path.split("?")[0])
                    _send(self, 500, f"internal error: {type(exc).__name__}\n".encode(), "text/plain")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # requests are not worth a log line each

        self.server = ThreadingHTTPServer((config.host, config.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _authorized(self, req: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> bool:
        token = self.config.token
        if not token:
            return True
        given = req.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            given = given[7:]
        else:
            given = (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        path, query = url.path, parse_qs(url.query)
        max_lag = self.config.ready_max_lag_s
        if path == "/livez":
            return _send(req, 200, b"ok\n", "text/plain")
        if path == "/readyz":
            problems = readiness(self.monitors, max_lag)
            body = json.dumps({"ready": not problems, "problems": problems}).encode() + b"\n"
            return _send(req, 503 if problems else 200, body, "application/json")
        if path not in ("/", "/metrics", "/status.json"):
            return _send(req, 404, b"not found\n", "text/plain")
        if not self._authorized(req, query):
            return _send(req, 401, b"unauthorized: send Authorization: Bearer <token>\n", "text/plain",
                         {"WWW-Authenticate": "Bearer"})
        if path == "/metrics":
            return _send(req, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/status.json":
            doc = status_document(self.monitors, max_lag)
            return _send(req, 200, json.dumps(doc).encode(), "application/json")
        return _send(req, 200, self.page, "text/html; charset=utf-8")


def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
    req.send_response(code)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    req.send_header("Cache-Control", "no-store")
    for k, v in (headers or {}).items():
        req.send_header(k, v)
    req.end_headers()
    req.wfile.write(body)
