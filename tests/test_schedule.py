"""Batch mode timing, without waiting: next-run computation from fixtures, the config's
``schedule:`` errors (each naming its key path), and the loop driven by a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from replicator.config import parse_config
from replicator.errors import ConfigError
from replicator.schedule import Cron, Schedule, ScheduleLoop, next_run

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plan(schedule: str) -> Schedule:
    cfg = parse_config(CONFIG.format(schedule=schedule))
    sched = cfg.flows[0].schedule
    assert sched is not None
    return sched.plan()


CONFIG = """
systems:
  a: {{url: "postgresql://u@h/a"}}
  b: {{url: "postgresql://u@h/b"}}
flows:
  - name: f
    source: a
    target: b
    schedule: {schedule}
    tables: [{{source: t}}]
"""

# (schedule as configured, now (UTC), the next run (UTC))
NEXT_RUNS = [
    ('{at: "02:00"}', "2026-03-10 01:59:59", "2026-03-10 02:00:00"),
    ('{at: "02:00"}', "2026-03-10 02:00:00", "2026-03-11 02:00:00"),  # strictly after
    ('{at: "02:00", timezone: Europe/Berlin}', "2026-01-15 12:00:00", "2026-01-16 01:00:00"),  # CET
    ('{at: "02:00", timezone: Europe/Berlin}', "2026-07-15 12:00:00", "2026-07-16 00:00:00"),  # CEST
    # DST starts in Berlin on 2026-03-29: 02:30 does not exist, it runs at 03:30 CEST (01:30 UTC)
    ('{at: "02:30", timezone: Europe/Berlin}', "2026-03-28 12:00:00", "2026-03-29 01:30:00"),
    # DST ends on 2026-10-25: 02:30 happens twice, it runs at the first (CEST, 00:30 UTC) only
    ('{at: "02:30", timezone: Europe/Berlin}', "2026-10-24 12:00:00", "2026-10-25 00:30:00"),
    ('{at: "02:30", timezone: Europe/Berlin}', "2026-10-25 00:30:00", "2026-10-26 01:30:00"),
    ('{cron: "0 2 * * *"}', "2026-11-27 03:00:00", "2026-11-28 02:00:00"),
    ('{cron: "*/15 * * * *"}', "2026-11-27 03:07:00", "2026-11-27 03:15:00"),
    ('{cron: "30 6 * * mon-fri"}', "2026-11-27 07:00:00", "2026-11-30 06:30:00"),  # Fri -> Mon
    ('{cron: "0 0 1 * *"}', "2026-11-27 00:00:00", "2026-12-01 00:00:00"),
    ('{cron: "0 12 29 2 *"}', "2026-03-01 00:00:00", "2028-02-29 12:00:00"),
    # both day fields restricted: either matches (cron's rule): the 1st, or a Sunday
    ('{cron: "0 0 1 * 0"}', "2026-11-27 00:00:00", "2026-11-29 00:00:00"),
    ('{cron: "0 3 * * 7", timezone: Europe/Berlin}', "2026-11-27 00:00:00", "2026-11-29 02:00:00"),
]


@pytest.mark.parametrize(("schedule", "now", "expected"), NEXT_RUNS)
def test_next_run(schedule: str, now: str, expected: str) -> None:
    assert next_run(plan(schedule), utc(now)) == utc(expected)


def test_every_runs_at_start_then_after_each_start() -> None:
    sched = plan("{every: 15m}")
    t0 = utc("2026-11-27 03:00:00")
    assert next_run(sched, t0) == t0  # a scheduled flow catches up when it starts
    assert next_run(sched, t0 + timedelta(minutes=1), last_start=t0) == t0 + timedelta(minutes=15)
    late = t0 + timedelta(minutes=20)  # the run took longer than the interval: the next starts now
    assert next_run(sched, late, last_start=t0) == late


def test_unquoted_at_with_leading_zero_is_text() -> None:
    assert next_run(plan("{at: 02:00}"), utc("2026-11-27 03:00:00")) == utc("2026-11-28 02:00:00")


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("15m", 900), ("1h30m", 5400), ("1d", 86400), ("90", 90)])
def test_every_units(text: str, seconds: float) -> None:
    assert plan(f"{{every: {text}}}").every == seconds


BAD = [
    ("{every: 15x}", "flows[0].schedule.every", "is not an interval"),
    ("{every: 0s}", "flows[0].schedule.every", "at least 1 second"),
    ("{at: 2:30}", "flows[0].schedule.at", 'write the time in quotes, e.g. at: "02:00"'),  # YAML: 150
    ('{at: "25:00"}', "flows[0].schedule.at", "is not a time of day"),
    ('{cron: "0 2 * *"}', "flows[0].schedule.cron", "has 5 fields"),
    ('{cron: "61 2 * * *"}', "flows[0].schedule.cron", "cron minute field: '61' is not in 0-59"),
    ('{cron: "0 2 * * 5-1"}', "flows[0].schedule.cron", "goes backwards"),
    ('{at: "02:00", timezone: Mars/Olympus}', "flows[0].schedule.timezone", "unknown time zone 'Mars/Olympus'"),
    ("{}", "flows[0].schedule", "give one of every"),
    ('{every: 1h, at: "02:00"}', "flows[0].schedule", "not every and at"),
    ("{every: 1h, timezone: UTC}", "flows[0].schedule", "timezone goes with at or cron"),
    ("{every: 1h, when: now}", "flows[0].schedule.when", "unknown key"),
    ("{every: 1h, max_rows: 0}", "flows[0].schedule.max_rows", "greater than or equal to 1"),
]


@pytest.mark.parametrize(("schedule", "path", "message"), BAD)
def test_bad_schedule_names_the_key(schedule: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(schedule=schedule))
    assert f"config error at {path}: " in str(info.value)
    assert message in str(info.value)


def test_two_way_flows_cannot_be_scheduled() -> None:
    text = CONFIG.format(schedule="{every: 1h}").replace("    target: b\n", "    target: b\n    direction: both\n")
    with pytest.raises(ConfigError, match=r"config error at flows\[0\]\.schedule: a two-way flow"):
        parse_config(text)


def test_reverse_flows_keep_their_schedule() -> None:
    text = CONFIG.format(schedule="{every: 1h}").replace("    target: b\n", "    target: b\n    direction: reverse\n")
    flow = parse_config(text).flows[0]
    assert flow.source == "b" and flow.schedule is not None and flow.schedule.every == 3600


def test_cron_never_matching_is_refused() -> None:
    with pytest.raises(ValueError, match="never matches"):
        next_run(Schedule(cron=Cron.parse("0 0 30 2 *")), utc("2026-01-01 00:00:00"))


# --------------------------------------------------------------------------- the loop


class FakeClock:
    """Time moves only when the loop waits (or a run takes time)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        return False


