"""End to end, MariaDB → MariaDB, on real servers.

The target is another database on the same ``mariadb`` server (the binlog reader filters by
schema, so the target's own writes never come back). One module-scoped scenario runs the flow
once to record its start position (there is no initial snapshot yet), makes two rounds of
source changes and replicates each with ``run --once`` (round 1 in-process, round 2 with the
real CLI in a subprocess). Each test compares one aspect: whole rows, every column, ordered by
key. Source and target tables have identical definitions, so every value must arrive
identical: integers to their limits (signed and UNSIGNED), DECIMAL(65,30), FLOAT (compared
as the exact float32), DOUBLE, DATE, DATETIME(6), TIMESTAMP(6) (written at time zone '+05:00',
read in UTC on both sides), TIME(6) (negative, > 24 h), YEAR, CHAR/VARCHAR/TEXT with emoji,
BINARY/VARBINARY/BLOB with trailing zero bytes, BIT(1)/BIT(64), ENUM (the '' error value too),
SET (the empty set too), JSON (the document text verbatim) and NULL everywhere.

Further tests use small flows of their own: zero dates (the default policy stops the flow,
``zero_dates: null`` writes NULL), DDL in the middle of a live stream (an added column is
followed, a renamed column stops the flow) and ``replicator check`` on MariaDB sources.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    RowWriter,
    assert_same_rows,
    cli,
    gtid_seq,
    my_checkpoint,
    my_fetch,
    my_script,
    run_once,
    run_once_cli,
    run_once_cli_fails,
    run_once_fails,
    wait_until,
    write_config,
)

# --------------------------------------------------------------------------- helpers


def create_db(server: Any, name: str) -> None:
    server.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


# --------------------------------------------------------------------------- schema
# The source tables, the type matrix and both rounds of changes are dbhelpers.MY_* (shared with
# test_mariadb_to_pg).

# The target: the same definitions, with customers.first_name renamed to given_name (mapped in
# the config).
TARGET_DDL = [MY_DDL[0].replace("first_name VARCHAR(50)", "given_name VARCHAR(50)"), *MY_DDL[1:]]
assert TARGET_DDL[0] != MY_DDL[0]

CUSTOMER_SRC = "SELECT id, first_name, last_name, email, city, vip, created_at FROM customers ORDER BY id"
CUSTOMER_DST = "SELECT id, given_name, last_name, email, city, vip, created_at FROM customers ORDER BY id"
CUSTOMER_COLS = ["id", "first_name", "last_name", "email", "city", "vip", "created_at"]
ORDER_COLS = ["id", "customer_id", "amount", "status", "note", "placed_at"]


@dataclass
class Scenario:
    my: Any
    src_db: str
    dst_db: str
    flow: str


@pytest.fixture(scope="module")
def scenario(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    token = secrets.token_hex(4)
    src_db, dst_db = f"t_my2my_src_{token}", f"t_my2my_dst_{token}"
    flow = f"my2my-{token}"
    create_db(mariadb, src_db)
    create_db(mariadb, dst_db)
    my_script(mariadb, src_db, *MY_DDL)
    my_script(mariadb, dst_db, *TARGET_DDL)
    tables = (
        "      - source: customers\n"
        "        columns: {first_name: given_name}\n"
        "      - source: orders\n"
        f"      - source: {src_db}.inventory\n"
        f"        target: {dst_db}.inventory\n"
        "      - source: line_items\n"
        "      - source: bulk\n"
        "      - source: types\n"
    )
    cfg = write_config(
        tmp_path_factory.mktemp("my2my") / "replicator.yaml",
        flow, mariadb.url(src_db), mariadb.url(dst_db), tables,
    )
    run_once(cfg)  # records the flow's start position; nothing to apply yet

    # ---- round 1
    my_script(mariadb, src_db, *MY_ROUND_1)
    my_script(mariadb, src_db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    run_once(cfg)

    # ---- round 2
    my_script(mariadb, src_db, *MY_ROUND_2, time_zone="+05:00")
    run_once_cli(cfg)

    yield Scenario(mariadb, src_db, dst_db, flow)


def compare(sc: Scenario, src_query: str, dst_query: str, cols: Sequence[str]) -> list[tuple[Any, ...]]:
    src = my_fetch(sc.my, sc.src_db, src_query)
    dst = my_fetch(sc.my, sc.dst_db, dst_query)
    assert_same_rows(src, dst, cols, same_width=True)
    return src


def dst_fetch(sc: Scenario, query: str) -> list[tuple[Any, ...]]:
    return my_fetch(sc.my, sc.dst_db, query)


# --------------------------------------------------------------------------- tests


def test_customers_match_after_key_change_updates_deletes_and_rename(scenario: Scenario) -> None:
    src = compare(scenario, CUSTOMER_SRC, CUSTOMER_DST, CUSTOMER_COLS)
    ids = [r[0] for r in src]
    assert ids[:3] == [51, 52, 53] and 1001 in ids and 1050 in ids and 81 not in ids and 501 in ids
    assert len(src) == 200 - 20 + 4  # + 201 (re-inserted), 202, 204 and 501


def test_target_column_renamed_by_config_receives_the_source_values(scenario: Scenario) -> None:
    assert dst_fetch(scenario, "SELECT given_name FROM customers WHERE id IN (52, 201) ORDER BY id") == [
        ("First52",), ("Reborn",),
    ]


def test_orders_with_unsigned_bigint_keys_match_after_multi_table_transactions(scenario: Scenario) -> None:
    q = "SELECT id, customer_id, amount, status, note, placed_at FROM orders ORDER BY id"
    src = compare(scenario, q, q, ORDER_COLS)
    ids = [r[0] for r in src]
    assert len(src) == 302 and 777 not in ids
    assert ids[-1] == 18446744073709551614 and 18446744073709551615 not in ids


def test_truncated_table_holds_exactly_the_rows_inserted_after_the_truncate(scenario: Scenario) -> None:
    q = "SELECT sku, qty, price, location FROM inventory ORDER BY sku"
    src = compare(scenario, q, q, ["sku", "qty", "price", "location"])
    assert len(src) == 20
    assert all(r[0].startswith("NEW-") or r[3] == "after truncate" for r in src)


def test_composite_key_table_matches_after_insert_update_key_change_and_delete(scenario: Scenario) -> None:
    q = "SELECT order_id, line_no, product, qty FROM line_items ORDER BY order_id, line_no"
    src = compare(scenario, q, q, ["order_id", "line_no", "product", "qty"])
    keys = {(r[0], r[1]) for r in src}
    assert (50, 101) in keys and (50, 1) not in keys and (62, 2) not in keys and (999, 2) in keys


def test_rolled_back_transactions_and_savepoints_are_not_replicated(scenario: Scenario) -> None:
    sc = scenario
    assert dst_fetch(sc, "SELECT id, last_name FROM customers WHERE id IN (202, 203, 204, 9999) ORDER BY id") == [
        (202, "kept"), (204, "after savepoint"),
    ]
    assert dst_fetch(sc, "SELECT count(*) FROM customers WHERE last_name LIKE 'ROLLED%'") == [(0,)]
    assert dst_fetch(sc, "SELECT count(*) FROM inventory WHERE sku = 'ROLLBACK-SKU' OR qty = -1") == [(0,)]
    assert dst_fetch(sc, "SELECT count(*) FROM orders WHERE id <= 10") == [(10,)]
    assert dst_fetch(sc, "SELECT count(*) FROM bulk WHERE val = 'ROLLED BACK'") == [(0,)]


def test_nulls_in_every_nullable_column_are_replicated_as_null(scenario: Scenario) -> None:
    sc = scenario
    assert dst_fetch(sc, "SELECT given_name, email, city, vip, created_at FROM customers WHERE id BETWEEN 101 AND 110") == [
        (None,) * 5
    ] * 10
    assert dst_fetch(sc, "SELECT customer_id, amount, note, placed_at FROM orders WHERE id = 301") == [(None,) * 4]
    assert dst_fetch(sc, "SELECT price, location FROM inventory WHERE sku = 'NEW-1'") == [(None, None)]
    assert dst_fetch(sc, "SELECT qty FROM line_items WHERE order_id = 301") == [(None,)]
    assert dst_fetch(sc, "SELECT * FROM types WHERE id IN (5, 6) ORDER BY id") == [
        (5,) + (None,) * (len(MY_TYPE_NAMES) - 1), (6,) + (None,) * (len(MY_TYPE_NAMES) - 1)
    ]


def test_100k_row_transactions_insert_update_delete_match_row_for_row(scenario: Scenario) -> None:
    q = "SELECT id, val, n FROM bulk ORDER BY id"
    src = compare(scenario, q, q, ["id", "val", "n"])
    assert len(src) == 50000
    assert src[0] == (1, "v1-updated", 4) and src[-1] == (99999, "v99999-updated", 99999 * 3 + 1)
    assert src[1] == (3, "v3-updated", None)


def test_type_matrix_values_are_identical_on_the_target(scenario: Scenario) -> None:
    src = compare(scenario, MY_TYPES_QUERY, MY_TYPES_QUERY, MY_TYPE_NAMES)
    assert len(src) == 90


def test_type_matrix_extremes_arrive_exactly(scenario: Scenario) -> None:
    dst = {r[0]: dict(zip(MY_TYPE_NAMES, r)) for r in dst_fetch(scenario, MY_TYPES_QUERY)}
    lo, hi, lax, misc = dst[1], dst[2], dst[3], dst[4]
    assert (lo["c_tiny"], lo["c_small"], lo["c_medium"], lo["c_int"], lo["c_big"]) == (
        -128, -32768, -8388608, -(2**31), -(2**63)
    )
    assert (hi["c_utiny"], hi["c_usmall"], hi["c_umedium"], hi["c_uint"], hi["c_ubig"]) == (
        255, 65535, 16777215, 4294967295, 18446744073709551615
    )
    assert hi["c_big"] == 2**63 - 1
    assert lo["c_dec"] == Decimal("-99999999999999999999999999999999999.999999999999999999999999999999")
    assert hi["c_dec"] == Decimal("99999999999999999999999999999999999.999999999999999999999999999999")
    assert misc["c_dec"] == Decimal("1E-30") and lax["c_dec"] == Decimal("-1E-30")
    assert hi["c_double"] == 1.7976931348623157e308 and misc["c_double"] == 2.2250738585072014e-308
    assert lax["c_float"] == 0.10000000149011612  # the float32 nearest 0.1, widened exactly
    # TIMESTAMP written at +05:00, read here in UTC: the same instants
    assert lo["c_ts"] == datetime(1970, 1, 1, 0, 0, 1)
    assert hi["c_ts"] == datetime(2038, 1, 19, 3, 14, 7, 999999)
    assert misc["c_ts"] == datetime(2024, 3, 10, 7, 34, 56, 123456)
    assert lax["c_ts"] == datetime(1999, 12, 31, 23, 59, 59, 999999)
    assert hi["c_datetime"] == datetime(9999, 12, 31, 23, 59, 59, 999999) and lo["c_date"] == date(1000, 1, 1)
    # TIME: negative and beyond 24 hours
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
    assert (lo["c_bit1"], hi["c_bit1"]) == (b"\x00", b"\x01")
    assert hi["c_bit64"] == b"\xff" * 8 and misc["c_bit64"] == b"\x80" + b"\x00" * 7
    assert dst[10]["c_bit64"] == b"\xff" * 8 and dst[7]["c_bit64"] == b"\x00" * 8
    assert (lax["c_enum"], lo["c_enum"], hi["c_enum"]) == ("", "small", "large")
    assert (lo["c_set"], hi["c_set"], dst[7]["c_set"]) == ("", "a,b,c", "a,b")
    assert json.loads(hi["c_json"]) == {"nested": {"deep": [1, "two", 3.5, True, None]}, "emoji": "😀", "n": -0.000001}
    assert json.loads(misc["c_json"]) == "just a string ü 😀"
    assert (lax["c_json"], dst[7]["c_json"], dst[5]["c_json"]) == ("null", "[]", None)


def test_enum_error_value_is_still_the_error_value_on_the_target(scenario: Scenario) -> None:
    # index 0 (the '' error value), not a member that happens to sort first
    rows = dst_fetch(scenario, "SELECT id, c_enum + 0, c_set + 0 FROM types WHERE id IN (1, 3, 7, 8) ORDER BY id")
    assert rows == [(1, 1, 0), (3, 0, 0), (7, 2, 3), (8, 0, 0)]


def test_enum_error_value_does_not_let_other_values_be_truncated(
    mariadb: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    # Rows holding the ENUM error value are written without strict mode: any other value the
    # target cannot hold must still stop the flow (no silent truncation), and nothing commits.
    src, dst = fresh_db_name + "_s", fresh_db_name + "_t"
    flow = "en" + fresh_db_name[-8:]
    create_db(mariadb, src)
    create_db(mariadb, dst)
    my_script(mariadb, src, "CREATE TABLE t (id INT PRIMARY KEY, e ENUM('x', 'y'), s VARCHAR(10))")
    my_script(mariadb, dst, "CREATE TABLE t (id INT PRIMARY KEY, e ENUM('x', 'y'), s VARCHAR(3))")
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(src), mariadb.url(dst), "      - source: t\n")
    run_once(cfg)
    my_script(
        mariadb, src,
        "SET SESSION sql_mode = ''",
        "INSERT INTO t VALUES (1, 'no such', 'ok'), (2, 'no such', 'too long'), (3, 'y', 'ok')",
    )
    error = str(run_once_fails(cfg, DataError))
    assert "column 's'" in error and "cannot hold" in error, error
    assert my_fetch(mariadb, dst, "SELECT count(*) FROM t") == [(0,)]

    my_script(mariadb, dst, "ALTER TABLE t MODIFY s VARCHAR(10)")  # the fix: a column wide enough
    run_once(cfg)
    q = "SELECT id, e, e + 0, s FROM t ORDER BY id"
    assert my_fetch(mariadb, dst, q) == my_fetch(mariadb, src, q) == [
        (1, "", 0, "ok"), (2, "", 0, "too long"), (3, "y", 2, "ok"),
    ]


# --------------------------------------------------------------------------- zero dates


@pytest.fixture
def zero_date_flow(mariadb: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str, str]]:
    src, dst = fresh_db_name + "_s", fresh_db_name + "_t"
    flow = "zd" + fresh_db_name[-8:]
    for db in (src, dst):
        create_db(mariadb, db)
        my_script(mariadb, db, "CREATE TABLE events (id INT PRIMARY KEY, label VARCHAR(20), d DATE, dt DATETIME(6))")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(src), mariadb.url(dst), "      - source: events\n",
        batch="{max_rows: 100000, max_delay_ms: 600000}",
    )
    run_once(cfg)
    yield cfg, src, dst, flow


def test_zero_date_stops_the_flow_by_default_then_zero_dates_null_writes_null(
    mariadb: Any, zero_date_flow: tuple[Path, str, str, str]
) -> None:
    cfg, src, dst, flow = zero_date_flow
    before = my_checkpoint(mariadb, flow)
    assert before is not None
    first_new_txn = gtid_seq(my_fetch(mariadb, src, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]) + 1

    def assert_not_advanced() -> None:
        # no change applied, and the position not at or past the first new source transaction
        # (it may move over transactions of other databases, which are not this flow's)
        now = my_checkpoint(mariadb, flow)
        assert now is not None and now[1:] == before[1:] and gtid_seq(now[0]) < first_new_txn, (now, before)

    my_script(
        mariadb, src,
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
    assert my_fetch(mariadb, dst, "SELECT count(*) FROM events") == [(0,)]
    assert_not_advanced()

    stderr = run_once_cli_fails(cfg, flow)
    assert "id=3" in stderr and "0000-00-00" in stderr, stderr
    assert my_fetch(mariadb, dst, "SELECT count(*) FROM events") == [(0,)]
    assert_not_advanced()

    # the same flow, now with `zero_dates: null`: resumes from the same checkpoint
    cfg.write_text(cfg.read_text().replace("    tables:\n", "    zero_dates: null\n    tables:\n"))
    run_once(cfg)
    assert my_fetch(mariadb, dst, "SELECT id, label, d, dt FROM events ORDER BY id") == [
        (1, "good", date(2024, 1, 1), datetime(2024, 1, 1, 10, 0, 0, 500000)),
        (2, "ok too", date(2024, 1, 2), None),
        (3, "zero date", None, datetime(2024, 1, 3)),
        (4, "zero datetime", date(2024, 1, 4), None),
    ]
    after = my_checkpoint(mariadb, flow)
    assert after is not None and after != before and after[1] == 4


# --------------------------------------------------------------------------- DDL mid-stream


@pytest.fixture
def ddl_flow(mariadb: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str, str]]:
    src, dst = fresh_db_name + "_s", fresh_db_name + "_t"
    flow = "ddl" + fresh_db_name[-8:]
    for db in (src, dst):
        create_db(mariadb, db)
        my_script(mariadb, db, "CREATE TABLE ev (id INT PRIMARY KEY, a INT, note VARCHAR(20))")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(src), mariadb.url(dst), "      - source: ev\n",
        batch="{max_rows: 1000, max_delay_ms: 100}",
    )
    run_once(cfg)
    yield cfg, src, dst, flow


def test_added_column_is_followed_and_a_renamed_column_stops_the_flow_until_the_target_follows(
    mariadb: Any, ddl_flow: tuple[Path, str, str, str]
) -> None:
    cfg, src_db, dst_db, flow = ddl_flow
    live = BackgroundFlow(cfg)
    live.start()
    try:
        writer = RowWriter(mariadb, src_db)
        total = writer.write_around_added_column()

        q = "SELECT id, a, note, c2 FROM ev ORDER BY id"
        cols = ["id", "a", "note", "c2"]

        def caught_up() -> bool:
            assert live.error is None, f"the flow failed: {live.error!r}"
            return my_fetch(mariadb, dst_db, "SELECT count(*), CAST(SUM(note = 'updated') AS SIGNED) FROM ev") == [(total, 2)]

        wait_until(caught_up, 60, "the live flow to apply every row")

        src = my_fetch(mariadb, src_db, q)
        dst = my_fetch(mariadb, dst_db, q)
        assert_same_rows(src, dst, cols, same_width=True)
        assert live.is_alive() and live.error is None, repr(live.error)
        assert my_fetch(
            mariadb, dst_db,
            "SELECT DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'ev' AND COLUMN_NAME = 'c2'", (dst_db,),
        ) == [("int", "NO", "7")]
        by_id = {r[0]: r for r in dst}
        assert by_id[1][2:] == ("updated", -1) and by_id[3][2:] == ("before", 7)
        assert writer.with_c2 and all(by_id[i][3] == i * 10 for i in writer.with_c2)
        assert len(writer.with_c2) >= 60 and sum(1 for r in dst if r[2] == "before" and r[3] == 7) >= 58

        # A rename cannot be followed: the live flow stops, clearly, and writes nothing after it.
        before_cp = my_checkpoint(mariadb, flow)
        my_script(
            mariadb, src_db,
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
        assert_same_rows(expected, my_fetch(mariadb, dst_db, q), cols, same_width=True)  # rows before the rename, nothing after
        after_cp = my_checkpoint(mariadb, flow)
        assert after_cp is not None and before_cp is not None and after_cp[1] == before_cp[1] + 1

        # restarting does not get past it either (the source now has column b, the target does not)
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "'b'" in proc.stderr and "ev" in proc.stderr, proc.stderr
        assert my_checkpoint(mariadb, flow) == after_cp
        assert_same_rows(expected, my_fetch(mariadb, dst_db, q), cols, same_width=True)

        # Once the target column is renamed as the error says, the flow gets past the rename.
        assert "RENAME COLUMN" in message, message
        my_script(mariadb, dst_db, "ALTER TABLE ev RENAME COLUMN a TO b")
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 0, proc.stderr
        q_renamed = "SELECT id, b, note, c2 FROM ev ORDER BY id"
        assert_same_rows(my_fetch(mariadb, src_db, q_renamed), my_fetch(mariadb, dst_db, q_renamed), cols, same_width=True)
        assert (100002, 2, "post-rename", 2) in my_fetch(mariadb, dst_db, q_renamed)
    finally:
        live.stop_event.set()
        live.join(timeout=60)


# --------------------------------------------------------------------------- replicator check


@pytest.fixture
def check_dbs(mariadb: Any, fresh_db_name: str) -> tuple[str, str]:
    src, dst = fresh_db_name + "_s", fresh_db_name + "_t"
    for db in (src, dst):
        create_db(mariadb, db)
        my_script(mariadb, db, "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20))")
    return src, dst


def _check_config(tmp_path: Path, src_url: str, dst_url: str, flow: str) -> Path:
    return write_config(tmp_path / "check.yaml", flow, src_url, dst_url, "      - source: things\n")


def test_check_passes_on_a_well_configured_mariadb_source(
    mariadb: Any, check_dbs: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = check_dbs
    cfg = _check_config(tmp_path, mariadb.url(src), mariadb.url(dst), "chk-ok")
    proc = cli(cfg, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PROBLEM" not in proc.stdout and "All checks passed" in proc.stdout, proc.stdout


def test_check_names_statement_binlog_format_and_its_fix(
    sandbox_factory: Any, mariadb: Any, check_dbs: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = check_dbs
    stmt = sandbox_factory.mariadb({"binlog_format": "STATEMENT"}, name="mariadb_stmt")
    create_db(stmt, src)
    my_script(stmt, src, "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20))")
    cfg = _check_config(tmp_path, stmt.url(src), mariadb.url(dst), "chk-stmt")
    proc = cli(cfg, "check")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    problem = [i for i, line in enumerate(lines) if line.startswith("PROBLEM") and "binlog_format is STATEMENT" in line]
    assert problem, proc.stdout
    assert "fix: set binlog_format=ROW" in lines[problem[0] + 1], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_names_the_missing_replication_privilege_without_printing_the_password(
    mariadb: Any, check_dbs: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = check_dbs
    user = "norepl_" + src[-10:-2]
    password = "Pw-" + secrets.token_hex(8)
    mariadb.add_password_user(user, password, privileges="SELECT")
    try:
        cfg = _check_config(tmp_path, mariadb.url(src, user=user, password=password), mariadb.url(dst), "chk-priv")
        proc = cli(cfg, "check")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "REPLICATION SLAVE" in proc.stdout and "PROBLEM" in proc.stdout, proc.stdout
        assert password not in proc.stdout and password not in proc.stderr
    finally:
        for host in ("127.0.0.1", "localhost"):
            mariadb.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
