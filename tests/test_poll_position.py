"""Pure logic of the polling source, from fixtures: watermark text, lower bounds, advancing,
key comparison across drivers, and the ``mode: poll`` config."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from replicator.config import parse_config
from replicator.errors import ConfigError, ReplicatorError
from replicator.poll.position import (
    LowerBound, Mark, PollPosition, advance, decode_value, encode_value, finish, lower_bound, missing_keys,
    observe,
)

T0 = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", [
    5, -(2**63), True, Decimal("12.3400"), 1.5e-300, "Zoë 🎉", T0, T0.replace(tzinfo=None),
    T0.astimezone(timezone(timedelta(hours=2))), date(2024, 2, 29), b"\x00\xff", uuid.UUID(int=7),
    timedelta(days=-1, microseconds=3),
])
def test_values_survive_the_checkpoint_text(value: object) -> None:
    back = decode_value(encode_value(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, datetime):
        assert back.utcoffset() == value.utcoffset()  # aware stays aware, naive stays naive
    if isinstance(value, Decimal):
        assert str(back) == str(value)  # the scale too


def test_unsupported_value() -> None:
    with pytest.raises(ValueError):
        encode_value(object())


def test_position_text_round_trip_and_order() -> None:
    pos = PollPosition(T0, 3, {
        "public.a": Mark(T0, None),
        "public.b": Mark(T0, (T0 - timedelta(seconds=1), (7, "x"))),
        "public.c": Mark(),
    })
    text = pos.format()
    assert PollPosition.parse(text) == pos
    assert PollPosition.parse(text).format() == text
    later_seq = PollPosition(T0, 4, {})
    later_round = PollPosition(T0 + timedelta(microseconds=1), 0, {})
    assert pos < later_seq < later_round and later_round > pos and pos <= pos and pos >= pos
    assert PollPosition() < pos  # a new flow's start comes before every round


@pytest.mark.parametrize("text", ["0/16B3748", "0-1-12", '{"poll": 2}', '{"poll": 1, "tables": {}}'])
def test_a_log_position_is_not_a_poll_position(text: str) -> None:
    with pytest.raises(ReplicatorError, match="not a poll position"):
        PollPosition.parse(text)


OVERLAP = timedelta(seconds=10)


def test_lower_bound() -> None:
    assert lower_bound(Mark(), OVERLAP) == LowerBound()  # the first round reads everything
    assert lower_bound(Mark(), OVERLAP).everything
    # time columns re-read the overlap below the watermark, inclusively
    assert lower_bound(Mark(T0), OVERLAP) == LowerBound(T0 - OVERLAP, None)
    assert lower_bound(Mark(T0.date()), timedelta(days=1)) == LowerBound(T0.date() - timedelta(days=1))
    # numbers: the watermark itself (rows sharing its value), no overlap
    assert lower_bound(Mark(41), OVERLAP) == LowerBound(41, None)
    assert lower_bound(Mark(Decimal("4.5")), OVERLAP) == LowerBound(Decimal("4.5"), None)
    # an unfinished round continues strictly after its last (column, key) pair
    assert lower_bound(Mark(T0, (T0 - OVERLAP, (5,))), OVERLAP) == LowerBound(T0 - OVERLAP, (5,))
    # the earliest date: no overlap below it
    assert lower_bound(Mark(date.min), timedelta(days=1)) == LowerBound(date.min)


def test_advance_keeps_the_highest_value() -> None:
    m = advance(Mark(), T0, (1,), finished=False)
    assert m == Mark(T0, (T0, (1,)), top=(T0, (1,)))
    # a page inside the overlap (below the watermark) does not move the watermark back
    m2 = advance(Mark(T0), T0 - timedelta(seconds=3), (9,), finished=False)
    assert m2 == Mark(T0, (T0 - timedelta(seconds=3), (9,)))  # the highest pair stays
    # equal values: the newer pair is where to continue
    assert advance(m, T0, (2,), finished=True) == Mark(T0, None, top=(T0, (2,)))
    assert finish(m) == Mark(T0, None, top=(T0, (1,)))
    # a naive and an aware value compare as UTC
    assert advance(Mark(T0.replace(tzinfo=None)), T0 + timedelta(seconds=1), (1,), True).value == T0 + timedelta(seconds=1)


def test_a_settled_watermark_is_not_read_again() -> None:
    """Rows sharing one old stamp (a bulk load) are read once: once the overlap has passed
    since the watermark was first known, a round continues after the highest pair read."""
    m = advance(Mark(), T0, (500,), finished=True)
    assert m.seen is None
    m = observe(m, T0 + timedelta(hours=1))  # the next round starts an hour later
    assert m.seen == T0 + timedelta(hours=1)
    # right away: the overlap is re-read (a transaction stamped before T0 may still commit)
    assert lower_bound(m, OVERLAP, T0 + timedelta(hours=1)) == LowerBound(T0 - OVERLAP)
    # the overlap later: strictly after (T0, 500)
    later = T0 + timedelta(hours=1) + OVERLAP + timedelta(microseconds=1)
    assert lower_bound(m, OVERLAP, later) == LowerBound(T0, (500,))
    assert observe(m, later) == m  # known since the first time
    # more rows at the same stamp move the pair, not the time it is known since
    m2 = advance(m, T0, (700,), finished=True)
    assert m2.top == (T0, (700,)) and m2.seen == m.seen
    # a new watermark must settle again
    m3 = advance(m2, T0 + timedelta(hours=2), (3,), finished=True)
    assert m3.seen is None and m3.top == (T0 + timedelta(hours=2), (3,))
    assert lower_bound(m3, OVERLAP, later + timedelta(days=1)) == LowerBound(T0 + timedelta(hours=2) - OVERLAP)
    # numbers settle the same way (in source time)
    n = observe(advance(Mark(), 41, (9,), True), T0)
    assert lower_bound(n, OVERLAP, T0) == LowerBound(41) and lower_bound(n, OVERLAP, T0 + 2 * OVERLAP) == LowerBound(41, (9,))
    # the text keeps both
    assert PollPosition.parse(PollPosition(T0, 1, {"a": m2, "b": n}).format()).marks == {"a": m2, "b": n}


def test_missing_keys_across_drivers() -> None:
    target = [(1,), (2,), (3,), (4,)]
    assert missing_keys(target, [(1,), (3,)]) == [(2,), (4,)]
    # a MariaDB DECIMAL key read back from PostgreSQL numeric, or an int from a decimal
    assert missing_keys([(Decimal("5.00"),), (Decimal("5.5"),)], [(5,), (Decimal("5.50"),)]) == []
    # composite keys; aware vs naive UTC timestamps; UUID vs CHAR(36)
    u = uuid.UUID(int=42)
    assert missing_keys([(u, T0.replace(tzinfo=None))], [(str(u), T0)]) == []
    assert missing_keys([("a", 1), ("a", 2)], [("a", 2)]) == [("a", 1)]
    # CHAR(n): padded by one engine, stripped by the other: the same key
    assert missing_keys([("ab",)], [("ab   ",)]) == []
    # a case-insensitive source answers with its own spelling: the target's is stale
    assert missing_keys([("abc",), ("Abc",)], [("ABC",)]) == [("abc",), ("Abc",)]
    assert missing_keys([], []) == []


BASE = """
systems:
  a: {url: "postgresql://u@h/db"}
  b: {url: "mysql://u@h/db"}
