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

from dbhelpers import cli, my_fetch, my_script, pg_fetch, pg_script, write_config
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
HOURLY = "    snapshot: never\n    schedule: {every: 1h}\n"


def scheduled_config(path: Path, flow: str, src: str, dst: str, schedule: str, batch: str | None = None) -> Path:
    return write_config(path, flow, src, dst, [f"public.{t}" for t in TABLES], batch=batch,
                        options=f"    snapshot: never\n    schedule: {schedule}\n")


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
    # (the flow's batch: limits would commit every source transaction; scheduled runs ignore them)
    cfg = scheduled_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), target.url, "{every: 4s}",
                           batch="{max_rows: 1, max_delay_ms: 0}")
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()  # `run --once` of a scheduled flow: one run now (creates the slot, the checkpoint)
        assert target.checkpoint(flow) is not None
        check = cli(cfg, "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"scheduled (every 4s, runs up to 0.00111 h apart): the source keeps the WAL of that time in slot" \
               f" replicator_{flow} (no limit)" in check.stdout, check.stdout

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
        second = cli(cfg, "run", timeout=60)  # while the first one waits for its next run
        assert second.returncode == 1 and f"flow {flow} is already running" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        manual = cli(cfg, "run", "--once", timeout=60)  # a manual run in between is fine
        assert manual.returncode == 0, manual.stdout + manual.stderr
        assert rep.proc is not None and rep.proc.poll() is None
        rep.proc.terminate()
        assert rep.proc.wait(timeout=30) == 0
        assert_clean_log(rep.log(), "scheduled run")
        assert "next scheduled run" in rep.log()
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")


FK_DDL = """
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id){deferrable}, note text);
CREATE TABLE grandchild (id int PRIMARY KEY, child_id int REFERENCES child (id){deferrable});
"""
FK_SEED = """
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 5) g;
INSERT INTO child VALUES (11, 3, 'c11'), (12, 4, 'c12'), (13, 5, 'c13');
INSERT INTO grandchild VALUES (101, 12), (102, 13);
"""


@pytest.mark.parametrize("path", ["passthrough", "values"])
@pytest.mark.parametrize("deferrable", ["", " DEFERRABLE"], ids=["not-deferrable", "deferrable"])
def test_foreign_keys_enforced_on_the_target(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path, deferrable: str, path: str
) -> None:
    """A target role that may not switch foreign keys off (no superuser: no
    ``session_replication_role = replica``): the netted backlog of a scheduled run must still
    be written in an order the target's foreign keys accept — parents' inserts before their
    children's, children's deletes before their parents' — with the tables listed child first.
    ``values``: the target's text columns are varchar, so rows travel as values
    (replicator.batch), not as passthrough text."""
    db = fresh_db_name
    flow = f"schedfk_{secrets.token_hex(3)}"
    role, password = f"owner_{secrets.token_hex(3)}", secrets.token_hex(8)
    ddl = FK_DDL.format(deferrable=deferrable)
    pg_source.create_database(db)
    pg_source.execute(ddl + FK_SEED, dbname=db)
    pg_target.add_password_user(role, password)
    pg_target.create_database(db)
    pg_target.execute(f'ALTER DATABASE "{db}" OWNER TO "{role}"')
    url = pg_target.url(db, user=role, password=password)
    pg_script(pg_target, db, f'SET ROLE "{role}"', "CREATE SCHEMA app", f'ALTER ROLE "{role}" SET search_path = app')
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        target_ddl = ddl.replace("TABLE ", "TABLE app.")
        if path == "values":
            target_ddl = target_ddl.replace(" text", " varchar(200)")
        conn.execute(target_ddl + FK_SEED)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the role cannot switch them off
            conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO app.child VALUES (99, 99, 'orphan')")
    tables = "".join(f"      - {{source: public.{t}, target: app.{t}}}\n" for t in ("grandchild", "child", "parent"))
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), url, tables, options=HOURLY)
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()

        def script(*stmts: str) -> None:
            pg_script(pg_source, db, "BEGIN", *stmts, "COMMIT")

        script("INSERT INTO parent VALUES (10, 'p10')")  # the parent table is touched first
        script("INSERT INTO child VALUES (20, 10, 'c20')", "INSERT INTO grandchild VALUES (103, 20)")
        script("UPDATE child SET parent_id = 10 WHERE id = 11", "DELETE FROM parent WHERE id = 3")
        script("DELETE FROM grandchild WHERE id = 101", "DELETE FROM child WHERE id = 12", "DELETE FROM parent WHERE id = 4")
        script("UPDATE grandchild SET child_id = 20 WHERE id = 102", "DELETE FROM child WHERE id = 13",
               "DELETE FROM parent WHERE id = 5")
        script("INSERT INTO parent VALUES (4, 'p4 again')", "INSERT INTO child VALUES (12, 4, 'c12 again')")
        script("INSERT INTO parent VALUES (30, 'p30')", "INSERT INTO child VALUES (30, 30, 'c30')",
               "INSERT INTO grandchild VALUES (130, 30)")
        script("DELETE FROM grandchild WHERE id = 130", "DELETE FROM child WHERE id = 30", "DELETE FROM parent WHERE id = 30")
        rep.recover()  # one scheduled run (run --once): the whole backlog in one target transaction
        assert "applied batch" in rep.log()
        for table in ("parent", "child", "grandchild"):
            assert_same_table(table, pg_rows(pg_source, db, table),
                              [tuple(r) for r in pg_fetch(pg_target, db, f"SELECT * FROM app.{table} ORDER BY id")])
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")


