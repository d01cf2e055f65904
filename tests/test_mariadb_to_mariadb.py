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
import math
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest

from replicator.config import parse_config
from replicator.errors import DataError, SchemaError
from replicator.pipeline import FlowRunner

# --------------------------------------------------------------------------- helpers


def cli(cfg: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", "-c", str(cfg), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def run_once_cli(cfg: Path) -> None:
    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 0, f"run --once failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def run_once(cfg_path: Path) -> None:
    cfg = parse_config(cfg_path.read_text())
    FlowRunner(cfg, cfg.flows[0], once=True).run()


def write_config(path: Path, flow: str, src_url: str, dst_url: str, tables: str, extra: str = "") -> Path:
    path.write_text(
        "systems:\n"
        f"  src: {{url: \"{src_url}\"}}\n"
        f"  dst: {{url: \"{dst_url}\"}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: src\n"
        "    target: dst\n" + extra +
        "    tables:\n" + tables
    )
    return path


def my_connect(server: Any, db: str, time_zone: str = "+00:00") -> pymysql.connections.Connection[Any]:
    return server.connect(db, charset="utf8mb4", init_command=f"SET time_zone = '{time_zone}'")  # type: ignore[no-any-return]


def my_script(server: Any, db: str, *statements: str, time_zone: str = "+00:00") -> None:
    """Statements on one autocommit connection (a list may hold BEGIN … COMMIT/ROLLBACK)."""
    conn = my_connect(server, db, time_zone)
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def my_fetch(server: Any, db: str, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows as pymysql loads them, read at time zone '+00:00' (TIMESTAMP values in UTC)."""
    conn = my_connect(server, db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def checkpoint_of(server: Any, flow: str) -> tuple[Any, ...] | None:
    rows = my_fetch(
        server, "_replicator",
        "SELECT position, changes_applied, transactions_applied FROM checkpoints WHERE flow = %s", (flow,),
    )
    return rows[0] if rows else None


def gtid_seq(position: str) -> int:
    """The sequence number of domain 0 in a MariaDB GTID position ('0-1-40')."""
    for part in position.split(","):
        domain, _server, seq = part.strip().split("-")
        if domain == "0":
            return int(seq)
    raise AssertionError(f"no domain 0 in {position!r}")

def create_db(server: Any, name: str) -> None:
    server.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def values_equal(a: Any, b: Any) -> bool:
    """Same type and value; floats bit for bit."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a.hex() == b.hex()
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b and str(a) == str(b)
    return type(a) is type(b) and bool(a == b)


def assert_same_rows(src: Sequence[tuple[Any, ...]], dst: Sequence[tuple[Any, ...]], cols: Sequence[str]) -> None:
    assert len(dst) == len(src), f"row count differs: source {len(src)}, target {len(dst)}"
    for s, d in zip(src, dst):
        assert len(s) == len(d) == len(cols)
        for name, a, b in zip(cols, s, d):
            assert values_equal(a, b), f"row key {s[0]!r} column {name}: source {a!r} != target {b!r}"


# --------------------------------------------------------------------------- schema

MY_DDL = [
    "CREATE TABLE customers (id INT PRIMARY KEY, first_name VARCHAR(50), last_name VARCHAR(50) NOT NULL,"
    " email VARCHAR(120), city VARCHAR(60), vip TINYINT, created_at DATETIME(6))",
    "CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY, customer_id INT, amount DECIMAL(12,2),"
    " status VARCHAR(20) NOT NULL, note TEXT, placed_at DATETIME(6))",
    "CREATE TABLE inventory (sku VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY, qty INT NOT NULL,"
    " price DECIMAL(10,2), location VARCHAR(40))",
    "CREATE TABLE line_items (order_id BIGINT, line_no INT, product VARCHAR(100) NOT NULL, qty INT,"
    " PRIMARY KEY (order_id, line_no))",
    "CREATE TABLE bulk (id INT PRIMARY KEY, val VARCHAR(40) NOT NULL, n BIGINT)",
    "CREATE TABLE types (id INT PRIMARY KEY,"
    " c_tiny TINYINT, c_utiny TINYINT UNSIGNED, c_small SMALLINT, c_usmall SMALLINT UNSIGNED,"
    " c_medium MEDIUMINT, c_umedium MEDIUMINT UNSIGNED, c_int INT, c_uint INT UNSIGNED,"
    " c_big BIGINT, c_ubig BIGINT UNSIGNED,"
    " c_dec DECIMAL(65,30), c_float FLOAT, c_double DOUBLE,"
    " c_date DATE, c_datetime DATETIME(6), c_ts TIMESTAMP(6) NULL DEFAULT NULL, c_time TIME(6), c_year YEAR,"
    " c_char CHAR(10), c_varchar VARCHAR(100), c_text TEXT,"
    " c_binary BINARY(4), c_varbinary VARBINARY(16), c_blob BLOB,"
    " c_bit1 BIT(1), c_bit64 BIT(64),"
    " c_enum ENUM('small','medium','large'), c_set SET('a','b','c'), c_json JSON)",
]


# The target: the same definitions, with customers.first_name renamed to given_name (mapped in
# the config).
TARGET_DDL = [MY_DDL[0].replace("first_name VARCHAR(50)", "given_name VARCHAR(50)"), *MY_DDL[1:]]
assert TARGET_DDL[0] != MY_DDL[0]

TYPE_NAMES = [
    "id",
    "c_tiny", "c_utiny", "c_small", "c_usmall", "c_medium", "c_umedium", "c_int", "c_uint", "c_big", "c_ubig",
    "c_dec", "c_float", "c_double",
    "c_date", "c_datetime", "c_ts", "c_time", "c_year",
    "c_char", "c_varchar", "c_text",
    "c_binary", "c_varbinary", "c_blob",
    "c_bit1", "c_bit64",
    "c_enum", "c_set", "c_json",
]
# FLOAT is read back widened to DOUBLE: the exact float32 value, not 6 printed digits.
TYPES_QUERY = "SELECT " + ", ".join(
    "CAST(c_float AS DOUBLE)" if c == "c_float" else c for c in TYPE_NAMES
) + " FROM types ORDER BY id"

# Written with the session time zone '+05:00': TIMESTAMP values are local times at +05:00.
TYPE_ROWS_STRICT = [
    "(1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,"
    " '-99999999999999999999999999999999999.999999999999999999999999999999', -3.40282e38, -1.7976931348623157e308,"
    " '1000-01-01', '1000-01-01 00:00:00.000000', '1970-01-01 05:00:01.000000', '-838:59:59.000000', 1901,"
    " '', 'emoji 😀🎉 ünïcödé \"quotes\" ''apostrophes'' back\\\\slash', 'line1\\nline2\\r\\n\\ttab',"
    " 'a', x'0000', x'00', b'0', b'0', 'small', '',"
    " '{\"a\": [1, 2, {\"b\": null}], \"ü\": \"✓\"}')",
    "(2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,"
    " 18446744073709551615,"
    " '99999999999999999999999999999999999.999999999999999999999999999999', 3.40282e38, 1.7976931348623157e308,"
    " '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 08:14:07.999999', '838:59:59.000000', 2155,"
    " 'abcdefghij', REPEAT('😀', 100), REPEAT('ü', 5000),"
    " x'ffffffff', x'00ff0000', x'0102000000', b'1',"
    " b'1111111111111111111111111111111111111111111111111111111111111111', 'large', 'a,b,c',"
    " '{\"nested\": {\"deep\": [1, \"two\", 3.5, true, null]}, \"emoji\": \"😀\", \"n\": -0.000001}')",
    "(4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, '0.000000000000000000000000000001', 1.17549435e-38,"
    " 2.2250738585072014e-308, '2000-02-29', '2000-02-29 23:59:59.500000', '2024-03-10 12:34:56.123456',"
    " '100:00:00.5', 2000, '  lead', ' trailing  ', '', x'00000000', x'', x'', b'1',"
    " b'1000000000000000000000000000000000000000000000000000000000000000', 'medium', 'b',"
    " '\"just a string ü 😀\"')",
    "(5" + ", NULL" * (len(TYPE_NAMES) - 1) + ")",
]
# sql_mode='' (no strict mode): an invalid ENUM value becomes the error value ''.
TYPE_ROW_LAX = (
    "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '-0.000000000000000000000000000001', 0.1, -2.5e-200,"
    " '1999-12-31', '1999-12-31 23:59:59.000001', '2000-01-01 04:59:59.999999', '-00:00:01.500000', 1999,"
    " 'x y', 'tab\\there', 'null', 'ab', x'0000000000', x'deadbeef00', b'0', b'0', 'no such size', '',"
    " 'null')"
)
TYPE_ROWS_GENERATED = """
INSERT INTO types SELECT 100 + seq,
    seq % 256 - 128, (seq * 7) % 256, (seq * 37) % 65536 - 32768, (seq * 37) % 65536,
    seq * 104729 % 16777216 - 8388608, seq * 104729 % 16777216, seq * 104729 - 2000000, seq * 53687091,
    seq * 9007199254740993 - 360287970189639720, CAST(seq AS UNSIGNED) * 230584300921369395,
    seq * 1234567.123456789012345678901234567891 - 50000000, seq / 3.0, seq * PI() * POW(10, (seq % 40) - 20),
    DATE '2020-01-01' + INTERVAL seq DAY,
    TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 86401000123) MICROSECOND,
    TIMESTAMP '2021-06-01 00:00:00' + INTERVAL (seq * 18000250000) MICROSECOND,
    SEC_TO_TIME(seq * 10230.000007 - 400000), 1901 + seq,
    LEFT(MD5(seq), seq % 10), CONCAT(REPEAT('ü', seq % 5), seq, '😀'), REPEAT(CONCAT('t', seq, ' '), seq),
    IF(seq % 3 = 0, UNHEX('AB'), UNHEX(LEFT(MD5(seq), 8))),
    CONCAT(UNHEX(LEFT(MD5(seq), 2 * (seq % 8))), REPEAT(UNHEX('00'), seq % 3)),
    UNHEX(CONCAT(MD5(seq), '0000')),
    seq % 2, CAST(seq AS UNSIGNED) * 230584300921369395,
    ELT(1 + seq % 3, 'small', 'medium', 'large'), MAKE_SET(seq % 8, 'a', 'b', 'c'),
    JSON_OBJECT('i', seq, 'list', JSON_ARRAY(seq, 'x', NULL), 'ü', CONCAT('v', seq), 'f', seq / 8)
FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_80) AS s
"""

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
    my_script(
        mariadb, src_db,
        """INSERT INTO customers SELECT seq, IF(seq % 7 = 0, NULL, CONCAT('First', seq)), CONCAT('Last', seq),
                  IF(seq % 5 = 0, NULL, CONCAT('c', seq, '@example.com')),
                  CASE seq % 3 WHEN 0 THEN NULL WHEN 1 THEN 'Zürich' ELSE 'São Paulo 😀' END,
                  IF(seq % 4 = 0, NULL, seq % 2),
                  IF(seq % 6 = 0, NULL, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * 3601500) MICROSECOND)
           FROM seq_1_to_200""",
        "BEGIN",
        """INSERT INTO orders SELECT seq, 1 + seq % 200, seq * 3.75, ELT(1 + seq % 3, 'new', 'paid', 'shipped'),
                  IF(seq % 4 = 0, NULL, CONCAT('note ', seq)),
                  TIMESTAMP '2024-02-01 08:00:00' + INTERVAL (seq * 900000001) MICROSECOND
           FROM seq_1_to_300""",
        "INSERT INTO orders VALUES (18446744073709551615, 1, 1.00, 'max-id', 'unsigned key', NULL)",
        """INSERT INTO inventory SELECT CONCAT('SKU-', LPAD(seq, 4, '0')), seq * 10, seq + 0.99,
                  IF(seq % 2 = 0, CONCAT('aisle ', seq), NULL)
           FROM seq_1_to_50""",
        """INSERT INTO line_items SELECT o.seq, l.seq, CONCAT('product ', o.seq, '/', l.seq), IF(l.seq = 3, NULL, l.seq)
           FROM seq_1_to_100 o JOIN seq_1_to_3 l WHERE l.seq <= 1 + o.seq % 3""",
        "COMMIT",
        "BEGIN",
        "INSERT INTO customers (id, last_name) VALUES (201, 'OnlyLastName')",
        "INSERT INTO orders (id, status) VALUES (301, 'only-status')",
        "INSERT INTO inventory (sku, qty) VALUES ('NULLS', 0)",
        "INSERT INTO line_items (order_id, line_no, product) VALUES (301, 1, 'only-product')",
        "COMMIT",
        "BEGIN",
        "INSERT INTO customers (id, last_name) VALUES (9999, 'ROLLED BACK')",
        "UPDATE customers SET last_name = 'ROLLED BACK' WHERE id <= 10",
        "DELETE FROM orders WHERE id <= 10",
        "INSERT INTO inventory VALUES ('ROLLBACK-SKU', 1, 1, 'nowhere')",
        "ROLLBACK",
        "BEGIN",
        "INSERT INTO customers (id, last_name) VALUES (202, 'kept')",
        "SAVEPOINT s1",
        "INSERT INTO customers (id, last_name) VALUES (203, 'ROLLED BACK TO SAVEPOINT')",
        "UPDATE customers SET last_name = 'ROLLED BACK TO SAVEPOINT' WHERE id = 202",
        "ROLLBACK TO SAVEPOINT s1",
        "INSERT INTO customers (id, last_name) VALUES (204, 'after savepoint')",
        "COMMIT",
    )
    my_script(
        mariadb, src_db,
        "INSERT INTO types VALUES " + ", ".join(TYPE_ROWS_STRICT),
        "SET SESSION sql_mode = ''",
        "INSERT INTO types VALUES " + TYPE_ROW_LAX,
        "SET SESSION sql_mode = DEFAULT",
        TYPE_ROWS_GENERATED,
        time_zone="+05:00",
    )
    run_once(cfg)

    # ---- round 2
    my_script(
        mariadb, src_db,
        "UPDATE customers SET id = id + 1000 WHERE id <= 50",
        "BEGIN",
        "UPDATE customers SET email = UPPER(email), city = NULL WHERE id BETWEEN 51 AND 80",
        "UPDATE orders SET status = 'shipped', amount = amount * 2 WHERE id % 3 = 0",
        "DELETE FROM line_items WHERE order_id BETWEEN 10 AND 20",
        "DELETE FROM customers WHERE id BETWEEN 81 AND 100",
        "COMMIT",
        "TRUNCATE TABLE inventory",
        "INSERT INTO inventory SELECT CONCAT('SKU-', LPAD(seq, 4, '0')), seq, seq * 2.5, 'after truncate'"
        " FROM seq_1_to_5",
        "INSERT INTO inventory SELECT CONCAT('NEW-', seq), seq * 7, NULL, IF(seq % 2 = 0, CONCAT('bin ', seq), NULL)"
        " FROM seq_1_to_15",
        "BEGIN",
        "UPDATE line_items SET qty = COALESCE(qty, 0) + 10 WHERE order_id BETWEEN 30 AND 40",
        "UPDATE line_items SET line_no = line_no + 100 WHERE order_id = 50",
        "DELETE FROM line_items WHERE order_id = 62 AND line_no = 2",
        "INSERT INTO line_items VALUES (999, 1, 'new line', 5), (999, 2, 'second', NULL)",
        "COMMIT",
        "BEGIN",
        "INSERT INTO customers (id, first_name, last_name) VALUES (500, 'Temp', 'Row')",
        "UPDATE customers SET first_name = 'Changed', vip = 1 WHERE id = 500",
        "UPDATE customers SET id = 501 WHERE id = 500",
        "DELETE FROM customers WHERE id = 201",
        "INSERT INTO customers VALUES (201, 'Reborn', 'Again', 'r@example.com', 'Oslo', 0, '2030-01-01 00:00:00')",
        "INSERT INTO orders (id, customer_id, status) VALUES (777, 501, 'netted')",
        "DELETE FROM orders WHERE id = 777",
        "UPDATE orders SET id = 18446744073709551614, note = 'moved down' WHERE id = 18446744073709551615",
        "COMMIT",
        "UPDATE customers SET first_name = NULL, email = NULL, city = NULL, vip = NULL, created_at = NULL"
        " WHERE id BETWEEN 101 AND 110",
        "UPDATE orders SET customer_id = NULL, amount = NULL, note = NULL, placed_at = NULL WHERE id BETWEEN 101 AND 110",
        "BEGIN",
        "DELETE FROM customers",
        "DELETE FROM orders",
        "UPDATE inventory SET qty = -1",
        "INSERT INTO bulk VALUES (1, 'ROLLED BACK', 0)",
        "ROLLBACK",
        # types: copies of rows 1-5 at 6-10, then changes to the copies only
        "INSERT INTO types SELECT id + 5, " + ", ".join(TYPE_NAMES[1:]) + " FROM types WHERE id <= 5",
        "UPDATE types SET " + ", ".join(f"{c} = NULL" for c in TYPE_NAMES[1:]) + " WHERE id = 6",
        "UPDATE types t, (SELECT * FROM types WHERE id = 2) s SET "
        + ", ".join(f"t.{c} = s.{c}" for c in TYPE_NAMES[1:]) + " WHERE t.id = 10",
        "UPDATE types SET c_bit64 = b'0', c_enum = 'medium', c_set = 'a,b', c_json = '[]', c_time = '-00:00:00.000001',"
        " c_binary = x'01' WHERE id = 7",
        "INSERT INTO bulk SELECT seq, CONCAT('v', seq), seq * 3 FROM seq_1_to_100000",
        "UPDATE bulk SET val = CONCAT(val, '-updated'), n = n + 1",
        "DELETE FROM bulk WHERE id % 2 = 0",
        "UPDATE bulk SET n = NULL WHERE id = 3",
        time_zone="+05:00",
    )
    run_once_cli(cfg)

    yield Scenario(mariadb, src_db, dst_db, flow)


def compare(sc: Scenario, src_query: str, dst_query: str, cols: Sequence[str]) -> list[tuple[Any, ...]]:
    src = my_fetch(sc.my, sc.src_db, src_query)
    dst = my_fetch(sc.my, sc.dst_db, dst_query)
    assert_same_rows(src, dst, cols)
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
        (5,) + (None,) * (len(TYPE_NAMES) - 1), (6,) + (None,) * (len(TYPE_NAMES) - 1)
    ]


def test_100k_row_transactions_insert_update_delete_match_row_for_row(scenario: Scenario) -> None:
    q = "SELECT id, val, n FROM bulk ORDER BY id"
    src = compare(scenario, q, q, ["id", "val", "n"])
    assert len(src) == 50000
    assert src[0] == (1, "v1-updated", 4) and src[-1] == (99999, "v99999-updated", 99999 * 3 + 1)
    assert src[1] == (3, "v3-updated", None)


def test_type_matrix_values_are_identical_on_the_target(scenario: Scenario) -> None:
    src = compare(scenario, TYPES_QUERY, TYPES_QUERY, TYPE_NAMES)
    assert len(src) == 90


def test_type_matrix_extremes_arrive_exactly(scenario: Scenario) -> None:
    dst = {r[0]: dict(zip(TYPE_NAMES, r)) for r in dst_fetch(scenario, TYPES_QUERY)}
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
    config = parse_config(cfg.read_text())
    with pytest.raises(DataError) as info:
        FlowRunner(config, config.flows[0], once=True).run()
    assert "column 's'" in str(info.value) and "cannot hold" in str(info.value), str(info.value)
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
        extra="    batch: {max_rows: 100000, max_delay_ms: 600000}\n",
    )
    run_once(cfg)
    yield cfg, src, dst, flow


