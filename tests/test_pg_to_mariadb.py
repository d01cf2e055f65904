"""End to end, PostgreSQL → MariaDB, on real servers.

One module-scoped scenario (source database on ``pg_source``, target database on ``mariadb``)
runs the flow once to create the slot (there is no initial snapshot yet), makes two rounds of
source changes and replicates each with ``run --once`` (round 1 in-process, round 2 with the real
CLI in a subprocess). Each test compares one aspect: whole rows, every column, ordered by key,
after the documented type mapping:

=====================  ======================================  ============================
PostgreSQL             MariaDB column                          compared as
=====================  ======================================  ============================
smallint/int/bigint    SMALLINT/INT/BIGINT                     equal ints
numeric(p,s)           DECIMAL(p,s)                            equal Decimals
real / double          FLOAT / DOUBLE                          float32-exact / exact
text, varchar(n)       TEXT, VARCHAR(n) (utf8mb4)              equal strings (emoji too)
char(n)                CHAR(n)                                 MariaDB strips the padding
boolean                BOOL (TINYINT(1))                       True → 1, False → 0
date / time            DATE / TIME(6)                          date / time as timedelta
timestamp              DATETIME(6)                             equal
timestamptz            DATETIME(6) or TIMESTAMP(6)             the instant, in UTC
json / jsonb           JSON                                    parsed JSON (JSON null too)
bytea                  LONGBLOB                                equal bytes (trailing zeros)
uuid                   CHAR(36)                                canonical text
arrays                 JSON                                    parsed JSON lists
=====================  ======================================  ============================

Values no MariaDB column can hold (numeric NaN in DECIMAL, Infinity in DOUBLE) stop the flow
with a clear error and commit nothing of the batch.
"""

from __future__ import annotations

import json
import math
import secrets
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replicator.errors import DataError

from dbhelpers import (
    Norm,
    as_json,
    as_json_text,
    assert_mapped_rows,
    big_text,
    drop_slot,
    my_checkpoint,
    my_fetch,
    my_script,
    pg_fetch,
    pg_round_1,
    pg_round_2,
    pg_script,
    run_once,
    run_once_cli,
    run_once_cli_fails,
    run_once_fails,
    same,
    write_config,
)

# --------------------------------------------------------------------------- normalisation
# PostgreSQL value (as psycopg loads it) -> what the MariaDB column must hold (as pymysql loads it)


def as_int_bool(v: Any) -> Any:
    return None if v is None else int(v)


def as_utc_naive(v: Any) -> Any:
    return None if v is None else v.astimezone(timezone.utc).replace(tzinfo=None)


def as_time(v: Any) -> Any:
    if v is None:
        return None
    assert isinstance(v, time)
    return timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)


def as_char(v: Any) -> Any:
    return None if v is None else v.rstrip(" ")


def as_text(v: Any) -> Any:
    return None if v is None else str(v)


def as_float32(v: Any) -> Any:
    return None if v is None else struct.unpack("f", struct.pack("f", v))[0]


def target_holds(expected: Any, got: Any) -> bool:
    """NaN matches NaN; any other value must be == and None only matches None."""
    if isinstance(expected, float) and isinstance(got, float) and math.isnan(expected):
        return math.isnan(got)
    return bool(expected == got and (expected is None) == (got is None))


def assert_rows(
    src: Sequence[tuple[Any, ...]], dst: Sequence[tuple[Any, ...]], cols: Sequence[tuple[str, Norm]]
) -> None:
    assert_mapped_rows(src, dst, cols, target_holds)


# --------------------------------------------------------------------------- schema

PG_DDL = """
CREATE TABLE customers (
    id integer PRIMARY KEY, first_name text, last_name text NOT NULL, email varchar(120),
    city text, vip boolean, created_at timestamptz
);
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id integer, amount numeric(12,2), status text NOT NULL,
    note text, placed_at timestamp
);
CREATE TABLE inventory (sku text PRIMARY KEY, qty integer NOT NULL, price numeric(10,2), location varchar(40));
CREATE TABLE line_items (
    order_id bigint, line_no integer, product text NOT NULL, qty integer, PRIMARY KEY (order_id, line_no)
);
CREATE TABLE bulk (id integer PRIMARY KEY, val text NOT NULL, n bigint);
CREATE TABLE docs (id integer PRIMARY KEY, title text, body text, rev integer);
CREATE TABLE types (
    id integer PRIMARY KEY,
    c_smallint smallint, c_integer integer, c_bigint bigint,
    c_numeric_ps numeric(50,10), c_money numeric(12,2),
    c_real real, c_double double precision,
    c_text text, c_varchar varchar(20), c_char char(5),
    c_bool boolean, c_date date, c_time time, c_timestamp timestamp,
    c_timestamptz timestamptz, c_tstz_ts timestamptz,
    c_json json, c_jsonb jsonb, c_bytea bytea, c_uuid uuid,
    c_int_arr integer[], c_text_arr text[], c_int_2d integer[]
);
"""