def test_mariadb_source_scheduled_run_writes_each_row_once(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    """The other netting path (decoded values, replicator.batch) from a binlog backlog."""
    db = fresh_db_name
    flow = f"schedmy_{secrets.token_hex(3)}"
    mariadb.create_database(db)
    my_script(mariadb, db, "CREATE TABLE t (id BIGINT PRIMARY KEY, version INT NOT NULL, v TEXT)",
              "INSERT INTO t VALUES " + ", ".join(f"({i}, 0, 'v{i}')" for i in range(1, 21)))
    target = PgTarget(pg_target, db, "CREATE TABLE t (id bigint PRIMARY KEY, version int NOT NULL, v text);"
                      " INSERT INTO t SELECT g, 0, 'v' || g FROM generate_series(1, 20) g;" + version_log_sql("t"))
    target.create_tables()
    cfg = write_config(tmp_path / "replicator.yaml", flow, mariadb.url(db), target.url, ["t"])
    cfg.write_text(cfg.read_text().replace(
        "    target: dst\n", "    target: dst\n    snapshot: never\n    schedule: {cron: \"0 2 * * *\", timezone: Europe/Berlin}\n"))
    rep = Replicator(cfg, tmp_path)
    rep.recover()
    check = cli(cfg, "check")
    assert "scheduled (cron '0 2 * * *' Europe/Berlin, runs up to 24 h apart): binlogs are kept" in check.stdout \
        or "binlogs expire after" in check.stdout, check.stdout
    for k in range(10):
        my_script(mariadb, db, "BEGIN", f"UPDATE t SET version = version + 1, v = 'u{k}' WHERE id = 3", "COMMIT")
    my_script(mariadb, db, "BEGIN", "INSERT INTO t VALUES (100, 0, 'new')", "COMMIT")
    for _ in range(4):
        my_script(mariadb, db, "BEGIN", "UPDATE t SET version = version + 1 WHERE id = 100", "COMMIT")
    my_script(mariadb, db, "BEGIN", "INSERT INTO t VALUES (200, 0, 'gone')", "COMMIT")
    my_script(mariadb, db, "BEGIN", "DELETE FROM t WHERE id = 200", "COMMIT")
    rep.recover()  # one scheduled run now
    cp = target.checkpoint(flow)
    assert cp is not None and cp[1] == 10 + 5 + 2
    log = version_log(pg_target, db, "t")
    assert sorted((i, v) for i, v, _op in log) == [(3, 10), (100, 4)], log
    src = [tuple(r) for r in my_fetch(mariadb, db, "SELECT * FROM t ORDER BY id")]
    assert_same_table("t", src, target.rows("t"))


def test_foreign_keys_on_a_mariadb_target(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    """MariaDB target with InnoDB foreign keys: the session writes with foreign_key_checks = 0
    (the netted batch is the source's consistent state, only its statement order is ours)."""
    db = fresh_db_name
    flow = f"schedfkm_{secrets.token_hex(3)}"
    ddl = FK_DDL.format(deferrable="")
    pg_source.create_database(db)
    pg_source.execute(ddl + FK_SEED, dbname=db)
    mariadb.create_database(db)
    my_script(mariadb, db,
              "CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL) ENGINE=InnoDB",
              "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, note VARCHAR(100),"
              " FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB",
              "CREATE TABLE grandchild (id INT PRIMARY KEY, child_id INT,"
              " FOREIGN KEY (child_id) REFERENCES child (id)) ENGINE=InnoDB",
              "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2'), (3, 'p3'), (4, 'p4'), (5, 'p5')",
              "INSERT INTO child VALUES (11, 3, 'c11'), (12, 4, 'c12'), (13, 5, 'c13')",
              "INSERT INTO grandchild VALUES (101, 12), (102, 13)")
    tables = "".join(f"      - {{source: public.{t}, target: {t}}}\n" for t in ("grandchild", "child", "parent"))
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), mariadb.url(db), tables, options=HOURLY)
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()

        def script(*stmts: str) -> None:
            pg_script(pg_source, db, "BEGIN", *stmts, "COMMIT")

        script("INSERT INTO parent VALUES (10, 'p10')")
        script("UPDATE child SET parent_id = 10 WHERE id = 11", "DELETE FROM parent WHERE id = 3")
        script("DELETE FROM grandchild WHERE id = 101", "DELETE FROM child WHERE id = 12", "DELETE FROM parent WHERE id = 4")
        script("INSERT INTO parent VALUES (4, 'p4 again')", "INSERT INTO child VALUES (12, 4, 'c12 again')",
               "INSERT INTO grandchild VALUES (101, 12)")
        rep.recover()
        for table in ("parent", "child", "grandchild"):
            assert_same_table(table, pg_rows(pg_source, db, table),
                              [tuple(r) for r in my_fetch(mariadb, db, f"SELECT * FROM {table} ORDER BY id")])
        orphans = my_fetch(mariadb, db, "SELECT c.id FROM child c LEFT JOIN parent p ON p.id = c.parent_id WHERE p.id IS NULL")
        assert orphans == []
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")


