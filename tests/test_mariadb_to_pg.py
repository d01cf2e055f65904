"""End to end, MariaDB → PostgreSQL, on real servers.

One module-scoped scenario (source database on ``mariadb``, target database on ``pg_target``)
runs the flow once to record its start position (there is no initial snapshot yet), makes two
rounds of source changes and replicates each with ``run --once`` (round 1 in-process, round 2
with the real CLI in a subprocess). Each test compares one aspect: whole rows, every column,
ordered by key, after the documented type map (``replicator/typemap.py``):

========================  ===========================  ====================================
MariaDB                   PostgreSQL column            compared as
========================  ===========================  ====================================
TINYINT..BIGINT           smallint/integer/bigint      equal ints
… UNSIGNED                one size up; BIGINT          equal ints (numeric(20,0) for
                          UNSIGNED → numeric(20,0)     BIGINT UNSIGNED)
DECIMAL(65,30)            numeric(65,30)               equal Decimals
FLOAT / DOUBLE            real / double precision      float32-exact / exact
DATE, DATETIME(6)         date, timestamp(6)           equal
TIMESTAMP(6)              timestamptz(6)               the same instant (written at +05:00)
TIME(6)                   interval                     equal timedeltas (negative, > 24 h)
YEAR                      smallint                     equal ints
CHAR(n)/VARCHAR/TEXT      varchar(n)/varchar/text      equal strings (emoji too)
BINARY/VARBINARY/BLOB     bytea                        equal bytes (trailing zero bytes)
BIT(1), BIT(64)           bigint, numeric(20,0)        the bits as an unsigned int
ENUM, SET                 text                         the text ('' error value, empty set)
JSON                      jsonb                        parsed JSON (JSON null too)
========================  ===========================  ====================================

Further tests use small flows of their own: zero dates (the default policy stops the flow,
``zero_dates: null`` writes NULL), DDL in the middle of a live stream (an added column is
followed, a renamed column stops the flow) and ``replicator check`` on MariaDB sources.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.errors import DataError, SchemaError

from dbhelpers import (
    MY_DDL,
    MY_ROUND_1,
    MY_ROUND_1_TYPES,
    MY_ROUND_2,
    MY_TYPES_QUERY,
    MY_TYPE_NAMES,
    BackgroundFlow,
    JsonValue,
    Norm,
    RowWriter,
    as_json_text,
    assert_mapped_rows,
    cli,
    gtid_seq,
    my_fetch,
    my_script,
    pg_checkpoint,
    pg_fetch,
    pg_script,
    run_once,
    run_once_cli,
    run_once_cli_fails,
    run_once_fails,
    same,
    wait_until,
    write_config,
)

# --------------------------------------------------------------------------- normalisation
# MariaDB value (as pymysql loads it) -> what the PostgreSQL column must hold (as psycopg loads it)


def as_bits(v: Any) -> Any:
    return None if v is None else int.from_bytes(v, "big")


def as_utc_instant(v: Any) -> Any:
    """A TIMESTAMP read at time_zone '+00:00' (naive UTC) → the aware instant."""
    return None if v is None else v.replace(tzinfo=timezone.utc)


def values_equal(expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, float) and isinstance(got, float):
        if math.isnan(expected):
            return math.isnan(got)
        return expected.hex() == got.hex()
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and bool(expected == got)
    if isinstance(expected, (int, Decimal)) and isinstance(got, (int, Decimal)):
        return Decimal(expected) == Decimal(got)
    if isinstance(expected, JsonValue):
        return bool(expected == got)
    return type(expected) is type(got) and bool(expected == got)


def assert_rows(
    src: Sequence[tuple[Any, ...]], dst: Sequence[tuple[Any, ...]], cols: Sequence[tuple[str, Norm]]
) -> None:
    assert_mapped_rows(src, dst, cols, values_equal, same_width=True)


# --------------------------------------------------------------------------- schema
# The source tables, the type matrix and both rounds of changes are dbhelpers.MY_* (shared with
# test_mariadb_to_mariadb).

# The type map's choices, written out (replicator/typemap.py).
PG_DDL = """
CREATE TABLE customers (id integer PRIMARY KEY, given_name varchar(50), last_name varchar(50) NOT NULL,
    email varchar(120), city varchar(60), vip smallint, created_at timestamp(6));