def test_zero_date_stops_the_flow_by_default_then_zero_dates_null_writes_null(
    mariadb: Any, zero_date_flow: tuple[Path, str, str, str]
) -> None:
    cfg, src, dst, flow = zero_date_flow
    before = checkpoint_of(mariadb, flow)
    assert before is not None
    first_new_txn = gtid_seq(my_fetch(mariadb, src, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]) + 1

    def assert_not_advanced() -> None:
        # no change applied, and the position not at or past the first new source transaction
        # (it may move over transactions of other databases, which are not this flow's)
        now = checkpoint_of(mariadb, flow)
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
    config = parse_config(cfg.read_text())
    with pytest.raises(DataError) as info:
        FlowRunner(config, config.flows[0], once=True).run()
    message = str(info.value)
    assert "events" in message and "id=3" in message and "`d`" in message and "0000-00-00" in message, message
    assert "zero_dates" in message, message
    assert my_fetch(mariadb, dst, "SELECT count(*) FROM events") == [(0,)]
    assert_not_advanced()

    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and f"flow {flow} failed" in proc.stderr, proc.stderr
    assert "id=3" in proc.stderr and "0000-00-00" in proc.stderr, proc.stderr
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
    after = checkpoint_of(mariadb, flow)
    assert after is not None and after != before and after[1] == 4


