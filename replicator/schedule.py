"""Batch mode: a flow with ``schedule:`` syncs at set times instead of continuously.

A scheduled run is ``run --once`` at each scheduled time: it applies everything the source had
committed when the run started, then stops until the next time. Between runs the source keeps
the log (a PostgreSQL slot retains WAL, a MySQL/MariaDB source must keep its binlogs), and the
flow's checkpoint on the target says where the next run resumes — so a run is exactly as safe
as a continuous flow's batch: rows and checkpoint in one target transaction, then the source
acknowledgement; a run killed midway resumes from the last committed checkpoint.

What makes batch mode worth having is compression: the run nets the whole backlog per key
(:class:`~replicator.batch.Batch`) — ten updates of a row become one write, an insert and a
delete of the same row nothing — because its target transaction is cut by the schedule's
``max_rows`` (source changes, the memory bound) instead of the flow's ``batch:`` limits, and
never by time. A larger backlog is applied in several target transactions, each exact.

Three parts, the timing testable without waiting:

* :func:`next_run` — pure: given a :class:`Schedule` and an instant, the next instant to run
  (``every``: the last start plus the interval; ``at``/``cron``: the next matching wall-clock
  minute in the schedule's time zone; a wall time skipped by a DST change runs at the instant
  it maps to, a repeated one runs once).
* :func:`run_flow` — what ``run`` does with a scheduled flow: the loop, under a lock of its own
  on the target (one scheduler per flow; ``run --once`` still runs the flow in between).
* :class:`ScheduleLoop` — waits for that instant on the caller's stop event in steps of at
  most :data:`WAKE_POLL_SECONDS`, asking ``wake()`` at each step whether a manual run was
  requested (the hook for ``replicator sync-now``: pass ``wake=`` to :func:`run_flow`), then
  calls ``run()``. The clock and the wait are injectable.

Foreign keys: a run's netted transaction is written in an order the target's enforced foreign
keys accept where the target session cannot switch them off (see replicator.pg.writer).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from . import syncnow
from .config import parse_duration
from .telemetry import MONITORS

if TYPE_CHECKING:
    from .config import Config, FlowConfig

log = structlog.get_logger("replicator")

WAKE_POLL_SECONDS = 1.0  # how often a waiting loop asks wake() (and notices stop)
_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_every(value: object) -> float:
    """An interval: a number of seconds, or text like ``2s``, ``15m``, ``1h30m``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("give an interval such as 15m, 2h or 30s")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value) if isinstance(value, str) else -1.0
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            raise ValueError(f"{value!r} is not an interval: give a number of seconds or e.g. 30s, 15m, 2h, 1d, 1h30m")
    if seconds < 1:
        raise ValueError("the interval must be at least 1 second")
    return seconds


def parse_at(value: object) -> time:
    """A wall-clock time ``HH:MM``."""
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 02:00 as the sexagesimal number 120
        raise ValueError('write the time in quotes, e.g. at: "02:00" (YAML reads 2:30 without quotes as a number)')
    m = _AT.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not a time of day: give HH:MM, e.g. \"02:00\"")
    return time(int(m.group(1)), int(m.group(2)))


def parse_timezone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (give an IANA name such as UTC or Europe/Berlin)") from None


