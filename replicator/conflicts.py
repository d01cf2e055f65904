"""Two-way sync: deciding what a change does to a target row that was changed there too.

When systems X and Y are synced both ways, a change made in X can reach Y after Y changed the
same row. The writer reads the target's current row and asks :func:`decide`, which compares
three versions of the row: ``base`` (what the change was based on: the source's before-image),
``after`` (the change's result) and ``current`` (what the target holds now).

* ``current`` equals ``base``: nobody else touched the row -- apply the change, no conflict.
* ``current`` already equals ``after`` (both sides made the same change, or this is the echo
  of a change that came from the target itself): skip, no conflict.
* Otherwise the row changed on both sides: the rule's winner's version is kept -- the
  ``priority`` system's, the ``last_writer_wins`` later commit's (within the clock skew:
  priority), or, under ``manual``, none: the change is parked -- except columns with an owner
  (``owners``), which always take their owner's value. A delete against an update is decided
  the same way for the whole row (owners own columns, not rows).

Why this converges: the decision at Y about X's change and the decision at X about Y's
change see the versions with ``after`` and ``current`` swapped, and every step above is
symmetric under that swap (a winner is a system, not a side), so both systems end with the
same row without talking to each other. A change
that is a net no-op for its source (``after`` equals ``base``) never overrides the target:
otherwise a row deleted on one side and untouched on the other would be resurrected on one
side and stay deleted on the other.

Pure functions, no I/O: values are compared with :func:`same_value`, which knows the ways two
drivers (pymysql, psycopg) return the same value differently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from .records import JSON_NULL
from .verify.canonical import canonical_json

Row = dict[str, Any]

RULES = ("priority", "last_writer_wins", "manual")

_MISSING = object()


@dataclass(frozen=True)
class ConflictPolicy:
    rule: str  # one of RULES
    priorities: Mapping[str, int | None]  # system -> priority, lower wins; None/missing = worst
    owners: Mapping[str, str]  # target column -> the system that always wins it
    clock_skew_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown conflict rule {self.rule!r} (expected one of {', '.join(RULES)})")

    def rank(self, system: str) -> tuple[float, str]:
        """Sort key, best first: the priority (none = worst), ties broken by the system's name."""
        p = self.priorities.get(system)
        return (math.inf if p is None else float(p), system)

    def better(self, a: str, b: str) -> str:
        """The system of the two that wins by priority."""
        return a if self.rank(a) <= self.rank(b) else b


@dataclass
class Outcome:
    action: str  # "apply" | "write" | "delete" | "skip" | "park"
    row: Row | None  # the merged row, for "write"
    conflict: bool  # the target row was not what the change was based on
    winner: str | None  # the system whose version won, "merged" for a mix, None without a contest
    columns: list[str] = field(default_factory=list)  # the columns in conflict