MY_DDL = [
    "CREATE TABLE customers (id INT PRIMARY KEY, firstName TEXT, last_name TEXT NOT NULL,"
    " email VARCHAR(120), city TEXT, vip BOOL, created_at DATETIME(6))",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT, amount DECIMAL(12,2),"
    " status TEXT NOT NULL, note TEXT, placed_at DATETIME(6))",
    "CREATE TABLE inventory (sku VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY, qty INT NOT NULL,"
    " price DECIMAL(10,2), location VARCHAR(40))",
    "CREATE TABLE line_items (order_id BIGINT, line_no INT, product TEXT NOT NULL, qty INT,"
    " PRIMARY KEY (order_id, line_no))",
    "CREATE TABLE bulk (id INT PRIMARY KEY, val VARCHAR(40) NOT NULL, n BIGINT)",
    "CREATE TABLE docs (id INT PRIMARY KEY, title TEXT, body LONGTEXT, rev INT)",
    "CREATE TABLE types (id INT PRIMARY KEY,"
    " c_smallint SMALLINT, c_integer INT, c_bigint BIGINT,"
    " c_numeric_ps DECIMAL(50,10), c_money DECIMAL(12,2),"
    " c_real FLOAT, c_double DOUBLE,"
    " c_text TEXT, c_varchar VARCHAR(20), c_char CHAR(5),"
    " c_bool BOOL, c_date DATE, c_time TIME(6), c_timestamp DATETIME(6),"
    " c_timestamptz DATETIME(6), c_tstz_ts TIMESTAMP(6) NULL DEFAULT NULL,"
    " c_json JSON, c_jsonb JSON, c_bytea LONGBLOB, c_uuid CHAR(36),"
    " c_int_arr JSON, c_text_arr JSON, c_int_2d JSON)",
]

TYPE_COLS: list[tuple[str, Norm]] = [
    ("id", same), ("c_smallint", same), ("c_integer", same), ("c_bigint", same),
    ("c_numeric_ps", same), ("c_money", same), ("c_real", as_float32), ("c_double", same),
    ("c_text", same), ("c_varchar", same), ("c_char", as_char),
    ("c_bool", as_int_bool), ("c_date", same), ("c_time", as_time), ("c_timestamp", same),
    ("c_timestamptz", as_utc_naive), ("c_tstz_ts", as_utc_naive),
    ("c_json", as_json_text), ("c_jsonb", as_json_text), ("c_bytea", same), ("c_uuid", as_text),
    ("c_int_arr", as_json), ("c_text_arr", as_json), ("c_int_2d", as_json),
]
TYPE_NAMES = [c for c, _ in TYPE_COLS]
PG_TYPES_QUERY = "SELECT " + ", ".join(
    f"{c}::text" if c in ("c_json", "c_jsonb") else c for c in TYPE_NAMES
) + " FROM types ORDER BY id"
# FLOAT is read back through CAST(... AS DOUBLE): the exact float32 value, not 6 printed digits.
MY_TYPES_QUERY = "SELECT " + ", ".join(
    "CAST(c_real AS DOUBLE)" if c == "c_real" else c for c in TYPE_NAMES
) + " FROM types ORDER BY id"