def test_scheduled_flow_paused_by_a_limit_keeps_its_schedule(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    """A run that reaches a transaction a change limit paused applies what came before it; the
    schedule goes on, and the run after `replicator resume` lets the transaction through."""
    db = fresh_db_name
    flow = f"schedlim_{secrets.token_hex(3)}"
    pg_source.create_database(db)
    pg_source.execute(DDL + SEED, dbname=db)
    target = PgTarget(pg_target, db, DDL + SEED)
    target.create_tables()
    cfg = scheduled_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), target.url, "{every: 2s}")
    cfg.write_text(cfg.read_text().replace("    snapshot: never\n", "    snapshot: never\n    limits: {max_rows_per_transaction: 5}\n"))
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()
        pg_script(pg_source, db, "UPDATE t SET version = version + 1 WHERE id <= 3")
        pg_script(pg_source, db, "UPDATE t SET version = version + 1 WHERE id > 90")  # 10 rows: paused
        pg_script(pg_source, db, "UPDATE t SET version = version + 1 WHERE id = 50")
        rep.start()
        wait_for("the run to stop at the paused transaction",
                 lambda: "scheduled run stopped at a paused transaction" in rep.log(), timeout=60)
        assert [r[1] for r in pg_rows(pg_target, db, "t")] == [1] * 3 + [0] * 97  # what came before it
        resume = cli(cfg, "resume", flow)
        assert resume.returncode == 0, resume.stdout + resume.stderr
        wait_for("the next run after resume",
                 lambda: pg_rows(pg_target, db, "t") == pg_rows(pg_source, db, "t"), timeout=60)
        assert rep.proc is not None and rep.proc.poll() is None
        rep.proc.terminate()
        assert rep.proc.wait(timeout=30) == 0
        assert_clean_log(rep.log(), "paused scheduled flow")
        cp = target.checkpoint(flow)
        assert cp is not None and cp[1] == 14
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")


def test_sync_now_runs_a_scheduled_flow_at_once(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    """`replicator sync-now` on a flow scheduled hourly: the running scheduler runs the batch
    within a second or two instead of waiting for the hour; with no `run` active, the command
    runs it once itself."""
    db = fresh_db_name
    flow = f"schednow_{secrets.token_hex(3)}"
    pg_source.create_database(db)
    pg_source.execute(DDL + SEED, dbname=db)
    target = PgTarget(pg_target, db, DDL + SEED)
    target.create_tables()
    cfg = scheduled_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), target.url, "{every: 1h}")
    rep = Replicator(cfg, tmp_path)
    try:
        rep.start()
        wait_for("the first scheduled run", lambda: runs_done(rep) == 1, timeout=60)
        pg_script(pg_source, db, "UPDATE t SET version = 5 WHERE id <= 10", "DELETE FROM child WHERE id = 13")
        time.sleep(2)
        assert pg_rows(pg_target, db, "t") != pg_rows(pg_source, db, "t"), "nothing before the next run"
        out = cli(cfg, "sync-now", flow)
        assert out.returncode == 0 and "syncing now" in out.stdout, out.stdout + out.stderr
        wait_for("the requested run", lambda: all(pg_rows(pg_target, db, t) == pg_rows(pg_source, db, t) for t in TABLES),
                 timeout=30)
        assert runs_done(rep) == 2
        assert rep.proc is not None
        rep.proc.terminate()
        assert rep.proc.wait(timeout=30) == 0
        assert_clean_log(rep.log(), "scheduled flow with sync-now")
        # no run active: the command syncs by itself
        pg_script(pg_source, db, "INSERT INTO t VALUES (5000, 1, 'x')")
        out = cli(cfg, "sync-now", flow)
        assert out.returncode == 0 and "ran once here" in out.stdout, out.stdout + out.stderr
        assert pg_rows(pg_target, db, "t") == pg_rows(pg_source, db, "t")
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, f"replicator_{flow}")