# --------------------------------------------------------------------------- cron

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    "month": {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "day of week": {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}


@dataclass(frozen=True)
class Cron:
    """A standard five-field cron expression: minute hour day-of-month month day-of-week.
    Fields take ``*``, numbers, ranges ``a-b``, steps ``*/n`` / ``a-b/n``, lists ``a,b`` and
    (month, day of week) three-letter names; day of week 0 and 7 are Sunday. When both day
    fields are restricted, a day matching either runs (as in cron)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"{text!r}: a cron expression has 5 fields (minute hour day-of-month month"
                             " day-of-week), e.g. \"0 2 * * *\"")
        sets = [_cron_field(p, *spec) for p, spec in zip(parts, _CRON_FIELDS)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow


def _cron_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    names = _NAMES.get(name, {})
    out: set[int] = set()

    def num(s: str) -> int:
        v = names.get(s.lower()) if not s.isdigit() else int(s)
        if v is None or not lo <= v <= hi:
            raise ValueError(f"cron {name} field: {s!r} is not in {lo}-{hi}")
        return v

    for item in text.split(","):
        rng, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"cron {name} field: bad step in {item!r}")
            step = int(step_text)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            first, _, last = rng.partition("-")
            a, b = num(first), num(last)
            if a > b:
                raise ValueError(f"cron {name} field: the range {rng!r} goes backwards")
        else:
            a = num(rng)
            b = hi if slash else a
        out.update(range(a, b + 1, step))
    return frozenset(out)


# --------------------------------------------------------------------------- when to run


@dataclass(frozen=True)
class Schedule:
    every: float | None = None  # seconds
    cron: Cron | None = None  # `at: HH:MM` is the cron expression "M H * * *"
    tz: ZoneInfo = ZoneInfo("UTC")
    text: str = ""  # as configured, for the log

    @classmethod
    def daily(cls, at: time, tz: ZoneInfo, text: str = "") -> Schedule:
        return cls(cron=Cron.parse(f"{at.minute} {at.hour} * * *"), tz=tz, text=text)


def next_run(schedule: Schedule, after: datetime, last_start: datetime | None = None) -> datetime:
    """The next instant (aware, UTC) to start a run, strictly after ``after`` for a cron
    schedule. ``every``: ``last_start`` plus the interval, or ``after`` itself if that has
    passed (or there was no run yet: a scheduled flow runs once when it starts)."""
    after = after.astimezone(timezone.utc)
    if schedule.every is not None:
        if last_start is None:
            return after
        return max(after, last_start.astimezone(timezone.utc) + timedelta(seconds=schedule.every))
    cron = schedule.cron
    assert cron is not None
    tz = schedule.tz
    local = after.astimezone(tz)
    day = local.date()
    for _ in range(366 * 8):  # every valid expression matches within 8 years (Feb 29)
        if cron.matches_day(day):
            # fold=0: a repeated wall time (DST ends) is its first instant; a skipped one (DST
            # starts) maps to the instant after the gap. The earliest instant wins.
            due = [
                at for hour in cron.hours for minute in cron.minutes
                if (at := datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(timezone.utc)) > after
            ]
            if due:
                return min(due)
        day += timedelta(days=1)
    raise ValueError("the cron expression never matches (e.g. 30 February)")


# --------------------------------------------------------------------------- the loop

RUN_MAX_DELAY_MS = 3_600_000  # a run's target transaction is cut by rows, not by time


def run_flow(config: Config, flow: FlowConfig, *, once: bool, stop: threading.Event,
             wake: Callable[[], bool] | None = None, notifier: Any = None) -> None:
    """A scheduled flow: ``once`` runs it now (``run --once``), else at each scheduled time
    until ``stop``. Each run nets the backlog up to the schedule's ``max_rows``."""
    from .config import BatchConfig
    from .errors import FlowPaused, ReplicatorError, TransientError
    from .pipeline import LOCK_WAIT_SECONDS, FlowRunner
    from .snapstate import FlowLock

    sched = flow.schedule
    assert sched is not None
    batched = flow.model_copy(update={"batch": BatchConfig(max_rows=sched.max_rows, max_delay_ms=RUN_MAX_DELAY_MS)})
    if once:
        FlowRunner(config, batched, once=True, stop=stop, notifier=notifier).run()
        return
    # One scheduler per flow: it holds a lock of its own on the target for as long as it runs
    # (each run also takes the flow's lock, as any `run` does), so that a second scheduled
    # `run` of the flow exits saying so, while `run --once` can still run the flow in between.
    lock = FlowLock(config.systems[flow.target].url, f"{flow.name}:schedule")

    def hold() -> None:
        try:
            held = lock.acquire(wait=LOCK_WAIT_SECONDS)
        except TransientError as exc:  # the target is down: the run retries it
            log.warning("cannot take the schedule's lock on the target yet", flow=flow.name, error=str(exc))
            return
        if not held:
            raise ReplicatorError(f"flow {flow.name} is already running: another replicator process holds its"
                                  " schedule's lock on the target (stop it first)")

    def run() -> None:
        if lock.conn is None:  # the target was down when the loop started
            hold()
        try:
            FlowRunner(config, batched, once=True, stop=stop, notifier=notifier).run()
            MONITORS.flow(flow.name).set_state("scheduled", "waiting for the next run")
        except FlowPaused as exc:  # applied up to the paused transaction; later runs go on from there
            log.warning("scheduled run stopped at a paused transaction; runs go on once it is resumed",
                        flow=flow.name, error=str(exc))

    if wake is None:
        def wake() -> bool:  # `replicator sync-now FLOW` asks for a run now (replicator.syncnow)
            return lock.conn is not None and syncnow.take(lock.conn, config.state_schema, flow.name)

    hold()
    MONITORS.flow(flow.name).set_state("scheduled", "waiting for the first run")
    try:
        ScheduleLoop(sched.plan(), run, stop, wake=wake, name=flow.name).serve()
    finally:
        lock.release()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ScheduleLoop:
    """Runs ``run()`` at the schedule's times until ``stop`` is set.

    ``wake()`` — called about every :data:`WAKE_POLL_SECONDS` while waiting — returning True
    starts a run at once (a manual "sync now"); the next scheduled time is then computed from
    that run as from any other. An error raised by ``run()`` ends the loop (the caller treats
    it like a failed continuous flow); transient errors are retried inside the run.
    """

    def __init__(
        self,
        schedule: Schedule,
        run: Callable[[], None],
        stop: threading.Event,
        *,
        wake: Callable[[], bool] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        wait: Callable[[float], bool] | None = None,
        name: str = "",
    ) -> None:
        self.schedule = schedule
        self._run = run
        self.stop = stop
        self.wake = wake
        self.clock = clock
        self._wait = wait or stop.wait
        self.log = log.bind(flow=name) if name else log
        self.runs = 0
        self._wake_errors: set[str] = set()

    def serve(self) -> None:
        last_start: datetime | None = None
        while not self.stop.is_set():
            due = next_run(self.schedule, self.clock(), last_start)
            if due > self.clock():
                self.log.info("next scheduled run", at=due.isoformat(timespec="seconds"), schedule=self.schedule.text)
            woken = self.wait_until(due)
            if woken is None:
                return
            last_start = self.clock()
            self.log.info("scheduled run starting", reason="requested" if woken else "schedule")
            self._run()
            self.runs += 1
            self.log.info("scheduled run done", seconds=round((self.clock() - last_start).total_seconds(), 1))

    def wait_until(self, due: datetime) -> bool | None:
        """Wait until ``due``: False when it came, True when ``wake()`` asked for a run,
        None when stopped."""
        while True:
            if self.stop.is_set():
                return None
            remaining = (due - self.clock()).total_seconds()
            if remaining <= 0:
                return False
            if self.wake is not None and self._woken():
                return True
            if self._wait(min(remaining, WAKE_POLL_SECONDS)):
                return None

    def _woken(self) -> bool:
        """``wake()``; an error in it (say, its request table is unreachable) is logged once
        per kind and counts as no request: the schedule itself goes on."""
        assert self.wake is not None
        try:
            return bool(self.wake())
        except Exception as exc:  # noqa: BLE001 - a broken hook must not stop the schedule
            kind = type(exc).__name__
            if kind not in self._wake_errors:
                self._wake_errors.add(kind)
                self.log.warning("wake() check failed; waiting for the schedule", error=str(exc))
            return False