TYPE_ROWS = [
    "(1, -32768, -2147483648, -9223372036854775808,"
    " '-1234567890123456789012345678901234567890.0123456789', '-9999999999.99',"
    " '-3.4028235e38', '-1.7976931348623157e308',"
    " 'emoji 😀🎉 and ünïcödé, \"quotes\", ''apostrophes'', back\\slash', '', 'ab',"
    " true, '1000-01-01', '00:00:00', '1970-01-01 00:00:00', '2024-03-10 12:34:56.123456+05:30',"
    " '1970-01-01 00:00:01+00',"
    " '{\"a\": [1, 2, {\"b\": null}], \"ü\": \"✓\"}',"
    " '{\"nested\": {\"deep\": [1, \"two\", 3.5, true, null]}, \"emoji\": \"😀\"}',"
    " '\\x00010203ff0000'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
    " '{1,NULL,3}', '{\"a,b\",\"\",NULL,\"NULL\",\"quo\\\"te\",\"back\\\\slash\"}', '{{1,2},{3,NULL}}')",
    "(2, 32767, 2147483647, 9223372036854775807,"
    " '9999999999999999999999999999999999999999.9999999999', '9999999999.99',"
    " '3.4028235e38', '1.7976931348623157e308',"
    " E'line1\\nline2\\r\\n\\ttab \\\\ back', 'xxxxxxxxxxxxxxxxxxxx', 'abcde',"
    " false, '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999',"
    " '2024-03-10 12:34:56.654321-08:00', '2038-01-19 03:14:07.999999+00',"
    " '[]', '[1, \"a\", null, {\"k\": []}]', '\\x'::bytea, '00000000-0000-0000-0000-000000000000',"
    " '{}', '{}', '{{{1}}}')",
    "(3, 0, 0, 0, '0.0000000001', '0.01', '1.17549435e-38', '1e-300',"
    " ' leading and trailing  ', 'ünï', 'a', true, '2000-02-29', '12:00:00.000001',"
    " '2000-02-29 23:59:59.999999', '2000-02-29 23:59:59.999999+14:00', '2000-02-29 23:59:59.999999+14:00',"
    " 'null', 'null', '\\x00'::bytea, 'ffffffff-ffff-ffff-ffff-ffffffffffff',"
    " '{NULL}', '{NULL,\"\"}', '{{NULL,NULL},{NULL,NULL}}')",
    "(4, -1, 1, -1, '-0.0000000001', '-0.01', '0.1', '-2.5e-200', 'tab\there', 'tail spaces  ', 'x y',"
    " false, '1999-12-31', '23:59:59', '1999-12-31 23:59:59', '1999-12-31 23:59:59.5-00:30',"
    " '1999-12-31 23:59:59.5-00:30', '\"just a string\"', '\"ü string 😀\"', '\\xdeadbeef00'::bytea,"
    " '123e4567-e89b-12d3-a456-426614174000', '{-2147483648,2147483647}', '{\"😀\",\"NULL\"}',"
    " '{{1},{2},{3}}')",
    "(5" + ", NULL" * (len(TYPE_COLS) - 1) + ")",
]

TYPE_ROWS_GENERATED = """
INSERT INTO types
SELECT 100 + i, (i * 37 % 65535) - 32767, i * 104729 - 2000000, i::bigint * 9007199254740993,
       round((i / 7.0)::numeric, 10), (i * 3.75)::numeric(12,2),
       (i / 3.0)::real, i * pi() * 10 ^ ((i % 40) - 20),
       repeat('ü', i % 5) || i || '😀', left(md5(i::text), i % 20), left(md5(i::text), 1 + i % 5),
       i % 2 = 0, date '2020-01-01' + i, time '00:00:00' + i * interval '17 min 3.000007 s',
       timestamp '2020-01-01' + i * interval '1 day 1.000123 s',
       timestamptz '2020-01-01 00:00:00+00' + i * interval '36 hours 0.5 s',
       timestamptz '2021-06-01 00:00:00+03' + i * interval '5 hours 0.25 s',
       json_build_object('i', i, 'list', json_build_array(i, 'x', NULL)),
       jsonb_build_object('i', i, 'nested', jsonb_build_object('ü', i::text)),
       decode(md5(i::text) || '0000', 'hex'), md5(i::text)::uuid,
       ARRAY[i, NULL, -i], ARRAY['t' || i, NULL, ''], ARRAY[[i, i + 1], [NULL, i + 3]]
FROM generate_series(0, 79) i
"""


@dataclass
class Scenario:
    pg: Any
    my: Any
    src_db: str
    dst_db: str


