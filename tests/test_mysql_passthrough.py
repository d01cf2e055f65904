"""The MySQL/MariaDB passthrough: rows events read straight into the target's text.

Unit tests, no server: every captured rows event (``tests/fixtures/mysql_rows.json``, see
``test_mysql_rows``) of a table whose columns the passthrough takes is read both ways; the
COPY line must be byte for byte what psycopg writes for the decoded values, the ``(…)`` text
what the MySQL writer renders for them (what the normal path sends), and the key the change
record's key. Synthetic events add text that needs escapes, NUL characters, key changes and
partial row images; eligibility is checked per type pair. End to end, on real servers:
``test_a_flow_streams_simple_tables_as_text_and_matches_row_for_row`` below (MariaDB ->
PostgreSQL and -> MariaDB), and kill -9 in ``test_mariadb_crash.py::test_mariadb_crash_safety``
(both targets; its tables take this path, which the test checks in the log).
"""

from __future__ import annotations

import struct
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer
from psycopg.pq import Format
from pymysqlreplication.column import Column
from pymysqlreplication.table import Table

from replicator.mapping import ColumnInfo, TableInfo, TableMapping
from replicator.mysql.passthrough import pg_passthrough_key
from replicator.mysql.rows import COPY_TEXT, MYSQL_VALUES, NotRaw, RowDecoder
from replicator.config import TableConfig
from replicator.errors import DataError
from replicator.records import TableId

from test_mysql_rows import FIXTURES, events, table

_OIDS = {int: 20, float: 701, Decimal: 1700, str: 25, date: 1082}


def _oid(value: Any) -> int:
    if isinstance(value, datetime):
        return 1114 if value.tzinfo is None else 1184
    return _OIDS.get(type(value), 25)


def psycopg_line(row: list[Any]) -> bytes:
    """The COPY text line psycopg writes for these values (the normal path's), without the
    newline."""
    tx = Transformer()
    tx.set_dumper_types([_oid(v) for v in row], Format.TEXT)
    f = TextFormatter(tx)
    f.write_row(row)
    out = bytes(f.end())
    assert out.endswith(b"\n")
    return out[:-1]


def _check_event(decoder: RowDecoder, ev: dict[str, Any]) -> int:
    body = bytes.fromhex(ev["body"])
    kinds = decoder.raw_kinds(COPY_TEXT)
    assert kinds is not None
    key_idx = tuple(decoder.column_names.index(k) for k in decoder.key_columns)
    pairs = decoder.read_event(ev["kind"], body, 0, len(body), len(decoder.column_names))
    keys, rows = decoder.read_raw(ev["kind"], body, 0, len(body), len(decoder.column_names), key_idx, COPY_TEXT)
    assert len(keys) == len(pairs)
    for (before, after), key, row in zip(pairs, keys, rows or [None] * len(keys)):
        source = before if before is not None else after
        want_key = tuple(source[k] for k in decoder.key_columns)
        assert key == (want_key[0] if len(want_key) == 1 else want_key)
        if after is None:
            assert ev["kind"] == "delete" and not rows
            continue
        assert len(row) == 1
        assert row[0].encode() == psycopg_line([after[c] for c in decoder.column_names])
    return len(keys)


RAW_TABLES = ["t_int", "t_dec", "t_float", "t_zero", "t_zero2", "t_enum", "t_min"]


@pytest.mark.parametrize("name", RAW_TABLES)
def test_copy_lines_are_what_psycopg_writes_for_the_decoded_values(name: str) -> None:
    decoder = RowDecoder(table(name), zero_date="null")
    if not decoder.key_columns:
        decoder = RowDecoder(table(name), zero_date="null", key_columns=[decoder.column_names[0]])
    rows = refused = 0
    for case in FIXTURES["cases"]:
        for ev in events(case["name"], name):
            try:
                rows += _check_event(decoder, ev)
            except DataError:  # a row that does not decode: the text reader refuses the event too
                body = bytes.fromhex(ev["body"])
                with pytest.raises(NotRaw):
                    decoder.read_raw(ev["kind"], body, 0, len(body), len(decoder.column_names), (0,), COPY_TEXT)
                refused += 1
            except NotRaw:
                # only a key change or a row image without every column (MINIMAL) sends an
                # event of these tables back to the normal path
                body = bytes.fromhex(ev["body"])
                pairs = decoder.read_event(ev["kind"], body, 0, len(body), len(decoder.column_names))
                images = [r for pair in pairs for r in pair if r is not None]
                partial = any(set(r) != set(decoder.column_names) for r in images)
                moved = ev["kind"] == "update" and any(
                    b.get(k) != a.get(k) for b, a in pairs if b and a for k in decoder.key_columns
                )
                assert partial or moved, ev
                refused += 1
    assert rows > 0
    # t_min: MINIMAL row images; t_enum: latin1 member names the library could not read
    assert refused == {"t_min": 3, "t_enum": 2}.get(name, 0), refused


