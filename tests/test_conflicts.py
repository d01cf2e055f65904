"""Conflict decisions for two-way sync (``replicator.conflicts``): fixtures and a symmetry property."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from replicator.conflicts import ConflictPolicy, Outcome, Row, decide, same_row, same_value
from replicator.records import JSON_NULL

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
BASE: Row = {"id": 1, "a": 1, "b": "x", "c": Decimal("1.00")}
KEY: Row = {"id": 1}


def row(**changes: Any) -> Row:
    return {**BASE, **changes}


def policy(rule: str = "priority", x: int | None = 1, y: int | None = 2, owners: dict[str, str] | None = None,
           skew: float = 0.0) -> ConflictPolicy:
    return ConflictPolicy(rule, {"X": x, "Y": y}, owners or {}, skew)


Y_FIRST = policy(x=2, y=1)


# (id, policy, base, after, current, times (origin, target), expected) -- origin X, target Y
CASES: list[tuple[str, ConflictPolicy, Row | None, Row | None, Row | None, tuple[Any, Any], Outcome]] = [
    ("no conflict", policy(), BASE, row(a=2), {**BASE, "a": True, "c": Decimal("1")}, (None, None),
     Outcome("apply", None, False, None, [])),
    ("no conflict, insert", policy(), None, row(), None, (None, None), Outcome("apply", None, False, None, [])),
    ("no conflict, delete", policy(), BASE, None, row(), (None, None), Outcome("apply", None, False, None, [])),
    ("no-op: same change on both sides", policy(), BASE, row(a=2), row(a=2.0), (None, None),
     Outcome("skip", None, False, None, [])),
    ("no-op: deleted on both sides", policy(), BASE, None, None, (None, None),
     Outcome("skip", None, False, None, [])),
    ("changes to different columns: the winner's whole row", policy(), BASE, row(a=2), row(b="y"), (None, None),
     Outcome("apply", None, True, "X", [])),
    ("target-only change: incoming changed nothing", policy(), BASE, row(), row(b="y"), (None, None),
     Outcome("skip", None, False, None, [])),
    ("both changed a column the same way", policy(), BASE, row(a=2, b="y"), row(a=Decimal(2)), (None, None),
     Outcome("apply", None, True, "X", [])),
    ("both different, origin has priority", policy(), BASE, row(a=2), row(a=3), (None, None),
     Outcome("apply", None, True, "X", ["a"])),
    ("both different, target has priority", Y_FIRST, BASE, row(a=2), row(a=3), (None, None),
     Outcome("skip", None, True, "Y", ["a"])),
    ("both different, no priority beats None", policy(x=None, y=9), BASE, row(a=2), row(a=3), (None, None),
     Outcome("skip", None, True, "Y", ["a"])),
    ("both different, tie broken by name", policy(x=None, y=None), BASE, row(a=2), row(a=3), (None, None),
     Outcome("apply", None, True, "X", ["a"])),
    ("both different, target wins: its whole row", Y_FIRST, BASE, row(a=2, b="y"), row(a=3, c=2),
     (None, None), Outcome("skip", None, True, "Y", ["a"])),
    ("owners win their columns against priority", policy(owners={"a": "Y", "b": "Z"}), BASE, row(a=2, b="y"),
     row(a=3, b="z"), (None, None), Outcome("write", row(a=3, b="y"), True, "merged", ["a", "b"])),
    ("insert vs insert: differing columns conflict", Y_FIRST, None, row(a=2, b="y"), row(a=3),
     (None, None), Outcome("skip", None, True, "Y", ["a", "b"])),
    ("insert vs insert, origin owns b", policy(owners={"b": "X"}, x=2, y=1), None, row(a=2, b="y"), row(a=3),
     (None, None), Outcome("write", row(a=3, b="y"), True, "merged", ["a", "b"])),
    ("update vs target delete, origin wins", policy(), BASE, row(a=2), None, (None, None),
     Outcome("apply", None, True, "X", ["a"])),
    ("update vs target delete, target wins", Y_FIRST, BASE, row(a=2), None, (None, None),
     Outcome("skip", None, True, "Y", ["a"])),
    ("unchanged row vs target delete: the delete stands", policy(), BASE, row(), None, (None, None),
     Outcome("skip", None, True, "Y", [])),
    ("delete vs target update, origin wins", policy(), BASE, None, row(a=3), (None, None),
     Outcome("delete", None, True, "X", ["a"])),
    ("delete vs target update, target wins", Y_FIRST, BASE, None, row(a=3), (None, None),
     Outcome("skip", None, True, "Y", ["a"])),
    ("delete vs update: owners do not own rows", policy(owners={"a": "Y"}), BASE, None, row(a=3), (None, None),
     Outcome("delete", None, True, "X", ["a"])),
    ("inserted and deleted at the origin vs target's row", policy(), None, None, row(), (None, None),
     Outcome("skip", None, True, "Y", [])),
    ("manual parks a both-changed column", policy("manual"), BASE, row(a=2, b="y"), row(a=3), (None, None),
     Outcome("park", None, True, None, ["a"])),
    ("manual: an owned column is no conflict to park", policy("manual", owners={"a": "Y"}), BASE, row(a=2),
     row(a=3), (None, None), Outcome("skip", None, True, "Y", ["a"])),
    ("manual: changes to different columns park too", policy("manual"), BASE, row(a=2), row(b="y"), (None, None),
     Outcome("park", None, True, None, [])),
    ("manual parks delete vs update", policy("manual"), BASE, None, row(a=3), (None, None),
     Outcome("park", None, True, None, ["a"])),
    ("lww: origin later beats priority", policy("last_writer_wins", x=2, y=1, skew=1), BASE, row(a=2), row(a=3),
     (T0 + timedelta(seconds=2), T0), Outcome("apply", None, True, "X", ["a"])),
    ("lww: target later beats priority", policy("last_writer_wins", skew=1), BASE, row(a=2), row(a=3),
     (T0, T0 + timedelta(seconds=2)), Outcome("skip", None, True, "Y", ["a"])),
    ("lww: within the skew priority decides", policy("last_writer_wins", x=2, y=1, skew=5), BASE, row(a=2),
     row(a=3), (T0 + timedelta(seconds=2), T0), Outcome("skip", None, True, "Y", ["a"])),
    ("lww: no time, priority decides", policy("last_writer_wins"), BASE, row(a=2), row(a=3), (None, T0),
     Outcome("apply", None, True, "X", ["a"])),
    ("lww: naive time is UTC", policy("last_writer_wins", skew=1), BASE, row(a=2), row(a=3),
     (datetime(2024, 3, 1, 12, 0, 0), T0 + timedelta(seconds=2)), Outcome("skip", None, True, "Y", ["a"])),
    ("lww decides delete vs update", policy("last_writer_wins"), BASE, None, row(a=3),
     (T0, T0 + timedelta(seconds=1)), Outcome("skip", None, True, "Y", ["a"])),
]


@pytest.mark.parametrize("pol, base, after, current, times, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_decide(pol: ConflictPolicy, base: Row | None, after: Row | None, current: Row | None,
                times: tuple[Any, Any], expected: Outcome) -> None:
    got = decide(pol, "X", "Y", KEY, base, after, current, origin_time=times[0], target_time=times[1])
    assert got == expected


def test_policy() -> None:
    p = ConflictPolicy("priority", {"b": 1, "a": 1, "c": None}, {})
    assert (p.rank("a"), p.rank("c"), p.rank("zz")) == ((1.0, "a"), (float("inf"), "c"), (float("inf"), "zz"))
    assert (p.better("b", "a"), p.better("a", "b"), p.better("c", "zz"), p.better("zz", "b")) == ("a", "a", "c", "b")
    with pytest.raises(ValueError, match="unknown conflict rule 'newest'"):
        ConflictPolicy("newest", {}, {})


AWARE = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
SAME_VALUE: list[tuple[Any, Any, bool]] = [
    (None, None, True), (None, 0, False), ("", None, False),
    (Decimal("1.50"), Decimal("1.5"), True), (1, Decimal("1"), True), (1, Decimal("1.0001"), False),
    (1.5, Decimal("1.50"), True), (0.1, Decimal("0.1"), True), (0.1, Decimal("0.10000000000000001"), False),
    (float("nan"), Decimal("NaN"), True), (float("nan"), 1, False), (float("inf"), float("inf"), True),
    (True, 1, True), (False, 0, True), (True, Decimal(1), True), (True, 2, False),
    (datetime(2024, 1, 2, 3, 4, 5, 6), AWARE, True), (AWARE.astimezone(timezone(timedelta(hours=-5))), AWARE, True),
    (datetime(2024, 1, 2, 3, 4, 5), AWARE, False), (date(2024, 1, 2), date(2024, 1, 2), True),
    (date(2024, 1, 2), datetime(2024, 1, 2), False),
    (b"\x00\x01", bytearray(b"\x00\x01"), True), (memoryview(b"ab"), b"ab", True), (b"ab", "ab", False),
    ({"b": [1, 2.50], "a": None}, '{"a": null, "b": [1, 2.5]}', True), ([1, "x"], [1, "x"], True),
    ({"a": 1}, {"a": "1"}, False), ({"a": 1}, "not json", False), ({"a": 1}, 1, False),
    (JSON_NULL, "null", True), (JSON_NULL, None, False),
    (timedelta(hours=1), timedelta(minutes=60), True), (timedelta(1), timedelta(2), False),
    ("Zoë", "Zoë", True), ("Zoë", "Zoe", False), ("1", 1, False), ("1.5", Decimal("1.5"), False),
]


@pytest.mark.parametrize("a, b, expected", SAME_VALUE, ids=[f"{a!r}~{b!r}" for a, b, _ in SAME_VALUE])
def test_same_value(a: Any, b: Any, expected: bool) -> None:
    assert (same_value(a, b), same_value(b, a)) == (expected, expected)


def test_same_row() -> None:
    assert same_row(None, None) and not same_row(None, {}) and not same_row({}, None)
    assert same_row({"a": 1, "b": Decimal("2.0")}, {"b": 2, "a": True})
    assert not same_row({"a": 1}, {"a": 1, "b": None})  # a missing column is not NULL
    assert same_row({"a": 1, "b": 2}, {"a": 1, "b": 3}, ["a"])
    assert not same_row({"a": 1}, {"b": 1}, ["a"])


# --------------------------------------------------------------------------- symmetry

# Each class is one value in the representations different drivers may give it.
VALUES: list[list[Any]] = [
    [1, True, Decimal("1"), Decimal("1.00"), 1.0], [2, Decimal("2.0")], [Decimal("1.5"), Decimal("1.50"), 1.5],
    ["x"], ["y"], ["Zoë"], [None], [AWARE, AWARE.replace(tzinfo=None)], [b"\x00", bytearray(b"\x00")],
    [{"k": [1, 2]}, '{"k": [1, 2.0]}'],
]
COLUMNS = ["a", "b", "c", "d"]
PARKED = "parked"


def _value(rnd: random.Random) -> Any:
    return rnd.choice(rnd.choice(VALUES))


def _same_class_variant(rnd: random.Random, v: Any) -> Any:
    for cls in VALUES:
        if any(type(v) is type(w) and same_value(v, w) for w in cls):
            return rnd.choice(cls)
    raise AssertionError(v)


def _version(rnd: random.Random, base: Row | None) -> Row | None:
    """A side's version of the row: deleted, inserted, or base with some columns changed (all
    values possibly in another driver's representation)."""
    if rnd.random() < 0.15:
        return None
    if base is None:
        return {"id": 1, **{c: _value(rnd) for c in COLUMNS}} if rnd.random() < 0.7 else None
    changed = rnd.sample(COLUMNS, rnd.randint(0, len(COLUMNS)))
    return {"id": 1, **{c: _value(rnd) if c in changed else _same_class_variant(rnd, base[c]) for c in COLUMNS}}


