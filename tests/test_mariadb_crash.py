"""MariaDB → PostgreSQL under real failures: crashes of the replicator, lost binlog
connections, source restarts and crashes, and a binlog that no longer holds the checkpoint.

1. ``test_mariadb_crash_safety`` (→ PostgreSQL and → MariaDB): a 180k-change workload (inserts, updates, deletes, key
   changes, transactions of every size and one 20k+ row transaction) is committed on the
   source first; the replicator (a real subprocess, small batches) is SIGKILLed again and again
   -- right after a target commit (the ``REPLICATOR_TEST_CRASH_AFTER_COMMIT`` hook), at random
   moments, and in the middle of the big transaction. Every row has a change counter ``n`` that
   each update increments, so a lost or doubled update shows; the checkpoint must count exactly
   the row changes and transactions of the workload.
2. ``test_mariadb_source_connection_drops``: a streaming replicator (never restarted) rides out
   a killed binlog dump thread, a clean restart and a SIGKILL of the source server while a
   writer keeps committing; at the end the target equals the source and nothing was applied
   twice.
3. ``test_mariadb_purged_binlog_*``: when the binlog after the checkpoint was purged, ``run``
   and ``run --once`` stop with one clear line, never jump to the current end, and leave the
   checkpoint where it was.
4. ``test_mariadb_table_ids_reused_after_restart``: binlog table ids are per server lifetime;
   reading across a restart must not decode another table's rows with a stale table map.
"""

from __future__ import annotations

import random
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.mysql.positions import MariaGtid

from dbhelpers import write_config
from processes import (
    Kill,
    PgTarget,
    Replicator,
    SourceWriter,
    WorkloadSql,
    assert_applied_exactly_once,
    assert_clean_log,
    assert_kill_mix,
    assert_same_table,
    assert_work_left,
    generate_workload,
    keep_reachable,
    kill_as_planned,
    print_retry_warnings,
    wait_caught_up,
    wait_for,
)
from test_crash_safety import LockableMariaTarget, LockablePgTarget

pytestmark = pytest.mark.slow

SRC_DDL = [
    "CREATE TABLE a (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 0, v TEXT, amount DECIMAL(12,2),"
    " ts DATETIME(6), flag TINYINT) ENGINE=InnoDB",
    "CREATE TABLE b (id BIGINT PRIMARY KEY, n INT NOT NULL DEFAULT 0, payload TEXT, qty INT,"
    " ts DATETIME(6)) ENGINE=InnoDB",
]
PG_DDL = """
CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text, amount numeric(12,2),
                ts timestamp(6), flag smallint);
CREATE TABLE b (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, payload text, qty int,
                ts timestamp(6));
"""
# What the replicator's output must not hold (structlog writes the level quoted or not).
LOG_ERRORS = ("Traceback", "level='error'", "level=error", "flow crashed", "internal error")

# --------------------------------------------------------------------------- helpers


def source_rows(server: Any, db: str, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in server.execute(f"SELECT * FROM {table} ORDER BY id", db=db)]


# --------------------------------------------------------------------------- 1. the crash test


def _seq(lo: int, hi: int) -> str:
    assert 0 <= lo <= hi
    return f"seq_{lo}_to_{hi}"


