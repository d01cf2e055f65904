"""``replicator verify`` on real servers: tables replicated by a real flow (``run --once``) verify
as equal; rows changed behind the replicator's back are named exactly.

Each test builds its own flow (its own databases, ``fresh_db_name``), replicates it with
``run --once`` where the data must come from the replicator, then changes the target directly
and compares the *whole* report (or its JSON) with what it must say:

* PostgreSQL → MariaDB and MariaDB → PostgreSQL type matrices (every type pair of the
  replicator's mapping, extremes, NULLs, JSON with other key order/spacing/number spelling),
  then a deleted, an added and changed target rows — including changes of one float ulp, one
  microsecond, and a JSON rewrite that is *not* a change;
* a renamed column (and a target-only column that is ignored), and a source column the target
  lacks (a table error);
* PostgreSQL → PostgreSQL with text keys whose collation order differs on the two sides;
* a multi-chunk table with differences in two chunks, the per-kind cap on listed keys, and the
  chunk size given on the command line.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.config import parse_config
from replicator.verify import RowDifference, TableReport, format_report, verify_flow

from dbhelpers import (
    MY_DDL,
    MY_ROUND_1_TYPES,
    cli,
    drop_slot,
    my_fetch,
    my_script,
    pg_fetch,
    pg_script,
    run_once,
    write_config,
)


def verify(cfg: Path, **kwargs: Any) -> list[TableReport]:
    config = parse_config(cfg.read_text())
    return verify_flow(config, config.flows[0], **kwargs)


def verify_json(cfg: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(cfg, "verify", "--json", *args)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def table_json(
    flow: str, source: str, target: str, rows: tuple[int, int], chunks: tuple[int, int], *,
    missing: list[dict[str, Any]] | None = None, extra: list[dict[str, Any]] | None = None,
    different: list[tuple[dict[str, Any], list[str]]] | None = None,
    totals: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """The JSON verify must print for one table (``seconds`` left out)."""
    missing, extra, different = missing or [], extra or [], different or []
    totals = totals or (len(missing), len(extra), len(different))
    return {
        "flow": flow, "source": source, "target": target,
        "equal": not (missing or extra or different) and chunks[1] == 0, "error": None,
        "source_rows": rows[0], "target_rows": rows[1], "chunks": chunks[0], "chunks_differing": chunks[1],
        "missing": {"total": totals[0], "keys": missing},
        "extra": {"total": totals[1], "keys": extra},
        "different": {"total": totals[2], "rows": [{"key": k, "columns": c} for k, c in different]},
        "note": None,
    }


def without_seconds(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "tables": [{k: v for k, v in t.items() if k != "seconds"} for t in doc["tables"]]}


def float_after(x: float) -> float:
    return math.nextafter(x, math.inf)


def my_db(mariadb: Any, name: str) -> None:
    mariadb.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


# --------------------------------------------------------------------------- PostgreSQL → MariaDB

PG_TYPES_DDL = """
CREATE TABLE types (
    id integer PRIMARY KEY,
    c_smallint smallint, c_integer integer, c_bigint bigint,
    c_numeric numeric(50,10), c_money numeric(12,2),
    c_real real, c_real_dbl real, c_double double precision, c_double_flt double precision,
    c_text text, c_varchar varchar(20), c_char char(5), c_char_v char(5),
    c_bool boolean, c_date date, c_time time, c_timestamp timestamp,
    c_timestamptz timestamptz, c_tstz_ts timestamptz,
    c_json json, c_jsonb jsonb, c_bytea bytea, c_uuid uuid,
    c_int_arr integer[], c_text_arr text[]
)
"""
# real → DOUBLE (the shortest text as a double), double → FLOAT (rounded to float32),
# char(5) → VARCHAR(5) (the padding is kept), and a target-only column verify ignores.
MY_TYPES_DDL = (
    "CREATE TABLE types (id INT PRIMARY KEY,"
    " c_smallint SMALLINT, c_integer INT, c_bigint BIGINT,"
    " c_numeric DECIMAL(50,10), c_money DECIMAL(12,2),"
    " c_real FLOAT, c_real_dbl DOUBLE, c_double DOUBLE, c_double_flt FLOAT,"
    " c_text TEXT, c_varchar VARCHAR(20), c_char CHAR(5), c_char_v VARCHAR(5),"
    " c_bool BOOL, c_date DATE, c_time TIME(6), c_timestamp DATETIME(6),"
    " c_timestamptz DATETIME(6), c_tstz_ts TIMESTAMP(6) NULL DEFAULT NULL,"
    " c_json JSON, c_jsonb JSON, c_bytea LONGBLOB, c_uuid CHAR(36),"
    " c_int_arr JSON, c_text_arr JSON, only_on_target INT DEFAULT 7)"
)
PG_TYPE_ROWS = [
    "(1, -32768, -2147483648, -9223372036854775808,"
    " '-1234567890123456789012345678901234567890.0123456789', '-9999999999.99',"
    " '-3.4028235e38', '0.1', '-1.7976931348623157e308', '0.1',"
    " 'emoji 😀🎉 ünïcödé \"q\", ''a'', back\\slash', '', 'ab', 'ab',"
    " true, '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '2024-03-10 12:34:56.123456+05:30',"
    " '1970-01-01 00:00:01+00',"
    " '{\"a\": [1, 2, {\"b\": null}], \"ü\": \"✓\", \"n\": 1.50}',"
    " '{\"nested\": {\"deep\": [1, \"two\", 3.5, true, null]}, \"big\": 12345678901234567890}',"
    " '\\x00010203ff0000', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
    " '{1,NULL,3}', '{\"a,b\",\"\",NULL,\"NULL\"}')",
    "(2, 32767, 2147483647, 9223372036854775807,"
    " '9999999999999999999999999999999999999999.9999999999', '9999999999.99',"
    " '3.4028235e38', '3.3', '1.7976931348623157e308', '-2.5',"
    " E'line1\\nline2\\r\\n\\ttab', 'xxxxxxxxxxxxxxxxxxxx', 'abcde', 'abc',"
    " false, '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999',"
    " '2024-03-10 12:34:56.654321-08:00', '2038-01-19 03:14:07.999999+00',"
    " '[]', '[1, \"a\", null, {\"k\": []}]', '\\x', '00000000-0000-0000-0000-000000000000', '{}', '{}')",
    "(3, 0, 0, 0, '0.0000000001', '0.01', '1.17549435e-38', '1e-7', '4.9e-324', '1e-20',"
    " ' leading and trailing  ', 'ünï', 'a', ' a', true, '2000-02-29', '12:00:00.000001',"
    " '2000-02-29 23:59:59.999999', '2000-02-29 23:59:59.999999+14:00', '2000-02-29 23:59:59.999999+14:00',"
    " 'null', 'null', '\\x00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{NULL}', '{NULL,\"\"}')",
    "(4, -1, 1, -1, '-0.0000000001', '-0.01', '0.1', '-0.0', '-0.0', '1e10', 'tab\there', 'tail  ', 'x y', 'x  ',"
    " false, '1999-12-31', '23:59:58.5', '1999-12-31 23:59:59', '1999-12-31 23:59:59.5-00:30',"
    " '1999-12-31 23:59:59.5-00:30', '\"just a string\"', '\"ü 😀\"', '\\xdeadbeef00',"
    " '123e4567-e89b-12d3-a456-426614174000', '{-2147483648,2147483647}', '{\"😀\",\"NULL\"}')",
    "(5" + ", NULL" * 25 + ")",
]
PG_TYPE_ROWS_GENERATED = """
INSERT INTO types
SELECT 100 + i, (i * 37 % 65535) - 32767, i * 104729 - 2000000, i::bigint * 9007199254740993,
       round((i / 7.0)::numeric, 10), (i * 3.75)::numeric(12,2),
       (i / 3.0)::real, (i / 9.0)::real, i * pi() * 10 ^ ((i % 40) - 20), i / 7.0,
       repeat('ü', i % 5) || i || '😀', left(md5(i::text), i % 20), left(md5(i::text), 1 + i % 5),
       left(md5(i::text), i % 4),
       i % 2 = 0, date '2020-01-01' + i, time '00:00:00' + i * interval '17 min 3.000007 s',
       timestamp '2020-01-01' + i * interval '1 day 1.000123 s',
       timestamptz '2020-01-01 00:00:00+00' + i * interval '36 hours 0.5 s',
       timestamptz '2021-06-01 00:00:00+03' + i * interval '5 hours 0.25 s',
       json_build_object('i', i, 'list', json_build_array(i, 'x', NULL), 'f', i / 8.0),
       jsonb_build_object('i', i, 'nested', jsonb_build_object('ü', i::text)),
       decode(md5(i::text) || '0000', 'hex'), md5(i::text)::uuid,
       ARRAY[i, NULL, -i], ARRAY['t' || i, NULL, '']