@pytest.fixture(scope="module")
def scenario(pg_source: Any, mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    token = secrets.token_hex(4)
    src_db = dst_db = f"t_pg2my_{token}"
    flow = f"pg2my-{token}"
    pg_source.create_database(src_db)
    mariadb.execute(f"CREATE DATABASE `{dst_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    pg_script(pg_source, src_db, PG_DDL)
    my_script(mariadb, dst_db, *MY_DDL)
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
        tmp_path_factory.mktemp("pg2my") / "replicator.yaml",
        flow, pg_source.url(src_db), mariadb.url(dst_db), tables,
    )
    run_once(cfg)  # creates the slot and the publication; nothing to apply yet

    # ---- round 1
    pg_script(
        pg_source, src_db,
        *pg_round_1(third_city="São Paulo 😀", created_at_offset="+05", order_step="15 min 0.000001 s"),
        "INSERT INTO types VALUES " + ", ".join(TYPE_ROWS),
        TYPE_ROWS_GENERATED,
        f"INSERT INTO docs VALUES (1, 'doc one', {big_text('one')}, 1), (2, 'doc two', 'small body', 1)",
    )
    run_once(cfg)

    # ---- round 2
    pg_script(pg_source, src_db, *pg_round_2(TYPE_NAMES))
    run_once_cli(cfg)

    yield Scenario(pg_source, mariadb, src_db, dst_db)
    drop_slot(pg_source, "replicator_" + flow.replace("-", "_"))


def compare(sc: Scenario, src_query: str, dst_query: str, cols: Sequence[tuple[str, Norm]]) -> list[tuple[Any, ...]]:
    src = pg_fetch(sc.pg, sc.src_db, src_query)
    dst = my_fetch(sc.my, sc.dst_db, dst_query)
    assert_rows(src, dst, cols)
    return src


# --------------------------------------------------------------------------- tests

CUSTOMER_COLS: list[tuple[str, Norm]] = [
    ("id", same), ("first_name", same), ("last_name", same), ("email", same), ("city", same),
    ("vip", as_int_bool), ("created_at", as_utc_naive),
]


def test_customers_match_after_key_change_updates_deletes_and_rename(scenario: Scenario) -> None:
    src = compare(
        scenario,
        "SELECT id, first_name, last_name, email, city, vip, created_at FROM customers ORDER BY id",
        "SELECT id, firstName, last_name, email, city, vip, created_at FROM customers ORDER BY id",
        CUSTOMER_COLS,
    )
    ids = [r[0] for r in src]
    assert ids[:3] == [51, 52, 53] and 1001 in ids and 1050 in ids and 81 not in ids and 501 in ids
    assert len(src) == 200 - 20 + 4  # + 201 (re-inserted), 202, 204 and 501


def test_target_column_renamed_by_config_receives_the_source_values(scenario: Scenario) -> None:
    assert my_fetch(scenario.my, scenario.dst_db, "SELECT firstName FROM customers WHERE id = 52") == [("First52",)]


def test_orders_match_after_multi_table_transactions(scenario: Scenario) -> None:
    cols = [("id", same), ("customer_id", same), ("amount", same), ("status", same), ("note", same), ("placed_at", same)]
    q = "SELECT id, customer_id, amount, status, note, placed_at FROM orders ORDER BY id"
    src = compare(scenario, q, q, cols)
    assert len(src) == 301 and 777 not in [r[0] for r in src]


def test_truncated_table_holds_exactly_the_rows_inserted_after_the_truncate(scenario: Scenario) -> None:
    cols = [("sku", same), ("qty", same), ("price", same), ("location", same)]
    # both sides sorted by the code points of the key (utf8mb4_bin / COLLATE "C")
    src = compare(
        scenario,
        'SELECT sku, qty, price, location FROM inventory ORDER BY sku COLLATE "C"',
        "SELECT sku, qty, price, location FROM inventory ORDER BY sku",
        cols,
    )
    assert len(src) == 20
    assert all(r[0].startswith("NEW-") or r[3] == "after truncate" for r in src)


def test_composite_key_table_matches_after_insert_update_key_change_and_delete(scenario: Scenario) -> None:
    cols = [("order_id", same), ("line_no", same), ("product", same), ("qty", same)]
    q = "SELECT order_id, line_no, product, qty FROM line_items ORDER BY order_id, line_no"
    src = compare(scenario, q, q, cols)
    keys = {(r[0], r[1]) for r in src}
    assert (50, 101) in keys and (50, 1) not in keys and (62, 2) not in keys and (999, 2) in keys


def test_rolled_back_transactions_and_savepoints_are_not_replicated(scenario: Scenario) -> None:
    my, db = scenario.my, scenario.dst_db
    assert my_fetch(my, db, "SELECT id, last_name FROM customers WHERE id IN (202, 203, 204, 9999) ORDER BY id") == [
        (202, "kept"), (204, "after savepoint"),
    ]
    assert my_fetch(my, db, "SELECT count(*) FROM customers WHERE last_name LIKE 'ROLLED%'") == [(0,)]
    assert my_fetch(my, db, "SELECT count(*) FROM inventory WHERE sku = 'ROLLBACK-SKU' OR qty = -1") == [(0,)]
    assert my_fetch(my, db, "SELECT count(*) FROM orders WHERE id <= 10") == [(10,)]


def test_nulls_in_every_nullable_column_are_replicated_as_null(scenario: Scenario) -> None:
    my, db = scenario.my, scenario.dst_db
    assert my_fetch(my, db, "SELECT firstName, email, city, vip, created_at FROM customers WHERE id BETWEEN 101 AND 110") == [
        (None,) * 5
    ] * 10
    assert my_fetch(my, db, "SELECT customer_id, amount, note, placed_at FROM orders WHERE id = 301") == [(None,) * 4]
    assert my_fetch(my, db, "SELECT price, location FROM inventory WHERE sku = 'NEW-1'") == [(None, None)]
    assert my_fetch(my, db, "SELECT qty FROM line_items WHERE order_id = 301") == [(None,)]
    assert my_fetch(my, db, "SELECT * FROM types WHERE id IN (4, 9) ORDER BY id") == [
        (4,) + (None,) * (len(TYPE_COLS) - 1), (9,) + (None,) * (len(TYPE_COLS) - 1)
    ]


def test_100k_row_transactions_insert_update_delete_match_row_for_row(scenario: Scenario) -> None:
    q = "SELECT id, val, n FROM bulk ORDER BY id"
    src = compare(scenario, q, q, [("id", same), ("val", same), ("n", same)])
    assert len(src) == 50000
    assert src[0] == (1, "v1-updated", 4) and src[-1] == (99999, "v99999-updated", 99999 * 3 + 1)


def test_type_matrix_values_match_after_the_documented_mapping(scenario: Scenario) -> None:
    src = compare(scenario, PG_TYPES_QUERY, MY_TYPES_QUERY, TYPE_COLS)
    assert len(src) == 90
    # Round 2 rotated the extreme rows (id n took the values of id n % 5 + 1) and copied ids
    # 1-5 to 6-10: the original row 1 is now at ids 5 and 10, row 2 at 1 and 6, row 3 at 2 and 7.
    dst = {r[0]: dict(zip(TYPE_NAMES, r)) for r in my_fetch(scenario.my, scenario.dst_db, MY_TYPES_QUERY)}
    assert dst[10]["c_bigint"] == -(2**63) and dst[6]["c_bigint"] == 2**63 - 1
    assert dst[10]["c_text"].startswith("emoji 😀🎉 and ünïcödé")
    assert dst[10]["c_bytea"] == b"\x00\x01\x02\x03\xff\x00\x00" and dst[6]["c_bytea"] == b""
    assert dst[10]["c_bool"] == 1 and dst[6]["c_bool"] == 0
    assert dst[10]["c_timestamptz"] == datetime(2024, 3, 10, 7, 4, 56, 123456)  # 12:34:56.123456+05:30 in UTC
    assert dst[6]["c_timestamptz"] == datetime(2024, 3, 10, 20, 34, 56, 654321)  # -08:00 in UTC
    assert dst[6]["c_tstz_ts"] == datetime(2038, 1, 19, 3, 14, 7, 999999)
    assert dst[10]["c_date"] == date(1000, 1, 1) and dst[6]["c_time"] == timedelta(hours=23, minutes=59, seconds=59.999999)
    assert dst[10]["c_uuid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert json.loads(dst[10]["c_text_arr"]) == ["a,b", "", None, "NULL", 'quo"te', "back\\slash"]
    assert json.loads(dst[10]["c_int_2d"]) == [[1, 2], [3, None]]
    assert dst[6]["c_numeric_ps"] == Decimal("9999999999999999999999999999999999999999.9999999999")
    assert dst[8]["c_double"] == -2.5e-200 and dst[7]["c_double"] == 1e-300
    assert dst[6]["c_real"] == as_float32(3.4028235e38)


def test_json_null_documents_arrive_as_json_null_not_sql_null(scenario: Scenario) -> None:
    # the original row 3 (now ids 2 and 7) holds the JSON document null in both JSON columns
    src = pg_fetch(scenario.pg, scenario.src_db, "SELECT json_typeof(c_json), jsonb_typeof(c_jsonb) FROM types WHERE id IN (2, 7)")
    assert src == [("null", "null")] * 2
    dst = my_fetch(scenario.my, scenario.dst_db, "SELECT c_json, c_jsonb FROM types WHERE id IN (2, 7) ORDER BY id")
    assert [tuple(None if v is None else json.loads(v) for v in r) for r in dst] == [(None, None)] * 2
    assert all(v is not None for r in dst for v in r), f"JSON null became SQL NULL: {dst!r}"


def test_unchanged_toast_value_stays_intact_when_another_column_is_updated(scenario: Scenario) -> None:
    q = "SELECT id, title, body, rev FROM docs ORDER BY id"
    src = compare(scenario, q, q, [("id", same), ("title", same), ("body", same), ("rev", same)])
    assert [(r[0], r[1], r[3]) for r in src] == [
        (1, "doc one, renamed", 2), (2, "doc two, renamed", 2), (3, "doc three, renamed", 2),
    ]
    assert len(src[0][2]) == 32000 and len(src[2][2]) == 32000


# --------------------------------------------------------------------------- values MariaDB cannot hold


@pytest.fixture
def bad_value_flow(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    flow = "f" + fresh_db_name[-8:]
    pg_source.create_database(fresh_db_name)
    mariadb.create_database(fresh_db_name)
    pg_script(pg_source, fresh_db_name, "CREATE TABLE vals (id integer PRIMARY KEY, amount numeric(12,2), ratio double precision)")
    my_script(mariadb, fresh_db_name, "CREATE TABLE vals (id INT PRIMARY KEY, amount DECIMAL(12,2), ratio DOUBLE)")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, pg_source.url(fresh_db_name), mariadb.url(fresh_db_name),
        "      - source: vals\n",
        batch="{max_rows: 100000, max_delay_ms: 600000}",
    )
    run_once(cfg)  # creates the slot; the flow's first checkpoint
    yield cfg, fresh_db_name, flow
    drop_slot(pg_source, "replicator_" + flow)


@pytest.mark.parametrize(
    ("column", "bad_value", "shown"),
    [("amount", "'NaN'::numeric", "NaN"), ("ratio", "'Infinity'::float8", "inf"), ("ratio", "'NaN'::float8", "nan")],
    ids=["numeric-NaN-into-DECIMAL", "Infinity-into-DOUBLE", "NaN-into-DOUBLE"],
)
def test_value_the_target_column_cannot_hold_stops_the_flow_and_commits_nothing_of_the_batch(
    pg_source: Any, mariadb: Any, bad_value_flow: tuple[Path, str, str], column: str, bad_value: str, shown: str
) -> None:
    cfg, db, flow = bad_value_flow
    before = my_checkpoint(mariadb, flow)
    assert before is not None
    pg_script(
        pg_source, db,
        "INSERT INTO vals VALUES (1, 1.50, 0.25), (2, NULL, NULL)",  # a good transaction of the same batch
        "BEGIN",
        "INSERT INTO vals VALUES (3, 3.00, 3.5)",
        f"INSERT INTO vals (id, {column}) VALUES (4, {bad_value})",
        "INSERT INTO vals VALUES (5, 5.00, 5.5)",
        "COMMIT",
    )
    message = str(run_once_fails(cfg, DataError))
    assert column in message and "vals" in message and shown.lower() in message.lower(), message
    assert my_fetch(mariadb, db, "SELECT count(*) FROM vals") == [(0,)]
    assert my_checkpoint(mariadb, flow) == before

    # the command line says the same, exits non-zero, and still commits nothing (no skipping)
    stderr = run_once_cli_fails(cfg, flow)
    assert column in stderr, stderr
    assert my_fetch(mariadb, db, "SELECT count(*) FROM vals") == [(0,)]
    assert my_checkpoint(mariadb, flow) == before
