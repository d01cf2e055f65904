"""Where a polling flow stands: per table a watermark, as a checkpointable text.

A poll source has no log, so its position is what it has read: per table the highest value
of the poll column seen (the *watermark*) and, while a round over the table is unfinished,
the ``(column, key)`` pair of the last row read, so a restart continues right after it
instead of reading the whole table again (a first poll is the initial copy).

A round reads the rows whose column is at least ``watermark - overlap`` (time columns) or at
least the watermark (numbers), ordered by ``(column, key)``, in pages. Re-reading the recent
stretch catches rows whose transaction committed *after* a later-stamped row was read (a long
transaction stamps ``updated_at`` when it starts, PostgreSQL's ``now()``), and rows sharing
the watermark's value; writes are upserts, so reading a row twice is harmless. Once
``overlap`` seconds of the source's clock have passed since a watermark was first known, no
such row can come any more (transactions shorter than the overlap), and rounds continue
strictly after the highest (column, key) pair read: a quiet table is not read again.

Positions are ordered by the source's clock at the start of the round that produced them,
then by their sequence number in that round: the pipeline compares positions (``run --once``
stops at the :meth:`~replicator.poll.source.PollSource.current_position` it asked for).

Values are written as ``[tag, text]`` pairs, so a restart binds the very same typed value
(an aware timestamp stays aware, a decimal stays exact).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..errors import ReplicatorError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def encode_value(value: Any) -> list[str]:
    """A watermark or key value as ``[tag, text]``; ValueError for types a key cannot be."""
    if isinstance(value, bool):
        return ["b", "1" if value else "0"]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, time):
        return ["T", value.isoformat()]
    if isinstance(value, timedelta):
        return ["D", f"{value.days}:{value.seconds}:{value.microseconds}"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["x", bytes(value).hex()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    raise ValueError(f"a value of type {type(value).__name__} cannot be a poll watermark or key")


def decode_value(pair: Any) -> Any:
    tag, text = pair
    if tag == "b":
        return text == "1"
    if tag == "i":
        return int(text)
    if tag == "n":
        return Decimal(text)
    if tag == "f":
        return float(text)
    if tag == "s":
        return str(text)
    if tag == "t":
        return datetime.fromisoformat(text)
    if tag == "d":
        return date.fromisoformat(text)
    if tag == "T":
        return time.fromisoformat(text)
    if tag == "D":
        d, s, us = (int(p) for p in text.split(":"))
        return timedelta(days=d, seconds=s, microseconds=us)
    if tag == "x":
        return bytes.fromhex(text)
    if tag == "u":
        return uuid.UUID(text)
    raise ValueError(f"unknown value tag {tag!r}")


@dataclass(frozen=True)
class Mark:
    """One table's progress: the highest column value read (None: nothing read yet), and
    while a round over the table is unfinished, the (column, key) of its last row read."""

    value: Any = None
    resume: tuple[Any, tuple[Any, ...]] | None = None
    since: Any = None  # ``snapshot: never``: the maximum at the start; rows up to it are never read
    top: tuple[Any, tuple[Any, ...]] | None = None  # the highest (column, key) pair read
    seen: datetime | None = None  # the source's clock at the first round after ``value`` was read


@dataclass(frozen=True, eq=True)
class PollPosition:
    """The marks of every table, ordered by (round, seq)."""

    round: datetime = EPOCH  # the source's clock when the round began (aware, UTC)
    seq: int = 0  # position inside the round
    marks: dict[str, Mark] = field(default_factory=dict)

    def _order(self) -> tuple[datetime, int]:
        return (self.round, self.seq)

    def __lt__(self, other: PollPosition) -> bool:
        return self._order() < other._order()

    def __le__(self, other: PollPosition) -> bool:
        return self._order() <= other._order()

    def __gt__(self, other: PollPosition) -> bool:
        return self._order() > other._order()

    def __ge__(self, other: PollPosition) -> bool:
        return self._order() >= other._order()

    def __hash__(self) -> int:
        return hash(self._order())

    def mark(self, table: str) -> Mark:
        return self.marks.get(table, Mark())

    def with_mark(self, table: str, mark: Mark, seq: int | None = None) -> PollPosition:
        marks = dict(self.marks)
        marks[table] = mark
        return replace(self, marks=marks, seq=self.seq + 1 if seq is None else seq)

    def format(self) -> str:
        tables: dict[str, Any] = {}
        for name, m in sorted(self.marks.items()):
            entry: dict[str, Any] = {}
            if m.value is not None:
                entry["v"] = encode_value(m.value)
            if m.resume is not None:
                entry["r"] = [encode_value(m.resume[0]), [encode_value(k) for k in m.resume[1]]]
            if m.since is not None:
                entry["s"] = encode_value(m.since)
            if m.top is not None:
                entry["t"] = [encode_value(m.top[0]), [encode_value(k) for k in m.top[1]]]
            if m.seen is not None:
                entry["a"] = encode_value(m.seen)
            tables[name] = entry
        return json.dumps({"poll": 1, "round": self.round.isoformat(), "seq": self.seq, "tables": tables},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> PollPosition:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("poll") != 1:
                raise ValueError("not a poll position")
            marks: dict[str, Mark] = {}
            for name, entry in doc["tables"].items():
                value = decode_value(entry["v"]) if "v" in entry else None
                resume = None
                if "r" in entry:
                    resume = (decode_value(entry["r"][0]), tuple(decode_value(k) for k in entry["r"][1]))
                top = None
                if "t" in entry:
                    top = (decode_value(entry["t"][0]), tuple(decode_value(k) for k in entry["t"][1]))
                marks[str(name)] = Mark(value, resume, decode_value(entry["s"]) if "s" in entry else None, top,
                                        decode_value(entry["a"]) if "a" in entry else None)
            return cls(datetime.fromisoformat(doc["round"]), int(doc["seq"]), marks)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ReplicatorError(
                f"the checkpoint {text[:80]!r} is not a poll position ({exc}): was the flow's mode"
                " changed? `replicator checkpoint rewind` or a new flow name starts it afresh"
            ) from None


@dataclass(frozen=True)
class LowerBound:
    """Where a round over one table starts: nothing (the whole table), rows whose column is
    at least ``value`` (``key`` None), or rows strictly after the pair ``(value, key)`` (after
    ``value`` itself when ``key`` is empty)."""

    value: Any = None
    key: tuple[Any, ...] | None = None

    @property
    def everything(self) -> bool:
        return self.value is None


def lower_bound(mark: Mark, overlap: timedelta, now: datetime | None = None) -> LowerBound:
    """Where the next round over a table starts reading (see module docstring); never at or
    below the mark's ``since``.

    The overlap is only needed while a late row can still come: every row stamped at most the
    watermark was stamped before the watermark's row committed, which was before ``seen``; a
    transaction shorter than the overlap has committed by ``seen + overlap`` (source clock,
    ``now``). A watermark *settled* so continues strictly after the highest pair read, so a
    table whose rows share one old stamp (a bulk load) is not read again and again.
    """
    if mark.resume is not None:
        bound = LowerBound(mark.resume[0], mark.resume[1])
    elif mark.value is None:
        return LowerBound()
    elif now is not None and mark.seen is not None and mark.top is not None and now - mark.seen > overlap:
        bound = LowerBound(mark.top[0], mark.top[1])
    else:
        value = mark.value
        if isinstance(value, datetime) or type(value) is date:
            try:
                value = value - overlap
            except OverflowError:
                pass
        bound = LowerBound(value)
    if mark.since is not None and not _gt(bound.value, mark.since):
        return LowerBound(mark.since, ())
    return bound


def advance(mark: Mark, last_value: Any, last_key: tuple[Any, ...], finished: bool) -> Mark:
    """The mark after reading a page whose last row is ``(last_value, last_key)``; ``finished``:
    the round over the table is done (the page was its last)."""
    resume = None if finished else (last_value, last_key)
    if mark.value is None or _gt(last_value, mark.value):  # a new watermark: not seen settled yet
        return Mark(last_value, resume, mark.since, (last_value, last_key), None)
    top = mark.top
    if not _gt(mark.value, last_value):  # more rows at the watermark: the pair moves on
        top = (last_value, last_key)
    return Mark(mark.value, resume, mark.since, top, mark.seen)


def finish(mark: Mark) -> Mark:
    return replace(mark, resume=None)


def observe(mark: Mark, now: datetime) -> Mark:
    """At the start of a round: a watermark read by an earlier round is known since ``now``."""
    if mark.value is None or mark.seen is not None:
        return mark
    return replace(mark, seen=now)


def _gt(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime) and (a.tzinfo is None) != (b.tzinfo is None):
        # a column that changed from timestamp to timestamptz (or a MySQL naive UTC value)
        a = a if a.tzinfo is not None else a.replace(tzinfo=timezone.utc)
        b = b if b.tzinfo is not None else b.replace(tzinfo=timezone.utc)
    return bool(a > b)


def missing_keys(target_keys: list[tuple[Any, ...]], present: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The target's keys (one page) that the source no longer holds (``present``: those of
    them the source returned, as it stores them), in target order. Values are compared as both
    engines' drivers give them (:func:`normalize_key_value`).

    Text compares exactly but for trailing spaces: a ``CHAR(n)`` key comes back padded from
    one engine and stripped from the other (a key differing only so is kept, never deleted).
    Case is compared: a case-insensitive source returns its own spelling for the target's key,
    and a target row spelled otherwise is a stale one (the source's key changed case).
    """
    have = {tuple(normalize_key_value(v) for v in k) for k in present}
    return [k for k in target_keys if tuple(normalize_key_value(v) for v in k) not in have]


def normalize_key_value(value: Any) -> Any:
    """A key value in a form both engines' drivers agree on: integral decimals as ints,
    decimals without trailing zeros, aware datetimes as naive UTC, bytes-likes as bytes,
    UUIDs as text, text without trailing spaces."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return value.normalize()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        value = str(value)
    if isinstance(value, str):
        return value.rstrip(" ")
    return value