def _result(current: Row | None, after: Row | None, outcome: Outcome) -> Row | None | str:
    """The target row after the writer carried out ``outcome``."""
    if outcome.action == "apply":
        return None if after is None else {**(current or {}), **after}
    if outcome.action == "write":
        return outcome.row
    if outcome.action == "delete":
        return None
    if outcome.action == "skip":
        return current
    assert outcome.action == "park"
    return PARKED


def _same_result(a: Row | None | str, b: Row | None | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return same_row(a, b)


def test_both_systems_converge() -> None:
    rnd = random.Random(20240301)
    actions: Counter[tuple[str, str]] = Counter()
    for i in range(3000):
        base = None if rnd.random() < 0.2 else {"id": 1, **{c: _value(rnd) for c in COLUMNS}}
        vx, vy = _version(rnd, base), _version(rnd, base)
        owners = {c: rnd.choice(["X", "Y", "Z"]) for c in COLUMNS if rnd.random() < 0.3}
        pol = ConflictPolicy(rnd.choice(["priority", "last_writer_wins", "manual"]),
                             {s: rnd.choice([None, 1, 2]) for s in ("X", "Y") if rnd.random() < 0.8}, owners,
                             rnd.choice([0.0, 1.0, 5.0]))
        tx, ty = (rnd.choice([None, T0 + timedelta(seconds=rnd.randint(0, 8))]) for _ in range(2))
        at_y = decide(pol, "X", "Y", {"id": 1}, base, vx, vy, origin_time=tx, target_time=ty)
        at_x = decide(pol, "Y", "X", {"id": 1}, base, vy, vx, origin_time=ty, target_time=tx)
        ry, rx = _result(vy, vx, at_y), _result(vx, vy, at_x)
        context = f"case {i}: {pol}\nbase={base}\nvX={vx}\nvY={vy}\ntX={tx} tY={ty}\nat Y: {at_y}\nat X: {at_x}"
        assert _same_result(ry, rx), context
        assert sorted(at_y.columns) == sorted(at_x.columns), context
        if same_row(vx, base):  # a side that changed nothing takes the other's version
            assert _same_result(ry, vy), context
        if same_row(vy, base):
            assert _same_result(ry, vx), context
        actions[at_y.action, "conflict" if at_y.conflict else "clean"] += 1
    assert set(actions) == {("apply", "clean"), ("skip", "clean"), ("apply", "conflict"), ("skip", "conflict"),
                            ("write", "conflict"), ("delete", "conflict"), ("park", "conflict")}, actions