CREATE TABLE orders (id numeric(20,0) PRIMARY KEY, customer_id integer, amount numeric(12,2),
    status varchar(20) NOT NULL, note text, placed_at timestamp(6));
CREATE TABLE inventory (sku varchar(64) PRIMARY KEY, qty integer NOT NULL, price numeric(10,2), location varchar(40));
CREATE TABLE line_items (order_id bigint, line_no integer, product varchar(100) NOT NULL, qty integer,
    PRIMARY KEY (order_id, line_no));
CREATE TABLE bulk (id integer PRIMARY KEY, val varchar(40) NOT NULL, n bigint);
CREATE TABLE types (id integer PRIMARY KEY,
    c_tiny smallint, c_utiny smallint, c_small smallint, c_usmall integer,
    c_medium integer, c_umedium integer, c_int integer, c_uint bigint,
    c_big bigint, c_ubig numeric(20,0),
    c_dec numeric(65,30), c_float real, c_double double precision,
    c_date date, c_datetime timestamp(6), c_ts timestamptz(6), c_time interval second(6), c_year smallint,
    c_char varchar(10), c_varchar varchar(100), c_text text,
    c_binary bytea, c_varbinary bytea, c_blob bytea,
    c_bit1 bigint, c_bit64 numeric(20,0),
    c_enum text, c_set text, c_json jsonb);
