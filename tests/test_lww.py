"""last_writer_wins plumbing from fixtures: the commit-time record a binlog reader keeps for
the flow back (replicator.lww) and the mirrored decision for keys it does not know."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

from replicator.conflicts import Outcome
from replicator.errors import TransientError
from replicator.lww import CommitTimes
from replicator.mysql.positions import MariaGtid
from replicator.records import Begin, Change, Commit, Heartbeat, TableId
from replicator.twoway import _mirrored

T = TableId("crm", "contacts")
T1 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 1, 1, 12, 0, 5, tzinfo=timezone.utc)


def gtid(n: int) -> MariaGtid:
    return MariaGtid.parse(f"0-1-{n}")


def test_record_keeps_each_keys_latest_commit_time_and_the_position() -> None:
    times = CommitTimes()
    items = [
        Begin(1, T1), Change("c", T, None, None, {"id": 1, "v": "a"}), Change("c", T, None, None, {"id": 2, "v": "b"}),
        Commit(gtid(10), T1),
        Begin(2, T2), Change("d", T, {"id": 2}, {"id": 2, "v": "b"}, None), Commit(gtid(11), T2),
        Heartbeat(gtid(12)),
    ]
    times.begin(gtid(9))
    passed = list(times.record(iter(items), {T: ("id",)}))
    assert passed == items  # the stream goes through unchanged
    assert (times.get(T, (1,)), times.get(T, (2,)), times.get(T, (3,))) == (T1, T2, None)
    times.wait_past(gtid(12), timeout=0.1)  # read that far: no wait


def test_wait_past_waits_for_a_running_reader_and_not_for_a_stopped_one() -> None:
    times = CommitTimes()
    times.begin(gtid(1))
    with pytest.raises(TransientError, match="did not reach its current position"):
        times.wait_past(gtid(5), timeout=0.2)

    def read_on() -> None:
        time.sleep(0.2)
        list(times.record(iter([Begin(1, T1), Commit(gtid(5), T1)]), {}))

    reader = threading.Thread(target=read_on)
    reader.start()
    t0 = time.monotonic()
    times.wait_past(gtid(5), timeout=5)
    assert time.monotonic() - t0 >= 0.15
    reader.join()
    times.end()  # a stopped reader (run --once ends at its start position) gets no further
    times.wait_past(gtid(99), timeout=0.1)


def test_a_key_without_commit_time_takes_the_other_systems_row() -> None:
    conflict = Outcome("apply", None, True, "shop", ["name"])
    current = {"id": 1, "name": "crm"}
    assert _mirrored(conflict, current, {"id": 1, "name": "crm"}, "shop", "crm") == Outcome("skip", None, True, "crm", ["name"])
    assert _mirrored(conflict, current, None, "shop", "crm") == Outcome("delete", None, True, "shop", ["name"])
    merged = {"id": 1, "name": "shop"}
    assert _mirrored(conflict, current, merged, "shop", "crm") == Outcome("write", merged, True, "shop", ["name"])