FROM generate_series(0, 79) i
"""


@pytest.fixture
def pg_to_mariadb(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    pg_source.create_database(db)
    my_db(mariadb, db)
    pg_script(pg_source, db, PG_TYPES_DDL)
    my_script(mariadb, db, MY_TYPES_DDL)
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), mariadb.url(db), ["types"])
    run_once(cfg)  # the slot
    pg_script(pg_source, db, "INSERT INTO types VALUES " + ", ".join(PG_TYPE_ROWS), PG_TYPE_ROWS_GENERATED)
    run_once(cfg)
    yield cfg, db, flow
    drop_slot(pg_source, "replicator_" + flow)


def test_pg_to_mariadb_type_matrix_verifies_equal_then_names_each_changed_key(
    mariadb: Any, pg_to_mariadb: tuple[Path, str, str]
) -> None:
    cfg, db, flow = pg_to_mariadb
    assert my_fetch(mariadb, db, "SELECT count(*) FROM types") == [(85,)]

    (report,) = verify(cfg)
    assert report.equal, format_report([report])
    assert (report.source_rows, report.target_rows, report.chunks, report.chunks_differing) == (85, 85, 1, 0)
    proc = cli(cfg, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"flow {flow}\n  public.types -> {db}.types: equal (85 rows, 1 chunk" in proc.stdout
    assert proc.stdout.rstrip().endswith("1 table equal.")

    # behind the replicator's back
    c_double_101 = my_fetch(mariadb, db, "SELECT c_double FROM types WHERE id = 101")[0][0]
    my_script(
        mariadb, db,
        "DELETE FROM types WHERE id = 3",
        "INSERT INTO types (id, c_text) VALUES (999, 'only on the target')",
        "UPDATE types SET c_text = 'tampered' WHERE id = 2",
        f"UPDATE types SET c_double = {float_after(c_double_101)!r} WHERE id = 101",  # one ulp
        "UPDATE types SET c_timestamptz = c_timestamptz + INTERVAL 1 MICROSECOND WHERE id = 102",
        "UPDATE types SET c_bool = 2, c_char_v = TRIM(c_char_v) WHERE id = 103",
        "UPDATE types SET only_on_target = 8",  # not compared
        # the same JSON documents, other key order, spacing and number spelling: not a change
        "UPDATE types SET c_jsonb = '{ \"big\" : 1.2345678901234567890E19,"
        " \"nested\": {\"deep\": [1.0, \"two\", 35e-1, true, null]}}' WHERE id = 1",
        "UPDATE types SET c_json = '{\"list\": [4, \"x\", null], \"f\": 5e-1, \"i\": 4}' WHERE id = 104",
    )
    code, doc = verify_json(cfg)
    assert code == 1
    assert without_seconds(doc) == {
        "equal": False,
        "tables": [table_json(
            flow, "public.types", f"{db}.types", (85, 85), (1, 1),
            missing=[{"id": 3}], extra=[{"id": 999}],
            different=[({"id": 2}, ["c_text"]), ({"id": 101}, ["c_double"]),
                       ({"id": 102}, ["c_timestamptz"]), ({"id": 103}, ["c_char_v", "c_bool"])],
        )],
    }


# --------------------------------------------------------------------------- MariaDB → PostgreSQL

PG_FROM_MY_DDL = """
CREATE TABLE types (id integer PRIMARY KEY,
    c_tiny smallint, c_utiny smallint, c_small smallint, c_usmall integer,
    c_medium integer, c_umedium integer, c_int integer, c_uint bigint,
    c_big bigint, c_ubig numeric(20,0),
    c_dec numeric(65,30), c_float real, c_double double precision,
    c_date date, c_datetime timestamp(6), c_ts timestamptz(6), c_time interval second(6), c_year smallint,
    c_char varchar(10), c_varchar varchar(100), c_text text,
    c_binary bytea, c_varbinary bytea, c_blob bytea,
    c_bit1 bigint, c_bit64 numeric(20,0),
    c_enum text, c_set text, c_json jsonb)