"""

TYPE_COLS: list[tuple[str, Norm]] = [
    ("id", same),
    ("c_tiny", same), ("c_utiny", same), ("c_small", same), ("c_usmall", same),
    ("c_medium", same), ("c_umedium", same), ("c_int", same), ("c_uint", same),
    ("c_big", same), ("c_ubig", same),
    ("c_dec", same), ("c_float", same), ("c_double", same),
    ("c_date", same), ("c_datetime", same), ("c_ts", as_utc_instant), ("c_time", same), ("c_year", same),
    ("c_char", same), ("c_varchar", same), ("c_text", same),
    ("c_binary", same), ("c_varbinary", same), ("c_blob", same),
    ("c_bit1", as_bits), ("c_bit64", as_bits),
    ("c_enum", same), ("c_set", same), ("c_json", as_json_text),
]
TYPE_NAMES = [c for c, _ in TYPE_COLS]
assert TYPE_NAMES == MY_TYPE_NAMES
# FLOAT/real are read back widened to double (MY_TYPES_QUERY too): the exact float32 value.
PG_TYPES_QUERY = "SELECT " + ", ".join(
    "c_float::float8" if c == "c_float" else "c_json::text" if c == "c_json" else c for c in TYPE_NAMES
) + " FROM types ORDER BY id"

CUSTOMER_COLS: list[tuple[str, Norm]] = [
    ("id", same), ("first_name", same), ("last_name", same), ("email", same), ("city", same),
    ("vip", same), ("created_at", same),
]
ORDER_COLS: list[tuple[str, Norm]] = [
    ("id", same), ("customer_id", same), ("amount", same), ("status", same), ("note", same), ("placed_at", same),
]


@dataclass
class Scenario:
    my: Any
    pg: Any
    src_db: str
    dst_db: str
    flow: str


@pytest.fixture(scope="module")
def scenario(mariadb: Any, pg_target: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    token = secrets.token_hex(4)
    src_db = dst_db = f"t_my2pg_{token}"
    flow = f"my2pg-{token}"
    mariadb.execute(f"CREATE DATABASE `{src_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    pg_target.create_database(dst_db)
    my_script(mariadb, src_db, *MY_DDL)
    pg_script(pg_target, dst_db, PG_DDL)
    tables = (
        "      - source: customers\n"
        "        columns: {first_name: given_name}\n"
        "      - source: orders\n"
        f"      - source: {src_db}.inventory\n"
        "        target: public.inventory\n"
        "      - source: line_items\n"
        "      - source: bulk\n"
        "      - source: types\n"
    )
    cfg = write_config(
        tmp_path_factory.mktemp("my2pg") / "replicator.yaml",
        flow, mariadb.url(src_db), pg_target.url(dst_db), tables,
    )
    run_once(cfg)  # records the flow's start position; nothing to apply yet

    # ---- round 1
    my_script(mariadb, src_db, *MY_ROUND_1)
    my_script(mariadb, src_db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    run_once(cfg)

    # ---- round 2
    my_script(mariadb, src_db, *MY_ROUND_2, time_zone="+05:00")
    run_once_cli(cfg)

    yield Scenario(mariadb, pg_target, src_db, dst_db, flow)


def compare(
    sc: Scenario, src_query: str, dst_query: str, cols: Sequence[tuple[str, Norm]]
) -> list[tuple[Any, ...]]:
    src = my_fetch(sc.my, sc.src_db, src_query)
    dst = pg_fetch(sc.pg, sc.dst_db, dst_query)
    assert_rows(src, dst, cols)
    return src


# --------------------------------------------------------------------------- tests


def test_customers_match_after_key_change_updates_deletes_and_rename(scenario: Scenario) -> None:
    src = compare(
        scenario,
        "SELECT id, first_name, last_name, email, city, vip, created_at FROM customers ORDER BY id",
        "SELECT id, given_name, last_name, email, city, vip, created_at FROM customers ORDER BY id",
        CUSTOMER_COLS,
    )
    ids = [r[0] for r in src]
    assert ids[:3] == [51, 52, 53] and 1001 in ids and 1050 in ids and 81 not in ids and 501 in ids
    assert len(src) == 200 - 20 + 4  # + 201 (re-inserted), 202, 204 and 501


def test_target_column_renamed_by_config_receives_the_source_values(scenario: Scenario) -> None:
    assert pg_fetch(scenario.pg, scenario.dst_db, "SELECT given_name FROM customers WHERE id IN (52, 201) ORDER BY id") == [
        ("First52",), ("Reborn",),
    ]


def test_orders_with_unsigned_bigint_keys_match_after_multi_table_transactions(scenario: Scenario) -> None:
    q = "SELECT id, customer_id, amount, status, note, placed_at FROM orders ORDER BY id"
    src = compare(scenario, q, q, ORDER_COLS)
    ids = [r[0] for r in src]
    assert len(src) == 302 and 777 not in ids
    assert ids[-1] == 18446744073709551614 and 18446744073709551615 not in ids


def test_truncated_table_holds_exactly_the_rows_inserted_after_the_truncate(scenario: Scenario) -> None:
    cols = [("sku", same), ("qty", same), ("price", same), ("location", same)]
    src = compare(
        scenario,
        "SELECT sku, qty, price, location FROM inventory ORDER BY sku",
        'SELECT sku, qty, price, location FROM inventory ORDER BY sku COLLATE "C"',
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
    pg, db = scenario.pg, scenario.dst_db
    assert pg_fetch(pg, db, "SELECT id, last_name FROM customers WHERE id IN (202, 203, 204, 9999) ORDER BY id") == [
        (202, "kept"), (204, "after savepoint"),
    ]
    assert pg_fetch(pg, db, "SELECT count(*) FROM customers WHERE last_name LIKE 'ROLLED%'") == [(0,)]
    assert pg_fetch(pg, db, "SELECT count(*) FROM inventory WHERE sku = 'ROLLBACK-SKU' OR qty = -1") == [(0,)]
    assert pg_fetch(pg, db, "SELECT count(*) FROM orders WHERE id <= 10") == [(10,)]
    assert pg_fetch(pg, db, "SELECT count(*) FROM bulk WHERE val = 'ROLLED BACK'") == [(0,)]


def test_nulls_in_every_nullable_column_are_replicated_as_null(scenario: Scenario) -> None:
    pg, db = scenario.pg, scenario.dst_db
    assert pg_fetch(pg, db, "SELECT given_name, email, city, vip, created_at FROM customers WHERE id BETWEEN 101 AND 110") == [
        (None,) * 5
    ] * 10
    assert pg_fetch(pg, db, "SELECT customer_id, amount, note, placed_at FROM orders WHERE id = 301") == [(None,) * 4]
    assert pg_fetch(pg, db, "SELECT price, location FROM inventory WHERE sku = 'NEW-1'") == [(None, None)]
    assert pg_fetch(pg, db, "SELECT qty FROM line_items WHERE order_id = 301") == [(None,)]
    assert pg_fetch(pg, db, "SELECT * FROM types WHERE id IN (5, 6) ORDER BY id") == [
        (5,) + (None,) * (len(TYPE_COLS) - 1), (6,) + (None,) * (len(TYPE_COLS) - 1)
    ]


def test_100k_row_transactions_insert_update_delete_match_row_for_row(scenario: Scenario) -> None:
    q = "SELECT id, val, n FROM bulk ORDER BY id"
    src = compare(scenario, q, q, [("id", same), ("val", same), ("n", same)])
    assert len(src) == 50000
    assert src[0] == (1, "v1-updated", 4) and src[-1] == (99999, "v99999-updated", 99999 * 3 + 1)
    assert src[1] == (3, "v3-updated", None)


def test_type_matrix_values_match_after_the_type_map(scenario: Scenario) -> None:
    src = compare(scenario, MY_TYPES_QUERY, PG_TYPES_QUERY, TYPE_COLS)
    assert len(src) == 90


def test_type_matrix_extremes_arrive_exactly(scenario: Scenario) -> None:
    rows = pg_fetch(scenario.pg, scenario.dst_db, PG_TYPES_QUERY)
    dst = {r[0]: dict(zip(TYPE_NAMES, r)) for r in rows}
    lo, hi, lax, misc = dst[1], dst[2], dst[3], dst[4]
    assert (lo["c_tiny"], lo["c_small"], lo["c_medium"], lo["c_int"], lo["c_big"]) == (
        -128, -32768, -8388608, -(2**31), -(2**63)
    )
    assert (hi["c_utiny"], hi["c_usmall"], hi["c_umedium"], hi["c_uint"], hi["c_ubig"]) == (
        255, 65535, 16777215, 4294967295, Decimal(18446744073709551615)
    )
    assert hi["c_big"] == 2**63 - 1
    assert lo["c_dec"] == Decimal("-99999999999999999999999999999999999.999999999999999999999999999999")
    assert hi["c_dec"] == Decimal("99999999999999999999999999999999999.999999999999999999999999999999")
    assert misc["c_dec"] == Decimal("1E-30") and lax["c_dec"] == Decimal("-1E-30")
    assert hi["c_double"] == 1.7976931348623157e308 and misc["c_double"] == 2.2250738585072014e-308
    assert lax["c_float"] == 0.10000000149011612  # the float32 nearest 0.1, widened exactly
    # TIMESTAMP written at +05:00: the same instant in UTC
    assert lo["c_ts"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert hi["c_ts"] == datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=timezone.utc)
    assert misc["c_ts"] == datetime(2024, 3, 10, 7, 34, 56, 123456, tzinfo=timezone.utc)
    assert lax["c_ts"] == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert hi["c_datetime"] == datetime(9999, 12, 31, 23, 59, 59, 999999) and lo["c_date"] == date(1000, 1, 1)
    # TIME → interval: negative and beyond 24 hours
    assert lo["c_time"] == -timedelta(hours=838, minutes=59, seconds=59)
    assert hi["c_time"] == timedelta(hours=838, minutes=59, seconds=59)
    assert lax["c_time"] == -timedelta(seconds=1, microseconds=500000)
    assert misc["c_time"] == timedelta(hours=100, microseconds=500000)
    assert dst[7]["c_time"] == -timedelta(microseconds=1)
    assert (lo["c_year"], hi["c_year"]) == (1901, 2155)
    assert hi["c_varchar"] == "😀" * 100 and lo["c_text"] == "line1\nline2\r\n\ttab"
    assert lo["c_varchar"] == "emoji 😀🎉 ünïcödé \"quotes\" 'apostrophes' back\\slash"
    assert misc["c_char"] == "  lead" and misc["c_varchar"] == " trailing  "
    # BINARY(n) keeps its padding, VARBINARY/BLOB their trailing zero bytes
    assert lo["c_binary"] == b"a\x00\x00\x00" and misc["c_binary"] == b"\x00\x00\x00\x00"
    assert lax["c_binary"] == b"ab\x00\x00" and lax["c_varbinary"] == b"\x00" * 5
    assert lax["c_blob"] == b"\xde\xad\xbe\xef\x00"
    assert lo["c_varbinary"] == b"\x00\x00" and hi["c_varbinary"] == b"\x00\xff\x00\x00"
    assert hi["c_blob"] == b"\x01\x02\x00\x00\x00" and misc["c_blob"] == b""
    assert dst[7]["c_binary"] == b"\x01\x00\x00\x00"
    assert (lo["c_bit1"], hi["c_bit1"]) == (0, 1)
    assert hi["c_bit64"] == Decimal(2**64 - 1) and misc["c_bit64"] == Decimal(2**63)
    assert dst[10]["c_bit64"] == Decimal(2**64 - 1) and dst[7]["c_bit64"] == 0
    assert (lax["c_enum"], lo["c_enum"], hi["c_enum"]) == ("", "small", "large")
    assert (lo["c_set"], hi["c_set"], dst[7]["c_set"]) == ("", "a,b,c", "a,b")
    assert json.loads(hi["c_json"]) == {"nested": {"deep": [1, "two", 3.5, True, None]}, "emoji": "😀", "n": -0.000001}
    assert json.loads(misc["c_json"]) == "just a string ü 😀"
    assert json.loads(dst[7]["c_json"]) == []


def test_json_null_document_arrives_as_json_null_not_sql_null(scenario: Scenario) -> None:
    rows = pg_fetch(scenario.pg, scenario.dst_db, "SELECT id, jsonb_typeof(c_json) FROM types WHERE id IN (3, 5, 8) ORDER BY id")
    assert rows == [(3, "null"), (5, None), (8, "null")]


def test_jsonb_columns_hold_documents_not_strings(scenario: Scenario) -> None:
    rows = pg_fetch(
        scenario.pg, scenario.dst_db,
        "SELECT jsonb_typeof(c_json), count(*) FROM types WHERE c_json IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    # rows 1, 2, 10 and the 80 generated rows are objects; 4, 9 strings; 3, 8 null; 7 an array
    assert rows == [("array", 1), ("null", 2), ("object", 83), ("string", 2)]


# --------------------------------------------------------------------------- zero dates


@pytest.fixture
def zero_date_flow(mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    db = fresh_db_name
    flow = "zd" + db[-8:]
    mariadb.create_database(db)
    pg_target.create_database(db)
    my_script(mariadb, db, "CREATE TABLE events (id INT PRIMARY KEY, label VARCHAR(20), d DATE, dt DATETIME(6))")
    pg_script(pg_target, db, "CREATE TABLE events (id integer PRIMARY KEY, label varchar(20), d date, dt timestamp(6))")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(db), pg_target.url(db), "      - source: events\n",
        batch="{max_rows: 100000, max_delay_ms: 600000}",
    )
    run_once(cfg)
    yield cfg, db, flow


def test_zero_date_stops_the_flow_by_default_then_zero_dates_null_writes_null(
    mariadb: Any, pg_target: Any, zero_date_flow: tuple[Path, str, str]
) -> None:
    cfg, db, flow = zero_date_flow
    before = pg_checkpoint(pg_target, db, flow)
    assert before is not None
    first_new_txn = gtid_seq(my_fetch(mariadb, db, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]) + 1

    def assert_not_advanced() -> None:
        # no change applied, and the position not at or past the first new source transaction
        # (it may move over transactions of other databases, which are not this flow's)
        now = pg_checkpoint(pg_target, db, flow)
        assert now is not None and now[1:] == before[1:] and gtid_seq(now[0]) < first_new_txn, (now, before)

    my_script(
        mariadb, db,
        "INSERT INTO events VALUES (1, 'good', '2024-01-01', '2024-01-01 10:00:00.5')",
        "SET SESSION sql_mode = ''",
        "BEGIN",
        "INSERT INTO events VALUES (2, 'ok too', '2024-01-02', NULL)",
        "INSERT INTO events VALUES (3, 'zero date', '0000-00-00', '2024-01-03 00:00:00')",
        "INSERT INTO events VALUES (4, 'zero datetime', '2024-01-04', '0000-00-00 00:00:00')",
        "COMMIT",
    )
    message = str(run_once_fails(cfg, DataError))
    assert "events" in message and "id=3" in message and "`d`" in message and "0000-00-00" in message, message
    assert "zero_dates" in message, message
    assert pg_fetch(pg_target, db, "SELECT count(*) FROM events") == [(0,)]
    assert_not_advanced()

    stderr = run_once_cli_fails(cfg, flow)
    assert "id=3" in stderr and "0000-00-00" in stderr, stderr
    assert pg_fetch(pg_target, db, "SELECT count(*) FROM events") == [(0,)]
    assert_not_advanced()

    # the same flow, now with `zero_dates: null`: resumes from the same checkpoint
    cfg.write_text(cfg.read_text().replace("    tables:\n", "    zero_dates: null\n    tables:\n"))
    run_once(cfg)
    assert pg_fetch(pg_target, db, "SELECT id, label, d, dt FROM events ORDER BY id") == [
        (1, "good", date(2024, 1, 1), datetime(2024, 1, 1, 10, 0, 0, 500000)),
        (2, "ok too", date(2024, 1, 2), None),
        (3, "zero date", None, datetime(2024, 1, 3)),
        (4, "zero datetime", date(2024, 1, 4), None),
    ]
    after = pg_checkpoint(pg_target, db, flow)
    assert after is not None and after != before and after[1] == 4


# --------------------------------------------------------------------------- DDL mid-stream


@pytest.fixture
def ddl_flow(mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    db = fresh_db_name
    flow = "ddl" + db[-8:]
    mariadb.create_database(db)
    pg_target.create_database(db)
    my_script(mariadb, db, "CREATE TABLE ev (id INT PRIMARY KEY, a INT, note VARCHAR(20))")
    pg_script(pg_target, db, "CREATE TABLE ev (id integer PRIMARY KEY, a integer, note varchar(20))")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(db), pg_target.url(db), "      - source: ev\n",
        batch="{max_rows: 1000, max_delay_ms: 100}",
    )
    run_once(cfg)
    yield cfg, db, flow


def test_added_column_is_followed_and_a_renamed_column_stops_the_flow_until_the_target_follows(
    mariadb: Any, pg_target: Any, ddl_flow: tuple[Path, str, str]
) -> None:
    cfg, db, flow = ddl_flow
    live = BackgroundFlow(cfg)
    live.start()
    try:
        writer = RowWriter(mariadb, db)
        total = writer.write_around_added_column()

        q_src = "SELECT id, a, note, c2 FROM ev ORDER BY id"
        cols = [("id", same), ("a", same), ("note", same), ("c2", same)]

        def caught_up() -> bool:
            assert live.error is None, f"the flow failed: {live.error!r}"
            try:
                return pg_fetch(pg_target, db, "SELECT count(*), count(*) FILTER (WHERE note = 'updated') FROM ev") == [(total, 2)]
            except psycopg.errors.UndefinedColumn:
                return False

        wait_until(caught_up, 60, "the live flow to apply every row")

        src = my_fetch(mariadb, db, q_src)
        dst = pg_fetch(pg_target, db, q_src)
        assert_rows(src, dst, cols)
        assert live.is_alive() and live.error is None, repr(live.error)
        assert pg_fetch(
            pg_target, db,
            "SELECT data_type, is_nullable FROM information_schema.columns WHERE table_name = 'ev' AND column_name = 'c2'",
        ) == [("integer", "NO")]
        by_id = {r[0]: r for r in dst}
        assert by_id[1][2:] == ("updated", -1) and by_id[3][2:] == ("before", 7)
        assert writer.with_c2 and all(by_id[i][3] == i * 10 for i in writer.with_c2)
        assert len(writer.with_c2) >= 60 and sum(1 for r in dst if r[2] == "before" and r[3] == 7) >= 58

        # A rename cannot be followed: the live flow stops, clearly, and writes nothing after it.
        before_cp = pg_checkpoint(pg_target, db, flow)
        my_script(
            mariadb, db,
            "INSERT INTO ev (id, a, note, c2) VALUES (100001, 1, 'pre-rename', 1)",
            "ALTER TABLE ev CHANGE a b INT",
            "INSERT INTO ev (id, b, note, c2) VALUES (100002, 2, 'post-rename', 2)",
            "UPDATE ev SET b = -b WHERE id <= 5",
        )
        live.join(timeout=60)
        assert not live.is_alive(), "the flow kept running after a column rename"
        assert isinstance(live.error, SchemaError), repr(live.error)
        message = str(live.error)
        assert "ev" in message and "a was renamed to b" in message and "CHANGE a b" in message, message
        expected = [*src, (100001, 1, "pre-rename", 1)]
        assert_rows(expected, pg_fetch(pg_target, db, q_src), cols)  # rows before the rename, nothing after
        after_cp = pg_checkpoint(pg_target, db, flow)
        assert after_cp is not None and before_cp is not None and after_cp[1] == before_cp[1] + 1

        # restarting does not get past it either (the source now has column b, the target does not)
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "'b'" in proc.stderr and "ev" in proc.stderr, proc.stderr
        assert pg_checkpoint(pg_target, db, flow) == after_cp
        assert_rows(expected, pg_fetch(pg_target, db, q_src), cols)

        # Once the target column is renamed as the error says, the flow gets past the rename.
        assert "RENAME COLUMN" in message, message
        pg_script(pg_target, db, "ALTER TABLE ev RENAME COLUMN a TO b")
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 0, proc.stderr
        q_renamed = "SELECT id, b, note, c2 FROM ev ORDER BY id"
        assert_rows(my_fetch(mariadb, db, q_renamed), pg_fetch(pg_target, db, q_renamed), cols)
        assert (100002, 2, "post-rename", 2) in pg_fetch(pg_target, db, q_renamed)
    finally:
        live.stop_event.set()
        live.join(timeout=60)


# --------------------------------------------------------------------------- replicator check


def _check_config(tmp_path: Path, src_url: str, dst_url: str, flow: str) -> Path:
    return write_config(tmp_path / "check.yaml", flow, src_url, dst_url, "      - source: things\n")


@pytest.fixture
def check_dbs(mariadb: Any, pg_target: Any, fresh_db_name: str) -> str:
    mariadb.create_database(fresh_db_name)
    pg_target.create_database(fresh_db_name)
    my_script(mariadb, fresh_db_name, "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20))")
    pg_script(pg_target, fresh_db_name, "CREATE TABLE things (id integer PRIMARY KEY, name varchar(20))")
    return fresh_db_name


def test_check_passes_on_a_well_configured_mariadb_source(
    mariadb: Any, pg_target: Any, check_dbs: str, tmp_path: Path
) -> None:
    cfg = _check_config(tmp_path, mariadb.url(check_dbs), pg_target.url(check_dbs), "chk-ok")
    proc = cli(cfg, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PROBLEM" not in proc.stdout and "All checks passed" in proc.stdout, proc.stdout


def test_check_names_statement_binlog_format_and_its_fix(
    sandbox_factory: Any, pg_target: Any, check_dbs: str, tmp_path: Path
) -> None:
    stmt = sandbox_factory.mariadb({"binlog_format": "STATEMENT"}, name="mariadb_stmt")
    stmt.create_database(check_dbs)
    my_script(stmt, check_dbs, "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20))")
    cfg = _check_config(tmp_path, stmt.url(check_dbs), pg_target.url(check_dbs), "chk-stmt")
    proc = cli(cfg, "check")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    problem = [i for i, line in enumerate(lines) if line.startswith("PROBLEM") and "binlog_format is STATEMENT" in line]
    assert problem, proc.stdout
    assert "fix: set binlog_format=ROW" in lines[problem[0] + 1], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_names_the_missing_replication_privilege_without_printing_the_password(
    mariadb: Any, pg_target: Any, check_dbs: str, tmp_path: Path
) -> None:
    user = "norepl_" + check_dbs[-8:]
    password = "Pw-" + secrets.token_hex(8)
    mariadb.add_password_user(user, password, privileges="SELECT")
    try:
        cfg = _check_config(
            tmp_path, mariadb.url(check_dbs, user=user, password=password), pg_target.url(check_dbs), "chk-priv"
        )
        proc = cli(cfg, "check")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "REPLICATION SLAVE" in proc.stdout and "PROBLEM" in proc.stdout, proc.stdout
        assert password not in proc.stdout and password not in proc.stderr
    finally:
        for host in ("127.0.0.1", "localhost"):
            mariadb.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
