"""The batch buffer nets changes per key exactly like applying them one by one would."""

from __future__ import annotations

from replicator.batch import Batch, TableOps
from replicator.mapping import ColumnInfo, TableInfo, TableMapping
from replicator.records import Change, TableId

SRC = TableId("public", "items")
DST = TableId("crm", "things")


def mapping() -> TableMapping:
    m = TableMapping(SRC, DST, {"name": "title"})
    m.bind(
        TableInfo(SRC, (ColumnInfo("id", "int"), ColumnInfo("name", "text"), ColumnInfo("big", "text")), ("id",)),
        TableInfo(DST, (ColumnInfo("id", "int"), ColumnInfo("title", "text"), ColumnInfo("big", "text")), ("id",)),
    )
    return m


def ins(i: int, name: str, big: str = "B") -> Change:
    row = {"id": i, "name": name, "big": big}
    return Change("c", SRC, {"id": i}, None, row)


def upd(i: int, name: str, big: str | None = "B", old: int | None = None) -> Change:
    row: dict[str, object] = {"id": i, "name": name}
    if big is not None:
        row["big"] = big
    before = {"id": old} if old is not None else None
    return Change("u", SRC, {"id": old if old is not None else i}, before, row, partial=big is None)


def dele(i: int) -> Change:
    return Change("d", SRC, {"id": i}, {"id": i}, None)


def run(*changes: Change) -> list[TableOps]:
    m = mapping()
    b = Batch()
    for c in changes:
        b.add(c, m)
    ops = b.drain()
    assert len(b) == 0
    return ops


def summary(ops: list[TableOps]) -> list[tuple[bool, list[tuple[object, ...]], list[dict[str, object]], list[dict[str, object]]]]:
    return [(o.truncate, o.deletes, o.upserts, o.updates) for o in ops]


def test_insert_then_updates_become_one_upsert_with_target_names() -> None:
    ops = run(ins(1, "a"), upd(1, "b"), upd(1, "c"))
    assert summary(ops) == [(False, [], [{"id": 1, "title": "c", "big": "B"}], [])]
    assert ops[0].mapping.target == DST


def test_insert_then_delete_leaves_a_delete_only() -> None:
    # The row may exist on the target from an earlier batch, so a delete is kept (idempotent).
    assert summary(run(ins(1, "a"), dele(1))) == [(False, [(1,)], [], [])]


def test_delete_then_reinsert_is_an_upsert() -> None:
    assert summary(run(dele(1), ins(1, "new"))) == [(False, [], [{"id": 1, "title": "new", "big": "B"}], [])]


def test_key_change_is_delete_of_old_key_and_upsert_of_new_row() -> None:
    ops = run(ins(1, "a"), upd(5, "a", old=1))
    assert summary(ops) == [(False, [(1,)], [{"id": 5, "title": "a", "big": "B"}], [])]


def test_partial_update_without_prior_row_stays_a_partial_update() -> None:
    # 'big' was an unchanged TOAST value: it is absent, never None.
    assert summary(run(upd(1, "x", big=None))) == [(False, [], [], [{"id": 1, "title": "x"}])]


def test_partial_update_merges_into_a_full_row_held_in_the_batch() -> None:
    ops = run(ins(1, "a", big="BIG"), upd(1, "x", big=None))
    assert summary(ops) == [(False, [], [{"id": 1, "title": "x", "big": "BIG"}], [])]


def test_two_partial_updates_merge() -> None:
    ops = run(upd(1, "x", big=None), upd(1, "y", big=None))
    assert summary(ops) == [(False, [], [], [{"id": 1, "title": "y"}])]


def test_truncate_discards_earlier_rows_and_keeps_later_ones() -> None:
    ops = run(ins(1, "a"), ins(2, "b"), Change("t", SRC, None, None, None), ins(3, "c"))
    assert summary(ops) == [(True, [], [{"id": 3, "title": "c", "big": "B"}], [])]


def test_size_counts_distinct_keys_for_flushing() -> None:
    m = mapping()
    b = Batch()
    for i in range(10):
        b.add(ins(i, "a"), m)
    b.add(upd(3, "z"), m)
    assert len(b) == 10
    b.add(Change("t", SRC, None, None, None), m)
    assert len(b) == 0


def test_partial_key_change_of_a_row_held_in_full_becomes_delete_and_upsert() -> None:
    ops = run(ins(1, "a", big="BIG"), upd(7, "b", big=None, old=1))
    assert summary(ops) == [(False, [(1,)], [{"id": 7, "title": "b", "big": "BIG"}], [])]


def test_partial_key_change_of_an_unknown_row_is_an_ordered_rekey() -> None:
    # The target holds the old row with its big value; only an in-place key move keeps it.
    ops = run(ins(2, "x"), upd(1, "p", big=None), upd(9, "q", big=None, old=1), upd(9, "r", big=None), dele(2))
    assert [(o.truncate, o.deletes, o.upserts, o.updates, o.rekeys) for o in ops] == [
        (False, [], [{"id": 2, "title": "x", "big": "B"}], [{"id": 1, "title": "p"}], []),
        (False, [], [], [], [((1,), {"id": 9, "title": "q"})]),
        (False, [(2,)], [], [{"id": 9, "title": "r"}], []),
    ]
