"""Snapshots (issue 4), end to end on real servers, through the real ``replicator`` command.

* A copied row equals a streamed row, for every supported type, both directions: two flows
  read the same source table into two target databases whose tables ``replicator snapshot``
  creates; flow A gets the rows by a snapshot, flow B (``snapshot: never``, started first) by
  streaming; the two targets must hold the very same values, and both the source's.
* A large PostgreSQL table (split into parallel key ranges) and a MariaDB table are copied
  while a writer keeps inserting, updating and deleting rows all over the key range; after
  ``run --once`` the target equals the source, and a target-side log of every row the
  replicator wrote (``ENABLE ALWAYS`` triggers: the replicator's sessions run with
  ``session_replication_role = replica``) shows each row's ``version`` only ever increasing:
  no change applied twice, none applied late.
* ``snapshot --table b`` while ``run`` streams the flow: the running process does the copy,
  the other table keeps streaming, rows changed behind the replicator's back are repaired,
  changes made during the refresh are kept. A statement trigger on the target that waits for
  an advisory lock the test holds keeps the copy "in progress" exactly as long as the test needs.
* ``run`` copies a never-snapshotted flow's existing rows (``snapshot: initial``) or not
  (``snapshot: never``), and copies a table that joins a streaming flow; a second ``run`` of a
  running flow is refused; zero dates; progress lines; target tables linked by a foreign key;
  target columns of another character set.

Tests whose assertion message starts with "BUG:" show a defect of the replicator (they fail
until it is fixed); the message says where and why. Crashes during snapshots are in
``test_snapshot_crash``.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.config import parse_config
from replicator.pipeline import FlowRunner
from replicator.schema import create_missing

from dbhelpers import (
    MY_DDL,
    MY_ROUND_1_TYPES,
    MY_ROUND_2,
    MY_TYPES_QUERY,
    MY_TYPE_NAMES,
    assert_same_rows,
    cli,
    my_fetch,
    my_script,
    pg_fetch,
    pg_script,
)
from processes import (
    Command,
    MariaVersionWriter,
    PgVersionWriter,
    SnapshotWatch,
    SnapState,
    assert_clean_log,
    assert_each_change_applied_once,
    assert_same_table,
    drop_slot_when_released,
    flow_yaml,
    version_log,
    version_log_sql,
    wait_for,
    write_flows,
)
from test_mariadb_to_pg import PG_TYPES_QUERY as MY2PG_TARGET_QUERY
from test_mariadb_to_pg import TYPE_COLS as MY2PG_COLS
from test_mariadb_to_pg import assert_rows as assert_my2pg_rows
from test_pg_to_mariadb import MY_TYPES_QUERY as PG2MY_TARGET_QUERY
from test_pg_to_mariadb import PG_DDL as PG2MY_DDL
from test_pg_to_mariadb import PG_TYPES_QUERY as PG2MY_SOURCE_QUERY
from test_pg_to_mariadb import TYPE_COLS as PG2MY_COLS
from test_pg_to_mariadb import TYPE_NAMES as PG2MY_NAMES
from test_pg_to_mariadb import TYPE_ROWS as PG_TYPE_ROWS
from test_pg_to_mariadb import TYPE_ROWS_GENERATED as PG_TYPE_ROWS_GENERATED
from test_pg_to_mariadb import assert_rows as assert_pg2my_rows
from test_pg_to_pg import COMMON_DDL as PG2PG_DDL
from test_pg_to_pg import TYPE_COLS as PG2PG_NAMES
from test_pg_to_pg import TYPE_ROWS as PG2PG_TYPE_ROWS
from test_pg_to_pg import TYPE_ROWS_GENERATED as PG2PG_TYPE_ROWS_GENERATED

PG_TYPES_DDL = next(s for s in PG2MY_DDL.split(";") if "CREATE TABLE types" in s)
MY_TYPES_DDL = next(s for s in MY_DDL if s.startswith("CREATE TABLE types"))
MY_ROUND_2_TYPES = [s for s in MY_ROUND_2 if "types" in s]


def round_2_types(names: list[str]) -> list[str]:
    """The type matrix, changed after the copy: rows rotated, copied, some deleted."""
    return [
        "UPDATE types t SET " + ", ".join(f"{c} = s.{c}" for c in names[1:])
        + " FROM types s WHERE t.id <= 5 AND s.id = t.id % 5 + 1",
        "INSERT INTO types SELECT id + 5, " + ", ".join(names[1:]) + " FROM types WHERE id <= 5",
        "DELETE FROM types WHERE id BETWEEN 150 AND 159",
    ]


PG_ROUND_2_TYPES = round_2_types(PG2MY_NAMES)
PG2PG_TYPES_DDL = next(s for s in PG2PG_DDL.split(";") if "CREATE TABLE types" in s)
PG2PG_VALUES_QUERY = f"SELECT {', '.join(PG2PG_NAMES)} FROM types ORDER BY id"
# what Python values cannot show: JSON null vs SQL NULL, interval months, the text of each value
PG2PG_TEXT_QUERY = (
    "SELECT id, c_json IS NULL, json_typeof(c_json), c_json::text, c_jsonb IS NULL,"
    " jsonb_typeof(c_jsonb), c_jsonb::text, c_interval::text, c_timestamptz::text,"
    " c_numeric::text, c_numeric_ps::text, c_real::text, c_double::text, c_char::text"
    " FROM types ORDER BY id"
)
PG2PG_TEXT_COLS = ["id", "json is null", "json_typeof", "json text", "jsonb is null", "jsonb_typeof", "jsonb text",
                   "interval text", "timestamptz text", "numeric text", "numeric(50,10) text", "real text",
                   "double text", "char text"]
MY_NO_TIME_COLUMNS = [c for c in MY_TYPE_NAMES if c != "c_time"]
MY_NO_TIME_QUERY = MY_TYPES_QUERY.replace(", c_time", "").replace("FROM types", "FROM types_text")
MY2PG_NO_TIME_QUERY = MY2PG_TARGET_QUERY.replace(", c_time", "").replace("FROM types", "FROM types_text")
MY2PG_NO_TIME_COLS = [(c, n) for c, n in MY2PG_COLS if c != "c_time"]
LOG_ERRORS = ("Traceback", "level='error'", "flow crashed", "internal error")
SUMMARY = re.compile(
    r"^(?P<flow>\S+): (?P<table>\S+): (?P<rows>\d+) rows copied in (?P<s>[\d.]+) s \((?P<rate>[\d,]+) rows/s\);"
    r" streaming takes over after (?P<pos>\S+)$",
    re.MULTILINE,
)
VERSION_TABLE_PG = "CREATE TABLE {t} (id bigint PRIMARY KEY, version integer NOT NULL DEFAULT 0, v text NOT NULL)"


def slot_of(flow: str) -> str:
    return "replicator_" + flow.lower().replace("-", "_")


class Cleanup:
    """Background replicator commands and PostgreSQL slots of one test: when the test ends the
    commands are killed, then the slots dropped."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.commands: list[Command] = []
        self.slots: list[tuple[Any, str]] = []

    def start(self, cfg: Path, name: str, *args: str) -> Command:
        cmd = Command(cfg, self.tmp_path / f"{name}.log", *args)
        self.commands.append(cmd)
        return cmd

    def flow(self, name: str, pg_source: Any) -> str:
        """A flow reading ``pg_source``: its slot is dropped at the end."""
        self.slots.append((pg_source, slot_of(name)))
        return name

    def close(self) -> None:
        for cmd in self.commands:
            cmd.kill()
        for server, slot in self.slots:
            drop_slot_when_released(server, slot)


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[Cleanup]:
    c = Cleanup(tmp_path)
    try:
        yield c
    finally:
        c.close()