def test_tables_with_other_types_are_not_taken() -> None:
    # latin1 text (decoded through MySQL's own latin1), BINARY(n), TIME and the old temporal
    # formats. (MariaDB's JSON is LONGTEXT to the decoder: the binding and the source keep JSON
    # columns out, see test_not_eligible.)
    for name in ("t_str", "t_bin", "t_old"):
        assert RowDecoder(table(name)).raw_kinds(COPY_TEXT) is None, name
    for name in ("t_float", "t_enum", "t_zero"):  # no FLOAT, ENUM/SET or TIMESTAMP towards MySQL
        assert RowDecoder(table(name)).raw_kinds(MYSQL_VALUES) is None, name


def test_zero_dates_under_the_error_policy_go_back_to_the_normal_path() -> None:
    decoder = RowDecoder(table("t_zero"), zero_date="error")
    kinds = decoder.raw_kinds(COPY_TEXT)
    assert kinds is not None
    refused = 0
    for case in FIXTURES["cases"]:
        for ev in events(case["name"], "t_zero"):
            body = bytes.fromhex(ev["body"])
            try:
                decoder.read_event(ev["kind"], body, 0, len(body), len(decoder.column_names))
            except Exception:
                with pytest.raises(NotRaw):
                    decoder.read_raw(ev["kind"], body, 0, len(body), len(decoder.column_names), (0,), COPY_TEXT)
                refused += 1
    assert refused > 0


# --------------------------------------------------------------------------- towards MySQL

_KIND_TYPES = {"i": "bigint", "n": "decimal(65,30)", "d": "datetime(6)", "s": "text"}