class MariaWorkloadSql(WorkloadSql):
    """The workload on a MariaDB source. Every UPDATE increments ``n``, so each matched row
    really changes and is logged as one binlog row change."""

    update_a = (
        "UPDATE a SET n = n + 1, v = CONCAT(LEFT(v, 20), %s), amount = amount + 1.25,"
        " ts = ts + INTERVAL 1 HOUR, flag = 1 - flag WHERE id >= %s AND id < %s"
    )
    update_b = (
        "UPDATE b SET n = n + 1, payload = CONCAT(%s, LEFT(payload, 40)), qty = qty + 1"
        " WHERE id >= %s AND id < %s"
    )
    big_update = "UPDATE a SET n = n + 1, v = CONCAT(v, 'big') WHERE id MOD 5 = 0 AND id < %s"
    big_delete = "DELETE FROM b WHERE id MOD 11 = 3 AND id < %s"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cur = conn.cursor()

    def execute(self, stmt: str, params: tuple[Any, ...] = ()) -> int:
        return int(self.cur.execute(stmt, params))

    def insert(self, table: str, lo: int, hi: int) -> int:
        if table == "a":
            return self.execute(
                "INSERT INTO a (id, n, v, amount, ts, flag) SELECT seq, 0, MD5(seq),"
                " (seq MOD 100000) / 100, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,"
                f" IF(seq MOD 7 = 0, NULL, seq MOD 2) FROM {_seq(lo, hi)}"
            )
        return self.execute(
            "INSERT INTO b (id, n, payload, qty, ts) SELECT seq, 0, REPEAT(MD5(seq), 2), seq MOD 1000,"
            " TIMESTAMP'2024-06-01 12:00:00.123456' + INTERVAL seq MINUTE"
            f" FROM {_seq(lo, hi)}"
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.begin()
        yield
        self.conn.commit()


def make_plan(seed: int) -> list[Kill]:
    """13 kills: 4 by the crash hook, 2 inside the big transaction, 7 at random moments (the
    process starts streaming 0.5-1.5 s after it is spawned, so timed kills land anywhere from
    start-up to full speed). The long timed kills come last, so the others find work (catch-up
    is fast: a kill 1-2 s in may already have applied half the workload)."""
    rng = random.Random(seed)

    def timed(lo: float, hi: float) -> Kill:
        return Kill("timed", round(rng.uniform(lo, hi), 2))

    def batch() -> Kill:
        return Kill("batch", round(rng.uniform(0.0, 0.2), 2))

    return [
        Kill("commit", 1),
        Kill("big", 0),  # a quarter into the big transaction
        Kill("big", 1),  # three quarters into it
        Kill("commit", 3),
        batch(),
        Kill("commit", 2),
        timed(0.2, 0.6),  # usually still starting up
        Kill("commit", 5),
        batch(),
        batch(),
        batch(),
        timed(1.0, 2.0),
        timed(1.5, 3.0),
    ]


@pytest.mark.parametrize("to", ["postgres", "mariadb"])
def test_mariadb_crash_safety(to: str, mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    t_start = time.monotonic()
    db = fresh_db_name
    flow = f"mcrash_{secrets.token_hex(4)}"
    mariadb.create_database(db)
    for ddl in SRC_DDL:
        mariadb.execute(ddl, db=db)
    # -> MariaDB: another database of the same server (the flow reads only the source's)
    # (towards MariaDB the source's very tables, so rows travel as SQL text: replicator.mysql.passthrough)
    target: LockablePgTarget | LockableMariaTarget = (
        LockablePgTarget(pg_target, db, PG_DDL) if to == "postgres"
        else LockableMariaTarget(mariadb, db + "_dst", SRC_DDL)
    )
    target.create_tables()
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(db), target.url, ["a", "b"], batch="{max_rows: 500, max_delay_ms: 50}"
    )
    rep = Replicator(cfg, tmp_path)
    rng = random.Random(20240601)
    try:
        # No snapshot yet: the first run records where the flow starts.
        rep.start("--once")
        assert rep.proc is not None
        assert rep.proc.wait(timeout=120) == 0, rep.log()
        assert target.checkpoint(flow) is not None, "the first run recorded no checkpoint"
        # both tables' rows travel as text (replicator.mysql.passthrough): that path is crashed
        assert "rows travel as text" in rep.log() and f"{db}.a" in rep.log() and f"{db}.b" in rep.log(), rep.log()

        t0 = time.monotonic()
        conn = mariadb.connect(db, autocommit=False)
        try:
            w = generate_workload(MariaWorkloadSql(conn), rng, total=180_000, big_rows=25_000, big_at=0.25)
        finally:
            conn.close()
        w.report(t0)
        assert w.changes >= 180_000 and w.big_changes >= 25_000

        kills: dict[str, int] = {}
        last_changes = 0
        for i, kill in enumerate(make_plan(7), 1):
            cp = target.checkpoint(flow)
            before = cp[1] if cp else 0
            assert_work_left(kill, i, before, w)
            if kill.how == "big":
                # Hold a row the big transaction inserts: the replicator stops there, inside the
                # big transaction, with everything before it written but not committed.
                holder = target.lock_row(w.big_probe_ids[int(kill.arg)])

            def in_big(proc: subprocess.Popen[bytes]) -> str:
                """Until the replicator waits for the held key, inside the big transaction."""
                deadline = time.monotonic() + 120
                while (state := holder.poll()) not in ("blocked", "holds"):
                    assert state is None, f"kill {i}: the big transaction was applied: {state}"
                    assert proc.poll() is None, f"kill {i}: exited:\n{rep.log()[-3000:]}"
                    cp_now = target.checkpoint(flow)
                    assert cp_now is None or cp_now[1] < w.changes_before_big + w.big_changes, (
                        "the big transaction was committed although a key it writes is locked"
                    )
                    assert time.monotonic() < deadline, f"kill {i}: never reached the big transaction"
                    time.sleep(0.02)
                return f" inside the big transaction ({state})"

            try:
                rc, spawned, note = kill_as_planned(rep, kill, i, in_big)
            finally:
                if kill.how == "big":
                    holder.close()  # lets the dead replicator's target session end
            assert rc == -signal.SIGKILL, f"kill {i}: exit status {rc}:\n{rep.log()[-3000:]}"
            assert_clean_log(rep.log(), f"kill {i}", LOG_ERRORS)
            kills[kill.how] = kills.get(kill.how, 0) + 1

            cp = target.checkpoint(flow)
            assert cp is not None
            assert cp[1] >= last_changes, f"kill {i}: the checkpoint went backwards: {cp}"
            assert cp[1] <= w.changes, f"kill {i}: more changes applied than exist: {cp}"
            if kill.how == "big":
                # Killed with the big transaction half written: none of it may be visible.
                assert cp[1] <= w.changes_before_big, f"kill {i}: part of the big transaction committed: {cp}"
                assert not target.has_row("b", w.big_probe_ids[0]), (
                    f"kill {i}: a row of the uncommitted big transaction is visible"
                )
            last_changes = cp[1]
            print(
                f"kill {i:2d} ({kill.how} {kill.arg}){note} after {time.monotonic() - spawned:.2f}s:"
                f" changes applied {before} -> {cp[1]} of {w.changes}"
            )

        rep.recover(LOG_ERRORS)

        for table in ("a", "b"):
            src = source_rows(mariadb, db, table)
            assert src, f"table {table} is empty on the source"
            assert_same_table(table, src, target.rows(table))
        assert_applied_exactly_once(target.checkpoint(flow), w)
        assert_kill_mix(kills, rep.runs, t_start, min_big=1)
    finally:
        rep.cleanup()


# --------------------------------------------------------------------------- 2. connection drops


WRITER_DDL = [
    "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL DEFAULT 0, v TEXT,"
    " amount DECIMAL(12,2), ts DATETIME(6), flag TINYINT) ENGINE=InnoDB",
    "CREATE TABLE b (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL DEFAULT 0, payload TEXT,"
    " qty INT, ts DATETIME(6)) ENGINE=InnoDB",
    "CREATE TABLE ledger (txn BIGINT AUTO_INCREMENT PRIMARY KEY, changes INT NOT NULL) ENGINE=InnoDB",
]


class MariaSourceWriter(SourceWriter):
    """:class:`SourceWriter` on a MariaDB source (tables of ``WRITER_DDL``)."""

    connection_errors = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

    def __init__(self, server: Any, db: str, seed: int) -> None:
        super().__init__(seed)
        self.server = server
        self.db = db

    def connect(self) -> Any:
        return pymysql.connect(
            host="127.0.0.1", port=self.server.port, user="root", password="",
            database=self.db, autocommit=False, connect_timeout=3,
            read_timeout=10, write_timeout=10,
        )

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except pymysql.err.Error:
            pass

    def commit_one(self, conn: Any) -> None:
        conn.begin()
        with conn.cursor() as cur:
            changes = self.changes(cur)
            cur.execute("INSERT INTO ledger (changes) VALUES (%s)", (changes,))
        conn.commit()

    def insert(self, cur: Any, table: str, k: int) -> tuple[int, int]:
        if table == "a":
            n = cur.execute(
                "INSERT INTO a (v, amount, ts, flag) SELECT MD5(RAND()), seq / 4, NOW(6), seq MOD 2"
                f" FROM seq_1_to_{k}"
            )
        else:
            n = cur.execute(
                "INSERT INTO b (payload, qty, ts) SELECT REPEAT(MD5(RAND()), 3), seq, NOW(6)"
                f" FROM seq_1_to_{k}"
            )
        cur.execute("SELECT LAST_INSERT_ID()")
        first = int(cur.fetchone()[0])
        return n, first + n - 1

    def update(self, cur: Any, table: str, tag: str, lo: int, hi: int) -> int:
        if table == "a":
            stmt = (
                "UPDATE a SET n = n + 1, v = CONCAT(LEFT(v, 16), %s), amount = amount + 0.5,"
                " ts = NOW(6) WHERE id BETWEEN %s AND %s"
            )
        else:
            stmt = (
                "UPDATE b SET n = n + 1, payload = CONCAT(%s, LEFT(payload, 60)), qty = qty + 1"
                " WHERE id BETWEEN %s AND %s"
            )
        return int(cur.execute(stmt, (tag, lo, hi)))

    def execute(self, cur: Any, stmt: str, params: tuple[Any, ...]) -> int:
        return int(cur.execute(stmt, params))


def _dump_threads(server: Any) -> list[int]:
    return [
        int(r[0])
        for r in server.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"
        )
    ]


