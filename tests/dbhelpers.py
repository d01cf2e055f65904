"""Helpers shared by the end-to-end test modules (``test_*_to_*.py`` and the crash tests).

Plain functions and constants, no fixtures (those live in ``conftest.py``). pytest puts
``tests/`` on ``sys.path`` for this directory's modules (the default "prepend" import mode;
``tests/`` has no ``__init__.py``), so test modules import them as ``from dbhelpers import ...``.

* running the replicator: :func:`write_config`, :func:`run_once` and :func:`run_once_fails`
  (in-process), :func:`cli`, :func:`run_once_cli` and :func:`run_once_cli_fails` (the real
  command in a subprocess);
* SQL on either engine: ``my_*`` (pymysql, MariaDB) and ``pg_*`` (psycopg, PostgreSQL);
* comparing rows: :func:`same_value`, :func:`assert_same_rows` (identical values),
  :func:`assert_mapped_rows` (values after a type mapping, one normalisation per column);
* live flows: :class:`BackgroundFlow`, :class:`RowWriter` and :func:`wait_until`;
* the MariaDB source scenario that ``test_mariadb_to_mariadb`` and ``test_mariadb_to_pg`` both
  replicate (``MY_*``), and the statements the PostgreSQL-source scenarios share.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pymysql
import pytest

from replicator.config import parse_config
from replicator.pipeline import FlowRunner

# --------------------------------------------------------------------------- the replicator


def write_config(
    path: Path, flow: str, src_url: str, dst_url: str, tables: str | Sequence[str], *, batch: str | None = None,
    options: str = "",
) -> Path:
    """Write a config with systems ``src`` and ``dst`` and one flow between them; return ``path``.

    ``tables`` is either the YAML of the flow's ``tables:`` list (lines indented six spaces, for
    entries with options) or the source table names. ``batch`` is the flow's ``batch:`` value
    as YAML (e.g. ``"{max_rows: 500, max_delay_ms: 50}"``); without it the defaults apply.
    ``options`` are more lines of the flow (indented four spaces, e.g. ``"    snapshot: never\n"``).
    """
    if not isinstance(tables, str):
        tables = "".join(f"      - source: {t}\n" for t in tables)
    path.write_text(
        "systems:\n"
        f"  src: {{url: \"{src_url}\"}}\n"
        f"  dst: {{url: \"{dst_url}\"}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: src\n"
        "    target: dst\n"
        + options
        + (f"    batch: {batch}\n" if batch is not None else "")
        + "    tables:\n" + tables
    )
    return path


def cli(cfg: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``replicator -c CFG ARGS...`` in a subprocess; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", "-c", str(cfg), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def run_once_cli(cfg: Path) -> None:
    """``replicator run --once`` in a subprocess, which must succeed."""
    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 0, f"run --once failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def run_once(cfg_path: Path) -> None:
    """The config's first flow, in this process, until it has applied all there is."""
    cfg = parse_config(cfg_path.read_text())
    FlowRunner(cfg, cfg.flows[0], once=True).run()


E = TypeVar("E", bound=BaseException)


def run_once_fails(cfg_path: Path, error: type[E]) -> E:
    """:func:`run_once`, which must raise ``error``; the exception."""
    cfg = parse_config(cfg_path.read_text())
    with pytest.raises(error) as info:
        FlowRunner(cfg, cfg.flows[0], once=True).run()
    return info.value


def run_once_cli_fails(cfg: Path, flow: str) -> str:
    """``replicator run --once`` in a subprocess, which must exit 1 saying that ``flow``
    failed, without a traceback; its stderr."""
    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and f"flow {flow} failed" in proc.stderr, proc.stderr
    return proc.stderr


# --------------------------------------------------------------------------- SQL


def my_connect(server: Any, db: str, time_zone: str = "+00:00") -> pymysql.connections.Connection[Any]:
    """An autocommit utf8mb4 connection to MariaDB database ``db`` with session ``time_zone``."""
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


def pg_script(server: Any, db: str, *statements: str) -> None:
    """Statements on one autocommit connection (a list may hold BEGIN … COMMIT/ROLLBACK)."""
    with psycopg.connect(server.url(db), autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)  # type: ignore[arg-type]


