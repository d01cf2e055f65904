"""Progress of long copies: bars on a terminal, periodic log lines otherwise.

A snapshot of millions of rows must say how far it is: on a terminal a bar per table (rich)
with rows, rows/s and the time left; in a log (a service, CI) one line per table every few
seconds with the same figures, so a log shipper sees the snapshot moving. Row totals are the
catalog's estimates (``pg_class.reltuples``, InnoDB's ``TABLE_ROWS``): good enough for an ETA,
never used for correctness.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

log = structlog.get_logger("replicator")


class Progress(Protocol):
    def add(self, table: str, total: int | None) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...

    def finish(self, table: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Table:
    total: int | None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


class LogProgress:
    """One log line per unfinished table every ``interval`` seconds, and one when it ends."""

    def __init__(self, flow: str, interval: float = 5.0) -> None:
        self.log = log.bind(flow=flow)
        self.interval = interval
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def add(self, table: str, total: int | None) -> None:
        with self._lock:
            self._tables[table] = _Table(total)

    def advance(self, table: str, rows: int) -> None:
        with self._lock:
            self._tables[table].done += rows
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            for name, t in self._tables.items():
                if not t.finished:
                    self._line("snapshot progress", name, t)

    def finish(self, table: str) -> None:
        with self._lock:
            t = self._tables[table]
            t.finished = True
            self._line("snapshot of table done", table, t)

    def _line(self, msg: str, name: str, t: _Table) -> None:
        rate = t.rate()
        fields: dict[str, object] = {"table": name, "rows": t.done, "rows_per_s": round(rate)}
        if t.total and not t.finished:
            fields["of_about"] = t.total
            fields["eta_s"] = round(max(t.total - t.done, 0) / rate) if rate > 0 else None
        if t.finished:
            fields["seconds"] = round(time.monotonic() - t.started, 1)
        self.log.info(msg, **fields)

    def close(self) -> None:
        pass


class BarProgress:
    """Rich progress bars (only used when stderr is a terminal)."""

    def __init__(self, flow: str) -> None:
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
            TimeElapsedColumn, TimeRemainingColumn,
        )

        self._bars = RichProgress(
            TextColumn(f"[bold]{flow}[/] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[rate]:>9} rows/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._ids: dict[str, object] = {}
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()
        self._bars.start()

    def add(self, table: str, total: int | None) -> None:
        with self._lock:
            self._tables[table] = _Table(total)
            self._ids[table] = self._bars.add_task(table, total=total, rate="-")

    def advance(self, table: str, rows: int) -> None:
        with self._lock:
            t = self._tables[table]
            t.done += rows
            total = max(t.total or 0, t.done) or None
            self._bars.update(self._ids[table], completed=t.done, total=total,  # type: ignore[arg-type]
                              rate=f"{t.rate():,.0f}")

    def finish(self, table: str) -> None:
        with self._lock:
            t = self._tables[table]
            self._bars.update(self._ids[table], completed=t.done, total=t.done,  # type: ignore[arg-type]
                              rate=f"{t.rate():,.0f}")

    def close(self) -> None:
        self._bars.stop()


def progress_for(flow: str, interactive: bool | None = None) -> Progress:
    """Bars on a terminal, log lines otherwise."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return BarProgress(flow) if interactive else LogProgress(flow)