def test_mariadb_source_connection_drops(
    sandbox_factory: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    source = sandbox_factory.mariadb(name="maria_src_drops")
    db = fresh_db_name
    source.create_database(db)
    for ddl in WRITER_DDL:
        source.execute(ddl, db=db)
    target = PgTarget(pg_target, db, PG_DDL)
    target.create_tables()
    flow = f"mdrop_{secrets.token_hex(4)}"
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, source.url(db), target.url, ["a", "b"], batch="{max_rows: 200, max_delay_ms: 100}"
    )
    rep = Replicator(cfg, tmp_path)
    writer: MariaSourceWriter | None = None
    try:
        first = rep.start("--once")
        assert first.wait(timeout=120) == 0, rep.log()

        proc = rep.start()
        writer = MariaSourceWriter(source, db, seed=7)
        writer.start()

        def applied() -> int:
            cp = target.checkpoint(flow)
            return cp[1] if cp else 0

        def alive() -> None:
            assert proc.poll() is None, f"the replicator exited ({proc.returncode}):\n{rep.log()[-3000:]}"

        def progressed_past(n: int) -> Callable[[], bool]:
            def check() -> bool:
                alive()
                return applied() > n

            return check

        wait_for("the first changes on the target", progressed_past(0))

        def source_seq() -> int:
            return MariaGtid.parse(str(source.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0])).seq(0)

        def recovered(what: str, warnings: int) -> None:
            """The replicator noticed (a retry warning) and applies what was committed after."""
            wait_for(f"a retry warning after {what}", lambda: rep.log().count("retrying") >= warnings, timeout=60)
            s0 = source_seq()
            wait_for(f"the writer to commit after {what}", lambda: source_seq() > s0, timeout=60)
            newer = source_seq()

            def applied_newer() -> bool:
                alive()
                cp = target.checkpoint(flow)
                return cp is not None and MariaGtid.parse(cp[0]).seq(0) >= newer

            wait_for(f"the replicator to apply transaction 0-1-{newer} after {what}", applied_newer)

        # (a) the server kills the binlog dump thread that serves the replicator
        wait_for("the binlog dump thread", lambda: bool(_dump_threads(source)), timeout=30)
        t0 = time.monotonic()
        for thread_id in _dump_threads(source):
            source.execute(f"KILL {thread_id}")
        recovered("KILL of the dump thread", 1)
        print(f"\nKILL of the dump thread: replicating again after {time.monotonic() - t0:.1f}s")

        # (b) a clean restart and (c) a crash (SIGKILL) of the source server
        for how in ("stop", "kill"):
            wait_for("more changes on the target", progressed_past(applied()))
            failures = writer.failures
            warnings = rep.log().count("retrying")
            t0 = time.monotonic()
            getattr(source, how)()
            wait_for("the writer to notice the server is gone", lambda: writer.failures > failures, timeout=30)
            # Down until the replicator lost its stream and also failed to reconnect once.
            wait_for(
                f"the replicator to fail to reconnect to the {how}ped server",
                lambda: rep.log().count("retrying") >= warnings + 2,
                timeout=60,
            )
            keep_reachable(source)
            source.start()
            recovered(f"a server {how}", warnings + 2)
            print(f"{how}+start of the source server: replicating again after {time.monotonic() - t0:.1f}s")

        wait_for("more changes after the restarts", progressed_past(applied()))
        writer.stop()
        rows = source.execute(
            "SELECT COALESCE(SUM(changes), 0), COALESCE(SUM(changes > 0), 0) FROM ledger", db=db
        )
        expected_changes, expected_txns = int(rows[0][0]), int(rows[0][1])
        writer.report(expected_changes, expected_txns)
        wait_caught_up(applied, expected_changes, alive)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, rep.log()[-3000:]

        for table in ("a", "b"):
            src = source_rows(source, db, table)
            assert src
            assert_same_table(table, src, target.rows(table))
        cp = target.checkpoint(flow)
        assert cp is not None
        assert (cp[1], cp[2]) == (expected_changes, expected_txns)

        log = rep.log()
        assert log.count("connection problem, retrying") >= 5, log[-3000:]
        assert_clean_log(log, "streaming run", LOG_ERRORS)
        print_retry_warnings(log)
    finally:
        if writer is not None and writer.is_alive():
            writer.stopping.set()
            writer.join(timeout=30)
        rep.cleanup()


