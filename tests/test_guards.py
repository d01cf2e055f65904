"""Unit tests of the change limits (``replicator.guards.Guard``), in source commit time, without
databases. The pipeline calls ``begin(position, commit_time)`` per source transaction and
``change(table, key)`` per row change (not for truncates).

Assertion messages starting with ``regression:`` describe a defect these tests found (fixed since).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from replicator.config import LimitsConfig
from replicator.guards import Guard, GuardTripped
from replicator.records import TableId

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)  # a whole minute
CONTACTS = TableId("crm", "contacts")
ORDERS = TableId("crm", "orders")

ROWS = "a source transaction changes more than {n} rows (limits.max_rows_per_transaction)"
RATE = "more than {n} changes within a minute (limits.max_changes_per_minute)"
KEY = "row {key} of {table} changed more than {n} times within a minute (limits.max_changes_per_key_per_minute)"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def txn(guard: Guard, position: str | None, seconds: float, changes: int, table: object = CONTACTS,
        key: object = None) -> list[Any]:
    """One source transaction of ``changes`` row changes: what each ``change`` returned, and
    ``("tripped", position, reason)`` in place of the change that raised GuardTripped (the last)."""
    guard.begin(position, at(seconds))
    out: list[Any] = []
    for _ in range(changes):
        try:
            out.append(guard.change(table, key))
        except GuardTripped as exc:
            out.append(("tripped", exc.position, exc.reason))
            break
    return out


# ------------------------------------------------------------------- max_rows_per_transaction


def test_rows_per_transaction_trips_on_row_n_plus_1() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=3))
    assert txn(guard, "0/100", 0, 3) == [None, None, None]
    assert txn(guard, "0/200", 1, 10) == [None, None, None, ("tripped", "0/200", ROWS.format(n=3))]


def test_rows_per_transaction_counts_each_transaction_afresh() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=2))
    for i in range(5):  # many small transactions within one second
        assert txn(guard, f"txn-{i}", 0, 2) == [None, None]


def test_guard_tripped_carries_reason_and_position() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=1))
    guard.begin("gtid 0-1-42", at(0))
    assert guard.change(CONTACTS, (1,)) is None
    with pytest.raises(GuardTripped) as exc:
        guard.change(CONTACTS, (2,))
    assert (exc.value.position, exc.value.reason, str(exc.value)) == (
        "gtid 0-1-42", ROWS.format(n=1), ROWS.format(n=1))


def test_the_allowed_transaction_passes() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=3), allowed="0/200")
    assert txn(guard, "0/100", 0, 3) == [None] * 3
    assert txn(guard, "0/200", 1, 50) == [None] * 50  # resume let this one through
    assert txn(guard, "0/300", 2, 4) == [None, None, None, ("tripped", "0/300", ROWS.format(n=3))]


def test_transaction_without_position_or_commit_time() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=1))
    guard.begin(None, None)
    assert guard.change(CONTACTS, None) is None
    with pytest.raises(GuardTripped) as exc:
        guard.change(CONTACTS, None)
    assert (exc.value.position, exc.value.reason) == (None, ROWS.format(n=1))


# --------------------------------------------------------------------------------- alert


def test_alert_returns_the_text_once_per_transaction() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=3, action="alert"))
    assert txn(guard, "0/100", 0, 6) == [None, None, None, ROWS.format(n=3), None, None]
    assert txn(guard, "0/200", 1, 2) == [None, None]
    assert txn(guard, "0/300", 2, 5) == [None, None, None, ROWS.format(n=3), None]


def test_alert_of_the_next_transaction_is_not_swallowed() -> None:
    """The pipeline calls begin() for every source transaction: a transaction's alerts start
    afresh there."""
    guard = Guard(LimitsConfig(max_rows_per_transaction=3, action="alert"))
    assert txn(guard, "0/100", 0, 4) == [None, None, None, ROWS.format(n=3)]
    got = txn(guard, "0/200", 1, 4)
    assert got == [None, None, None, ROWS.format(n=3)]


def test_alert_texts_differ_per_limit_and_key() -> None:
    guard = Guard(LimitsConfig(max_changes_per_key_per_minute=1, action="alert"))
    guard.begin("0/100", at(0))
    assert [guard.change(CONTACTS, (1,)), guard.change(CONTACTS, (1,)), guard.change(CONTACTS, (1,)),
            guard.change(CONTACTS, (2,)), guard.change(CONTACTS, (2,))] == [
        None, KEY.format(key=(1,), table="crm.contacts", n=1), None,
        None, KEY.format(key=(2,), table="crm.contacts", n=1)]


def test_alert_never_raises() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=1, max_changes_per_minute=1,
                               max_changes_per_key_per_minute=1, action="alert"))
    assert txn(guard, "0/100", 0, 3, key=(1,)) == [None, ROWS.format(n=1), None]


# ------------------------------------------------------------------- max_changes_per_minute


def test_changes_per_minute_trip_within_one_minute_of_source_time() -> None:
    guard = Guard(LimitsConfig(max_changes_per_minute=5))
    assert txn(guard, "a", 0, 2) == [None, None]
    assert txn(guard, "b", 20, 2) == [None, None]
    assert txn(guard, "c", 59, 3) == [None, ("tripped", "c", RATE.format(n=5))]


def test_changes_61_seconds_apart_do_not_add_up() -> None:
    guard = Guard(LimitsConfig(max_changes_per_minute=3))
    assert txn(guard, "a", 0, 3) == [None, None, None]
    assert txn(guard, "b", 61, 3) == [None, None, None]
    assert txn(guard, "c", 122, 3) == [None, None, None]
    assert txn(guard, "d", 183, 3) == [None, None, None]


def test_changes_per_minute_window_slides() -> None:
    """The window is the last 60 seconds, not the calendar minute."""
    guard = Guard(LimitsConfig(max_changes_per_minute=3))
    assert txn(guard, "a", 50, 2) == [None, None]  # 12:00:50
    assert txn(guard, "b", 70, 2) == [None, ("tripped", "b", RATE.format(n=3))]  # 12:01:10: 4 in 20 s
    guard = Guard(LimitsConfig(max_changes_per_minute=3))
    assert txn(guard, "a", 0, 2) == [None, None]
    assert txn(guard, "b", 30, 1) == [None]
    assert txn(guard, "c", 61, 1) == [None]  # the two at 0 s are out of the window: 2 in the last minute
    assert txn(guard, "d", 62, 1) == [None]
    assert txn(guard, "e", 63, 1) == [("tripped", "e", RATE.format(n=3))]  # 30, 61, 62, 63


def test_changes_per_minute_counts_many_transactions_of_one_second() -> None:
    guard = Guard(LimitsConfig(max_changes_per_minute=4))
    assert [txn(guard, f"t{i}", 5, 1) for i in range(5)] == [[None], [None], [None], [None],
                                                             [("tripped", "t4", RATE.format(n=4))]]


def test_changes_per_minute_are_counted_in_source_time_not_arrival_time() -> None:
    """A backlog caught up after downtime: a day of source time read at once trips nothing."""
    guard = Guard(LimitsConfig(max_changes_per_minute=10))
    for minute in range(24 * 60):
        assert txn(guard, f"m{minute}", minute * 60, 10) == [None] * 10


def test_resume_starts_the_rate_window_afresh() -> None:
    """Module docstring: ``replicator resume FLOW`` lets that one transaction through (and starts
    the rate windows afresh)."""
    guard = Guard(LimitsConfig(max_changes_per_minute=3), allowed="0/200")  # as the pipeline makes it after resume
    assert txn(guard, "0/200", 0, 100) == [None] * 100
    got = txn(guard, "0/300", 5, 1)
    assert got == [None], (
        "regression: guards.Guard.change counts the changes of the transaction that resume let through"
        " (allowed) into the per-minute window, so the first ordinary transaction within the next"
        " 60 s of source time trips max_changes_per_minute again and pauses the flow right after the"
        f" resume; got {got}")


# --------------------------------------------------------------- max_changes_per_key_per_minute


def test_changes_per_key_trip_on_change_n_plus_1_of_one_key() -> None:
    guard = Guard(LimitsConfig(max_changes_per_key_per_minute=2))
    assert guard.counts_keys is True
    assert txn(guard, "a", 0, 1, key=(1,)) == [None]
    assert txn(guard, "b", 10, 1, key=(1,)) == [None]
    assert txn(guard, "c", 20, 1, key=(2,)) == [None]
    assert txn(guard, "d", 30, 1, key=(1,)) == [
        ("tripped", "d", KEY.format(key=(1,), table="crm.contacts", n=2))]


def test_changes_per_key_are_counted_per_table_and_key() -> None:
    guard = Guard(LimitsConfig(max_changes_per_key_per_minute=2))
    guard.begin("a", at(0))
    for table, key in [(CONTACTS, (1,)), (CONTACTS, (1,)), (ORDERS, (1,)), (ORDERS, (1,)), (CONTACTS, (2,)),
                       (CONTACTS, (2,)), (CONTACTS, (1, "x")), (CONTACTS, (1, "x"))]:
        assert guard.change(table, key) is None
    with pytest.raises(GuardTripped) as exc:
        guard.change(ORDERS, (1,))
    assert (exc.value.position, exc.value.reason) == ("a", KEY.format(key=(1,), table="crm.orders", n=2))


def test_changes_per_key_a_minute_later_do_not_add_up() -> None:
    guard = Guard(LimitsConfig(max_changes_per_key_per_minute=2))
    assert txn(guard, "a", 0, 2, key=(1,)) == [None, None]
    assert txn(guard, "b", 61, 2, key=(1,)) == [None, None]
    assert txn(guard, "c", 125, 2, key=(1,)) == [None, None]


def test_changes_per_key_window_slides_over_the_minute_boundary() -> None:
    """A flapping record: 4 changes of one key within 2 seconds, either side of 12:01:00."""
    guard = Guard(LimitsConfig(max_changes_per_key_per_minute=3))
    assert txn(guard, "a", 59, 2, key=(1,)) == [None, None]
    got = txn(guard, "b", 61, 2, key=(1,))
    assert got == [None, ("tripped", "b", KEY.format(key=(1,), table="crm.contacts", n=3))], (
        "regression: guards.Guard.begin clears the per-key counts at each calendar minute of source time"
        " (a fixed window), while max_changes_per_minute counts over a sliding 60 s window: 4 changes"
        f" of one key within 2 s across a minute boundary pass a limit of 3 per minute; got {got}")


def test_changes_per_key_disabled() -> None:
    assert Guard(LimitsConfig(max_rows_per_transaction=5)).counts_keys is False
    assert Guard(LimitsConfig()).counts_keys is False
    guard = Guard(LimitsConfig())  # no limits: nothing ever trips
    assert txn(guard, "a", 0, 1000, key=(1,)) == [None] * 1000


def test_the_first_limit_exceeded_is_the_reason() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=2, max_changes_per_minute=2, max_changes_per_key_per_minute=2))
    assert txn(guard, "a", 0, 5, key=(1,)) == [None, None, ("tripped", "a", ROWS.format(n=2))]
    guard = Guard(LimitsConfig(max_changes_per_minute=3, max_changes_per_key_per_minute=3))
    assert txn(guard, "a", 0, 5, key=(1,)) == [None, None, None, ("tripped", "a", RATE.format(n=3))]


# ---------------------------------------------------------------------------------- hold


def test_hold_stops_before_the_paused_transaction() -> None:
    guard = Guard(LimitsConfig(max_rows_per_transaction=5))
    assert (guard.hold, guard.hold_reason, guard.holds("0/100"), guard.holds(None)) == (None, "", False, False)
    guard.hold, guard.hold_reason = "0/200", ROWS.format(n=5)
    assert [guard.holds("0/100"), guard.holds("0/200"), guard.holds("0/2000"), guard.holds(None)] == [
        False, True, False, False]


def test_guard_keeps_its_limits_and_allowed_position() -> None:
    limits = LimitsConfig(max_changes_per_minute=10, action="alert")
    guard = Guard(limits, allowed="0/42")
    assert (guard.limits, guard.allowed) == (limits, "0/42")
    assert (limits.max_rows_per_transaction, limits.max_changes_per_minute, limits.max_changes_per_key_per_minute,
            limits.action) == (None, 10, None, "alert")
    assert LimitsConfig().action == "pause"