# --------------------------------------------------------------------------- DDL mid-stream


class RowWriter(threading.Thread):
    """Inserts rows one transaction at a time until stopped; after ``altered`` is set, with c2."""

    def __init__(self, server: Any, db: str) -> None:
        super().__init__(daemon=True)
        self.server, self.db = server, db
        self.next_id = 1
        self.altered = threading.Event()
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.with_c2: list[int] = []

    def run(self) -> None:
        conn = my_connect(self.server, self.db)
        try:
            with conn.cursor() as cur:
                while not self.halt.is_set():
                    i = self.next_id
                    if self.altered.is_set():
                        cur.execute("INSERT INTO ev (id, a, note, c2) VALUES (%s, %s, %s, %s)", (i, i * 2, "after", i * 10))
                        self.with_c2.append(i)
                    else:
                        cur.execute("INSERT INTO ev (id, a, note) VALUES (%s, %s, %s)", (i, i * 2, "before"))
                    self.next_id += 1
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.next_id <= n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"writer stuck at {self.next_id}"
            time.sleep(0.01)


class BackgroundFlow(threading.Thread):
    def __init__(self, cfg: Path) -> None:
        super().__init__(daemon=True)
        config = parse_config(cfg.read_text())
        self.stop_event = threading.Event()
        self.runner = FlowRunner(config, config.flows[0], stop=self.stop_event)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:
            self.error = exc


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def ddl_flow(mariadb: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str, str]]:
    src, dst = fresh_db_name + "_s", fresh_db_name + "_t"
    flow = "ddl" + fresh_db_name[-8:]
    for db in (src, dst):
        create_db(mariadb, db)
        my_script(mariadb, db, "CREATE TABLE ev (id INT PRIMARY KEY, a INT, note VARCHAR(20))")
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(src), mariadb.url(dst), "      - source: ev\n",
        extra="    batch: {max_rows: 1000, max_delay_ms: 100}\n",
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
        writer.start()
        try:
            writer.wait_for(60)
            my_script(mariadb, src_db, "ALTER TABLE ev ADD COLUMN c2 INT NOT NULL DEFAULT 7")
            writer.altered.set()
            writer.wait_for(writer.next_id + 60)
            my_script(mariadb, src_db, "UPDATE ev SET c2 = -1, note = 'updated' WHERE id IN (1, 2)")
        finally:
            writer.halt.set()
            writer.join(timeout=30)
        assert writer.error is None, writer.error
        total = writer.next_id - 1

        q = "SELECT id, a, note, c2 FROM ev ORDER BY id"
        cols = ["id", "a", "note", "c2"]

        def caught_up() -> bool:
            assert live.error is None, f"the flow failed: {live.error!r}"
            return my_fetch(mariadb, dst_db, "SELECT count(*), CAST(SUM(note = 'updated') AS SIGNED) FROM ev") == [(total, 2)]

        wait_until(caught_up, 60, "the live flow to apply every row")

        src = my_fetch(mariadb, src_db, q)
        dst = my_fetch(mariadb, dst_db, q)
        assert_same_rows(src, dst, cols)
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
        before_cp = checkpoint_of(mariadb, flow)
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
        assert_same_rows(expected, my_fetch(mariadb, dst_db, q), cols)  # rows before the rename, nothing after
        after_cp = checkpoint_of(mariadb, flow)
        assert after_cp is not None and before_cp is not None and after_cp[1] == before_cp[1] + 1

        # restarting does not get past it either (the source now has column b, the target does not)
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "'b'" in proc.stderr and "ev" in proc.stderr, proc.stderr
        assert checkpoint_of(mariadb, flow) == after_cp
        assert_same_rows(expected, my_fetch(mariadb, dst_db, q), cols)

        # Once the target column is renamed as the error says, the flow gets past the rename.
        assert "RENAME COLUMN" in message, message
        my_script(mariadb, dst_db, "ALTER TABLE ev RENAME COLUMN a TO b")
        proc = cli(cfg, "run", "--once")
        assert proc.returncode == 0, proc.stderr
        q_renamed = "SELECT id, b, note, c2 FROM ev ORDER BY id"
        assert_same_rows(my_fetch(mariadb, src_db, q_renamed), my_fetch(mariadb, dst_db, q_renamed), cols)
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