def ok(proc: Any, what: str) -> str:
    """The command succeeded; its stdout."""
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert_clean_log(proc.stdout + proc.stderr, what, LOG_ERRORS)
    return str(proc.stdout)


def run_once(cfg: Path, *flows: str) -> None:
    """``run --once`` of ``flows`` (default: every flow), in this process (the command's own
    subprocess is tested where it matters; this saves a Python start per call)."""
    config = parse_config(cfg.read_text())
    for flow in [config.flow(name) for name in flows] if flows else config.flows:
        FlowRunner(config, flow, once=True).run()


def assert_route(out: str, table: str, route: str) -> None:
    """The snapshot's log says ``table`` travelled by ``route`` (and no text route was refused)."""
    started = [line for line in out.splitlines() if "snapshot of table started" in line and f"table='{table}'" in line]
    assert len(started) == 1 and f"route='{route}'" in started[0], out
    assert "route refused" not in out, out


def assert_verify_equal(cfg: Path, flow: str, rows: dict[str, int]) -> None:
    """``replicator verify --flow FLOW --json`` exits 0 and finds every table equal, with
    ``rows`` rows (by source table) on both sides."""
    proc = cli(cfg, "verify", "--flow", flow, "--json")
    assert proc.returncode == 0, f"verify exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    assert report["equal"] is True, report
    found = {t["source"]: (t["source_rows"], t["target_rows"], t["equal"]) for t in report["tables"]}
    assert found == {table: (n, n, True) for table, n in rows.items()}, report


def summary(stdout: str) -> dict[str, re.Match[str]]:
    """The per-table summary lines of ``replicator snapshot``, by table."""
    return {m["table"]: m for m in SUMMARY.finditer(stdout)}


# --------------------------------------------------------------------------- 1. copied rows == streamed rows


class TwoFlows:
    """Flows A (``a…``) and B (``b…``, ``snapshot: never``) read the same source tables into two
    target databases ``<db>_a`` and ``<db>_b``: A gets the rows by ``replicator snapshot``, B by
    streaming, so a copied row can be compared with a streamed one."""

    def __init__(self, src: Any, dst: Any, db: str, tmp_path: Path, cleanup: Cleanup, tables: list[str],
                 *, pg_source: bool) -> None:
        self.db_a, self.db_b = db + "_a", db + "_b"
        self.flow_a, self.flow_b = "a" + db[-8:], "b" + db[-8:]
        if pg_source:
            cleanup.flow(self.flow_a, src)
            cleanup.flow(self.flow_b, src)
        dst.create_database(self.db_a)
        dst.create_database(self.db_b)
        self.cfg = write_flows(
            tmp_path / "replicator.yaml", {"src": src.url(db), "dst_a": dst.url(self.db_a), "dst_b": dst.url(self.db_b)},
            flow_yaml(self.flow_a, "src", "dst_a", tables),
            flow_yaml(self.flow_b, "src", "dst_b", tables, snapshot="never"),
        )

    def start_streaming(self, create_tables: bool = True) -> str:
        """Flow B: its target tables made by ``snapshot --schema-only`` (unless made by the
        test), then its first run, which records where streaming starts and copies nothing."""
        out = ""
        if create_tables:
            out = ok(cli(self.cfg, "snapshot", "--schema-only", "--flow", self.flow_b), "snapshot --schema-only")
            assert "rows copied" not in out, out
        run_once(self.cfg, self.flow_b)
        return out

    def copy(self) -> str:
        """``replicator snapshot --flow A``; its output (stdout, then the log lines of stderr)."""
        proc = cli(self.cfg, "snapshot", "--flow", self.flow_a)
        return ok(proc, "snapshot (flow A)") + proc.stderr

    def states(self, server: Any, engine: str) -> tuple[dict[str, SnapState], dict[str, SnapState]]:
        watch = SnapshotWatch(server, self.db_a, engine)
        try:
            return watch.states(self.flow_a), watch.states(self.flow_b)
        finally:
            watch.close()


