"""Batch mode on real servers: a scheduled flow nets its whole backlog and writes each row once.

PostgreSQL -> PostgreSQL with a statement trigger on the target (``version_log``, ``ENABLE
ALWAYS`` so it fires for the replicator's session too) that logs every row the target writes:
ten updates of one row committed between two scheduled runs must show as one write, an insert
followed by updates as one insert, an insert and a delete as nothing. Whole rows are compared
afterwards, and the source's foreign keys hold on the target (the target declares them too).

The MariaDB -> PostgreSQL test takes the other netting path (values, not passthrough text).
The kill -9 test of a scheduled flow lives in ``test_batch_mode_crash.py``.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from dbhelpers import my_script, pg_fetch, pg_script, write_config
from processes import (
    PgTarget,
    Replicator,
    assert_clean_log,
    assert_same_table,
    drop_slot_when_released,
    version_log,
    version_log_sql,
    wait_for,
)

DDL = """
CREATE TABLE t (id bigint PRIMARY KEY, version int NOT NULL, v text);
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id), note text);
"""
SEED = """
INSERT INTO t SELECT g, 0, md5(g::text) FROM generate_series(1, 100) g;
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 5) g;
INSERT INTO child VALUES (11, 3, 'c11'), (12, 4, 'c12'), (13, 5, 'c13');
"""
TABLES = ("t", "parent", "child")


def scheduled_config(path: Path, flow: str, src: str, dst: str, schedule: str) -> Path:
    write_config(path, flow, src, dst, [f"public.{t}" for t in TABLES])
    text = path.read_text().replace("    target: dst\n", f"    target: dst\n    snapshot: never\n    schedule: {schedule}\n")
    path.write_text(text)
    return path


def backlog(conn_url_script: Any) -> int:
    """Commit the backlog, one source transaction per list entry; the number of row changes."""
    txns = [["UPDATE t SET version = version + 1, v = md5(v) WHERE id = 7"] for _ in range(10)]  # one write
    txns += [["INSERT INTO t VALUES (1000, 0, 'new')"]]  # insert + 9 updates: one insert
    txns += [["UPDATE t SET version = version + 1 WHERE id = 1000"] for _ in range(9)]
    txns += [["INSERT INTO t VALUES (2000, 0, 'gone')"], ["DELETE FROM t WHERE id = 2000"]]  # nothing
    txns += [["UPDATE t SET version = version + 1 WHERE id = 50"] for _ in range(3)]  # then deleted
    txns += [["DELETE FROM t WHERE id = 50"]]
    # Foreign keys across transactions, the parent table touched first: netted per table, the
    # target's parent deletes would run before the child changes that release those parents.
    txns += [["INSERT INTO parent VALUES (10, 'p10')"],
             ["INSERT INTO child VALUES (20, 10, 'c20')"],
             ["UPDATE child SET parent_id = 10 WHERE id = 11", "DELETE FROM parent WHERE id = 3"],
             ["DELETE FROM child WHERE id = 12", "DELETE FROM parent WHERE id = 4"],
             ["DELETE FROM parent WHERE id = 6"],  # never existed: no change
             ["INSERT INTO parent VALUES (4, 'p4 again')", "INSERT INTO child VALUES (12, 4, 'c12 again')"]]
    for stmts in txns:
        conn_url_script(stmts)
    return 10 + 10 + 2 + 4 + 1 + 1 + 2 + 2 + 2


def pg_rows(server: Any, db: str, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg_fetch(server, db, f"SELECT * FROM {table} ORDER BY id")]


def md5_8() -> str:
    import hashlib

    return hashlib.md5(b"8").hexdigest()


def runs_done(rep: Replicator) -> int:
    return len(re.findall(r"scheduled run done", rep.log()))


def test_scheduled_flow_writes_each_row_once(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    flow = f"sched_{secrets.token_hex(3)}"
    pg_source.create_database(db)
    pg_source.execute(DDL + SEED, dbname=db)
    target = PgTarget(pg_target, db, DDL + SEED + version_log_sql("t"))
    target.create_tables()
    cfg = scheduled_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), target.url, "{every: 4s}")
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()  # `run --once` of a scheduled flow: one run now (creates the slot, the checkpoint)
        assert target.checkpoint(flow) is not None

        def script(stmts: list[str]) -> None:
            pg_script(pg_source, db, "BEGIN", *stmts, "COMMIT")

        expected = backlog(script)

        # The scheduled process runs once when it starts (the backlog), then every 4 s.
        rep.start()
        wait_for("the first scheduled run", lambda: runs_done(rep) >= 1, timeout=60)
        cp = target.checkpoint(flow)
        assert cp is not None and cp[1] == expected, (cp, expected)
        log = version_log(pg_target, db, "t")
        # every row written once, with its final version: 10 updates, 1 write; insert + 9
        # updates, 1 insert; insert + delete, nothing; 3 updates + delete, 1 delete
        assert sorted(log) == [(7, 10, "U"), (50, 0, "D"), (1000, 9, "I")], log  # 50: its updates never written
        for table in TABLES:
            assert_same_table(table, pg_rows(pg_source, db, table), pg_rows(pg_target, db, table))

        # Between runs: changes wait for the next scheduled run, then are written once.
        done = runs_done(rep)
        row_8 = pg_fetch(pg_target, db, "SELECT * FROM t WHERE id = 8")
        for _ in range(10):
            script(["UPDATE t SET version = version + 1, v = md5(v) WHERE id = 8"])
        time.sleep(0.5)
        assert pg_fetch(pg_target, db, "SELECT * FROM t WHERE id = 8") == row_8 == [(8, 0, md5_8())]
        assert target.checkpoint(flow) == cp, "applied before the scheduled time"
        wait_for("the next scheduled run", lambda: runs_done(rep) > done, timeout=60)
        log = version_log(pg_target, db, "t")
        assert [e for e in log if e[0] == 8] == [(8, 10, "U")] and len(log) == 4, log
        for table in TABLES:
            assert_same_table(table, pg_rows(pg_source, db, table), pg_rows(pg_target, db, table))
        assert rep.proc is not None and rep.proc.poll() is None
        rep.proc.terminate()
        assert rep.proc.wait(timeout=30) == 0
        assert_clean_log(rep.log(), "scheduled run")
        assert "next scheduled run" in rep.log()
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")