flows:
  - name: f
    source: a
    target: b
"""


def _flow(text: str) -> str:
    return BASE + text


def test_poll_config() -> None:
    cfg = parse_config(_flow("""    mode: poll
    poll: {column: updated_at, interval_s: 0.5, deletes_every_s: 0}
    tables:
      - source: t1
      - source: t2
        poll_column: version
"""))
    flow = cfg.flows[0]
    assert flow.mode == "poll" and flow.poll_settings.interval_s == 0.5 and flow.poll_settings.overlap_s == 10
    assert [flow.poll_column(t) for t in flow.tables] == ["updated_at", "version"]
    assert flow.tables[1].plain  # poll_column is no value rule


@pytest.mark.parametrize("text, where", [
    ("    mode: poll\n    tables: [{source: t1}]\n", "flows[0].poll.column"),
    ("    mode: poll\n    poll: {interval_s: 5}\n    tables: [{source: t1, poll_column: u}, {source: t2}]\n",
     "flows[0].poll.column"),
    ("    poll: {column: u}\n    tables: [{source: t1}]\n", "flows[0].poll"),
    ("    tables: [{source: t1, poll_column: u}]\n", "flows[0].tables[0].poll_column"),
    ("    mode: poll\n    direction: both\n    poll: {column: u}\n    tables: [{source: t1}]\n", "flows[0].mode"),
    ("    mode: poll\n    poll: {column: u, interval_s: 0}\n    tables: [{source: t1}]\n", "flows[0].poll.interval_s"),
    ("    mode: poll\n    poll: {column: u, every: 3}\n    tables: [{source: t1}]\n", "flows[0].poll.every"),
    ("    mode: pol\n    tables: [{source: t1}]\n", "flows[0].mode"),
])
def test_poll_config_errors(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"config error at {where.replace('[', '.').replace(']', '.')}"):
        parse_config(_flow(text))


def test_snapshot_never_starts_strictly_after_the_maximum() -> None:
    mark = Mark(T0, None, T0)
    assert lower_bound(mark, OVERLAP) == LowerBound(T0, ())
    assert PollPosition.parse(PollPosition(T0, 0, {"s.t": mark}).format()).marks["s.t"] == mark
    later = advance(mark, T0 + timedelta(seconds=3), (1,), finished=True)
    assert later == Mark(T0 + timedelta(seconds=3), None, T0, (T0 + timedelta(seconds=3), (1,)))
    assert lower_bound(later, OVERLAP) == LowerBound(T0, ())  # the overlap stops at the start
    much_later = advance(later, T0 + timedelta(seconds=30), (1,), finished=False)
    assert lower_bound(finish(much_later), OVERLAP) == LowerBound(T0 + timedelta(seconds=20))


def test_poll_flow_with_a_flow_back_is_refused() -> None:
    text = _flow("""    mode: poll
    poll: {column: u}
    tables: [{source: t1}]
  - name: back
    source: b
    target: a
    tables: [{source: t1}]
""")
    with pytest.raises(ConfigError, match=r"config error at flows\[0\]\.mode: flow back writes back into a"):
        parse_config(text)