def writer_rows(kinds: str, names: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    """The ``(…)`` texts the MySQL writer renders for these rows (the normal path's)."""
    from replicator.mapping import ColumnInfo
    from replicator.mysql.writer import _row_renderer, converter_for, sql_literal
    from test_mysql_rows import _literal_conn

    conn = _literal_conn()
    converters = [converter_for(ColumnInfo(n, _KIND_TYPES[k])) for n, k in zip(names, kinds)]
    return _row_renderer(list(names), converters, sql_literal(conn), True)(rows)


@pytest.mark.parametrize("name", ["t_int", "t_dec", "t_zero2", "t_min"])
def test_sql_rows_are_what_the_mysql_writer_renders_for_the_decoded_values(name: str) -> None:
    decoder = RowDecoder(table(name), zero_date="null")
    if not decoder.key_columns:
        decoder = RowDecoder(table(name), zero_date="null", key_columns=[decoder.column_names[0]])
    kinds = decoder.raw_kinds(MYSQL_VALUES)
    assert kinds is not None
    key_idx = tuple(decoder.column_names.index(k) for k in decoder.key_columns)
    taken = 0
    for case in FIXTURES["cases"]:
        for ev in events(case["name"], name):
            body = bytes.fromhex(ev["body"])
            pairs = decoder.read_event(ev["kind"], body, 0, len(body), len(decoder.column_names))
            try:
                keys, rows = decoder.read_raw(ev["kind"], body, 0, len(body), len(decoder.column_names), key_idx,
                                              MYSQL_VALUES)
            except NotRaw:
                assert any(set(r) != set(decoder.column_names) for pair in pairs for r in pair if r), ev
                continue
            afters = [a for _, a in pairs if a is not None]
            assert [r[0] for r in rows] == writer_rows(kinds, decoder.column_names, afters)
            taken += len(keys)
    assert taken > 0


def test_sql_text_that_needs_escapes() -> None:
    values = ["it's", 'say "hi"', "back\\slash", "nul\0byte", "new\nline", "cr\rx", "ctrl-z\x1a", "é 😀", "",
              None, "\\N"]
    body = _event("write", *[_image(i, v) for i, v in enumerate(values)])
    decoder = RowDecoder(_table())
    kinds = decoder.raw_kinds(MYSQL_VALUES)
    assert kinds == "is"
    keys, rows = decoder.read_raw("write", body, 0, len(body), 2, (0,), MYSQL_VALUES)
    assert keys == list(range(len(values)))
    assert [r[0] for r in rows] == writer_rows(kinds, ("id", "v"), [{"id": i, "v": v} for i, v in enumerate(values)])
    assert rows[0] == ["(0,'it\\'s')"] and rows[9] == ["(9,NULL)"]


# --------------------------------------------------------------------------- synthetic events

_VARCHAR, _LONG = 15, 3


def _table() -> Table:
    cols = [
        Column(type=_LONG, name="id", unsigned=False, is_primary=True),
        Column(type=_VARCHAR, name="v", max_length=400, character_set_name="utf8mb4", is_primary=False),
    ]
    return Table(1, "db", "t", cols)


def _image(id_: int, v: str | None) -> bytes:
    if v is None:
        return bytes([0b10]) + struct.pack("<i", id_)
    raw = v.encode()
    return bytes([0]) + struct.pack("<i", id_) + struct.pack("<H", len(raw)) + raw


def _event(kind: str, *images: bytes) -> bytes:
    bitmap = b"\x03"
    return (bitmap * 2 if kind == "update" else bitmap) + b"".join(images)


def _raw(kind: str, body: bytes) -> tuple[list[Any], list[list[str]]]:
    decoder = RowDecoder(_table())
    kinds = decoder.raw_kinds(COPY_TEXT)
    assert kinds == "is"
    return decoder.read_raw(kind, body, 0, len(body), 2, (0,), COPY_TEXT)


def test_text_that_needs_copy_escapes() -> None:
    values = ["tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "emoji 😀 é", "", None, "plain"]
    body = _event("write", *[_image(i, v) for i, v in enumerate(values)])
    keys, rows = _raw("write", body)
    assert keys == list(range(len(values)))
    assert [r[0].encode() for r in rows] == [psycopg_line([i, v]) for i, v in enumerate(values)]
    assert rows[4] == ["4\t\\\\N"] and rows[7] == ["7\t\\N"]


def test_text_holding_nul_goes_back_to_the_normal_path() -> None:
    with pytest.raises(NotRaw):
        _raw("write", _event("write", _image(1, "ok"), _image(2, "a\x00b")))


def test_updates_keep_their_key_or_go_back_to_the_normal_path() -> None:
    keys, rows = _raw("update", _event("update", _image(7, "old"), _image(7, "new\tvalue")))
    assert keys == [7] and rows == [["7\tnew\\tvalue"]]
    with pytest.raises(NotRaw):
        _raw("update", _event("update", _image(7, "x"), _image(7, "y"), _image(8, "x"), _image(9, "x")))


def test_deletes_give_keys_only() -> None:
    keys, rows = _raw("delete", _event("delete", _image(3, "a"), _image(4, None)))
    assert keys == [3, 4] and rows == []


def test_binary_strings_travel_as_bytea_hex_towards_postgresql_only() -> None:
    cols = [
        Column(type=_LONG, name="id", unsigned=False, is_primary=True),
        Column(type=_VARCHAR, name="v", max_length=40, character_set_name="binary", is_primary=False),
    ]
    decoder = RowDecoder(Table(1, "db", "t", cols))
    assert decoder.raw_kinds(MYSQL_VALUES) is None
    kinds = decoder.raw_kinds(COPY_TEXT)
    assert kinds == "ib"
    values = [b"", b"\x00\x00", b"a\\b\tc\nd\re", bytes(range(256))[:40], None]
    images = []
    for i, v in enumerate(values):
        if v is None:
            images.append(bytes([0b10]) + struct.pack("<i", i))
        else:
            images.append(bytes([0]) + struct.pack("<i", i) + bytes([len(v)]) + v)
    body = _event("write", *images)
    keys, rows = decoder.read_raw("write", body, 0, len(body), 2, (0,), COPY_TEXT)
    assert keys == list(range(len(values)))
    for v, (line,) in zip(values, rows):
        field = line.split("\t")[1]
        if v is None:
            assert field == "\\N"
        else:  # COPY turns \\ into \, and bytea reads \x… as hex: the very bytes
            assert field.startswith("\\\\x") and bytes.fromhex(field[3:]) == v


def test_columns_missing_from_the_image_go_back_to_the_normal_path() -> None:
    body = b"\x01" + bytes([0]) + struct.pack("<i", 5)  # only the id present (a MINIMAL image)
    with pytest.raises(NotRaw):
        _raw("write", body)


# --------------------------------------------------------------------------- eligibility


def _mapping(src_cols: list[tuple[str, str]], dst_cols: list[tuple[str, str]], key: str = "id") -> tuple[Any, ...]:
    src = TableInfo(TableId("db", "t"), tuple(ColumnInfo(n, t) for n, t in src_cols), (key,))
    dst = TableInfo(TableId("public", "t"), tuple(ColumnInfo(n, t) for n, t in dst_cols), (key,))
    mapping = TableMapping(src.table, dst.table, {})
    mapping.bind(src, dst)
    return TableConfig(source="db.t"), mapping, src, dst


def test_eligible_when_every_target_column_has_the_type_the_replicator_would_create() -> None:
    args = _mapping(
        [("id", "bigint(20)"), ("name", "varchar(64)"), ("amount", "decimal(12,2)"), ("at", "datetime(6)"),
         ("ts", "timestamp(3)"), ("d", "date"), ("n", "int(10) unsigned"), ("body", "text"), ("f", "float"),
         ("y", "year(4)"), ("e", "enum('a','b')"), ("b", "bit(3)")],
        [("id", "bigint"), ("name", "character varying(64)"), ("amount", "numeric(12,2)"),
         ("at", "timestamp(6) without time zone"), ("ts", "timestamp(3) with time zone"), ("d", "date"),
         ("n", "bigint"), ("body", "text"), ("f", "real"), ("y", "smallint"), ("e", "text"), ("b", "bigint")],
    )
    assert pg_passthrough_key(*args) == ("id",)


@pytest.mark.parametrize("src_type,dst_type", [
    ("int(11)", "smallint"),  # narrower: PostgreSQL would refuse values the normal path reports
    ("varchar(64)", "character varying(10)"),
    ("datetime", "timestamp(6) without time zone"),  # another precision than the replicator's
    ("double", "real"),  # narrower
    ("enum('a','b')", "character varying(10)"),
    ("time", "interval second(0)"),
    ("binary(4)", "bytea"),  # read with its trailing zero bytes put back: not taken
    ("json", "jsonb"),  # JSON text is marked as such on the normal path
])
def test_not_eligible(src_type: str, dst_type: str) -> None:
    args = _mapping([("id", "int(11)"), ("x", src_type)], [("id", "integer"), ("x", dst_type)])
    assert pg_passthrough_key(*args) is None


# --------------------------------------------------------------------------- a real flow

MY_TABLE = (
    "CREATE TABLE p (id INT PRIMARY KEY, name VARCHAR(50), note TEXT, amount DECIMAL(12,2),"
    " at DATETIME(6), {pg_only}d DATE, big BIGINT UNSIGNED)"
)
PG_TABLE = (
    "CREATE TABLE p (id integer PRIMARY KEY, name varchar(50), note text, amount numeric(12,2),"
    " at timestamp(6), ts timestamptz(6), f real, e text, y smallint, b bigint, bin bytea, d date, big numeric(20,0))"
)
# columns only the PostgreSQL variant has (towards MySQL these types take the normal path)
PG_ONLY = "ts TIMESTAMP(6) NULL, f FLOAT, e ENUM('x', 'y z', ''), y YEAR, b BIT(5), bin VARBINARY(20), "
SPECIALS = ["tab\there", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "emoji 😀 é", "it's \"q\"", None,
            "nul\0byte\x1a"]


def _norm(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo:  # timestamptz comes back aware, TIMESTAMP (at +00:00) naive
        return v.replace(tzinfo=None)
    if isinstance(v, float):  # a FLOAT/real: its single-precision value (the clients print it rounded)
        return struct.unpack("<f", struct.pack("<f", v))[0]
    return v


def _rows_equal(src: list[tuple[Any, ...]], dst: list[tuple[Any, ...]]) -> None:
    assert [tuple(map(_norm, r)) for r in dst] == [tuple(map(_norm, r)) for r in src]


@pytest.mark.parametrize("target", ["postgres", "mariadb"])
def test_a_flow_streams_simple_tables_as_text_and_matches_row_for_row(
    target: str, mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB -> PostgreSQL (COPY lines; with a TIMESTAMP column) and MariaDB -> MariaDB (SQL
    rows; TIMESTAMP is not taken there, so the table has none): inserts one event per row,
    updates, NULLs, text needing escapes, a key change (the normal path, in order with the
    rest), deletes and a reused key; the target equals the source row for row."""
    from dbhelpers import my_fetch, my_script, pg_fetch, pg_script, run_once, write_config
    from replicator.mysql import source as mysql_source
    from replicator.pg.passthrough import RawBatch

    groups: list[tuple[str, int]] = []  # what each rows event became
    original = mysql_source._TableState.raw_rows

    def spy(self: Any, *args: Any) -> Any:
        out = original(self, *args)
        groups.append(("raw", len(out.keys)) if out is not None else ("normal", 0))
        return out

    taken: list[int] = []  # the groups the pipeline nets
    add = RawBatch.add

    def spy_add(self: Any, item: Any, mapping: Any) -> None:
        taken.append(len(item.keys))
        add(self, item, mapping)

    monkeypatch.setattr(mysql_source._TableState, "raw_rows", spy)
    monkeypatch.setattr(RawBatch, "add", spy_add)
    db = fresh_db_name
    pg = target == "postgres"
    mariadb.create_database(db)
    my_script(mariadb, db, MY_TABLE.format(pg_only=PG_ONLY if pg else ""))
    if pg:
        pg_target.create_database(db)
        pg_script(pg_target, db, PG_TABLE)
        dst_url = pg_target.url(db)
    else:
        mariadb.create_database(db + "_d")
        my_script(mariadb, db + "_d", MY_TABLE.format(pg_only=""))
        dst_url = mariadb.url(db + "_d")
    cfg = write_config(tmp_path / "replicator.yaml", "pt" + db[-8:], mariadb.url(db), dst_url,
                       "      - source: p\n" + ("" if pg else f"        target: {db}_d.p\n"),
                       batch="{max_rows: 700, max_delay_ms: 100}")
    run_once(cfg)

    def pg_values(i: int) -> str:
        enum = ("'x'", "'y z'", "''", "NULL")[i % 4]
        binary = ("X''", f"X'00{i % 256:02x}5c090a00'", "NULL")[i % 3]
        return f", FROM_UNIXTIME({1700000000 + i}), {i}.1 / 3, {enum}, {1901 + i % 255}, b'{i % 32:05b}', {binary}"
    conn = mariadb.connect(db, charset="utf8mb4", init_command="SET time_zone = '+00:00'")
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            for i in range(1, 1201):  # one event per row: grouped by the reader
                text = SPECIALS[i % len(SPECIALS)]
                if pg and text is not None:
                    text = text.replace("\0", "")  # PostgreSQL text cannot hold NUL
                cur.execute(
                    f"INSERT INTO p VALUES ({i}, CONCAT('n', {i}), %s, {i}.25,"
                    f" '2024-02-29 23:59:59.{i:06d}'{pg_values(i) if pg else ''},"
                    f" '2024-01-{1 + i % 28:02d}', {18446744073709551615 - i})",
                    (text,),
                )
            cur.execute("COMMIT")
            cur.execute("BEGIN")
            cur.execute("UPDATE p SET amount = amount + 1, note = CONCAT(COALESCE(note, ''), '\\t+') WHERE id <= 600")
            cur.execute("UPDATE p SET id = id + 10000 WHERE id IN (5, 6, 7)")  # key change: normal path
            cur.execute("UPDATE p SET name = NULL, d = NULL WHERE id BETWEEN 8 AND 40")
            cur.execute("DELETE FROM p WHERE id BETWEEN 41 AND 90")
            cur.execute("INSERT INTO p (id, name) VALUES (7, 'reused key'), (2000, 'tail')")
            cur.execute("COMMIT")
    finally:
        conn.close()
    run_once(cfg)
    query = f"SELECT id, name, note, amount, at, {'ts, f, e, y, b, bin, ' if pg else ''}d, big FROM p ORDER BY id"
    # BIT as its number, FLOAT exactly (the text protocol prints 6 digits)
    src = my_fetch(mariadb, db, query.replace(" b,", " b + 0,").replace(" f,", " CAST(f AS DOUBLE),"))
    assert len(src) == 1200 - 50 + 2 and src[-1][0] == 10007
    dst = pg_fetch(pg_target, db, query) if pg else my_fetch(mariadb, db + "_d", query)
    _rows_equal(src, dst)
    raw = [n for kind, n in groups if kind == "raw"]
    # every rows event but the key change's was read as text...
    assert sum(raw) == 1200 + 600 + (40 - 8 + 1) + 50 + 2 and groups.count(("normal", 0)) == 1, groups
    # ...and the 1,200 single-row INSERT events reached the pipeline in groups of up to 1,000
    assert sum(taken) == sum(raw) and max(taken) == 1000, taken
