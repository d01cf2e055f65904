"""Two-way batches from fixtures: each key keeps the row its first change was based on, and a
change based on something else (the flow back wrote the key in between) is not netted."""

from __future__ import annotations

import pytest

from replicator.errors import SchemaError
from replicator.mapping import TableInfo, TableMapping, ColumnInfo
from replicator.records import Change, TableId
from replicator.twoway import KeyChange, TwoWayBatch

SRC, DST = TableId("crm", "contacts"), TableId("public", "contacts")


def mapping() -> TableMapping:
    m = TableMapping(SRC, DST, {"firstName": "first_name"})
    cols = lambda names: [ColumnInfo(n, "text", False) for n in names]  # noqa: E731
    m.bind(TableInfo(SRC, cols(["id", "firstName"]), ("id",)), TableInfo(DST, cols(["id", "first_name"]), ("id",)))
    return m


def row(i: int, name: str) -> dict[str, object]:
    return {"id": i, "firstName": name}


def target(i: int, name: str) -> dict[str, object]:
    return {"id": i, "first_name": name}


def test_a_keys_changes_net_to_its_first_base_and_last_row() -> None:
    m, b = mapping(), TwoWayBatch()
    assert b.add(Change("c", SRC, None, None, row(1, "a")), m)
    assert b.add(Change("u", SRC, {"id": 1}, row(1, "a"), row(1, "b")), m, target(1, "a"))
    assert b.add(Change("u", SRC, {"id": 2}, row(2, "x"), row(2, "y")), m, target(2, "x"))
    assert b.add(Change("d", SRC, {"id": 2}, row(2, "y"), None), m, target(2, "y"))
    (t,) = b.drain()
    assert t.keys == {(1,): KeyChange((1,), None, target(1, "b")), (2,): KeyChange((2,), target(2, "x"), None)}
    assert b.size == 0 and b.drain() == []


def test_a_change_based_on_another_row_is_not_netted() -> None:
    m, b = mapping(), TwoWayBatch()
    assert b.add(Change("u", SRC, {"id": 1}, row(1, "a"), row(1, "b")), m, target(1, "a"))
    # the flow back wrote "c" over "b" (skipped as an echo); this change is based on "c"
    assert not b.add(Change("u", SRC, {"id": 1}, row(1, "c"), row(1, "d")), m, target(1, "c"))
    (t,) = b.drain()
    assert t.keys == {(1,): KeyChange((1,), target(1, "a"), target(1, "b"))}  # nothing of the second
    assert b.add(Change("u", SRC, {"id": 1}, row(1, "c"), row(1, "d")), m, target(1, "c"))


def test_an_update_without_its_old_row_says_how_to_send_it() -> None:
    with pytest.raises(SchemaError, match="REPLICA IDENTITY FULL"):
        TwoWayBatch().add(Change("u", SRC, {"id": 1}, None, row(1, "b")), mapping(), None)
