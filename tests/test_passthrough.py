"""PostgreSQL -> PostgreSQL passthrough (replicator/pg/passthrough.py), from byte fixtures only.

The decoder's passthrough rows must hold exactly the COPY text fields of pgoutput's values
(the fast split path and the general loop alike), keep the order of everything it emits, and
leave every shape it does not handle to the normal path. RawBatch must net like Batch.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import psycopg
import pytest

from pgoutput_messages import UNCHANGED, cstr, msg_begin, msg_commit, msg_delete, msg_insert, msg_update, oid, tuple_data

from replicator.config import TableConfig
from replicator.mapping import ColumnInfo, TableInfo, TableMapping
from replicator.pg.passthrough import (
    NULL,
    RAW_ROWS_MAX,
    RawBatch,
    RawRows,
    escape,
    passthrough_key,
)
from replicator.pg.pgoutput import PgOutputDecoder
from replicator.records import Begin, Change, Commit, Item, TableId

T = TableId("public", "items")
NAMES = ("id", "name", "note")
def relation(rel_oid: int, names: tuple[str, ...] = NAMES) -> bytes:
    cols = [(n, oid("int8") if n == "id" else oid("text"), n == "id") for n in names]
    out = b"R" + struct.pack(">I", rel_oid) + cstr("public") + cstr("items") + b"d"
    out += struct.pack(">h", len(cols))
    for name, type_oid, is_key in cols:
        out += struct.pack(">B", 1 if is_key else 0) + cstr(name) + struct.pack(">Ii", type_oid, -1)
    return out


def begin(xid: int = 7) -> bytes:
    return msg_begin(100, 0, xid)


def commit(end: int = 200) -> bytes:
    return msg_commit(150, end, 0)


def insert(rel: int, row: list[Any]) -> bytes:
    return msg_insert(rel, row)


def update(rel: int, row: list[Any], old: list[Any] | None = None, kind: bytes = b"K") -> bytes:
    return msg_update(rel, row, old, kind)


def delete(rel: int, old: list[Any], kind: bytes = b"K") -> bytes:
    return msg_delete(rel, old, kind)


def decoder(rel: int = 16400, names: tuple[str, ...] = NAMES) -> PgOutputDecoder:
    d = PgOutputDecoder()
    d.set_passthrough({T: (NAMES, ("id",))})
    assert d.decode(relation(rel, names)) == []
    return d


def run(d: PgOutputDecoder, *messages: bytes) -> list[Item | RawRows]:
    out: list[Item | RawRows] = []
    for m in messages:
        out.extend(d.decode(m))
    return out


def fields(values: list[Any]) -> list[bytes]:
    return [NULL if v is None else escape(v.encode() if isinstance(v, str) else v) for v in values]


def test_inserts_become_one_group_of_copy_fields_between_begin_and_commit() -> None:
    d = decoder()
    items = run(d, begin(), insert(16400, ["1", "a", "x"]), insert(16400, ["2", "tab\there", None]), commit())
    assert [type(i) for i in items] == [Begin, RawRows, Commit]
    group = items[1]
    assert isinstance(group, RawRows) and group.table == T and group.names == NAMES and group.op == "c"
    assert group.keys == [b"1", b"2"]
    assert group.fields == [[b"1", b"a", b"x"], [b"2", b"tab\\there", NULL]]


@pytest.mark.parametrize("rel_oid", [16400, 0x74000000, 0x00740000, 0x0074_0074])
def test_split_path_and_loop_path_give_the_same_fields_for_awkward_values(rel_oid: int) -> None:
    rng = random.Random(rel_oid)
    alphabet = [b"t", b"tt", b"\t", b"\n", b"\r", b"\\", b"\\N", b"a", b"\xc3\xa9", b" ", b"\x01", b"\x74"]
    d = decoder(rel_oid)
    for i in range(3000):
        row: list[Any] = [str(i).encode()]
        for _ in range(2):
            r = rng.random()
            if r < 0.1:
                row.append(None)
            elif r < 0.15:
                row.append(b"t" * rng.choice([0x7400, 0x10074, 70000]))  # long values
            else:
                row.append(b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))
        items = run(d, begin(), insert(rel_oid, row), update(rel_oid, row), commit())
        assert [type(i) for i in items] == [Begin, RawRows, RawRows, Commit]
        ins, upd = items[1], items[2]
        assert isinstance(ins, RawRows) and isinstance(upd, RawRows)
        assert (ins.op, ins.keys, ins.fields) == ("c", [row[0]], [fields(row)]), row
        assert (upd.op, upd.keys, upd.fields) == ("u", [row[0]], [fields(row)]), row


def test_key_change_and_unchanged_toast_take_the_normal_path_in_order() -> None:
    d = decoder()
    items = run(
        d,
        begin(),
        insert(16400, ["1", "a", "x"]),
        update(16400, ["5", "a", "x"], old=["1", None, None]),  # key change
        insert(16400, ["2", "b", "y"]),
        update(16400, ["2", "c", UNCHANGED]),  # unchanged TOAST: a partial row
        update(16400, ["3", "d", "z"], old=["3", "d", "w"], kind=b"O"),  # same key, full old row
        commit(),
    )
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Begin", "RawRows", "Change", "RawRows", "Change", "RawRows", "Commit"]
    assert isinstance(items[2], Change) and items[2].key == {"id": 1} and items[2].after == {"id": 5, "name": "a", "note": "x"}
    assert isinstance(items[4], Change) and items[4].partial and items[4].after == {"id": 2, "name": "c"}
    assert isinstance(items[5], RawRows) and (items[5].op, items[5].keys, items[5].fields) == ("u", [b"3"], [[b"3", b"d", b"z"]])


def test_deletes_carry_the_key_only() -> None:
    d = decoder()
    items = run(d, begin(), delete(16400, ["4", None, None]), delete(16400, ["5", "n", "o"], kind=b"O"), commit())
    assert isinstance(items[1], RawRows)
    assert (items[1].op, items[1].keys, items[1].fields) == ("d", [b"4", b"5"], [])


def test_groups_are_bounded_and_keep_their_order() -> None:
    d = decoder()
    rows = [insert(16400, [str(i), "n", "x"]) for i in range(RAW_ROWS_MAX + 5)]
    items = run(d, begin(), *rows, commit())
    assert [type(i).__name__ for i in items] == ["Begin", "RawRows", "RawRows", "Commit"]
    keys = [k for g in items[1:3] for k in g.keys]  # type: ignore[union-attr]
    assert keys == [str(i).encode() for i in range(RAW_ROWS_MAX + 5)]


def test_a_relation_with_other_columns_than_checked_is_not_passed_through() -> None:
    d = decoder(names=("id", "name", "note", "added"))
    items = run(d, begin(), insert(16400, ["1", "a", "x", "new"]), commit())
    assert [type(i) for i in items] == [Begin, Change, Commit]


def mapping(renames: dict[str, str] | None = None) -> TableMapping:
    m = TableMapping(T, TableId("public", "dst"), renames or {})
    src = TableInfo(T, (ColumnInfo("id", "bigint"), ColumnInfo("name", "text"), ColumnInfo("note", "text")), ("id",))
    dst_cols = tuple(ColumnInfo((renames or {}).get(c.name, c.name), c.type) for c in src.columns)
    m.bind(src, TableInfo(TableId("public", "dst"), dst_cols, ("id",)))
    return m


def group(op: str, *rows: tuple[bytes, list[bytes] | None], names: tuple[str, ...] = NAMES) -> RawRows:
    return RawRows(T, names, op, [k for k, _ in rows], [f for _, f in rows if f is not None])


def test_raw_batch_nets_like_batch() -> None:
    m = mapping()
    b = RawBatch()
    for g in (
        group("c", (b"1", [b"1", b"a", b"x"])),
        group("u", (b"1", [b"1", b"b", b"x"])),  # still new to the target: an insert
        group("u", (b"2", [b"2", b"c", b"x"])),  # a row the target holds: an upsert
        group("d", (b"3", None)),
        group("c", (b"3", [b"3", b"d", b"x"]), (b"4", [b"4", b"e", b"x"])),  # 3 re-inserted: upsert
        group("d", (b"4", None)),  # inserted then deleted: the delete stays (idempotent)
        group("u", (b"5", [b"5", b"f", b"x"]), (b"5", [b"5", b"g", b"x"])),  # twice: the last wins
    ):
        b.add(g, m)
    assert len(b) == 5
    [ops] = b.drain()
    assert ops.names == NAMES
    assert ops.inserts == [[b"1", b"b", b"x"]]
    assert ops.upserts == [[b"2", b"c", b"x"], [b"3", b"d", b"x"], [b"5", b"g", b"x"]]
    assert ops.deletes == [b"4"]
    assert len(b) == 0 and b.drain() == []


def test_raw_batch_fast_paths_for_groups_of_new_keys() -> None:
    b = RawBatch()
    b.add(group("c", (b"1", [b"1"]), (b"2", [b"2"])), mapping())
    [ops] = b.drain()
    assert (ops.inserts, ops.upserts, ops.deletes) == ([[b"1"], [b"2"]], [], [])
    m = mapping()
    b.add(group("u", (b"1", [b"1"]), (b"2", [b"2"])), m)
    b.add(group("u", (b"3", [b"3"])), m)
    [ops] = b.drain()
    assert (ops.inserts, ops.upserts, ops.deletes) == ([], [[b"1"], [b"2"], [b"3"]], [])


def test_raw_batch_keeps_rows_of_a_changed_column_list_apart() -> None:
    m = mapping()
    b = RawBatch()
    b.add(group("c", (b"1", [b"1", b"a", b"x"])), m)
    b.add(group("c", (b"2", [b"2", b"b"]), names=("id", "name")), m)
    first, second = b.drain()
    assert (first.names, first.inserts) == (NAMES, [[b"1", b"a", b"x"]])
    assert (second.names, second.inserts) == (("id", "name"), [[b"2", b"b"]])


def test_passthrough_key_only_for_plain_tables_of_equal_types_and_exact_keys() -> None:
    src = TableInfo(T, (ColumnInfo("id", "bigint"), ColumnInfo("name", "text"), ColumnInfo("note", "text")), ("id",))
    same = TableInfo(TableId("public", "dst"), src.columns, ("id",))
    plain = TableConfig(source="items")
    assert passthrough_key(plain, mapping(), src, same) == ("id",)
    renamed = TableInfo(TableId("public", "dst"), (ColumnInfo("id", "bigint"), ColumnInfo("title", "text"), ColumnInfo("note", "text")), ("id",))
    assert passthrough_key(TableConfig(source="items", columns={"name": "title"}), mapping({"name": "title"}), src, renamed) == ("id",)
    widened = TableInfo(TableId("public", "dst"), (ColumnInfo("id", "bigint"), ColumnInfo("name", "character varying(5)"), ColumnInfo("note", "text")), ("id",))
    assert passthrough_key(plain, mapping(), src, widened) is None
    num_src = TableInfo(T, (ColumnInfo("id", "numeric"), ColumnInfo("name", "text"), ColumnInfo("note", "text")), ("id",))
    num_dst = TableInfo(TableId("public", "dst"), num_src.columns, ("id",))
    m = TableMapping(T, TableId("public", "dst"), {})
    m.bind(num_src, num_dst)
    assert passthrough_key(plain, m, num_src, num_dst) is None  # 1.0 = 1.00: text is no key


def test_sink_writes_passthrough_rows_inserting_updating_and_falling_back(pg_target: Any, fresh_db_name: str) -> None:
    """PostgresSink.apply_raw: COPY straight in, an insert whose key exists falls back to an
    upsert, upserts update the rows found and insert the others, deletes by key."""
    from replicator.pg.passthrough import RawTableOps
    from replicator.pg.writer import PostgresSink
    from replicator.protocols import Checkpoint

    db = fresh_db_name
    pg_target.create_database(db)
    pg_target.execute("CREATE TABLE dst (id bigint PRIMARY KEY, title text, note text)", dbname=db)
    pg_target.execute("INSERT INTO dst VALUES (1, 'old', 'n'), (2, 'old', 'n'), (3, 'old', 'n')", dbname=db)
    m = mapping({"name": "title"})
    sink = PostgresSink(pg_target.url(db))
    try:
        sink.ensure_state()
        sink.describe(TableId("public", "dst"))

        def row(i: int, title: str, note: bytes = NULL) -> list[bytes]:
            return [str(i).encode(), escape(title.encode()), note]

        fresh = [row(i, f"new\t{i}") for i in range(10, 200)]
        sink.apply_raw([RawTableOps(m, NAMES, deletes=[b"3"], upserts=[row(2, "up\\2"), row(4, "up4")], inserts=fresh)])
        # An "insert" of a key the target holds: the COPY fails, the rows are upserted.
        sink.apply_raw([RawTableOps(m, NAMES, inserts=[row(1, "again"), row(5, "five", b"x")] + [row(i, "b") for i in range(300, 400)])])
        sink.commit(Checkpoint("t", "0/1", None, 0, 0))
        got = pg_target.execute("SELECT id, title, note FROM dst ORDER BY id", dbname=db)
    finally:
        sink.close()
    want = [(1, "again", None), (2, "up\\2", None), (4, "up4", None), (5, "five", "x")]
    want += [(i, f"new\t{i}", None) for i in range(10, 200)] + [(i, "b", None) for i in range(300, 400)]
    assert got == sorted(want)