def same_value(a: Any, b: Any) -> bool:
    """Whether two column values, as two drivers return them after the mapping, are the same:

    * None equals only None (SQL NULL is not JSON ``null``);
    * numbers by value: int, bool (MariaDB's BOOLEAN is TINYINT, so True equals 1), Decimal
      (``1.50`` equals ``1.5``) and float (taken as the Decimal of its shortest text, so 0.1
      equals Decimal('0.1')); NaN equals NaN;
    * a datetime by the instant, a naive one taken as UTC; a date only equals a date (not a
      datetime);
    * bytes, bytearray and memoryview by their bytes;
    * JSON: when either side is a dict, list or JSON ``null``, both are compared as canonical
      JSON (a str is taken as a JSON document's text, a dict/list as its value);
    * str by exact text (a str never equals a number); timedelta and anything else by ``==``.
    """
    if a is None or b is None:
        return a is None and b is None
    if _is_json(a) or _is_json(b):
        ja, jb = _json_text(a), _json_text(b)
        return ja is not None and ja == jb
    na, nb = _number(a), _number(b)
    if na is not None or nb is not None:
        if na is None or nb is None:
            return False
        if na.is_nan() or nb.is_nan():
            return na.is_nan() and nb.is_nan()
        return na == nb
    if isinstance(a, datetime) or isinstance(b, datetime):
        return isinstance(a, datetime) and isinstance(b, datetime) and _utc(a) == _utc(b)
    if isinstance(a, date) or isinstance(b, date):
        return isinstance(a, date) and isinstance(b, date) and a == b
    if isinstance(a, (bytes, bytearray, memoryview)) or isinstance(b, (bytes, bytearray, memoryview)):
        binary = (bytes, bytearray, memoryview)
        return isinstance(a, binary) and isinstance(b, binary) and bytes(a) == bytes(b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and str(a) == str(b)
    return bool(a == b)


def same_row(a: Row | None, b: Row | None, columns: Iterable[str] | None = None) -> bool:
    """Whether two rows are the same over ``columns`` (default: all columns of either). None
    equals only None; a column one row has and the other lacks differs."""
    if a is None or b is None:
        return a is None and b is None
    cols = set(a) | set(b) if columns is None else columns
    return all(_same(a.get(c, _MISSING), b.get(c, _MISSING)) for c in cols)


def decide(
    policy: ConflictPolicy, origin: str, target: str, key: Row, base: Row | None, after: Row | None,
    current: Row | None, *, origin_time: datetime | None = None, target_time: datetime | None = None,
) -> Outcome:
    """What to do at ``target`` with a change made in ``origin`` (``key`` names the row; the
    decision depends only on the three versions): see the module docstring. A column ``base``
    lacks (an insert, or a before-image without it) counts as changed on both sides when the
    two differ. For a delete against an update, ``columns`` are those the update changed."""
    if same_row(current, base, None if base is None else base.keys()):
        return Outcome("apply", None, False, None, [])
    if same_row(current, after, None if after is None else after.keys()):
        return Outcome("skip", None, False, None, [])

    def rule_winner() -> str | None:
        return _rule_winner(policy, origin, target, origin_time, target_time)

    if after is None or current is None:  # a delete against a change on the other side
        changed = after if after is not None else current
        assert changed is not None  # both None is the no-op above
        columns = _changed_columns(base, changed)
        if after is not None and base is not None and not columns:
            return Outcome("skip", None, True, target, [])  # the origin changed nothing: the delete stands
        if after is None and base is None:
            return Outcome("skip", None, True, target, [])  # inserted and deleted in origin: nothing
        winner = rule_winner()
        if winner is None:
            return Outcome("park", None, True, None, columns)
        if winner == target:
            return Outcome("skip", None, True, target, columns)
        return Outcome("delete" if after is None else "apply", None, True, origin, columns)

    if base is not None and same_row(after, base, after.keys()):
        return Outcome("skip", None, False, None, [])  # a net no-op of the origin overrides nothing

    # Row by row: the rule's winner's version, except the columns an owner owns. (Merging
    # column by column -- keeping a column only one side changed -- is not safe without more
    # history: a later change based on a version that lost a conflict would look, at the two
    # systems, as changing different columns, and they would merge differently.)
    merged: Row = {}
    conflicting: list[str] = []
    row_winner: str | None = None
    decided = False
    for c in list(current) + [c for c in after if c not in current]:
        inc, cur = after.get(c, _MISSING), current.get(c, _MISSING)
        if inc is _MISSING or cur is _MISSING:
            merged[c] = cur if inc is _MISSING else inc  # only one side has the column
            continue
        was = _MISSING if base is None else base.get(c, _MISSING)
        if not (_same(inc, cur) or _same(inc, was) or _same(cur, was)):
            conflicting.append(c)
        owner = policy.owners.get(c)
        if owner in (origin, target):
            merged[c] = inc if owner == origin else cur
        elif _same(inc, cur):
            merged[c] = cur
        else:
            if not decided:
                row_winner, decided = rule_winner(), True
                if row_winner is None:
                    return Outcome("park", None, True, None, conflicting)
            merged[c] = inc if row_winner == origin else cur
    if same_row(merged, current):
        return Outcome("skip", None, True, target, conflicting)
    if same_row(merged, after, after.keys()):
        return Outcome("apply", None, True, origin, conflicting)
    return Outcome("write", merged, True, "merged", conflicting)


def _rule_winner(policy: ConflictPolicy, origin: str, target: str, origin_time: datetime | None,
                 target_time: datetime | None) -> str | None:
    """The system the rule picks; None for "manual" (park)."""
    if policy.rule == "manual":
        return None
    if policy.rule == "last_writer_wins" and origin_time is not None and target_time is not None:
        later = (_utc(origin_time) - _utc(target_time)).total_seconds()
        if abs(later) > policy.clock_skew_s:
            return origin if later > 0 else target
    return policy.better(origin, target)


def _changed_columns(base: Row | None, row: Row) -> list[str]:
    """The columns of ``row`` that differ from ``base`` (all of them without a base)."""
    return [c for c in row if base is None or not _same(row[c], base.get(c, _MISSING))]


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return same_value(a, b)


def _is_json(v: Any) -> bool:
    return isinstance(v, (dict, list)) or v is JSON_NULL


def _json_text(v: Any) -> str | None:
    if isinstance(v, (dict, list)) or v is JSON_NULL:
        return canonical_json(json.dumps(None if v is JSON_NULL else v, default=_json_default))
    if isinstance(v, (str, bytes, bytearray)):
        return canonical_json(v)
    return None


def _json_default(v: Any) -> Any:
    return None if v is JSON_NULL else str(v)


def _number(v: Any) -> Decimal | None:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        return Decimal(str(v))
    if isinstance(v, int):  # bool included
        return Decimal(int(v))
    return None


def _utc(v: datetime) -> datetime:
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v