def pg_fetch(server: Any, db: str, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows as psycopg loads them."""
    with psycopg.connect(server.url(db), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


_CHECKPOINT_COLUMNS = "SELECT position, changes_applied, transactions_applied"


def my_checkpoint(server: Any, flow: str) -> tuple[Any, ...] | None:
    """(position, changes_applied, transactions_applied) of ``flow`` on a MariaDB target."""
    rows = my_fetch(server, "_replicator", f"{_CHECKPOINT_COLUMNS} FROM checkpoints WHERE flow = %s", (flow,))
    return rows[0] if rows else None


def pg_checkpoint(server: Any, db: str, flow: str) -> tuple[Any, ...] | None:
    """(position, changes_applied, transactions_applied) of ``flow`` in PostgreSQL database ``db``."""
    rows = pg_fetch(server, db, f"{_CHECKPOINT_COLUMNS} FROM _replicator.checkpoints WHERE flow = %s", (flow,))
    return rows[0] if rows else None


def gtid_seq(position: str) -> int:
    """The sequence number of domain 0 in a MariaDB GTID position ('0-1-40')."""
    for part in position.split(","):
        domain, _server, seq = part.strip().split("-")
        if domain == "0":
            return int(seq)
    raise AssertionError(f"no domain 0 in {position!r}")


def drop_slot(server: Any, slot: str) -> None:
    """Drop replication slot ``slot`` on a PostgreSQL source if it exists and is not in use."""
    server.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        " WHERE slot_name = %s AND NOT active",
        (slot,),
    )


def big_text(seed: str, chunks: int = 1000) -> str:
    """SQL for an incompressible text of 32*chunks characters (an md5 chain)."""
    return f"(SELECT string_agg(md5('{seed}' || i::text), '' ORDER BY i) FROM generate_series(1, {chunks}) i)"


# --------------------------------------------------------------------------- comparing rows


def same_value(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0 (exact float bits).

    Also: the same type, Decimals of the same scale, lists and dicts element by element.
    """
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a.hex() == b.hex()
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        if a.is_nan() or b.is_nan():
            return a.is_nan() and b.is_nan()
        return a == b and str(a) == str(b)  # same value *and* same scale
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def assert_same_rows(
    src: Sequence[tuple[Any, ...]], dst: Sequence[tuple[Any, ...]], cols: Sequence[str], *, same_width: bool = False
) -> None:
    """Target rows equal source rows, in order, column by column (:func:`same_value`).

    ``same_width``: also every row has exactly ``len(cols)`` values on both sides.
    """
    assert len(dst) == len(src), f"row count differs: source {len(src)}, target {len(dst)}"
    for s, d in zip(src, dst):
        if same_width:
            assert len(s) == len(d) == len(cols)
        for name, a, b in zip(cols, s, d):
            assert same_value(a, b), f"row key {s[0]!r} column {name}: source {a!r} != target {b!r}"


Norm = Callable[[Any], Any]
"""Source value (as the source's driver loads it) → what the target column must hold."""


def same(v: Any) -> Any:
    """The value unchanged."""
    return v


class JsonValue:
    """Expected JSON column content: compared parsed (key order and spacing are not data)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and json.loads(other) == self.value

    def __repr__(self) -> str:
        return f"JSON({self.value!r})"


def as_json(v: Any) -> Any:
    """A Python value (e.g. an array) that the target stores as a JSON document."""
    return None if v is None else JsonValue(v)


def as_json_text(v: Any) -> Any:
    """A JSON document fetched as text (so the JSON document null is not None)."""
    return None if v is None else JsonValue(json.loads(v))


def assert_mapped_rows(
    src: Sequence[tuple[Any, ...]],
    dst: Sequence[tuple[Any, ...]],
    cols: Sequence[tuple[str, Norm]],
    equal: Callable[[Any, Any], bool],
    *,
    same_width: bool = False,
) -> None:
    """Target rows match source rows, in order: ``equal(norm(source value), target value)``
    for every ``(name, norm)`` of ``cols``.

    ``same_width``: also every row has exactly ``len(cols)`` values on both sides.
    """
    assert len(dst) == len(src), f"row count differs: source {len(src)}, target {len(dst)}"
    for s, d in zip(src, dst):
        if same_width:
            assert len(s) == len(d) == len(cols)
        for (name, norm), a, b in zip(cols, s, d):
            expected = norm(a)
            assert equal(expected, b), (
                f"row key {s[0]!r} column {name}: source {a!r} -> expected {expected!r}, target has {b!r}"
            )


# --------------------------------------------------------------------------- live flows


class BackgroundFlow(threading.Thread):
    """The config's first flow, streaming in this process until ``stop_event`` is set.

    An exception that ends it is kept in ``error``.
    """

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


class RowWriter(threading.Thread):
    """Inserts rows into MariaDB table ``ev (id, a, note[, c2])`` one transaction at a time
    until ``halt`` is set; after ``altered`` is set, with c2."""

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
        """Until row ``n`` is inserted (fails on a writer error or after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self.next_id <= n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"writer stuck at {self.next_id}"
            time.sleep(0.01)

    def write_around_added_column(self) -> int:
        """Start; after 60 rows add column ``c2 INT NOT NULL DEFAULT 7`` (then write c2 too);
        after 60 more rows set c2 = -1 and note 'updated' on ids 1 and 2; stop. The number
        of rows inserted."""
        self.start()
        try:
            self.wait_for(60)
            my_script(self.server, self.db, "ALTER TABLE ev ADD COLUMN c2 INT NOT NULL DEFAULT 7")
            self.altered.set()
            self.wait_for(self.next_id + 60)
            my_script(self.server, self.db, "UPDATE ev SET c2 = -1, note = 'updated' WHERE id IN (1, 2)")
        finally:
            self.halt.set()
            self.join(timeout=30)
        assert self.error is None, self.error
        return self.next_id - 1


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``pred`` every 0.2 s until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# --------------------------------------------------------------------------- shared source changes

# One transaction leaving every nullable column NULL in every table, an explicit ROLLBACK
# (none of it may reach the target) and a savepoint rolled back inside a committed
# transaction. The same SQL on MariaDB and PostgreSQL sources.
NULLS_ROLLBACK_AND_SAVEPOINT = (
    # every nullable column NULL, in every table (one transaction)
    "BEGIN",
    "INSERT INTO customers (id, last_name) VALUES (201, 'OnlyLastName')",
    "INSERT INTO orders (id, status) VALUES (301, 'only-status')",
    "INSERT INTO inventory (sku, qty) VALUES ('NULLS', 0)",
    "INSERT INTO line_items (order_id, line_no, product) VALUES (301, 1, 'only-product')",
    "COMMIT",
    # an explicit ROLLBACK: none of this may reach the target
    "BEGIN",
    "INSERT INTO customers (id, last_name) VALUES (9999, 'ROLLED BACK')",
    "UPDATE customers SET last_name = 'ROLLED BACK' WHERE id <= 10",
    "DELETE FROM orders WHERE id <= 10",
    "INSERT INTO inventory VALUES ('ROLLBACK-SKU', 1, 1, 'nowhere')",
    "ROLLBACK",
    # a savepoint rolled back inside a committed transaction
    "BEGIN",
    "INSERT INTO customers (id, last_name) VALUES (202, 'kept')",
    "SAVEPOINT s1",
    "INSERT INTO customers (id, last_name) VALUES (203, 'ROLLED BACK TO SAVEPOINT')",
    "UPDATE customers SET last_name = 'ROLLED BACK TO SAVEPOINT' WHERE id = 202",
    "ROLLBACK TO SAVEPOINT s1",
    "INSERT INTO customers (id, last_name) VALUES (204, 'after savepoint')",
    "COMMIT",
)


# --------------------------------------------------------------------------- the MariaDB source scenario
# test_mariadb_to_mariadb and test_mariadb_to_pg replicate the same source: these tables, then
# round 1 (MY_ROUND_1, then MY_ROUND_1_TYPES at time zone '+05:00'), then round 2 (MY_ROUND_2 at
# time zone '+05:00'). Each module has its own target tables and checks.

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

MY_TYPE_NAMES = [
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
MY_TYPES_QUERY = "SELECT " + ", ".join(
    "CAST(c_float AS DOUBLE)" if c == "c_float" else c for c in MY_TYPE_NAMES
) + " FROM types ORDER BY id"

# Written with the session time zone '+05:00': TIMESTAMP values are local times at +05:00.
MY_TYPE_ROWS_STRICT = [
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
    "(5" + ", NULL" * (len(MY_TYPE_NAMES) - 1) + ")",
]
# sql_mode='' (no strict mode): an invalid ENUM value becomes the error value ''.
MY_TYPE_ROW_LAX = (
    "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '-0.000000000000000000000000000001', 0.1, -2.5e-200,"
    " '1999-12-31', '1999-12-31 23:59:59.000001', '2000-01-01 04:59:59.999999', '-00:00:01.500000', 1999,"
    " 'x y', 'tab\\there', 'null', 'ab', x'0000000000', x'deadbeef00', b'0', b'0', 'no such size', '',"
    " 'null')"
)
MY_TYPE_ROWS_GENERATED = """
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

# Round 1: inserts in mixed transactions, NULLs, a rollback and a savepoint rollback.
MY_ROUND_1 = (
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
    *NULLS_ROLLBACK_AND_SAVEPOINT,
)
# Round 1, the type matrix: run with the session time zone '+05:00'.
MY_ROUND_1_TYPES = (
    "INSERT INTO types VALUES " + ", ".join(MY_TYPE_ROWS_STRICT),
    "SET SESSION sql_mode = ''",
    "INSERT INTO types VALUES " + MY_TYPE_ROW_LAX,
    "SET SESSION sql_mode = DEFAULT",
    MY_TYPE_ROWS_GENERATED,
)
# Round 2: key changes, updates, deletes, truncate, NULLs, a rollback, 100k-row transactions;
# run with the session time zone '+05:00'.
MY_ROUND_2 = (
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
    "INSERT INTO types SELECT id + 5, " + ", ".join(MY_TYPE_NAMES[1:]) + " FROM types WHERE id <= 5",
    "UPDATE types SET " + ", ".join(f"{c} = NULL" for c in MY_TYPE_NAMES[1:]) + " WHERE id = 6",
    "UPDATE types t, (SELECT * FROM types WHERE id = 2) s SET "
    + ", ".join(f"t.{c} = s.{c}" for c in MY_TYPE_NAMES[1:]) + " WHERE t.id = 10",
    "UPDATE types SET c_bit64 = b'0', c_enum = 'medium', c_set = 'a,b', c_json = '[]', c_time = '-00:00:00.000001',"
    " c_binary = x'01' WHERE id = 7",
    "INSERT INTO bulk SELECT seq, CONCAT('v', seq), seq * 3 FROM seq_1_to_100000",
    "UPDATE bulk SET val = CONCAT(val, '-updated'), n = n + 1",
    "DELETE FROM bulk WHERE id % 2 = 0",
    "UPDATE bulk SET n = NULL WHERE id = 3",
)


# --------------------------------------------------------------------------- the PostgreSQL source scenarios
# test_pg_to_pg and test_pg_to_mariadb make the same changes to the same tables (customers,
# orders, inventory, line_items, bulk, docs); only their type matrices differ.


def pg_round_1(*, third_city: str, created_at_offset: str, order_step: str) -> list[str]:
    """Round 1 without the type matrix and docs: inserts in mixed transactions, then
    :data:`NULLS_ROLLBACK_AND_SAVEPOINT`.

    The scenarios differ in the third city name, the UTC offset of ``customers.created_at``
    values and the interval between ``orders.placed_at`` values.
    """
    return [
        f"""INSERT INTO customers (id, first_name, last_name, email, city, vip, created_at)
           SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'First' || i END, 'Last' || i,
                  CASE WHEN i % 5 = 0 THEN NULL ELSE 'c' || i || '@example.com' END,
                  CASE WHEN i % 3 = 0 THEN NULL ELSE (ARRAY['Zürich', '東京', '{third_city}'])[i % 3 + 1] END,
                  CASE WHEN i % 4 = 0 THEN NULL ELSE i % 2 = 0 END,
                  CASE WHEN i % 6 = 0 THEN NULL
                       ELSE timestamptz '2024-01-01 00:00:00{created_at_offset}' + i * interval '1 hour 1.5 seconds' END
           FROM generate_series(1, 200) i""",
        "BEGIN",
        f"""INSERT INTO orders SELECT i, 1 + i % 200, (i * 3.75)::numeric(12,2),
                  (ARRAY['new', 'paid', 'shipped'])[1 + i % 3],
                  CASE WHEN i % 4 = 0 THEN NULL ELSE 'note ' || i END,
                  timestamp '2024-02-01 08:00:00' + i * interval '{order_step}'
           FROM generate_series(1, 300) i""",
        """INSERT INTO inventory SELECT 'SKU-' || lpad(i::text, 4, '0'), i * 10, i + 0.99,
                  CASE WHEN i % 2 = 0 THEN 'aisle ' || i END
           FROM generate_series(1, 50) i""",
        """INSERT INTO line_items SELECT o, l, 'product ' || o || '/' || l, CASE WHEN l = 3 THEN NULL ELSE l END
           FROM generate_series(1, 100) o, generate_series(1, 3) l WHERE l <= 1 + o % 3""",
        "COMMIT",
        *NULLS_ROLLBACK_AND_SAVEPOINT,
    ]


def pg_round_2(type_names: Sequence[str]) -> list[str]:
    """Round 2: updates, key changes, deletes, truncate, NULLs, a rollback, the type matrix
    (table ``types`` with columns ``type_names``, ``id`` first) rotated and copied, TOAST
    updates and 100k-row transactions."""
    return [
        "UPDATE customers SET id = id + 1000 WHERE id <= 50",  # primary-key change of 50 rows
        "BEGIN",
        "UPDATE customers SET email = upper(email), city = NULL WHERE id BETWEEN 51 AND 80",
        "UPDATE orders SET status = 'shipped', amount = amount * 2 WHERE id % 3 = 0",
        "DELETE FROM line_items WHERE order_id BETWEEN 10 AND 20",
        "DELETE FROM customers WHERE id BETWEEN 81 AND 100",
        "COMMIT",
        # truncate, then inserts into the truncated table (same transaction and later ones)
        "BEGIN",
        "TRUNCATE inventory",
        "INSERT INTO inventory SELECT 'SKU-' || lpad(i::text, 4, '0'), i, i * 2.5, 'after truncate'"
        " FROM generate_series(1, 5) i",
        "COMMIT",
        "INSERT INTO inventory SELECT 'NEW-' || i, i * 7, NULL, CASE WHEN i % 2 = 0 THEN 'bin ' || i END"
        " FROM generate_series(1, 15) i",
        # composite primary key: update, key change, delete
        "BEGIN",
        "UPDATE line_items SET qty = coalesce(qty, 0) + 10 WHERE order_id BETWEEN 30 AND 40",
        "UPDATE line_items SET line_no = line_no + 100 WHERE order_id = 50",
        "DELETE FROM line_items WHERE order_id = 62 AND line_no = 2",
        "INSERT INTO line_items VALUES (999, 1, 'new line', 5), (999, 2, 'second', NULL)",
        "COMMIT",
        # one transaction touching one row many times, and re-using a deleted key
        "BEGIN",
        "INSERT INTO customers (id, first_name, last_name) VALUES (500, 'Temp', 'Row')",
        "UPDATE customers SET first_name = 'Changed', vip = true WHERE id = 500",
        "UPDATE customers SET id = 501 WHERE id = 500",
        "DELETE FROM customers WHERE id = 201",
        "INSERT INTO customers VALUES (201, 'Reborn', 'Again', 'r@example.com', 'Oslo', false, '2030-01-01 00:00:00+02')",
        "INSERT INTO orders (id, customer_id, status) VALUES (777, 501, 'netted')",
        "DELETE FROM orders WHERE id = 777",
        "COMMIT",
        # set every nullable column to NULL on existing rows
        "UPDATE customers SET first_name = NULL, email = NULL, city = NULL, vip = NULL, created_at = NULL"
        " WHERE id BETWEEN 101 AND 110",
        "UPDATE orders SET customer_id = NULL, amount = NULL, note = NULL, placed_at = NULL WHERE id BETWEEN 101 AND 110",
        # another explicit ROLLBACK, including a TRUNCATE
        "BEGIN",
        "DELETE FROM customers",
        "TRUNCATE orders",
        "UPDATE inventory SET qty = -1",
        "ROLLBACK",
        # type matrix, round 2 (< 64 rows: the small-batch path): rotate the extreme rows, copy them
        "UPDATE types t SET " + ", ".join(f"{c} = s.{c}" for c in type_names[1:])
        + " FROM types s WHERE t.id <= 5 AND s.id = t.id % 5 + 1",
        "INSERT INTO types SELECT id + 5, " + ", ".join(type_names[1:]) + " FROM types WHERE id <= 5",
        # TOAST: updates that leave the big value unchanged
        "UPDATE docs SET title = 'doc one, renamed', rev = 2 WHERE id = 1",
        f"INSERT INTO docs VALUES (3, 'doc three', {big_text('three')}, 1)",
        "UPDATE docs SET title = 'doc three, renamed', rev = 2 WHERE id = 3",
        "UPDATE docs SET title = 'doc two, renamed', rev = 2 WHERE id = 2",
        # 100k rows in one transaction, all updated in one, half deleted in one
        "INSERT INTO bulk SELECT i, 'v' || i, i * 3 FROM generate_series(1, 100000) i",
        "UPDATE bulk SET val = val || '-updated', n = n + 1",
        "DELETE FROM bulk WHERE id % 2 = 0",
    ]
