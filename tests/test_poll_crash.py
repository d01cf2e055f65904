"""A polled flow killed with SIGKILL again and again while the source keeps changing.

The source table starts with 20,000 rows (so the first poll, the copy, spans 40 pages of 500,
each its own target transaction) and a writer keeps updating (``n = n + 1`` and the poll
column), deleting and inserting rows in small transactions the whole time. The replicator (a
real ``replicator run`` subprocess) is killed right after a target commit (the
``REPLICATOR_TEST_CRASH_AFTER_COMMIT`` hook, also in the middle of the copy) and at random
moments, and restarted each time. After the writer stops, a last ``run --once`` must leave the
target equal to the source, whole row for whole row (``n`` shows a lost update), and the
restarts must have resumed from the checkpointed watermarks, not copied the table again.

Once for PostgreSQL (polled) → PostgreSQL, once for MariaDB (polled) → MariaDB.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from dbhelpers import write_config
from processes import Replicator, assert_clean_log, assert_same_table, wait_for

pytestmark = pytest.mark.slow

ROWS = 20_000

PG_DDL = ("CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text, amount numeric(12,2),"
          " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())")
PG_FILL = (f"INSERT INTO a (id, v, amount) SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, {ROWS}) g")
MY_DDL = ("CREATE TABLE a (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 0, v TEXT, amount DECIMAL(12,2),"
          " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")
MY_FILL = f"INSERT INTO a (id, v, amount) SELECT seq, md5(seq), seq / 7 FROM seq_1_to_{ROWS}"


class Writer(threading.Thread):
    """Small source transactions until stopped: updates, deletes and inserts."""

    def __init__(self, connect: Any, now: str) -> None:
        super().__init__(daemon=True)
        self.connect, self.now = connect, now
        self.halt = threading.Event()
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rnd = random.Random(7)
        next_id = ROWS + 1
        try:
            conn = self.connect()
            cur = conn.cursor()
            while not self.halt.is_set():
                ids = [rnd.randint(1, next_id) for _ in range(20)]
                cur.execute("BEGIN")
                cur.execute(f"UPDATE a SET n = n + 1, v = %s, updated_at = {self.now} WHERE id IN "
                            f"({', '.join(str(i) for i in ids)})", (f"t{self.transactions}",))
                if self.transactions % 3 == 0:
                    cur.execute(f"DELETE FROM a WHERE id IN ({', '.join(str(i) for i in ids[:4])})")
                cur.execute(f"INSERT INTO a (id, v, amount, updated_at) VALUES (%s, 'new', 1.25, {self.now})",
                            (next_id,))
                next_id += 1
                cur.execute("COMMIT")
                self.transactions += 1
                time.sleep(0.01)
            conn.close()
        except BaseException as exc:
            self.error = exc


def _scenario(tmp_path: Path, flow: str, src_url: str, dst_url: str, source_rows: Any, target_rows: Any,
              checkpoint: Any, writer: Writer) -> None:
    cfg = write_config(tmp_path / "c.yaml", flow, src_url, dst_url, ["a"], batch="{max_rows: 500, max_delay_ms: 50}",
                       options="    mode: poll\n"
                       "    poll: {column: updated_at, interval_s: 0.3, deletes_every_s: 1, overlap_s: 2, page_rows: 500}\n")
    rep = Replicator(cfg, tmp_path)
    rnd = random.Random(11)
    writer.start()
    kills = 0
    try:
        # kills in the middle of the copy (after 3, 5, 2 commits), then at random moments
        for after in (3, 5, 2):
            proc = rep.start(env={"REPLICATOR_TEST_CRASH_AFTER_COMMIT": str(after)})
            rc = proc.wait(timeout=120)
            assert rc == -9, f"the crash hook did not fire ({rc}):\n{rep.log()[-3000:]}"
            kills += 1
            cp = checkpoint()
            assert cp is not None and "r" in json.loads(cp[0])["tables"].get(next(iter(json.loads(cp[0])["tables"])), {}), cp
        copied_before = checkpoint()[1]
        assert copied_before < ROWS, "the copy was meant to be interrupted"
        for _ in range(9):
            rep.start()
            time.sleep(rnd.uniform(0.4, 2.5))
            assert rep.proc is not None and rep.proc.poll() is None, rep.log()[-3000:]
            rep.kill()
            kills += 1
        # a live run catches up while the writer still writes, then SIGTERM
        rep.start()
        wait_for("the copy", lambda: (checkpoint() or ("", 0))[1] >= ROWS, timeout=120)
        time.sleep(2)
    finally:
        writer.halt.set()
        writer.join(timeout=30)
        if rep.proc is not None and rep.proc.poll() is None:
            rep.proc.terminate()
            rep.proc.wait(timeout=60)
        rep.cleanup()
    assert writer.error is None, writer.error
    assert_clean_log(rep.log(), "the last streaming run")
    rep.recover()
    src, dst = source_rows(), target_rows()
    assert_same_table("a", src, dst)
    applied = checkpoint()[1]
    print(f"\n{kills} kills, {writer.transactions} source transactions, {len(src)} rows, {applied} changes applied")
    # resumed from the watermarks: the copy was not started again after every kill
    assert applied < ROWS + 40 * writer.transactions + 3 * ROWS // 2, applied


def test_poll_crash_pg_to_pg(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    flow = "poll_" + db[-8:]  # the MariaDB target's state database is shared by the tests
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_source.execute(PG_DDL, dbname=db)
    pg_source.execute(PG_FILL, dbname=db)

    def rows(server: Any) -> Any:
        return lambda: [tuple(r) for r in server.execute("SELECT * FROM a ORDER BY id", dbname=db)]

    def checkpoint() -> Any:
        try:
            got = pg_target.execute("SELECT position, changes_applied FROM _replicator.checkpoints"
                                    " WHERE flow = %s", (flow,), dbname=db)
        except psycopg.errors.UndefinedTable:
            return None
        return tuple(got[0]) if got else None

    writer = Writer(lambda: psycopg.connect(pg_source.url(db), autocommit=True), "clock_timestamp()")
    _scenario(tmp_path, flow, pg_source.url(db), pg_target.url(db), rows(pg_source), rows(pg_target), checkpoint, writer)


def test_poll_crash_mariadb_to_mariadb(mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    src_db, dst_db = fresh_db_name, fresh_db_name[:56] + "_dst"
    flow = "poll_" + src_db[-8:]  # the MariaDB target's state database is shared by the tests
    mariadb.create_database(src_db)
    mariadb.create_database(dst_db)
    mariadb.execute(MY_DDL, db=src_db)
    mariadb.execute(MY_FILL, db=src_db)

    def rows(db: str) -> Any:
        return lambda: [tuple(r) for r in mariadb.execute("SELECT * FROM a ORDER BY id", db=db)]

    def checkpoint() -> Any:
        try:
            got = mariadb.execute("SELECT position, changes_applied FROM _replicator.checkpoints WHERE flow = %s",
                                  (flow,))
        except pymysql.err.ProgrammingError:
            return None
        return tuple(got[0]) if got else None

    writer = Writer(lambda: mariadb.connect(src_db, autocommit=True, init_command="SET time_zone = '+00:00'"),
                    "NOW(6)")
    _scenario(tmp_path, flow, mariadb.url(src_db), mariadb.url(dst_db), rows(src_db), rows(dst_db), checkpoint, writer)