# --------------------------------------------------------------------------- 3. purged binlog


def _purged_setup(
    sandbox_factory: Any, pg_target: Any, db: str, tmp_path: Path
) -> tuple[Any, PgTarget, str, Path, tuple[str, int, int]]:
    """A flow whose checkpoint is at GTID X, then more changes, then the binlog after X purged."""
    source = sandbox_factory.mariadb(name="maria_src_purge")
    source.create_database(db)
    for ddl in SRC_DDL:
        source.execute(ddl, db=db)
    target = PgTarget(pg_target, db, PG_DDL)
    target.create_tables()
    flow = f"mpurge_{secrets.token_hex(4)}"
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, source.url(db), target.url, ["a", "b"], batch="{max_rows: 500, max_delay_ms: 50}"
    )
    rep = Replicator(cfg, tmp_path / "setup")
    rep.log_dir.mkdir()
    rep.start("--once")
    assert rep.proc is not None and rep.proc.wait(timeout=120) == 0, rep.log()
    source.execute("INSERT INTO a (id, n, v) SELECT seq, 0, MD5(seq) FROM seq_1_to_20", db=db)
    source.execute("INSERT INTO b (id, n, qty) SELECT seq, 0, seq FROM seq_1_to_20", db=db)
    rep.start("--once")
    assert rep.proc is not None and rep.proc.wait(timeout=120) == 0, rep.log()
    cp = target.checkpoint(flow)
    assert cp is not None and cp[1:] == (40, 2), cp
    assert cp[0] == str(source.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0]), cp

    # The replicator is stopped; more changes land in binlogs that are then purged.
    for i in range(3):
        lo = 1000 + i * 10
        source.execute(f"INSERT INTO a (id, n, v) SELECT seq, 0, MD5(seq) FROM {_seq(lo, lo + 9)}", db=db)
        source.execute("UPDATE b SET n = n + 1, qty = qty + 1 WHERE id < 5", db=db)
        source.execute("FLUSH BINARY LOGS")
    current = str(source.execute("SHOW MASTER STATUS")[0][0])

    def purged() -> bool:
        # MariaDB keeps a file until InnoDB has flushed past it (its binlog checkpoint).
        source.execute(f"PURGE BINARY LOGS TO '{current}'")
        return [str(r[0]) for r in source.execute("SHOW BINARY LOGS")] == [current]

    wait_for(f"the binary logs before {current} to be purged", purged, timeout=60)
    return source, target, flow, cfg, cp