def test_pg_to_mariadb_snapshot_copies_every_type_exactly_as_streaming_writes_it(
    pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    pg_source.create_database(db)
    pg_script(pg_source, db, PG_TYPES_DDL)
    two = TwoFlows(pg_source, mariadb, db, tmp_path, cleanup, ["types"], pg_source=True)
    out = two.start_streaming()
    assert f"-- {two.flow_b}: created target table {two.db_b}.types" in out, out

    pg_script(pg_source, db, "INSERT INTO types VALUES " + ", ".join(PG_TYPE_ROWS), PG_TYPE_ROWS_GENERATED)

    # flow A: `replicator snapshot` creates its target table and copies the rows
    out = two.copy()
    assert f"-- {two.flow_a}: created target table {two.db_a}.types (from source public.types)" in out, out
    assert summary(out)["public.types"]["rows"] == "85", out
    # flow B streams the same rows; flow A has nothing to stream (its slot is younger than the rows)
    ok(cli(two.cfg, "run", "--once"), "run --once (both flows)")

    def compare(rows: int) -> None:
        src = pg_fetch(pg_source, db, PG2MY_SOURCE_QUERY)
        copied = my_fetch(mariadb, two.db_a, PG2MY_TARGET_QUERY)
        streamed = my_fetch(mariadb, two.db_b, PG2MY_TARGET_QUERY)
        assert len(src) == rows
        assert_same_rows(streamed, copied, PG2MY_NAMES, same_width=True)  # copied == streamed, value for value
        assert_pg2my_rows(src, copied, PG2MY_COLS)
        assert_pg2my_rows(src, streamed, PG2MY_COLS)

    compare(85)
    for flow in (two.flow_a, two.flow_b):
        assert_verify_equal(two.cfg, flow, {"public.types": 85})
    states_a, states_b = two.states(mariadb, "mysql")
    assert list(states_a) == ["public.types"] and states_a["public.types"].status == "done", states_a
    assert states_a["public.types"].rows_copied == 85, states_a
    assert states_b == {}, "a flow with `snapshot: never` copied nothing"

    # streaming continues on top of the copied rows exactly as on top of the streamed ones
    pg_script(pg_source, db, *PG_ROUND_2_TYPES)
    run_once(two.cfg)
    compare(80)


def test_mariadb_to_pg_snapshot_copies_every_type_exactly_as_streaming_writes_it(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """Two tables: ``types`` (with TIME: copied value by value) and ``types_text`` (the same
    without TIME: copied as COPY text the source formats)."""
    db = fresh_db_name
    mariadb.create_database(db)
    my_script(mariadb, db, MY_TYPES_DDL, MY_TYPES_DDL.replace("CREATE TABLE types", "CREATE TABLE types_text")
              .replace(" c_time TIME(6),", ""))
    two = TwoFlows(mariadb, pg_target, db, tmp_path, cleanup, ["types", "types_text"], pg_source=False)
    out = two.start_streaming()
    assert f"-- {two.flow_b}: created target table public.types" in out, out

    my_script(mariadb, db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    my_script(mariadb, db, f"INSERT INTO types_text SELECT {', '.join(MY_NO_TIME_COLUMNS)} FROM types")

    out = two.copy()
    assert f"-- {two.flow_a}: created target table public.types (from source {db}.types)" in out, out
    assert summary(out)[f"{db}.types"]["rows"] == "85" and summary(out)[f"{db}.types_text"]["rows"] == "85", out
    assert_route(out, f"{db}.types", "values")  # TIME's text is no interval's
    assert_route(out, f"{db}.types_text", "source text")
    run_once(two.cfg)

    def compare(rows: int) -> None:
        for src_query, dst_query, cols, n in (
            (MY_TYPES_QUERY, MY2PG_TARGET_QUERY, MY2PG_COLS, rows),
            (MY_NO_TIME_QUERY, MY2PG_NO_TIME_QUERY, MY2PG_NO_TIME_COLS, 85),
        ):
            src = my_fetch(mariadb, db, src_query)
            copied = pg_fetch(pg_target, two.db_a, dst_query)
            streamed = pg_fetch(pg_target, two.db_b, dst_query)
            assert len(src) == n
            assert_same_rows(streamed, copied, [c for c, _ in cols], same_width=True)
            assert_my2pg_rows(src, copied, cols)
            assert_my2pg_rows(src, streamed, cols)

    compare(85)
    for flow in (two.flow_a, two.flow_b):
        assert_verify_equal(two.cfg, flow, {f"{db}.types": 85, f"{db}.types_text": 85})
    # the target tables are the type map's (a jsonb column holds documents, TIME is an interval)
    types = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'types' ORDER BY ordinal_position"
    assert pg_fetch(pg_target, two.db_a, types) == pg_fetch(pg_target, two.db_b, types)
    assert dict(pg_fetch(pg_target, two.db_a, types))["c_json"] == "jsonb"
    assert dict(pg_fetch(pg_target, two.db_a, types))["c_time"] == "interval"
    assert two.states(pg_target, "postgresql")[0][f"{db}.types"].status == "done"

    my_script(mariadb, db, *MY_ROUND_2_TYPES, time_zone="+05:00")
    ok(cli(two.cfg, "run", "--once"), "run --once (round 2)")
    compare(90)  # round 2 changes only types


def test_pg_to_pg_snapshot_copies_every_type_exactly_as_streaming_writes_it(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    pg_source.create_database(db)
    pg_script(pg_source, db, PG2PG_TYPES_DDL)
    two = TwoFlows(pg_source, pg_target, db, tmp_path, cleanup, ["types"], pg_source=True)
    two.start_streaming()
    pg_script(pg_source, db, "INSERT INTO types VALUES " + ", ".join(PG2PG_TYPE_ROWS), PG2PG_TYPE_ROWS_GENERATED)
    out = two.copy()
    assert summary(out)["public.types"]["rows"] == "85", out
    run_once(two.cfg)

    def compare(rows: int) -> None:
        for query, cols in ((PG2PG_VALUES_QUERY, PG2PG_NAMES), (PG2PG_TEXT_QUERY, PG2PG_TEXT_COLS)):
            src = pg_fetch(pg_source, db, query)
            copied = pg_fetch(pg_target, two.db_a, query)
            streamed = pg_fetch(pg_target, two.db_b, query)
            assert len(src) == rows
            assert_same_rows(streamed, copied, cols, same_width=True)
            assert_same_rows(src, copied, cols, same_width=True)

    compare(85)
    for flow in (two.flow_a, two.flow_b):
        assert_verify_equal(two.cfg, flow, {"public.types": 85})
    pg_script(pg_source, db, *round_2_types(PG2PG_NAMES))
    run_once(two.cfg)
    compare(80)


MY_TEXT_COLUMNS = [c for c in MY_TYPE_NAMES if not c.startswith("c_bit")]
MY_TEXT_TYPES_QUERY = MY_TYPES_QUERY.replace(", c_bit1, c_bit64", "").replace("FROM types", "FROM types_text")


def test_mariadb_to_mariadb_snapshot_copies_every_type_exactly_as_streaming_writes_it(
    mariadb: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """Two tables: ``types`` (BIT columns: copied value by value) and ``types_text`` (the same
    without BIT and without the ENUM error value: copied as LOAD DATA text)."""
    db = fresh_db_name
    mariadb.create_database(db)
    my_script(mariadb, db, MY_TYPES_DDL, MY_TYPES_DDL.replace("CREATE TABLE types", "CREATE TABLE types_text")
              .replace(" c_bit1 BIT(1), c_bit64 BIT(64),", ""))
    two = TwoFlows(mariadb, mariadb, db, tmp_path, cleanup, ["types", "types_text"], pg_source=False)
    two.start_streaming()
    my_script(mariadb, db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    my_script(mariadb, db, f"INSERT INTO types_text SELECT {', '.join(MY_TEXT_COLUMNS)} FROM types WHERE id <> 3")
    out = two.copy()
    assert summary(out)[f"{db}.types"]["rows"] == "85" and summary(out)[f"{db}.types_text"]["rows"] == "84", out
    assert_route(out, f"{db}.types", "values")  # BIT has no LOAD DATA text
    assert_route(out, f"{db}.types_text", "load data")
    run_once(two.cfg)
    enum_query = "SELECT id, c_enum, c_enum + 0, c_set, c_set + 0 FROM {} ORDER BY id"

    def compare(rows: int) -> None:
        for query, cols, n in (
            (MY_TYPES_QUERY, MY_TYPE_NAMES, rows), (MY_TEXT_TYPES_QUERY, MY_TEXT_COLUMNS, 84),
            (enum_query.format("types"), ["id", "c_enum", "c_enum + 0", "c_set", "c_set + 0"], rows),
        ):
            src = my_fetch(mariadb, db, query)
            copied = my_fetch(mariadb, two.db_a, query)
            streamed = my_fetch(mariadb, two.db_b, query)
            assert len(src) == n
            assert_same_rows(streamed, copied, cols, same_width=True)
            assert_same_rows(src, copied, cols, same_width=True)

    compare(85)
    for flow in (two.flow_a, two.flow_b):
        assert_verify_equal(two.cfg, flow, {f"{db}.types": 85, f"{db}.types_text": 84})
    my_script(mariadb, db, *MY_ROUND_2_TYPES, time_zone="+05:00")
    run_once(two.cfg)
    compare(90)  # round 2 changes only types


def test_mariadb_to_mariadb_snapshot_into_columns_of_another_character_set_copies_characters_not_bytes(
    mariadb: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """Target tables made by hand in another character set than the source's (latin1 <->
    utf8mb4; every value fits both): the copy must hold the source's characters, as streaming
    writes them."""
    db = fresh_db_name
    mariadb.create_database(db)
    values = "(1, 'Ã©'), (2, 'naïve café'), (3, 'plain'), (4, '¿Qué? Ä Ö Ü ß ±'), (5, CONCAT('x', CHAR(92), 'y', CHAR(9)))"
    my_script(
        mariadb, db,
        "CREATE TABLE l2u (id INT PRIMARY KEY, s VARCHAR(40)) CHARACTER SET latin1",
        "CREATE TABLE u2l (id INT PRIMARY KEY, s VARCHAR(40)) CHARACTER SET utf8mb4",
    )
    two = TwoFlows(mariadb, mariadb, db, tmp_path, cleanup, ["l2u", "u2l"], pg_source=False)
    for target_db in (two.db_a, two.db_b):
        my_script(
            mariadb, target_db,
            "CREATE TABLE l2u (id INT PRIMARY KEY, s VARCHAR(40)) CHARACTER SET utf8mb4",
            "CREATE TABLE u2l (id INT PRIMARY KEY, s VARCHAR(40)) CHARACTER SET latin1",
        )
    two.start_streaming(create_tables=False)
    my_script(mariadb, db, f"INSERT INTO l2u VALUES {values}", f"INSERT INTO u2l VALUES {values}")
    two.copy()
    run_once(two.cfg)
    for table in ("l2u", "u2l"):
        query = f"SELECT id, s FROM {table} ORDER BY id"
        src = my_fetch(mariadb, db, query)
        assert src[0] == (1, "Ã©") and src[1] == (2, "naïve café") and src[4] == (5, "x\\y\t"), src
        streamed = my_fetch(mariadb, two.db_b, query)
        copied = my_fetch(mariadb, two.db_a, query)
        assert streamed == src, f"{table}: streaming changed the characters"
        assert copied == src, (
            f"BUG: {table}: the snapshot copied the bytes, not the characters ({copied} != {src}):"
            " MariaDB -> MariaDB LOAD DATA text (replicator/mysql/load.py) reads with"
            " character_set_results = binary and loads with CHARACTER SET binary, and"
            " binding._same_types compares only COLUMN_TYPE, not the columns' character sets"
        )


def test_mariadb_to_mariadb_snapshot_into_a_server_without_local_infile_copies_the_rows(
    mariadb: Any, sandbox_factory: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    """A target server with ``local_infile = OFF`` (MySQL 8's default, a common hardening) takes
    no ``LOAD DATA LOCAL``: the snapshot must still copy the rows (by value, as it does when
    LOAD DATA reports a warning)."""
    db = fresh_db_name
    target = sandbox_factory.mariadb({"local_infile": "OFF"}, name="mariadb_no_infile", server_id=2)
    mariadb.create_database(db)
    target.create_database(db)
    my_script(
        mariadb, db, "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, qty INT)",
        "INSERT INTO items SELECT seq, CONCAT('item ', seq), IF(seq % 7 = 0, NULL, seq * 3) FROM seq_1_to_1000",
    )
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": mariadb.url(db), "dst": target.url(db)},
        flow_yaml("ni" + db[-8:], "src", "dst", ["items"]),
    )
    proc = cli(cfg, "snapshot")
    assert proc.returncode == 0, (
        f"BUG: the snapshot failed on a target server without local_infile:\n{proc.stderr[-1500:]}\n"
        "snapshot.py _route() picks 'load data' for MariaDB -> MariaDB without asking whether the"
        " target allows LOAD DATA LOCAL, and _copy_part() falls back to the value route only on"
        " LoadRejected (warnings), not on the server's refusal (error 4166 / 1148)"
    )
    query = "SELECT id, name, qty FROM items ORDER BY id"
    assert_same_table("items", my_fetch(mariadb, db, query), my_fetch(target, db, query))


# --------------------------------------------------------------------------- 2. copy under concurrent writes


def _copy_under_writes(
    cfg: Path, flow: str, table: str, writer: Any, pg_target: Any, db: str, cleanup: Cleanup
) -> tuple[str, int]:
    """``replicator snapshot`` while ``writer`` writes, then more writes, then ``run --once``.
    Returns the snapshot's output and how many transactions the writer committed while the
    table was being copied."""
    watch = SnapshotWatch(pg_target, db, "postgresql")
    try:
        writer.start()
        wait_for("the writer's first transactions", lambda: writer.check() or writer.committed >= 20, 60)
        cmd = cleanup.start(cfg, "snapshot", "snapshot")
        copy_started = copy_done = None
        deadline = time.monotonic() + 300
        while cmd.running():
            assert time.monotonic() < deadline, f"the snapshot did not finish:\n{cmd.log()[-3000:]}"
            st = watch.state(flow, table)
            if st is not None and st.status == "copying" and copy_started is None:
                copy_started = writer.committed
            if st is not None and st.status == "done" and copy_done is None:
                copy_done = writer.committed
            time.sleep(0.02)
        assert cmd.wait(10) == 0, cmd.log()[-4000:]
        assert_clean_log(cmd.log(), "snapshot", LOG_ERRORS)
        st = watch.state(flow, table)
        assert st is not None and st.status == "done", st
        if copy_done is None:
            copy_done = writer.committed
        assert copy_started is not None, "never saw the table being copied"
        during = copy_done - copy_started
        # the writer goes on after the copy, then stops; run --once applies all of it
        target = writer.committed + 20
        wait_for("more writes after the copy", lambda: writer.check() or writer.committed >= target, 60)
        writer.stop()
        ok(cli(cfg, "run", "--once"), "run --once")
        return cmd.log(), during
    finally:
        writer.halt.set()
        watch.close()


def _assert_exact_and_applied_once(src_rows: list[Any], pg_target: Any, db: str, during: int, writer: Any) -> None:
    dst_rows = pg_fetch(pg_target, db, "SELECT id, version, v FROM t ORDER BY id")
    assert_same_table("t", src_rows, dst_rows)
    log = version_log(pg_target, db, "t")
    assert [e for e in log if e[2] == "T"] == [(None, None, "T")], "one TRUNCATE: the snapshot's"
    checked = assert_each_change_applied_once(log, "target t")
    streamed = [(e[0], e[2]) for e in log if e[2] in ("U", "D") and e[0] is not None]
    # the writer's changes reached the target by streaming, all over the key range
    top = max(r[0] for r in src_rows)
    thirds = {min(2, int(3 * row_id / (top + 1))) for row_id, op in streamed if op == "U"}
    assert thirds == {0, 1, 2}, f"updates streamed only into key thirds {thirds}"
    assert any(op == "D" for _, op in streamed) and checked > len(src_rows)
    print(f"\nwriter: {writer.committed} transactions, {during} of them while the table was copied;"
          f" target log: {checked} writes after the snapshot's TRUNCATE")
    assert during >= 10, f"only {during} writer transactions while the table was being copied"


def test_pg_snapshot_of_a_large_table_split_in_key_ranges_under_concurrent_writes_is_exact_and_applies_each_change_once(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    flow = cleanup.flow("w" + db[-8:], pg_source)
    rows = 240_000
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(
        pg_source, db, VERSION_TABLE_PG.format(t="t"),
        f"INSERT INTO t SELECT 2 * i, 0, md5(i::text) FROM generate_series(1, {rows}) i", "ANALYZE t",
    )
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": pg_target.url(db)},
        flow_yaml(flow, "src", "dst", ["t"]),
    )
    ok(cli(cfg, "snapshot", "--schema-only"), "snapshot --schema-only")
    pg_script(pg_target, db, version_log_sql("t"))
    writer = PgVersionWriter(pg_source, db, range(2, 2 * rows + 1, 2), 2 * rows)
    out, during = _copy_under_writes(cfg, flow, "public.t", writer, pg_target, db, cleanup)
    started = [line for line in out.splitlines() if "snapshot of table started" in line]
    assert len(started) == 1 and "parts=3" in started[0] and "route='copy text'" in started[0], out
    src_rows = pg_fetch(pg_source, db, "SELECT id, version, v FROM t ORDER BY id")
    _assert_exact_and_applied_once(src_rows, pg_target, db, during, writer)
    assert_verify_equal(cfg, flow, {"public.t": len(src_rows)})


def test_mariadb_snapshot_under_concurrent_writes_is_exact_and_applies_each_change_once(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    flow = "mw" + db[-8:]
    rows = 60_000
    mariadb.create_database(db)
    pg_target.create_database(db)
    my_script(
        mariadb, db,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, version INT NOT NULL DEFAULT 0, v VARCHAR(40) NOT NULL)",
        f"INSERT INTO t SELECT 2 * seq, 0, MD5(seq) FROM seq_1_to_{rows}",
        "ANALYZE TABLE t",
    )
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": mariadb.url(db), "dst": pg_target.url(db)},
        flow_yaml(flow, "src", "dst", ["t"]),
    )
    ok(cli(cfg, "snapshot", "--schema-only"), "snapshot --schema-only")
    pg_script(pg_target, db, version_log_sql("t"))
    writer = MariaVersionWriter(mariadb, db, range(2, 2 * rows + 1, 2), 2 * rows)
    _, during = _copy_under_writes(cfg, flow, f"{db}.t", writer, pg_target, db, cleanup)
    src_rows = my_fetch(mariadb, db, "SELECT id, version, v FROM t ORDER BY id")
    _assert_exact_and_applied_once(src_rows, pg_target, db, during, writer)
    assert_verify_equal(cfg, flow, {f"{db}.t": len(src_rows)})


# --------------------------------------------------------------------------- 4. refresh of one table while run streams

HOLD_KEY = 4242
HOLD_SQL = f"""
CREATE FUNCTION hold_b() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_KEY}); RETURN NULL; END $$;
CREATE TRIGGER hold_b AFTER INSERT ON b FOR EACH STATEMENT EXECUTE FUNCTION hold_b();
ALTER TABLE b ENABLE ALWAYS TRIGGER hold_b;
"""


class Refresh:
    """Flow ``r…`` with tables ``a`` and ``b`` (PostgreSQL → PostgreSQL), ``run`` streaming it.

    Target ``b`` logs every write (:func:`version_log_sql`) and each INSERT statement into it
    (a COPY chunk of the snapshot too) waits at its end for advisory lock ``HOLD_KEY``: while
    the test holds that lock, a copy of ``b`` stays in progress."""

    def __init__(self, pg_source: Any, pg_target: Any, db: str, tmp_path: Path, cleanup: Cleanup, b_rows: int) -> None:
        self.src, self.dst, self.db = pg_source, pg_target, db
        self.flow = cleanup.flow("r" + db[-8:], pg_source)
        self.cleanup = cleanup
        pg_source.create_database(db)
        pg_target.create_database(db)
        pg_script(
            pg_source, db, VERSION_TABLE_PG.format(t="a"), VERSION_TABLE_PG.format(t="b"),
            "INSERT INTO a SELECT i, 0, 'a' || i FROM generate_series(1, 1000) i",
            f"INSERT INTO b SELECT 2 * i, 0, md5(i::text) FROM generate_series(1, {b_rows}) i",
            "ANALYZE a", "ANALYZE b",
        )
        self.cfg = write_flows(
            tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": pg_target.url(db)},
            flow_yaml(self.flow, "src", "dst", ["a", "b"], batch="{max_rows: 5000, max_delay_ms: 100}"),
        )
        ok(cli(self.cfg, "snapshot", "--schema-only"), "snapshot --schema-only")
        pg_script(pg_target, db, version_log_sql("b"), HOLD_SQL)
        self.watch = SnapshotWatch(pg_target, db, "postgresql")
        self.holder: psycopg.Connection[Any] | None = None
        self.run = cleanup.start(self.cfg, "run", "run")
        wait_for("the initial snapshots", lambda: self.alive() and self.status("a") == self.status("b") == "done", 120)
        wait_for("the initial copy on the target", lambda: self.alive() and self.equal("a") and self.equal("b"), 60)

    def alive(self) -> bool:
        assert self.run.running(), f"run exited:\n{self.run.log()[-3000:]}"
        return True

    def status(self, table: str) -> str | None:
        st = self.watch.state(self.flow, f"public.{table}")
        return None if st is None else st.status

    def rows(self, server: Any, table: str) -> list[tuple[Any, ...]]:
        return pg_fetch(server, self.db, f"SELECT id, version, v FROM {table} ORDER BY id")

    def equal(self, table: str) -> bool:
        return self.rows(self.src, table) == self.rows(self.dst, table)

    def hold(self) -> None:
        self.holder = psycopg.connect(self.dst.url(self.db), autocommit=True)
        self.holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))

    def release(self) -> None:
        assert self.holder is not None
        self.holder.close()  # ends the session and its lock
        self.holder = None

    def tamper(self) -> None:
        """Change target ``b`` behind the replicator's back."""
        pg_script(
            self.dst, self.db,
            "DELETE FROM b WHERE id % 5000 = 0",
            "UPDATE b SET v = 'tampered', version = version + 1000 WHERE id % 7000 = 2",
            "INSERT INTO b VALUES (999999999, 0, 'only on the target')",
        )
        assert not self.equal("b")

    def request(self) -> Command:
        """``snapshot --table b``; returns once the running flow copies ``b``."""
        cmd = self.cleanup.start(self.cfg, "snapshot-b", "snapshot", "--table", "b")
        wait_for("the running flow to start copying b", lambda: self.alive() and self.status("b") == "copying", 60)
        return cmd

    def change_b(self, tag: str) -> None:
        """Updates, deletes and inserts all over b's key range, in several transactions."""
        pg_script(
            self.src, self.db,
            f"UPDATE b SET version = version + 1, v = '{tag}' WHERE id % 1000 = 0",
            "DELETE FROM b WHERE id % 10000 = 2",
            f"INSERT INTO b SELECT 2 * i + 1, 0, '{tag} insert' FROM generate_series(0, 119999, 997) i"
            " ON CONFLICT (id) DO NOTHING",
            "UPDATE b SET version = version + 1 WHERE id % 1000 = 0 OR id % 997 = 1",
        )

    def insert_a(self, lo: int, hi: int) -> None:
        pg_script(
            self.src, self.db,
            f"INSERT INTO a SELECT i, 0, 'new a ' || i FROM generate_series({lo}, {hi}) i",
            f"UPDATE a SET version = version + 1, v = 'updated' WHERE id % 97 = {lo % 97}",
        )

    def finish(self, snap: Command) -> None:
        """The snapshot command exits 0 with b's summary; run catches up, stops with 0; both
        tables equal the source row for row; each change to b applied once after the refresh."""
        assert snap.wait(180) == 0, snap.log()[-4000:]
        assert_clean_log(snap.log(), "snapshot --table b", LOG_ERRORS)
        line = summary(snap.log()).get("public.b")
        assert line is not None and line["flow"] == self.flow, snap.log()
        assert "public.a" not in summary(snap.log()), "only b was asked for"
        self.change_b("after refresh")
        self.insert_a(5001, 5100)
        wait_for("the target to catch up", lambda: self.alive() and self.equal("a") and self.equal("b"), 120)
        assert self.run.stop() == 0, self.run.log()[-4000:]
        assert_clean_log(self.run.log(), "run", LOG_ERRORS)
        assert_same_table("a", self.rows(self.src, "a"), self.rows(self.dst, "a"))
        assert_same_table("b", self.rows(self.src, "b"), self.rows(self.dst, "b"))
        log = version_log(self.dst, self.db, "b")
        assert sum(1 for e in log if e[2] == "T") == 2, "b truncated by the initial snapshot and the refresh"
        assert_each_change_applied_once(log, "target b after the refresh")
        assert self.status("a") == self.status("b") == "done"

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()
        self.watch.close()


def test_snapshot_of_one_table_while_run_streams_repairs_it_keeps_its_changes_and_other_tables_keep_streaming(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    r = Refresh(pg_source, pg_target, fresh_db_name, tmp_path, cleanup, b_rows=120_000)
    try:
        before = r.watch.state(r.flow, "public.b")
        r.tamper()
        r.hold()
        snap = r.request()
        # b is being copied (its first chunk waits for our lock); a keeps streaming
        r.insert_a(1001, 1100)
        wait_for("new rows of a on the target while b is copied", lambda: r.alive() and r.equal("a"), 60)
        assert r.status("b") == "copying" and snap.running(), "b's copy ended while the test held it"
        # changes to b during the refresh (after its snapshot was taken)
        r.change_b("during refresh")
        assert r.status("b") == "copying"
        r.release()
        r.finish(snap)
        after = r.watch.state(r.flow, "public.b")
        assert before is not None and after is not None and after.position != before.position
        assert after.rows_copied == 120_000, after
    finally:
        r.close()


def test_other_tables_keep_streaming_while_the_table_being_refreshed_is_written_too(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """The refreshed table is live: it is written during its copy, and *then* other tables are
    written. ``snapshot --table`` promises the flow keeps streaming the others (cli.py) and the
    snapshot module that other tables keep streaming while one is copied."""
    r = Refresh(pg_source, pg_target, fresh_db_name, tmp_path, cleanup, b_rows=60_000)
    try:
        r.hold()
        snap = r.request()
        r.change_b("during refresh")  # b is written while it is copied...
        r.insert_a(1001, 1100)  # ...then a
        deadline = time.monotonic() + 20
        a_streamed = False
        while time.monotonic() < deadline and not a_streamed:
            a_streamed = r.alive() and r.equal("a")
            time.sleep(0.2)
        b_still_copying = r.status("b") == "copying"
        r.release()
        r.finish(snap)  # whatever happened above, the end result must be exact
        assert b_still_copying
        assert a_streamed, (
            "BUG: while table b was being copied by `snapshot --table b`, a change to b stopped"
            " the whole flow: rows inserted into table a afterwards did not reach the target in"
            " 20 s (they arrived only after b's copy ended). pipeline.py admit() waits at the"
            " SnapshotGate for the held table, blocking every later transaction of the stream."
        )
    finally:
        r.close()


def test_snapshot_asked_of_a_running_flow_that_stops_before_the_copy_ends_is_finished_by_the_command(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """``snapshot --table b`` asked the running flow to copy b; the flow is stopped (SIGTERM)
    in the middle of that copy. Nobody copies b any more: the waiting command must notice and
    copy b itself (it does when the flow stops before starting the copy), not wait for an hour."""
    r = Refresh(pg_source, pg_target, fresh_db_name, tmp_path, cleanup, b_rows=60_000)
    try:
        r.hold()
        snap = r.request()
        r.run.proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        r.release()  # the chunk being written ends; the stopping flow copies no further chunk
        assert r.run.wait(60) == 0, r.run.log()[-3000:]
        assert_clean_log(r.run.log(), "run", LOG_ERRORS)
        assert r.status("b") == "copying"
        deadline = time.monotonic() + 30
        while snap.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not snap.running(), (
            "BUG: the flow that was asked to copy b stopped in the middle of the copy; `replicator"
            " snapshot --table b` kept waiting (30 s and counting, up to wait_seconds=3600) though"
            " nobody copies b: snapshot.py _request() tries to take the flow's lock only while no"
            " asked table is 'copying', and b stays 'copying' when the copying flow stops or dies"
        )
        assert snap.wait(10) == 0, snap.log()[-3000:]
        assert summary(snap.log()).get("public.b") is not None, snap.log()
        assert r.status("b") == "done"
        ok(cli(r.cfg, "run", "--once"), "run --once")
        assert_same_table("a", r.rows(r.src, "a"), r.rows(r.dst, "a"))
        assert_same_table("b", r.rows(r.src, "b"), r.rows(r.dst, "b"))
    finally:
        r.close()


# --------------------------------------------------------------------------- target tables with foreign keys

FK_SOURCE = (
    "CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL);"
    "CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL, amount numeric(10,2))"
)
FK_TARGET = {
    "postgresql": [
        "CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL)",
        "CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id),"
        " amount numeric(10,2))",
    ],
    "mysql": [
        "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(10,2),"
        " FOREIGN KEY (customer_id) REFERENCES customers (id))",
    ],
}


@pytest.mark.parametrize("target", ["postgresql", "mysql"], ids=["pg-target", "mariadb-target"])
def test_snapshot_into_target_tables_linked_by_a_foreign_key(
    target: str, pg_source: Any, fresh_db_name: str, tmp_path: Path, request: pytest.FixtureRequest, cleanup: Cleanup
) -> None:
    """Target tables made by hand with the application's foreign key (orders -> customers).
    Replicated rows do not fire foreign keys (session_replication_role = replica,
    foreign_key_checks = 0): the snapshot of both tables, and the refresh of the referenced one,
    must work and leave the targets equal to the source."""
    db = fresh_db_name
    dst = request.getfixturevalue("pg_target" if target == "postgresql" else "mariadb")
    fetch = pg_fetch if target == "postgresql" else my_fetch
    flow = cleanup.flow("fk" + db[-8:], pg_source)
    pg_source.create_database(db)
    dst.create_database(db)
    pg_script(
        pg_source, db, FK_SOURCE,
        "INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 300) i",
        "INSERT INTO orders SELECT i, 1 + i % 300, i * 1.25 FROM generate_series(1, 1000) i",
    )
    (pg_script if target == "postgresql" else my_script)(dst, db, *FK_TARGET[target])
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": dst.url(db)},
        flow_yaml(flow, "src", "dst", ["customers", "orders"]),
    )

    def assert_equal() -> None:
        for table in ("customers", "orders"):
            query = f"SELECT * FROM {table} ORDER BY id"
            assert_same_table(table, pg_fetch(pg_source, db, query), fetch(dst, db, query))

    proc = cli(cfg, "snapshot")
    assert proc.returncode == 0, (
        f"BUG: `replicator snapshot` of two target tables linked by a foreign key failed:\n{proc.stderr[-2000:]}"
        "\nsnapshot.py _truncate() empties each target table with its own TRUNCATE, which PostgreSQL"
        " refuses for a table another table references (whatever session_replication_role says)"
    )
    assert_equal()
    pg_script(
        pg_source, db,
        "INSERT INTO customers VALUES (301, 'new customer')",
        "INSERT INTO orders VALUES (1001, 301, 9.99)",
        "UPDATE customers SET name = 'renamed' WHERE id = 7",
    )
    run_once(cfg)
    assert_equal()
    ok(cli(cfg, "snapshot", "--table", "customers"), "snapshot --table customers (the referenced table)")
    run_once(cfg)
    assert_equal()


# --------------------------------------------------------------------------- 5. snapshot: initial | never

ITEMS = {
    "postgresql": "CREATE TABLE items (id integer PRIMARY KEY, name varchar(40) NOT NULL, qty integer)",
    "mysql": "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, qty INT)",
}
ITEMS_ROWS = {
    "postgresql": "INSERT INTO items SELECT i, 'item ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE i * 3 END"
                  " FROM generate_series(1, 100) i",
    "mysql": "INSERT INTO items SELECT seq, CONCAT('item ', seq), IF(seq % 7 = 0, NULL, seq * 3) FROM seq_1_to_100",
}
ITEMS_CHANGES = [
    "INSERT INTO items VALUES (101, 'late 101', 1), (102, 'late 102', NULL), (103, 'late 103', 3)",
    "UPDATE items SET name = 'changed', qty = -5 WHERE id = 5",
    "DELETE FROM items WHERE id = 8",
]


@pytest.mark.parametrize("mode", ["initial", "never"])
@pytest.mark.parametrize("direction", ["pg-to-mariadb", "mariadb-to-pg"])
def test_run_copies_existing_rows_of_a_new_flow_unless_snapshot_is_never(
    direction: str, mode: str, mariadb: Any, fresh_db_name: str, tmp_path: Path,
    request: pytest.FixtureRequest, cleanup: Cleanup,
) -> None:
    """A flow's first run, with a renamed column (``name`` -> ``item_name``) and an empty table."""
    db = fresh_db_name
    if direction == "pg-to-mariadb":
        src, dst = request.getfixturevalue("pg_source"), mariadb
        src_engine, dst_engine = "postgresql", "mysql"
        flow = cleanup.flow(f"i{mode[0]}" + db[-8:], src)
        schema = "public"
    else:
        src, dst = mariadb, request.getfixturevalue("pg_target")
        src_engine, dst_engine = "mysql", "postgresql"
        flow = f"j{mode[0]}" + db[-8:]
        schema = db
    fetch = {"postgresql": pg_fetch, "mysql": my_fetch}
    script = {"postgresql": pg_script, "mysql": my_script}
    src.create_database(db)
    dst.create_database(db)
    script[src_engine](src, db, ITEMS[src_engine], ITEMS[src_engine].replace("items", "empty"), ITEMS_ROWS[src_engine])
    options = {} if mode == "initial" else {"snapshot": "never"}
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": src.url(db), "dst": dst.url(db)},
        flow_yaml(flow, "src", "dst", ["items\n        columns: {name: item_name}", "empty"], **options),
    )
    config = parse_config(cfg.read_text())
    if mode == "never":  # run creates target tables only to copy into them
        assert [p.exists for p in create_missing(config, config.flows[0])] == [False, False]
    run_once(cfg)  # the flow's first run
    query = "SELECT id, name, qty FROM items ORDER BY id"
    target_query = "SELECT id, item_name, qty FROM items ORDER BY id"
    existing = fetch[src_engine](src, db, query)
    assert len(existing) == 100
    assert fetch[dst_engine](dst, db, "SELECT * FROM empty") == []
    watch = SnapshotWatch(dst, db, dst_engine)
    try:
        states = watch.states(flow)
        if mode == "initial":
            assert fetch[dst_engine](dst, db, target_query) == existing, "the rows that existed before were not copied"
            assert {t: (st.status, st.rows_copied) for t, st in states.items()} == {
                f"{schema}.items": ("done", 100), f"{schema}.empty": ("done", 0),
            }
        else:
            assert fetch[dst_engine](dst, db, target_query) == [], "`snapshot: never` copied existing rows"
            assert states == {}
    finally:
        watch.close()

    script[src_engine](src, db, *ITEMS_CHANGES, "INSERT INTO empty VALUES (1, 'one', 1)")
    run_once(cfg)
    now = fetch[src_engine](src, db, query)
    assert fetch[dst_engine](dst, db, "SELECT * FROM empty") == [(1, "one", 1)]
    if mode == "initial":
        assert_same_table("items", now, fetch[dst_engine](dst, db, target_query))
    else:  # only the rows changed after the flow started: 5 (updated), 101-103; the delete of 8 is a no-op
        assert fetch[dst_engine](dst, db, target_query) == [r for r in now if r[0] == 5 or r[0] > 100]
        assert [r for r in now if r[0] == 5] == [(5, "changed", -5)]


@pytest.mark.parametrize("change", ["new-table", "re-added-table", "new-target-table"])
def test_a_table_that_joins_a_streaming_flow_is_copied_by_the_next_run(
    change: str, pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    """The flow streams table ``a`` (and ``b``); then its config changes: table ``n`` (with rows)
    is added, or ``b`` is taken out for a while (its changes meanwhile are not the flow's) and
    put back, or ``a`` gets a new target table ``a2``. With ``snapshot: initial`` the next run
    must leave every target table of the flow equal to its source table."""
    db = fresh_db_name
    flow = cleanup.flow("t" + db[-8:], pg_source)
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(
        pg_source, db, *(VERSION_TABLE_PG.format(t=t) for t in "abn"),
        *(f"INSERT INTO {t} SELECT i, 0, '{t}' || i FROM generate_series(1, 50) i" for t in "abn"),
    )
    path = tmp_path / "replicator.yaml"
    systems = {"src": pg_source.url(db), "dst": pg_target.url(db)}
    cfg = write_flows(path, systems, flow_yaml(flow, "src", "dst", ["a", "b"]))
    run_once(cfg)
    if change == "re-added-table":
        write_flows(path, systems, flow_yaml(flow, "src", "dst", ["a"]))
        pg_script(pg_source, db, "UPDATE b SET version = version + 1, v = 'while out' WHERE id % 2 = 0",
                  "INSERT INTO b VALUES (51, 0, 'while out')", "DELETE FROM b WHERE id = 3",
                  "INSERT INTO a VALUES (51, 0, 'a51')")
        run_once(cfg)
    tables = {"new-table": ["a", "b", "n"], "re-added-table": ["a", "b"], "new-target-table": ["a\n        target: a2", "b"]}
    write_flows(path, systems, flow_yaml(flow, "src", "dst", tables[change]))
    pg_script(pg_source, db, *(f"UPDATE {t} SET version = version + 1 WHERE id % 5 = 0" for t in "abn"))
    run_once(cfg)
    pairs = {"new-table": [("a", "a"), ("b", "b"), ("n", "n")], "re-added-table": [("a", "a"), ("b", "b")],
             "new-target-table": [("a", "a2"), ("b", "b")]}[change]
    for source, target in pairs:
        src = pg_fetch(pg_source, db, f"SELECT id, version, v FROM {source} ORDER BY id")
        dst = pg_fetch(pg_target, db, f"SELECT id, version, v FROM {target} ORDER BY id")
        assert dst == src, (
            f"BUG: {change}: target {target} differs from source {source} ({len(dst)} vs {len(src)} rows;"
            f" e.g. target {dst[:3]}, source {src[:3]}): the snapshot state (_replicator.snapshots) is"
            " keyed by flow and source table only and says 'done', so pipeline.py _session() does not"
            " copy the table again though it was out of the flow, or now goes to another target table"
        )


# --------------------------------------------------------------------------- 6. one run per flow


def test_second_run_of_a_running_flow_exits_1_saying_it_is_already_running(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    flow = cleanup.flow("l" + db[-8:], pg_source)
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_source, db, ITEMS["postgresql"], ITEMS_ROWS["postgresql"])
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": pg_target.url(db)},
        flow_yaml(flow, "src", "dst", ["items"], batch="{max_rows: 1000, max_delay_ms: 50}"),
    )
    first = cleanup.start(cfg, "run-1", "run")
    watch = SnapshotWatch(pg_target, db, "postgresql")
    query = "SELECT id, name, qty FROM items ORDER BY id"
    try:
        wait_for("the first run's initial copy", lambda: first.running()
                 and getattr(watch.state(flow, "public.items"), "status", None) == "done", 60)
        second = cli(cfg, "run", timeout=120)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "Traceback" not in second.stdout + second.stderr, second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("replicator:")]
        assert errors == [
            f"replicator: flow {flow} failed: flow {flow} is already running: another replicator"
            " process holds its lock on the target (stop it first)"
        ], second.stderr
        # the first run was not disturbed
        pg_script(pg_source, db, *ITEMS_CHANGES)
        wait_for("the first run to stream", lambda: first.running()
                 and pg_fetch(pg_source, db, query) == pg_fetch(pg_target, db, query), 60)
        assert first.stop() == 0, first.log()[-3000:]
        assert_clean_log(first.log(), "first run", LOG_ERRORS)
    finally:
        watch.close()


# --------------------------------------------------------------------------- 7. zero dates


def test_snapshot_of_a_zero_date_fails_naming_table_key_and_column_unless_zero_dates_null(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db = fresh_db_name
    flow = "z" + db[-8:]
    mariadb.create_database(db)
    pg_target.create_database(db)
    my_script(
        mariadb, db,
        "CREATE TABLE events (id INT PRIMARY KEY, label VARCHAR(20), d DATE, dt DATETIME(6))",
        "SET SESSION sql_mode = ''",
        "INSERT INTO events VALUES (1, 'good', '2024-01-01', '2024-01-01 10:00:00.5'),"
        " (2, 'ok too', '2024-01-02', NULL), (3, 'zero date', '0000-00-00', '2024-01-03 00:00:00'),"
        " (4, 'zero datetime', '2024-01-04', '0000-00-00 00:00:00'), (5, 'nulls', NULL, NULL)",
    )
    path = tmp_path / "replicator.yaml"
    systems = {"src": mariadb.url(db), "dst": pg_target.url(db)}
    cfg = write_flows(path, systems, flow_yaml(flow, "src", "dst", ["events"]))
    proc = cli(cfg, "snapshot")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("replicator:")]
    assert len(errors) == 1, proc.stderr
    assert f"`{db}`.`events`" in errors[0] and "id=3" in errors[0] and "`d`" in errors[0], errors[0]
    assert "0000-00-00" in errors[0] and "zero_dates" in errors[0], errors[0]
    watch = SnapshotWatch(pg_target, db, "postgresql")
    try:
        st = watch.state(flow, f"{db}.events")
        assert st is not None and st.status != "done", st

        write_flows(path, systems, flow_yaml(flow, "src", "dst", ["events"], zero_dates="null"))
        out = ok(cli(cfg, "snapshot"), "snapshot with zero_dates: null")
        assert summary(out)[f"{db}.events"]["rows"] == "5", out
        st = watch.state(flow, f"{db}.events")
        assert st is not None and st.status == "done", st
    finally:
        watch.close()
    assert pg_fetch(pg_target, db, "SELECT id, label, d, dt FROM events ORDER BY id") == [
        (1, "good", date(2024, 1, 1), datetime(2024, 1, 1, 10, 0, 0, 500000)),
        (2, "ok too", date(2024, 1, 2), None),
        (3, "zero date", None, datetime(2024, 1, 3)),
        (4, "zero datetime", date(2024, 1, 4), None),
        (5, "nulls", None, None),
    ]


# --------------------------------------------------------------------------- 8. progress

SLOW_INSERTS = """
CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(2.6); RETURN NULL; END $$;
CREATE TRIGGER slow_insert AFTER INSERT ON p FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();
ALTER TABLE p ENABLE ALWAYS TRIGGER slow_insert;
"""
PROGRESS = re.compile(
    r"event='snapshot progress' flow='(?P<flow>[^']+)' table='public\.p' rows=(?P<rows>\d+)"
    r" rows_per_s=(?P<rate>\d+) of_about=(?P<total>\d+) eta_s=(?P<eta>\d+)"
)


def test_snapshot_output_has_periodic_progress_lines_and_a_summary_per_table(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    db = fresh_db_name
    flow = cleanup.flow("p" + db[-8:], pg_source)
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(
        pg_source, db, "CREATE TABLE p (id integer PRIMARY KEY, v text)",
        "INSERT INTO p SELECT i, md5(i::text) FROM generate_series(1, 200000) i", "ANALYZE p",
    )
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": pg_target.url(db)},
        flow_yaml(flow, "src", "dst", ["p"]),
    )
    # every COPY chunk (50,000 rows) into the target takes 2.6 s more: 4 chunks one after the
    # other, so any two chunks take more than the 5 s between two progress lines
    pg_script(pg_target, db, "CREATE TABLE p (id integer PRIMARY KEY, v text)", SLOW_INSERTS)
    proc = cli(cfg, "snapshot", "--workers", "1")  # output to pipes: not a terminal
    ok(proc, "snapshot")
    lines = [m for m in PROGRESS.finditer(proc.stderr)]
    assert len(lines) >= 2, f"expected a progress line every 5 s of a >= 10.4 s copy:\n{proc.stderr}"
    rows = [int(m["rows"]) for m in lines]
    assert rows == sorted(rows) and rows[0] > 0 and rows[-1] <= 200_000, rows
    assert all(m["flow"] == flow and int(m["rate"]) > 0 and m["total"] == "200000" for m in lines), proc.stderr
    done = [line for line in proc.stderr.splitlines() if "event='snapshot of table done'" in line]
    assert len(done) == 1 and "table='public.p' rows=200000 rows_per_s=" in done[0], proc.stderr
    line = summary(proc.stdout).get("public.p")
    assert line is not None, proc.stdout
    assert line["flow"] == flow and line["rows"] == "200000" and float(line["s"]) >= 10.4, line[0]
    assert int(line["rate"].replace(",", "")) == pytest.approx(200_000 / float(line["s"]), rel=0.05), line[0]
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", line["pos"]), line[0]
    query = "SELECT id, v FROM p ORDER BY id"
    assert_same_table("p", pg_fetch(pg_source, db, query), pg_fetch(pg_target, db, query))