def test_loop_runs_at_the_scheduled_times_and_waits_in_steps() -> None:
    clock = FakeClock(utc("2026-11-27 01:59:57"))
    stop = threading.Event()
    runs: list[datetime] = []

    def run() -> None:
        runs.append(clock())
        clock.now += timedelta(seconds=40)  # a run takes time
        if len(runs) == 2:
            stop.set()

    ScheduleLoop(plan('{at: "02:00"}'), run, stop, clock=clock, wait=clock.wait).serve()
    assert runs == [utc("2026-11-27 02:00:00"), utc("2026-11-28 02:00:00")]
    assert max(clock.waits) <= 1.0  # stop and wake() are noticed within a second


def test_loop_every_and_wake() -> None:
    clock = FakeClock(utc("2026-11-27 00:00:00"))
    stop = threading.Event()
    runs: list[datetime] = []
    asked = {utc("2026-11-27 00:00:05")}  # a manual "sync now" request, 5 s after the first run

    def wake() -> bool:  # a request is taken once
        if clock() in asked:
            asked.discard(clock())
            return True
        return False

    def run() -> None:
        runs.append(clock())
        if len(runs) == 4:
            stop.set()

    ScheduleLoop(plan("{every: 10m}"), run, stop, wake=wake, clock=clock, wait=clock.wait).serve()
    t0 = utc("2026-11-27 00:00:00")
    assert runs == [t0, t0 + timedelta(seconds=5), t0 + timedelta(seconds=605), t0 + timedelta(seconds=1205)]


def test_a_failing_wake_hook_does_not_stop_the_schedule() -> None:
    clock = FakeClock(utc("2026-11-27 01:59:50"))
    stop = threading.Event()
    runs: list[datetime] = []

    def wake() -> bool:
        raise OSError("request table unreachable")

    def run() -> None:
        runs.append(clock())
        stop.set()

    ScheduleLoop(plan('{at: "02:00"}'), run, stop, wake=wake, clock=clock, wait=clock.wait).serve()
    assert runs == [utc("2026-11-27 02:00:00")]


def test_loop_stops_while_waiting() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def wait(seconds: float) -> bool:
        calls.append(seconds)
        stop.set()
        return True

    loop = ScheduleLoop(plan('{at: "02:00"}'), lambda: pytest.fail("ran"), stop, clock=lambda: utc("2026-11-27 03:00:00"),
                        wait=wait)
    loop.serve()
    assert calls == [1.0] and loop.runs == 0


def test_a_failing_run_ends_the_loop() -> None:
    stop = threading.Event()

    def run() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ScheduleLoop(plan("{every: 1s}"), run, stop).serve()


def test_cli_refuses_a_bad_schedule_in_one_line(tmp_path: Path) -> None:
    from dbhelpers import cli

    cfg = tmp_path / "replicator.yaml"
    cfg.write_text(CONFIG.format(schedule='{cron: "0 25 * * *"}'))
    proc = cli(cfg, "run")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"replicator: {cfg}: config error at flows[0].schedule.cron: cron hour field: '25' is not in 0-23"
    ], proc.stderr
