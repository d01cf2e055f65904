"""The poll loop (:class:`PollSource.stream`) against an in-memory table: pages and their
positions, resuming mid-round, skipping unchanged re-reads, deletes from the key comparison,
``run --once``. No server: the dialect is a fake over a dict."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.mapping import ColumnInfo, TableInfo
from replicator.poll.dialect import PollDialect
from replicator.poll.position import LowerBound, PollPosition
from replicator.poll.source import PolledTable, PollSettings, PollSource
from replicator.records import DELETE, Begin, Change, Commit, Heartbeat, TableId

T = TableId("s", "t")
INFO = TableInfo(T, (ColumnInfo("id", "int", False), ColumnInfo("v", "text"), ColumnInfo("u", "int", False)), ("id",))
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeDialect(PollDialect):
    def __init__(self) -> None:
        self.rows: dict[int, tuple[Any, ...]] = {}  # id -> (id, v, u)
        self.target: list[tuple[Any, ...]] = []  # the target's keys
        self.clock = NOW

    def connect(self, url: str, what: str) -> Any:
        return object()

    def describe(self, conn: Any, table: TableId) -> TableInfo | None:
        return INFO

    def now(self, conn: Any) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def page(self, conn: Any, info: TableInfo, column: str, key: tuple[str, ...], bound: LowerBound,
             limit: int) -> list[tuple[Any, ...]]:
        rows = sorted(self.rows.values(), key=lambda r: (r[2], r[0]))
        if not bound.everything:
            if bound.key is None:
                rows = [r for r in rows if r[2] >= bound.value]
            elif not bound.key:
                rows = [r for r in rows if r[2] > bound.value]
            else:
                rows = [r for r in rows if (r[2], r[0]) > (bound.value, *bound.key)]
        return rows[:limit]

    def max_value(self, conn: Any, info: TableInfo, column: str) -> Any:
        return max((r[2] for r in self.rows.values()), default=None)

    def present(self, conn: Any, info: TableInfo, key: tuple[str, ...], keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [k for k in keys if k[0] in self.rows]

    def keys_after(self, conn: Any, table: TableId, key: tuple[str, ...], after: tuple[Any, ...] | None,
                   limit: int) -> list[tuple[Any, ...]]:
        return [k for k in sorted(self.target) if after is None or k > after][:limit]


def source(fake: FakeDialect, page_rows: int = 3, snapshot: str = "initial", overlap_s: float = 0) -> PollSource:
    src = PollSource("x", "postgresql", [PolledTable(T, TableId("d", "t"), "u")], flow="f", target_url="y",
                     target_engine="postgresql", state_schema="_r",
                     settings=PollSettings(interval_s=0.01, deletes_every_s=0, overlap_s=overlap_s, page_rows=page_rows,
                                           key_page_rows=2),
                     snapshot=snapshot)
    src.d = src.td = fake
    src._conn = src._target = src._catalog = object()
    t = src.tables[0]
    t.info, t.order_key, t.target_key, t.key_sources = INFO, ("id",), ("id",), ("id",)
    src._bound = True
    return src


def once(src: PollSource, start: PollPosition | None) -> list[Any]:
    import replicator.syncnow as syncnow

    real = syncnow.ensure
    syncnow.ensure = lambda conn, schema: None  # type: ignore[assignment]
    try:
        src.acknowledge(PollPosition(NOW + timedelta(days=1)))  # the target committed everything
        return list(src.stream(start, src.current_position()))
    finally:
        syncnow.ensure = real  # type: ignore[assignment]


def changes(items: list[Any]) -> list[tuple[str, Any]]:
    return [(i.op, (i.after or i.key)["id"]) for i in items if isinstance(i, Change)]


def test_pages_positions_and_resume() -> None:
    fake = FakeDialect()
    fake.rows = {i: (i, f"v{i}", 10 + i // 2) for i in range(1, 8)}  # u: 10, 11, 11, 12, 12, 13, 13
    items = once(source(fake), None)
    assert changes(items) == [("u", i) for i in range(1, 8)]
    commits = [i for i in items if isinstance(i, Commit)]
    assert len(commits) == 3  # pages of 3, 3, 1
    # each page's position says where to continue; the last page ends the round
    assert commits[0].position.marks["s.t"].resume == (11, (3,))
    assert commits[1].position.marks["s.t"].resume == (13, (6,))
    assert commits[2].position.marks["s.t"].resume is None and commits[2].position.marks["s.t"].value == 13
    assert isinstance(items[-1], Heartbeat) and items[-1].position > commits[-1].position
    # a transaction's identity says what it read from where: the same in the next session
    begins = [i.position for i in items if isinstance(i, Begin)]
    assert begins == ['poll rows s.t from null', 'poll rows s.t from [["i","11"],[["i","3"]]]',
                      'poll rows s.t from [["i","13"],[["i","6"]]]']
    assert [i.position for i in once(source(fake), None) if isinstance(i, Begin)] == begins
    # a restart after the first page continues after (11, 3), without reading rows 1-3 again
    resumed = once(source(fake), PollPosition.parse(commits[0].position.format()))
    assert changes(resumed) == [("u", i) for i in range(4, 8)]
    # a finished round, and no overlap: the next continues after the highest pair read (13, 7)
    fake.rows[2] = (2, "changed", 14)
    again = once(source(fake), items[-1].position)
    assert changes(again) == [("u", 2)]
    # with an overlap not yet passed (the fake clock moves 1 s a query): rows at 13 again
    again = once(source(fake, overlap_s=100), items[-1].position)
    assert changes(again) == [("u", 6), ("u", 7), ("u", 2)]


def test_unchanged_rows_are_not_written_twice_by_one_process() -> None:
    fake = FakeDialect()
    fake.rows = {1: (1, "a", 5), 2: (2, "b", 5)}
    src = source(fake, overlap_s=100)  # the fake clock moves 1 s a round: still in the overlap
    first = once(src, None)
    assert changes(first) == [("u", 1), ("u", 2)]
    second = once(src, first[-1].position)  # re-reads u >= 5: both rows, unchanged
    assert changes(second) == [] and not any(isinstance(i, Commit) for i in second)
    fake.rows[2] = (2, "b2", 5)  # same column value, other content: written
    assert changes(once(src, second[-1].position)) == [("u", 2)]


def test_deletes_from_the_key_comparison() -> None:
    fake = FakeDialect()
    fake.rows = {i: (i, "x", 1) for i in (1, 3, 4)}
    fake.target = [(1,), (2,), (3,), (5,), (6,)]
    items = once(source(fake, page_rows=10), None)
    deletes = [i for i in items if isinstance(i, Change) and i.op == DELETE]
    assert [d.key for d in deletes] == [{"id": 2}, {"id": 5}, {"id": 6}]
    assert all(d.after is None and d.table == T for d in deletes)
    # each page of target keys with deletes is its own transaction, before the round's rows
    assert [i.position for i in items if isinstance(i, Begin)][:3] == [
        'poll deletes d.t from [["i","1"]]', 'poll deletes d.t from [["i","3"]]', 'poll deletes d.t from [["i","6"]]']
    kinds = [type(i).__name__ for i in items]
    assert kinds[:9] == ["Begin", "Change", "Commit"] * 3  # key pages of 2: (1, 2), (3, 5), (6)


def test_snapshot_never_reads_only_later_rows() -> None:
    fake = FakeDialect()
    fake.rows = {1: (1, "a", 5), 2: (2, "b", 7)}
    src = source(fake, snapshot="never")
    start = src.initial_position()
    assert start.marks["s.t"].since == 7
    assert changes(once(src, start)) == []
    fake.rows[3] = (3, "c", 7)  # at the maximum: it was (or could have been) there at the start
    fake.rows[4] = (4, "d", 8)
    assert changes(once(source(fake), start)) == [("u", 4)]


def test_changed_columns_end_the_session() -> None:
    import pytest

    from replicator.errors import TransientError

    fake = FakeDialect()
    fake.rows = {1: (1, "a", 5)}
    src = source(fake)
    fake.describe = lambda conn, table: TableInfo(T, INFO.columns + (ColumnInfo("w", "int"),), ("id",))  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="columns of polled table s.t changed"):
        once(src, None)


def test_rows_sharing_an_old_stamp_are_read_once() -> None:
    fake = FakeDialect()
    fake.rows = {i: (i, "bulk", 5) for i in range(1, 8)}
    src = source(fake, overlap_s=2.5)  # the fake clock moves 1 s a query, 3 queries a run
    first = once(src, None)
    assert len(changes(first)) == 7
    pos = first[-1].position
    second = once(source(fake, overlap_s=2.5), pos)  # 2 s later, a new process: re-reads the overlap
    assert len(changes(second)) == 7
    third = once(source(fake, overlap_s=2.5), second[-1].position)  # 5 s after: settled
    assert changes(third) == []
    fake.rows[8] = (8, "same stamp, higher key", 5)
    fake.rows[9] = (9, "newer", 6)
    assert changes(once(source(fake, overlap_s=2.5), third[-1].position)) == [("u", 8), ("u", 9)]
