"""End to end, PostgreSQL → PostgreSQL, on real servers.

One module-scoped scenario does the expensive work once: it creates a source database (on
``pg_source``) and a target database (on ``pg_target``) with the same tables, runs the flow once
to create the slot and publication (there is no initial snapshot yet), makes two rounds of
source changes, and replicates each round with ``run --once`` (round 1 in-process, round 2 with
the real CLI in a subprocess, resuming from round 1's checkpoint). Each test then compares one
aspect of the result: whole rows, every column, ordered by key, source against target.

The checkpoint test and the key-change-with-TOAST test use their own small flows, so their
exact expectations do not depend on the big scenario.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from replicator.pg.pgoutput import str_to_lsn

from dbhelpers import (
    assert_same_rows,
    big_text,
    cli,
    drop_slot,
    pg_fetch,
    pg_round_1,
    pg_round_2,
    pg_script,
    run_once,
    run_once_cli,
    write_config,
)

# --------------------------------------------------------------------------- schema

COMMON_DDL = """
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id integer,
    amount numeric(12,2),
    status text NOT NULL,
    note text,
    placed_at timestamp
);
CREATE TABLE inventory (
    sku text PRIMARY KEY,
    qty integer NOT NULL,
    price numeric(10,2),
    location varchar(40)
);
CREATE TABLE line_items (
    order_id bigint,
    line_no integer,
    product text NOT NULL,
    qty integer,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE bulk (id integer PRIMARY KEY, val text NOT NULL, n bigint);
CREATE TABLE docs (id integer PRIMARY KEY, title text, body text, rev integer);
CREATE TABLE types (
    id integer PRIMARY KEY,
    c_smallint smallint, c_integer integer, c_bigint bigint,
    c_numeric numeric, c_numeric_ps numeric(50,10),
    c_real real, c_double double precision,
    c_text text, c_varchar varchar(20), c_char char(5),
    c_bool boolean, c_date date, c_time time, c_timestamp timestamp, c_timestamptz timestamptz,
    c_json json, c_jsonb jsonb, c_bytea bytea, c_uuid uuid,
    c_int_arr integer[], c_text_arr text[], c_int_2d integer[], c_interval interval
);
"""

SOURCE_DDL = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    first_name text,
    last_name text NOT NULL,
    email varchar(120),
    city text,
    vip boolean,
    created_at timestamptz
);
""" + COMMON_DDL

TARGET_DDL = SOURCE_DDL.replace("first_name text", '"firstName" text')

TYPE_COLS = [
    "id", "c_smallint", "c_integer", "c_bigint", "c_numeric", "c_numeric_ps", "c_real", "c_double",
    "c_text", "c_varchar", "c_char", "c_bool", "c_date", "c_time", "c_timestamp", "c_timestamptz",
    "c_json", "c_jsonb", "c_bytea", "c_uuid", "c_int_arr", "c_text_arr", "c_int_2d", "c_interval",
]

# Hand-picked extreme values, one row each (ids 1-5); row 5 is NULL in every nullable column.
TYPE_ROWS = [
    "(1, -32768, -2147483648, -9223372036854775808,"
    " '-123456789012345678901234567890123456789012.123456789',"
    " '-1234567890123456789012345678901234567890.0123456789',"
    " '-3.4028235e38', '-Infinity',"
    " 'emoji 😀🎉 and ünïcödé, \"quotes\", ''apostrophes'', back\\slash', '', 'ab',"
    " true, '0001-01-01', '00:00:00', '1970-01-01 00:00:00', '2024-03-10 12:34:56.123456+05:30',"
    " '{\"a\": [1, 2, {\"b\": null}], \"ü\": \"✓\"}',"
    " '{\"nested\": {\"deep\": [1, \"two\", 3.5, true, null]}, \"emoji\": \"😀\"}',"
    " '\\x00010203ff0000'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
    " '{1,NULL,3}', '{\"a,b\",\"\",NULL,\"NULL\",\"quo\\\"te\",\"back\\\\slash\"}',"
    " '{{1,2},{3,NULL}}', '1 year 2 mons 3 days 04:05:06.789')",
    "(2, 32767, 2147483647, 9223372036854775807,"
    " '99999999999999999999999999999999999999999999.99999',"
    " '9999999999999999999999999999999999999999.9999999999',"
    " '3.4028235e38', 'Infinity',"
    " E'line1\\nline2\\r\\n\\ttab \\\\ back', 'xxxxxxxxxxxxxxxxxxxx', 'abcde',"
    " false, '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999',"
    " '2024-03-10 12:34:56.654321-08:00',"
    " '[]', '[1, \"a\", null, {\"k\": []}]', '\\x'::bytea, '00000000-0000-0000-0000-000000000000',"
    " '{}', '{}', '{{{1}}}', '-2 years -3 mons +4 days -00:00:01.5')",
    "(3, 0, 0, 0, 'NaN', '0.0000000001', 'NaN', 'NaN',"
    " ' leading and trailing  ', 'ünï', 'a', true, '2000-02-29', '12:00:00.000001',"
    " '2000-02-29 23:59:59.999999', '2000-02-29 23:59:59.999999+14:00',"
    " 'null', 'null', '\\x00'::bytea, 'ffffffff-ffff-ffff-ffff-ffffffffffff',"
    " '{NULL}', '{NULL,\"\"}', '{{NULL,NULL},{NULL,NULL}}', '0')",
    "(4, -1, 1, -1, '0.000000000000000000000000000000000000000001', '-0.0000000001',"
    " '1.17549435e-38', '1e-300', 'tab\there', 'tail spaces  ', 'x y', false,"
    " '1999-12-31', '23:59:59', '1999-12-31 23:59:59', '1999-12-31 23:59:59.5-00:30',"
    " '\"just a string\"', '\"ü string 😀\"', '\\xdeadbeef00'::bytea,"
    " '123e4567-e89b-12d3-a456-426614174000', '{-2147483648,2147483647}', '{\"😀\",\"NULL\"}',"
    " '{{1},{2},{3}}', '-1 days +00:00:00.000001')",
    "(5" + ", NULL" * (len(TYPE_COLS) - 1) + ")",
]

TYPE_ROWS_GENERATED = """
INSERT INTO types
SELECT 100 + i, (i * 37 % 65535) - 32767, i * 104729 - 2000000, i::bigint * 9007199254740993 % 9223372036854775807,
       (i * 12.34567)::numeric * 10::numeric ^ (i % 30), round((i / 7.0)::numeric, 10),
       (i / 3.0)::real, i * pi() * 10 ^ ((i % 40) - 20),
       repeat('ü', i % 5) || i || '😀', left(md5(i::text), i % 20), left(md5(i::text), 5),
       i % 2 = 0, date '2020-01-01' + i, time '00:00:00' + i * interval '17 min 3.000007 s',
       timestamp '2020-01-01' + i * interval '1 day 1.000123 s',
       timestamptz '2020-01-01 00:00:00+00' + i * interval '36 hours 0.5 s',
       json_build_object('i', i, 'list', json_build_array(i, 'x', NULL)),
       jsonb_build_object('i', i, 'nested', jsonb_build_object('ü', i::text)),
       decode(md5(i::text) || '0000', 'hex'), md5(i::text)::uuid,
       ARRAY[i, NULL, -i], ARRAY['t' || i, NULL, ''], ARRAY[[i, i + 1], [NULL, i + 3]],
       make_interval(years => i % 3, months => i % 13, days => i, secs => i / 8.0)
FROM generate_series(0, 79) i
"""


@dataclass
class Scenario:
    src: Any
    dst: Any
    src_db: str
    dst_db: str


@pytest.fixture(scope="module")
def scenario(pg_source: Any, pg_target: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    token = secrets.token_hex(4)
    src_db = dst_db = f"t_pg2pg_{token}"
    flow = f"pg2pg-{token}"
    pg_source.create_database(src_db)
    pg_target.create_database(dst_db)
    pg_script(pg_source, src_db, SOURCE_DDL)
    pg_script(pg_target, dst_db, TARGET_DDL)
    tables = (
        "      - source: customers\n"
        "        columns: {first_name: firstName}\n"
        "      - source: orders\n"
        "      - source: public.inventory\n"
        "      - source: line_items\n"
        "      - source: bulk\n"
        "      - source: docs\n"
        "      - source: types\n"
    )
    cfg = write_config(
        tmp_path_factory.mktemp("pg2pg") / "replicator.yaml",
        flow, pg_source.url(src_db), pg_target.url(dst_db), tables,
    )
    run_once(cfg)  # creates the slot and the publication; nothing to apply yet

    # ---- round 1: inserts, mixed transactions, a rollback, a savepoint rollback
    pg_script(
        pg_source, src_db,
        *pg_round_1(third_city="São Paulo", created_at_offset="+00", order_step="15 min"),
        # type matrix: 5 extreme rows + 80 generated ones (>= 64 rows: the COPY path)
        "INSERT INTO types VALUES " + ", ".join(TYPE_ROWS),
        TYPE_ROWS_GENERATED,
        # TOAST: big incompressible bodies
        f"INSERT INTO docs VALUES (1, 'doc one', {big_text('one')}, 1), (2, 'doc two', 'small body', 1)",
    )
    run_once(cfg)  # round 1, in-process

    # ---- round 2: updates, key changes, deletes, truncate, NULLs, big transactions
    pg_script(pg_source, src_db, *pg_round_2(TYPE_COLS))
    run_once_cli(cfg)  # round 2, the real command, resuming from round 1's checkpoint

    yield Scenario(pg_source, pg_target, src_db, dst_db)
    drop_slot(pg_source, "replicator_" + flow.replace("-", "_"))


def compare(sc: Scenario, src_query: str, dst_query: str, cols: Sequence[str]) -> list[tuple[Any, ...]]:
    src = pg_fetch(sc.src, sc.src_db, src_query)
    dst = pg_fetch(sc.dst, sc.dst_db, dst_query)
    assert_same_rows(src, dst, cols)
    return src


# --------------------------------------------------------------------------- tests


CUSTOMER_COLS = ["id", "first_name", "last_name", "email", "city", "vip", "created_at"]


def test_customers_match_after_key_change_updates_deletes_and_rename(scenario: Scenario) -> None:
    src = compare(
        scenario,
        f"SELECT {', '.join(CUSTOMER_COLS)} FROM customers ORDER BY id",
        'SELECT id, "firstName", last_name, email, city, vip, created_at FROM customers ORDER BY id',
        CUSTOMER_COLS,
    )
    ids = [r[0] for r in src]
    # the scenario really happened: keys 1-50 moved to 1001-1050, 81-100 deleted
    assert ids[:3] == [51, 52, 53] and 1001 in ids and 1050 in ids and 81 not in ids and 501 in ids
    assert len(src) == 200 - 20 + 4  # + 201 (re-inserted), 202, 204 and 501
    row = {r[0]: r for r in src}
    assert row[501][1:3] == ("Changed", "Row") and row[201][1] == "Reborn"


def test_target_column_renamed_by_config_receives_the_source_values(scenario: Scenario) -> None:
    dst = pg_fetch(scenario.dst, scenario.dst_db, 'SELECT "firstName" FROM customers WHERE id = 52')
    assert dst == [("First52",)]


def test_orders_match_after_multi_table_transactions(scenario: Scenario) -> None:
    cols = ["id", "customer_id", "amount", "status", "note", "placed_at"]
    src = compare(scenario, "SELECT * FROM orders ORDER BY id", "SELECT * FROM orders ORDER BY id", cols)
    assert len(src) == 301 and 777 not in [r[0] for r in src]


def test_truncated_table_holds_exactly_the_rows_inserted_after_the_truncate(scenario: Scenario) -> None:
    cols = ["sku", "qty", "price", "location"]
    src = compare(scenario, "SELECT * FROM inventory ORDER BY sku", "SELECT * FROM inventory ORDER BY sku", cols)
    assert len(src) == 20
    assert all(r[0].startswith("NEW-") or r[3] == "after truncate" for r in src)


def test_composite_key_table_matches_after_insert_update_key_change_and_delete(scenario: Scenario) -> None:
    cols = ["order_id", "line_no", "product", "qty"]
    q = "SELECT * FROM line_items ORDER BY order_id, line_no"
    src = compare(scenario, q, q, cols)
    keys = {(r[0], r[1]) for r in src}
    assert (50, 101) in keys and (50, 1) not in keys and (62, 2) not in keys and (999, 2) in keys


def test_rolled_back_transactions_and_savepoints_are_not_replicated(scenario: Scenario) -> None:
    dst = pg_fetch(scenario.dst, scenario.dst_db, "SELECT id, last_name FROM customers WHERE id IN (202, 203, 204, 9999) ORDER BY id")
    assert dst == [(202, "kept"), (204, "after savepoint")]
    assert pg_fetch(scenario.dst, scenario.dst_db, "SELECT count(*) FROM customers WHERE last_name LIKE 'ROLLED%'") == [(0,)]
    assert pg_fetch(scenario.dst, scenario.dst_db, "SELECT count(*) FROM inventory WHERE sku = 'ROLLBACK-SKU' OR qty = -1") == [(0,)]
    assert pg_fetch(scenario.dst, scenario.dst_db, "SELECT count(*) FROM orders WHERE id <= 10") == [(10,)]


def test_nulls_in_every_nullable_column_are_replicated_as_null(scenario: Scenario) -> None:
    dst = scenario.dst, scenario.dst_db
    assert pg_fetch(*dst, 'SELECT "firstName", email, city, vip, created_at FROM customers WHERE id BETWEEN 101 AND 110') == [
        (None,) * 5
    ] * 10
    assert pg_fetch(*dst, "SELECT customer_id, amount, note, placed_at FROM orders WHERE id = 301") == [(None,) * 4]
    assert pg_fetch(*dst, "SELECT price, location FROM inventory WHERE sku = 'NEW-1'") == [(None, None)]
    assert pg_fetch(*dst, "SELECT qty FROM line_items WHERE order_id = 301") == [(None,)]
    # the all-NULL extreme row moved to id 4 in round 2 and was copied to id 9
    assert pg_fetch(*dst, "SELECT * FROM types WHERE id IN (4, 9) ORDER BY id") == [
        (4,) + (None,) * (len(TYPE_COLS) - 1), (9,) + (None,) * (len(TYPE_COLS) - 1)
    ]


def test_100k_row_transactions_insert_update_delete_match_row_for_row(scenario: Scenario) -> None:
    q = "SELECT id, val, n FROM bulk ORDER BY id"
    src = compare(scenario, q, q, ["id", "val", "n"])
    assert len(src) == 50000
    assert src[0] == (1, "v1-updated", 4) and src[-1] == (99999, "v99999-updated", 99999 * 3 + 1)


def test_type_matrix_values_are_identical_on_the_target(scenario: Scenario) -> None:
    q = f"SELECT {', '.join(TYPE_COLS)} FROM types ORDER BY id"
    src = compare(scenario, q, q, TYPE_COLS)
    assert len(src) == 90
    # the extreme rows really hold what the test meant to write. Round 2 rotated them (id n
    # took the values of id n % 5 + 1) and copied ids 1-5 to 6-10: the original row 1 is now
    # at ids 5 and 10, row 2 at 1 and 6, row 3 at 2 and 7, row 4 at 3 and 8.
    by_id = {r[0]: dict(zip(TYPE_COLS, r)) for r in src}
    for a, b in ((5, 10), (1, 6), (2, 7), (3, 8), (4, 9)):
        assert_same_rows([src[a - 1][1:]], [src[b - 1][1:]], TYPE_COLS[1:])
    assert by_id[10]["c_bigint"] == -(2**63) and by_id[6]["c_bigint"] == 2**63 - 1
    assert by_id[7]["c_numeric"].is_nan() and math.isnan(by_id[7]["c_double"]) and math.isnan(by_id[7]["c_real"])
    assert by_id[10]["c_double"] == -math.inf and by_id[6]["c_double"] == math.inf
    assert by_id[8]["c_double"] == 1e-300
    assert by_id[10]["c_bytea"] == b"\x00\x01\x02\x03\xff\x00\x00" and by_id[6]["c_bytea"] == b""
    assert by_id[10]["c_text_arr"] == ["a,b", "", None, "NULL", 'quo"te', "back\\slash"]
    assert by_id[10]["c_int_2d"] == [[1, 2], [3, None]]
    assert by_id[10]["c_interval"] is not None and by_id[10]["c_text"].startswith("emoji 😀🎉")


def test_type_matrix_json_nulls_intervals_and_offsets_are_exact_on_the_target(scenario: Scenario) -> None:
    """What Python values cannot show: JSON null vs SQL NULL, interval months, jsonb text."""
    q = (
        "SELECT id, c_json IS NULL, json_typeof(c_json), c_json::jsonb::text, c_jsonb IS NULL,"
        " jsonb_typeof(c_jsonb), c_jsonb::text, c_interval::text, c_timestamptz::text,"
        " c_numeric::text, c_numeric_ps::text, c_real::text, c_double::text, c_char::text"
        " FROM types ORDER BY id"
    )
    cols = ["id", "json is null", "json_typeof", "json text", "jsonb is null", "jsonb_typeof", "jsonb text",
            "interval text", "timestamptz text", "numeric text", "numeric(50,10) text", "real text",
            "double text", "char text"]
    src = compare(scenario, q, q, cols)
    typeofs = {r[0]: (r[1], r[2], r[4], r[5]) for r in src}
    # the original row 3 (now ids 2 and 7) holds JSON null scalars, which are not SQL NULL
    assert typeofs[2] == typeofs[7] == (False, "null", False, "null")
    assert {r[0]: r[7] for r in src}[10] == "1 year 2 mons 3 days 04:05:06.789"


def test_unchanged_toast_value_stays_intact_when_another_column_is_updated(scenario: Scenario) -> None:
    q = "SELECT id, title, body, rev FROM docs ORDER BY id"
    src = compare(scenario, q, q, ["id", "title", "body", "rev"])
    assert [(r[0], r[1], r[3]) for r in src] == [
        (1, "doc one, renamed", 2), (2, "doc two, renamed", 2), (3, "doc three, renamed", 2),
    ]
    assert len(src[0][2]) == 32000 and len(src[2][2]) == 32000
    # the source really stored the body out of line (so pgoutput sent it as 'unchanged TOAST')
    toasted = pg_fetch(scenario.src, scenario.src_db, "SELECT pg_column_size(body) FROM docs WHERE id = 1")[0][0]
    assert toasted >= 10000


# --------------------------------------------------------------------------- own small flows


@pytest.fixture
def small_flow(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    flow = "f" + fresh_db_name[-8:]
    pg_source.create_database(fresh_db_name)
    pg_target.create_database(fresh_db_name)
    yield tmp_path / "replicator.yaml", fresh_db_name, flow
    drop_slot(pg_source, "replicator_" + flow)


def test_checkpoint_show_reports_position_and_exact_change_count(
    pg_source: Any, pg_target: Any, small_flow: tuple[Path, str, str]
) -> None:
    cfg_path, db, flow = small_flow
    ddl = (
        "CREATE TABLE accounts (id integer PRIMARY KEY, name text, balance numeric(12,2));"
        "CREATE TABLE events (a integer, b integer, what text, PRIMARY KEY (a, b));"
        "CREATE TABLE unlisted (id integer PRIMARY KEY);"
    )
    pg_script(pg_source, db, ddl)
    pg_script(pg_target, db, ddl)
    cfg = write_config(
        cfg_path, flow, pg_source.url(db), pg_target.url(db),
        "      - source: accounts\n      - source: events\n",
    )
    run_once_cli(cfg)  # creates the slot: no checkpoint changes yet
    first = json.loads(cli(cfg, "checkpoint", "show", "--json").stdout)
    assert first[0]["changes_applied"] == 0

    expected_changes = 0
    expected_txns = 0
    pg_script(pg_source, db, "INSERT INTO accounts SELECT i, 'acct ' || i, i * 10 FROM generate_series(1, 25) i")
    expected_changes += 25
    expected_txns += 1
    pg_script(
        pg_source, db,
        "BEGIN",
        "UPDATE accounts SET balance = balance + 1 WHERE id <= 10",  # 10
        "INSERT INTO events SELECT i, j, 'e' FROM generate_series(1, 3) i, generate_series(1, 2) j",  # 6
        "DELETE FROM accounts WHERE id > 20",  # 5
        "UPDATE accounts SET id = id + 100 WHERE id = 1",  # 1 (a key change is one change)
        "INSERT INTO unlisted VALUES (1), (2)",  # not in the flow: 0
        "COMMIT",
    )
    expected_changes += 10 + 6 + 5 + 1
    expected_txns += 1
    pg_script(pg_source, db, "BEGIN", "DELETE FROM accounts", "ROLLBACK")  # 0
    pg_script(pg_source, db, "UPDATE events SET what = 'x' WHERE a = 2")  # 2
    expected_changes += 2
    expected_txns += 1
    pg_script(pg_source, db, "INSERT INTO unlisted VALUES (3)")  # not in the flow
    end_of_changes = str_to_lsn(pg_fetch(pg_source, db, "SELECT pg_current_wal_lsn()::text")[0][0])

    run_once_cli(cfg)
    proc = cli(cfg, "checkpoint", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["flow"] == flow
    assert row["changes_applied"] == expected_changes == 49
    assert row["transactions_applied"] == expected_txns
    assert row["position"] is not None and row["source_position"] is not None
    position = str_to_lsn(row["position"])
    assert end_of_changes <= position <= str_to_lsn(row["source_position"])
    # and the data agree
    for q, cols in (
        ("SELECT * FROM accounts ORDER BY id", ["id", "name", "balance"]),
        ("SELECT * FROM events ORDER BY a, b", ["a", "b", "what"]),
    ):
        assert_same_rows(pg_fetch(pg_source, db, q), pg_fetch(pg_target, db, q), cols)
    assert pg_fetch(pg_target, db, "SELECT count(*) FROM unlisted") == [(0,)]


def test_key_change_of_a_row_with_an_unchanged_toast_value_keeps_the_row_and_the_value(
    pg_source: Any, pg_target: Any, small_flow: tuple[Path, str, str]
) -> None:
    cfg_path, db, flow = small_flow
    ddl = "CREATE TABLE docs (id integer PRIMARY KEY, title text, body text)"
    pg_script(pg_source, db, ddl)
    pg_script(pg_target, db, ddl)
    cfg = write_config(cfg_path, flow, pg_source.url(db), pg_target.url(db), "      - source: docs\n")
    run_once(cfg)
    pg_script(pg_source, db, f"INSERT INTO docs VALUES (1, 'one', {big_text('k1')}), (2, 'two', {big_text('k2')})")
    run_once(cfg)  # the rows are on the target
    pg_script(
        pg_source, db,
        "UPDATE docs SET id = 10 WHERE id = 1",  # key change, body unchanged (sent as 'u')
        "UPDATE docs SET id = 20, title = 'two moved' WHERE id = 2",
    )
    run_once(cfg)
    q = "SELECT id, title, body FROM docs ORDER BY id"
    src = pg_fetch(pg_source, db, q)
    assert [r[0] for r in src] == [10, 20] and len(src[0][2]) == 32000
    assert_same_rows(src, pg_fetch(pg_target, db, q), ["id", "title", "body"])