def _assert_refused(rep: Replicator, rc: int, target: PgTarget, flow: str, cp_before: tuple[str, int, int]) -> None:
    out = rep.log()
    assert rc not in (0, -signal.SIGKILL), f"exit status {rc}:\n{out[-3000:]}"
    assert rc == 1, f"exit status {rc}:\n{out[-3000:]}"
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("replicator: ")]
    assert len(lines) == 1, f"expected one error line from the command:\n{out[-3000:]}"
    line = lines[0]
    assert "no longer holds the binlog" in line and cp_before[0] in line, line
    assert target.checkpoint(flow) == cp_before, "the checkpoint moved although the changes are gone"
    assert len(target.rows("a")) == 20, "changes after the lost binlog were applied"
    print(f"\nrefused (exit {rc}): {line}")


def test_mariadb_purged_binlog_once(sandbox_factory: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    _, target, flow, cfg, cp_before = _purged_setup(sandbox_factory, pg_target, fresh_db_name, tmp_path)
    rep = Replicator(cfg, tmp_path)
    proc = rep.start("--once")
    try:
        rc = proc.wait(timeout=60)
    finally:
        rep.cleanup()
    _assert_refused(rep, rc, target, flow, cp_before)


def test_mariadb_purged_binlog_streaming(
    sandbox_factory: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    _, target, flow, cfg, cp_before = _purged_setup(sandbox_factory, pg_target, fresh_db_name, tmp_path)
    rep = Replicator(cfg, tmp_path)
    proc = rep.start()
    try:
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the streaming run kept going (retrying?) for 30s:\n{rep.log()[-3000:]}")
    finally:
        rep.cleanup()
    _assert_refused(rep, rc, target, flow, cp_before)
    assert "retrying" not in rep.log(), rep.log()[-3000:]


# --------------------------------------------------------------------------- table ids after restarts


def test_mariadb_table_ids_reused_after_restart(
    sandbox_factory: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    """A binlog table id names a table only for one server lifetime: after a restart the same
    id can name another table. Reading across the restart must not decode rows of the other
    table (here: an unsynced table of the same shape) as rows of the synced one."""
    source = sandbox_factory.mariadb(name="maria_src_tableids")
    db = fresh_db_name
    source.create_database(db)
    source.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", db=db)
    source.execute("CREATE TABLE u (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", db=db)
    pg_target.create_database(db)
    pg_target.execute("CREATE TABLE t (id int PRIMARY KEY, v int)", dbname=db)
    flow = f"mtid_{secrets.token_hex(4)}"
    cfg = write_config(tmp_path / "replicator.yaml", flow, source.url(db), pg_target.url(db), ["t"])
    rep = Replicator(cfg, tmp_path)
    try:
        assert rep.start("--once").wait(timeout=120) == 0, rep.log()  # records the start

        keep_reachable(source)
        source.restart()  # lifetime 1: t is the first table opened
        source.execute("INSERT INTO t VALUES (1, 1)", db=db)
        keep_reachable(source)
        source.kill()
        source.start()  # lifetime 2: u is opened first and gets t's old id
        source.execute("INSERT INTO u VALUES (100, 100)", db=db)
        source.execute("INSERT INTO t VALUES (2, 2)", db=db)

        ids: dict[str, list[tuple[str, str]]] = {}
        for (log_name, *_rest) in source.execute("SHOW BINARY LOGS"):
            for ev in source.execute(f"SHOW BINLOG EVENTS IN '{log_name}'"):
                if ev[2] == "Table_map":
                    table_id, name = str(ev[5]).split(" (")
                    ids.setdefault(name.rstrip(")").split(".")[-1], []).append((log_name, table_id))
        assert any(i == j and f < g for f, i in ids["t"] for g, j in ids["u"]), (
            f"precondition: u did not reuse a table id of t in a later binlog file: {ids}"
        )

        assert rep.start("--once").wait(timeout=120) == 0, rep.log()[-3000:]
        assert_clean_log(rep.log(), "run across the restart", LOG_ERRORS)
        rows = [tuple(r) for r in pg_target.execute("SELECT * FROM t ORDER BY id", dbname=db)]
        assert rows == [(1, 1), (2, 2)], f"rows of u arrived in t (decoded with t's stale table map): {rows}"
    finally:
        rep.cleanup()