"""


@pytest.fixture
def mariadb_to_pg(mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> tuple[Path, str, str]:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    my_db(mariadb, db)
    pg_target.create_database(db)
    my_script(mariadb, db, MY_DDL[-1])  # the type matrix of test_mariadb_to_pg
    pg_script(pg_target, db, PG_FROM_MY_DDL)
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(db), pg_target.url(db), ["types"])
    run_once(cfg)  # the start position
    my_script(mariadb, db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    run_once(cfg)
    return cfg, db, flow


def test_mariadb_to_pg_type_matrix_verifies_equal_then_names_each_changed_key(
    pg_target: Any, mariadb_to_pg: tuple[Path, str, str]
) -> None:
    cfg, db, flow = mariadb_to_pg
    assert pg_fetch(pg_target, db, "SELECT count(*) FROM types") == [(85,)]
    (report,) = verify(cfg)
    assert report.equal, format_report([report])
    assert cli(cfg, "verify").returncode == 0

    real_101 = pg_fetch(pg_target, db, "SELECT c_float FROM types WHERE id = 101")[0][0]
    next_f32 = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", struct.pack("<f", real_101))[0] + 1))[0]
    pg_script(
        pg_target, db,
        "DELETE FROM types WHERE id = 4",
        "INSERT INTO types (id, c_text) VALUES (999, 'only on the target')",
        "UPDATE types SET c_time = c_time + interval '1 microsecond' WHERE id = 1",
        f"UPDATE types SET c_float = '{next_f32!r}' WHERE id = 101",  # one float32 ulp
        "UPDATE types SET c_bit64 = c_bit64 + 1, c_enum = 'tampered' WHERE id = 102",
        "UPDATE types SET c_binary = c_binary || '\\x00'::bytea WHERE id = 103",  # one more zero byte
        # the same documents, other key order and spacing (jsonb would keep them anyway)
        "UPDATE types SET c_json = '{\"n\": -1e-6, \"emoji\": \"😀\","
        " \"nested\": {\"deep\": [1, \"two\", 3.50, true, null]}}'"
        " WHERE id = 2",
    )
    code, doc = verify_json(cfg)
    assert code == 1
    assert without_seconds(doc) == {
        "equal": False,
        "tables": [table_json(
            flow, f"{db}.types", "public.types", (85, 85), (1, 1),
            missing=[{"id": 4}], extra=[{"id": 999}],
            different=[({"id": 1}, ["c_time"]), ({"id": 101}, ["c_float"]),
                       ({"id": 102}, ["c_bit64", "c_enum"]), ({"id": 103}, ["c_binary"])],
        )],
    }


def test_mariadb_to_mariadb_type_matrix_verifies_equal_then_names_a_changed_float(
    mariadb: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    src_db, dst_db, flow = fresh_db_name, fresh_db_name[:50] + "_dst", "v" + fresh_db_name[-8:]
    my_db(mariadb, src_db)
    my_db(mariadb, dst_db)
    my_script(mariadb, src_db, MY_DDL[-1])
    my_script(mariadb, dst_db, MY_DDL[-1])
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(src_db), mariadb.url(dst_db), ["types"])
    run_once(cfg)
    my_script(mariadb, src_db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    run_once(cfg)
    (report,) = verify(cfg)
    assert report.equal and report.source_rows == 85, format_report([report])

    my_script(
        mariadb, dst_db,
        "UPDATE types SET c_double = c_double * (1 + 2.3e-16) WHERE id = 105",  # one ulp or two
        "UPDATE types SET c_json = '{\"n\": -1.0e-6, \"emoji\": \"\\\\ud83d\\\\ude00\",'"
        " ' \"nested\": {\"deep\": [1, \"two\", 3.5, true, null]}}' WHERE id = 2",  # the same document
    )
    assert my_fetch(mariadb, dst_db, "SELECT c_double = 5 * PI() * POW(10, -15) FROM types WHERE id = 105") == [(0,)]
    (report,) = verify(cfg)
    assert (report.missing_total, report.extra_total, report.different) == (
        0, 0, [RowDifference({"id": 105}, ("c_double",))]
    ), format_report([report])


def test_pg_to_pg_types_verify_equal_then_names_each_changed_key(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    ddl = """
    CREATE TABLE types (id integer PRIMARY KEY, c_numeric numeric, c_real real, c_real_dbl real,
        c_double double precision, c_text text, c_char char(5), c_bool boolean, c_date date, c_time time,
        c_ts timestamp, c_tstz timestamptz, c_interval interval, c_json json, c_jsonb jsonb, c_bytea bytea,
        c_uuid uuid, c_int_arr integer[], c_text_arr text[], c_inet inet)
    """
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_source, db, ddl)
    pg_script(pg_target, db, ddl.replace("c_real_dbl real", "c_real_dbl double precision"))
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), pg_target.url(db), ["types"])
    try:
        run_once(cfg)
        pg_script(
            pg_source, db,
            "INSERT INTO types VALUES"
            " (1, 'NaN', 'NaN', '0.1', 'Infinity', 'ü 😀', 'ab', true, '0001-01-01', '00:00:00', '0001-01-01 00:00:00',"
            "  '2024-03-10 12:34:56.123456+05:30', '1 year 2 mons 3 days 04:05:06.789', '{\"b\": 1, \"a\": [1.50]}',"
            "  '{\"b\": 1, \"a\": [1.50]}', '\\x00ff00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{1,2},{3,NULL}}',"
            "  '{\"a,b\",NULL,\"\"}', '192.168.0.1/24'),"
            " (2, '-1.50', '-3.4028235e38', '3.4028235e38', '-Infinity', '', 'abcde', false, '9999-12-31',"
            "  '23:59:59.999999', '9999-12-31 23:59:59.999999', '1999-12-31 23:59:59.5-00:30', '-1 mons +1 day',"
            "  'null', 'null', '\\x', '00000000-0000-0000-0000-000000000000', '{}', '{}', '::1'),"
            " (3, '0', '1.17549435e-38', '1e-7', '-0', ' x ', 'a', NULL, NULL, NULL, NULL, NULL, '0', '[]', '[]',"
            "  '\\x00', NULL, '{NULL}', '{NULL}', NULL),"
            " (4" + ", NULL" * 19 + ")",
            "INSERT INTO types SELECT 100 + i, (i * 12.34567)::numeric * 10::numeric ^ (i % 30), (i / 3.0)::real,"
            " (i / 9.0)::real, i * pi() * 10 ^ ((i % 40) - 20), repeat('ü', i % 5) || i, left(md5(i::text), 5),"
            " i % 2 = 0, date '2020-01-01' + i, time '00:00:00' + i * interval '17 min 3.000007 s',"
            " timestamp '2020-01-01' + i * interval '1 day 1.000123 s',"
            " timestamptz '2020-01-01 00:00:00+00' + i * interval '36 hours 0.5 s',"
            " make_interval(years => i % 3, months => i % 13, days => i, secs => i / 8.0),"
            " json_build_object('i', i, 'f', i / 8.0),"
            " jsonb_build_object('i', i, 'nested', jsonb_build_object('ü', i::text)),"
            " decode(md5(i::text), 'hex'), md5(i::text)::uuid, ARRAY[i, NULL, -i], ARRAY['t' || i, NULL, ''],"
            " ('10.0.0.' || i)::inet FROM generate_series(0, 79) i",
        )
        run_once(cfg)
        (report,) = verify(cfg)
        assert report.equal and report.source_rows == 84, format_report([report])

        real_dbl = pg_fetch(pg_target, db, "SELECT c_real_dbl FROM types WHERE id = 101")[0][0]
        pg_script(
            pg_target, db,
            "DELETE FROM types WHERE id = 3",
            "INSERT INTO types (id) VALUES (999)",
            "UPDATE types SET c_interval = '1 year 2 mons 3 days 04:05:06.788' WHERE id = 1",
            "UPDATE types SET c_double = '1.7976931348623157e308' WHERE id = 2",
            "UPDATE types SET c_interval = c_interval - interval '1 month' + interval '30 days' WHERE id = 105",
            "UPDATE types SET c_text_arr = ARRAY['t100', NULL, 'x'] WHERE id = 100",
            f"UPDATE types SET c_real_dbl = {float_after(real_dbl)!r} WHERE id = 101",
            # the same JSON: other key order, spacing and number spelling
            "UPDATE types SET c_json = '{ \"a\" : [15e-1], \"b\" : 1.0 }' WHERE id = 1",
        )
        (report,) = verify(cfg)
        assert (report.missing, report.extra, report.different) == (
            [{"id": 3}], [{"id": 999}],
            [RowDifference({"id": 1}, ("c_interval",)), RowDifference({"id": 2}, ("c_double",)),
             RowDifference({"id": 100}, ("c_text_arr",)), RowDifference({"id": 101}, ("c_real_dbl",)),
             RowDifference({"id": 105}, ("c_interval",))],
        ), format_report([report])
    finally:
        drop_slot(pg_source, "replicator_" + flow)


def test_zero_dates_written_as_null_verify_equal(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    my_db(mariadb, db)
    pg_target.create_database(db)
    my_script(mariadb, db, "CREATE TABLE events (id INT PRIMARY KEY, d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL)")
    pg_script(pg_target, db, "CREATE TABLE events (id integer PRIMARY KEY, d date, dt timestamp(6), ts timestamptz(6))")
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(db), pg_target.url(db), ["events"])
    cfg.write_text(cfg.read_text().replace("    tables:\n", "    zero_dates: null\n    tables:\n"))
    run_once(cfg)
    my_script(
        mariadb, db,
        "SET SESSION sql_mode = ''",
        "INSERT INTO events VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'),"
        " (2, '2024-00-10', '2024-02-00 10:00:00', NULL), (3, '2024-02-29', '2024-02-29 10:00:00', '2024-02-29 10:00:00')",
    )
    run_once(cfg)
    assert pg_fetch(pg_target, db, "SELECT count(*) FROM events WHERE d IS NULL AND dt IS NULL AND ts IS NULL") == [(2,)]
    (report,) = verify(cfg)
    assert report.equal, format_report([report])
    pg_script(pg_target, db, "UPDATE events SET d = '2024-01-01' WHERE id = 1")
    (report,) = verify(cfg)
    assert report.different == [RowDifference({"id": 1}, ("d",))], format_report([report])


# --------------------------------------------------------------------------- renames, missing columns


def test_renamed_column_is_compared_with_its_target_column_and_a_missing_one_is_an_error(
    pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    pg_source.create_database(db)
    my_db(mariadb, db)
    pg_script(pg_source, db, "CREATE TABLE customers (id integer PRIMARY KEY, first_name text, last_name text NOT NULL)")
    my_script(
        mariadb, db,
        "CREATE TABLE contacts (id INT PRIMARY KEY, firstName TEXT, last_name TEXT NOT NULL, note TEXT)",
        "CREATE TABLE narrow (id INT PRIMARY KEY, last_name TEXT)",
    )
    tables = "      - source: customers\n        target: contacts\n        columns: {first_name: firstName}\n"
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), mariadb.url(db), tables)
    try:
        run_once(cfg)
        pg_script(pg_source, db, "INSERT INTO customers SELECT i, 'First' || i, 'Last' || i FROM generate_series(1, 50) i")
        run_once(cfg)
        my_script(mariadb, db, "UPDATE contacts SET note = 'not compared'")
        (report,) = verify(cfg)
        assert report.equal and report.source_rows == 50, format_report([report])

        my_script(mariadb, db, "UPDATE contacts SET firstName = 'Changed' WHERE id = 7")
        (report,) = verify(cfg)
        assert (report.missing_total, report.extra_total, report.different) == (
            0, 0, [RowDifference({"id": 7}, ("first_name",))]
        )
        proc = cli(cfg, "verify")
        assert proc.returncode == 1
        assert "      id=7: first_name (target firstName)\n" in proc.stdout, proc.stdout
        for args in (("--table", "customers"), ("--table", f"{db}.contacts", "--flow", flow)):
            code, doc = verify_json(cfg, *args)
            assert code == 1 and [t["target"] for t in doc["tables"]] == [f"{db}.contacts"], args

        # the same source table against a target lacking first_name: a table error, exit 1
        narrow = write_config(
            tmp_path / "narrow.yaml", flow, pg_source.url(db), mariadb.url(db),
            "      - source: customers\n        target: narrow\n",
        )
        (report,) = verify(narrow)
        assert report.error is not None and "no column 'first_name'" in report.error, report.error
        assert not report.equal
        code, doc = verify_json(narrow)
        assert code == 1 and doc["tables"][0]["error"] == report.error and doc["equal"] is False
    finally:
        drop_slot(pg_source, "replicator_" + flow)


# --------------------------------------------------------------------------- collations


def test_pg_to_pg_text_keys_sorted_differently_on_each_side(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_source, db, 'CREATE TABLE words (w text COLLATE "C" PRIMARY KEY, n integer)')
    pg_script(pg_target, db, 'CREATE TABLE words (w text COLLATE "en-x-icu" PRIMARY KEY, n integer)')
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), pg_target.url(db), ["words"])
    words = ["a", "B", "_x", "é", "Z", "ab", "a b", "a ", "Ä", "😀", "zz", "e"]
    try:
        run_once(cfg)
        pg_script(pg_source, db, "INSERT INTO words VALUES " + ", ".join(f"('{w}', {i})" for i, w in enumerate(words)))
        run_once(cfg)
        # the two sides really order these keys differently
        c_order = [r[0] for r in pg_fetch(pg_source, db, "SELECT w FROM words ORDER BY w")]
        icu_order = [r[0] for r in pg_fetch(pg_target, db, "SELECT w FROM words ORDER BY w")]
        assert c_order != icu_order and sorted(c_order) == sorted(icu_order)
        for chunk_size in (10_000, 3):
            (report,) = verify(cfg, chunk_size=chunk_size)
            assert report.equal, format_report([report])

        pg_script(
            pg_target, db,
            "DELETE FROM words WHERE w = 'é'",
            "INSERT INTO words VALUES ('b', 100), ('A', 101)",
            "UPDATE words SET n = -1 WHERE w IN ('B', 'a ')",
        )
        for chunk_size in (10_000, 3):
            (report,) = verify(cfg, chunk_size=chunk_size)
            assert (report.missing, report.extra, report.different) == (
                [{"w": "é"}], [{"w": "A"}, {"w": "b"}],
                [RowDifference({"w": "B"}, ("n",)), RowDifference({"w": "a "}, ("n",))],
            ), format_report([report])
    finally:
        drop_slot(pg_source, "replicator_" + flow)


# --------------------------------------------------------------------------- chunks


def bucket_of(key_text: str, buckets: int) -> int:
    """The chunk of a row whose canonical key text is ``key_text`` (replicator/verify/)."""
    return int(hashlib.md5(key_text.encode()).hexdigest()[:8], 16) % buckets


def test_multi_chunk_table_with_differences_in_two_chunks(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db, flow = fresh_db_name, "v" + fresh_db_name[-8:]
    my_db(mariadb, db)
    pg_target.create_database(db)
    my_script(mariadb, db, "CREATE TABLE events (id BIGINT UNSIGNED PRIMARY KEY, label VARCHAR(40), at DATETIME(6))")
    pg_script(pg_target, db, "CREATE TABLE events (id numeric(20,0) PRIMARY KEY, label varchar(40), at timestamp(6))")
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(db), pg_target.url(db), ["events"])
    run_once(cfg)
    my_script(
        mariadb, db,
        "INSERT INTO events SELECT seq, CONCAT('event ', seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND"
        " FROM seq_1_to_3000",
        "INSERT INTO events VALUES (18446744073709551615, 'max', NULL)",
    )
    run_once(cfg)
    chunks = 31  # 3001 rows, 100 per chunk
    (report,) = verify(cfg, chunk_size=100)
    assert report.equal and (report.chunks, report.source_rows) == (chunks, 3001), format_report([report])

    changed = 1234
    missing = next(i for i in range(1, 3001) if bucket_of(str(i), chunks) != bucket_of(str(changed), chunks))
    pg_script(
        pg_target, db,
        f"DELETE FROM events WHERE id = {missing}",
        f"UPDATE events SET label = 'changed' WHERE id = {changed}",
    )
    code, doc = verify_json(cfg, "--chunk-size", "100")
    assert code == 1
    assert without_seconds(doc) == {
        "equal": False,
        "tables": [table_json(
            flow, f"{db}.events", "public.events", (3001, 3000), (chunks, 2),
            missing=[{"id": missing}], different=[({"id": changed}, ["label"])],
        )],
    }

    # many differences: the smallest 20 keys of each kind are listed, the totals are exact
    pg_script(
        pg_target, db,
        "DELETE FROM events WHERE id BETWEEN 2001 AND 2030",
        "INSERT INTO events SELECT i, 'extra', NULL FROM generate_series(5001, 5025) i",
        "UPDATE events SET at = at + interval '1 microsecond' WHERE id BETWEEN 101 AND 120",
    )
    (report,) = verify(cfg, chunk_size=100, max_keys=5)
    assert (report.missing_total, report.extra_total, report.different_total) == (31, 25, 21)
    assert report.missing == [{"id": i} for i in sorted([missing, *range(2001, 2005)])]
    assert report.extra == [{"id": i} for i in range(5001, 5006)]
    assert report.different == [RowDifference({"id": i}, ("at",)) for i in range(101, 106)]
    text = format_report([report])
    assert "    missing on target: 31, first 5 shown\n" in text and "    extra on target: 25, first 5 shown\n" in text


def test_unknown_flow_or_table_is_a_usage_error(
    pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "replicator.yaml", "vflow", pg_source.url(fresh_db_name), mariadb.url(fresh_db_name), ["types"]
    )
    for args in (("--flow", "nope"), ("--table", "nope")):
        proc = cli(cfg, "verify", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.startswith("replicator: ") and "nope" in proc.stderr and "Traceback" not in proc.stderr
