"""MariaDB → PostgreSQL under real failures: crashes of the replicator, lost binlog
connections, source restarts and crashes, and a binlog that no longer holds the checkpoint.

1. ``test_mariadb_crash_safety``: a 180k-change workload (inserts, updates, deletes, key
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

import os
import random
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.mysql.positions import MariaGtid

REPO = Path(__file__).resolve().parents[1]
KEY_SHIFT = 100_000_000  # primary-key changes move a row to id + KEY_SHIFT
CATCH_UP_TIMEOUT = 120.0

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

# --------------------------------------------------------------------------- helpers


def write_config(path: Path, flow: str, src_url: str, dst_url: str, batch: str) -> Path:
    path.write_text(
        "systems:\n"
        f"  src: {{url: '{src_url}'}}\n"
        f"  dst: {{url: '{dst_url}'}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: src\n"
        "    target: dst\n"
        f"    batch: {batch}\n"
        "    tables:\n"
        "      - source: a\n"
        "      - source: b\n"
    )
    return path


class Replicator:
    """Starts ``replicator -c CFG run [...]`` subprocesses, each logging to its own file."""

    def __init__(self, cfg: Path, log_dir: Path) -> None:
        self.cfg = cfg
        self.log_dir = log_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        self.log_path = self.log_dir / f"run-{self.runs:02d}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_TEST_CRASH")}
        full_env.update(env or {})
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "replicator.cli", "-c", str(self.cfg), "run", *extra],
                cwd=REPO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class PgTarget:
    """The PostgreSQL target database: tables, checkpoint, rows, the big-transaction probe."""

    def __init__(self, server: Any, db: str) -> None:
        self.server = server
        self.db = db
        self.url = server.url(db)

    def create_tables(self) -> None:
        self.server.create_database(self.db)
        self.server.execute(PG_DDL, dbname=self.db)

    def checkpoint(self, flow: str) -> tuple[str, int, int] | None:
        try:
            rows = self.server.execute(
                "SELECT position, changes_applied, transactions_applied"
                " FROM _replicator.checkpoints WHERE flow = %s",
                (flow,),
                dbname=self.db,
            )
        except psycopg.errors.UndefinedTable:
            return None
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.server.execute(f"SELECT * FROM {table} ORDER BY id", dbname=self.db)]

    def hold_key(self, key: int) -> psycopg.Connection[Any]:
        """Open a transaction that inserts row ``b.id = key`` and keeps it uncommitted.

        The replicator's own write of that key then waits for this transaction: when only the
        big source transaction writes ``key``, the replicator is stopped right inside it, with
        part of it written to its open target transaction. Roll back to let it go.
        """
        conn = psycopg.connect(self.url)
        conn.execute("INSERT INTO b (id) VALUES (%s)", (key,))
        return conn

    def waiting_writer(self, holder: psycopg.Connection[Any]) -> int | None:
        """The pid of a target session waiting for a lock that ``holder``'s transaction holds."""
        rows = self.server.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND %s = ANY(pg_blocking_pids(pid))",
            (self.db, holder.info.backend_pid),
            dbname=self.db,
        )
        return int(rows[0][0]) if rows else None


def source_rows(server: Any, db: str, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in server.execute(f"SELECT * FROM {table} ORDER BY id", db=db)]


def assert_same_rows(table: str, src: list[tuple[Any, ...]], dst: list[tuple[Any, ...]]) -> None:
    if src == dst:
        return
    s = {r[0]: r for r in src}
    d = {r[0]: r for r in dst}
    missing = sorted(set(s) - set(d))
    extra = sorted(set(d) - set(s))
    differ = [(s[k], d[k]) for k in sorted(set(s) & set(d)) if s[k] != d[k]]
    pytest.fail(
        f"table {table}: target differs from source ({len(src)} vs {len(dst)} rows):"
        f" {len(missing)} missing on target (e.g. {missing[:5]}), {len(extra)} extra"
        f" (e.g. {extra[:5]}), {len(differ)} differ (e.g. {differ[:3]})"
    )


def assert_clean_log(text: str, what: str) -> None:
    for bad in ("Traceback", "level='error'", "level=error", "flow crashed", "internal error"):
        assert bad not in text, f"{what}: the replicator logged {bad!r}:\n{text[-3000:]}"


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = CATCH_UP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (psycopg.Error, pymysql.err.Error):
            pass  # a server is (re)starting
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- 1. the crash test


@dataclass
class Workload:
    """What was committed on the source, counted the way the checkpoint counts it."""

    changes: int = 0  # row changes (each inserted, updated or deleted row once)
    transactions: int = 0  # transactions that changed at least one row
    big_changes: int = 0
    changes_before_big: int = 0
    big_probe_ids: list[int] = field(default_factory=list)  # ids the big transaction inserts into b


def _seq(lo: int, hi: int) -> str:
    assert 0 <= lo <= hi
    return f"seq_{lo}_to_{hi}"


def generate_workload(conn: Any, rng: random.Random, total: int, big_rows: int, big_at: float) -> Workload:
    """Commit a mixed workload of about ``total`` row changes, with one big transaction.

    The counts come from the statements' real affected-row counts. Every UPDATE increments
    ``n``, so each matched row really changes and is logged as one binlog row change.
    """
    w = Workload()
    next_id = {"a": 1, "b": 1}
    cur = conn.cursor()

    def run(stmt: str, params: tuple[Any, ...] = ()) -> int:
        return int(cur.execute(stmt, params))

    def insert(table: str, k: int) -> int:
        lo = next_id[table]
        next_id[table] += k
        if table == "a":
            return run(
                "INSERT INTO a (id, n, v, amount, ts, flag) SELECT seq, 0, MD5(seq),"
                " (seq MOD 100000) / 100, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,"
                f" IF(seq MOD 7 = 0, NULL, seq MOD 2) FROM {_seq(lo, lo + k - 1)}"
            )
        return run(
            "INSERT INTO b (id, n, payload, qty, ts) SELECT seq, 0, REPEAT(MD5(seq), 2), seq MOD 1000,"
            " TIMESTAMP'2024-06-01 12:00:00.123456' + INTERVAL seq MINUTE"
            f" FROM {_seq(lo, lo + k - 1)}"
        )

    def update(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        if table == "a":
            stmt = (
                "UPDATE a SET n = n + 1, v = CONCAT(LEFT(v, 20), %s), amount = amount + 1.25,"
                " ts = ts + INTERVAL 1 HOUR, flag = 1 - flag WHERE id >= %s AND id < %s"
            )
        else:
            stmt = (
                "UPDATE b SET n = n + 1, payload = CONCAT(%s, LEFT(payload, 40)), qty = qty + 1"
                " WHERE id >= %s AND id < %s"
            )
        return run(stmt, (f"u{rng.randrange(1000)}", lo, lo + k))

    def delete(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        return run(f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo, lo + k))

    def change_key(k: int) -> int:
        """A primary-key change: the target must drop the old key and write the new one."""
        lo = rng.randrange(1, max(2, next_id["b"]))
        return run(
            "UPDATE b SET id = id + %s, n = n + 1 WHERE id >= %s AND id < %s AND id < %s",
            (KEY_SHIFT, lo, lo + k, KEY_SHIFT),
        )

    def insert_then_touch(table: str, k: int) -> int:
        """Insert rows, update them twice and delete some, all in the same transaction."""
        lo = next_id[table]
        done = insert(table, k)
        done += run(f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + k))
        done += run(f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + max(1, k // 2)))
        done += run(f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo + k - max(1, k // 4), lo + k))
        return done

    def transaction_size() -> int:
        r = rng.random()
        if r < 0.35:
            return rng.randint(1, 5)
        if r < 0.65:
            return rng.randint(6, 100)
        if r < 0.90:
            return rng.randint(101, 800)
        return rng.randint(801, 2000)

    def one_transaction() -> int:
        budget = transaction_size()  # bounds the statements; the real count can be lower
        done = 0
        conn.begin()
        while budget > 0:
            k = rng.randint(1, budget)
            budget -= k
            table = rng.choice(("a", "b"))
            op = rng.random()
            if op < 0.40 or next_id[table] < 50:
                done += insert(table, k)
            elif op < 0.70:
                done += update(table, k)
            elif op < 0.82:
                done += delete(table, max(1, k // 3))
            elif op < 0.88:
                done += change_key(max(1, k // 4))
            else:
                done += insert_then_touch(table, max(1, k // 3))
        conn.commit()
        return done

    def count(done: int) -> None:
        w.changes += done
        if done:
            w.transactions += 1

    big_done = False
    while w.changes < total or not big_done:
        if not big_done and w.changes >= total * big_at:
            conn.begin()
            lo = next_id["b"]
            done = insert("b", big_rows)
            w.big_probe_ids = [lo + big_rows // 4, lo + (big_rows * 3) // 4]
            done += run(
                "UPDATE a SET n = n + 1, v = CONCAT(v, 'big') WHERE id MOD 5 = 0 AND id < %s",
                (next_id["a"] // 2,),
            )
            done += run("DELETE FROM b WHERE id MOD 11 = 3 AND id < %s", (lo,))
            conn.commit()
            w.changes_before_big = w.changes
            count(done)
            w.big_changes = done
            big_done = True
            continue
        count(one_transaction())
    cur.close()
    return w


@dataclass
class Kill:
    how: str  # "commit": the crash hook after arg commits; "timed": arg s after spawn;
    # "batch": arg s after the first applied batch; "big": inside the big transaction
    arg: float


def make_plan(seed: int) -> list[Kill]:
    """13 kills: 4 by the crash hook, 2 inside the big transaction, 7 at random moments (the
    process starts streaming 0.5-1.5 s after it is spawned, so timed kills land anywhere from
    start-up to full speed). The long timed kill comes last, so the others find work."""
    rng = random.Random(seed)

    def timed(lo: float, hi: float) -> Kill:
        return Kill("timed", round(rng.uniform(lo, hi), 2))

    def batch() -> Kill:
        return Kill("batch", round(rng.uniform(0.0, 0.2), 2))

    return [
        Kill("commit", 1),
        timed(1.0, 2.0),
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
        timed(1.5, 3.0),
    ]


def test_mariadb_crash_safety(mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    t_start = time.monotonic()
    db = fresh_db_name
    flow = f"mcrash_{secrets.token_hex(4)}"
    mariadb.create_database(db)
    for ddl in SRC_DDL:
        mariadb.execute(ddl, db=db)
    target = PgTarget(pg_target, db)
    target.create_tables()
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, mariadb.url(db), target.url, "{max_rows: 500, max_delay_ms: 50}"
    )
    rep = Replicator(cfg, tmp_path)
    rng = random.Random(20240601)
    try:
        # No snapshot yet: the first run records where the flow starts.
        rep.start("--once")
        assert rep.proc is not None
        assert rep.proc.wait(timeout=120) == 0, rep.log()
        assert target.checkpoint(flow) is not None, "the first run recorded no checkpoint"

        t0 = time.monotonic()
        conn = mariadb.connect(db, autocommit=False)
        try:
            w = generate_workload(conn, rng, total=180_000, big_rows=25_000, big_at=0.25)
        finally:
            conn.close()
        print(
            f"\nworkload: {w.changes} row changes in {w.transactions} transactions"
            f" (big transaction: {w.big_changes} changes after {w.changes_before_big})"
            f" generated in {time.monotonic() - t0:.1f}s"
        )
        assert w.changes >= 180_000 and w.big_changes >= 25_000

        kills: dict[str, int] = {}
        last_changes = 0
        holder: psycopg.Connection[Any] | None = None
        for i, kill in enumerate(make_plan(7), 1):
            cp = target.checkpoint(flow)
            before = cp[1] if cp else 0
            env = {"REPLICATOR_TEST_CRASH_AFTER_COMMIT": str(int(kill.arg))} if kill.how == "commit" else {}
            if kill.how == "big":
                assert before < w.changes_before_big + w.big_changes, (
                    "test plan: the big transaction was applied before the kill meant for it"
                )
            if kill.how in ("commit", "batch"):
                assert before < w.changes, f"test plan: no work left for kill {i} ({kill.how})"
            if kill.how == "big":
                probe = w.big_probe_ids[int(kill.arg)]
                holder = target.hold_key(probe)
            spawned = time.monotonic()
            proc = rep.start(env=env)
            note = ""
            if kill.how == "commit":
                try:
                    rc = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    rep.kill()
                    pytest.fail(f"kill {i}: the crash hook did not fire:\n{rep.log()[-3000:]}")
            else:
                if kill.how == "timed":
                    deadline = spawned + kill.arg
                    while time.monotonic() < deadline and proc.poll() is None:
                        time.sleep(0.01)
                elif kill.how == "batch":
                    deadline = time.monotonic() + 120
                    while "applied batch" not in rep.log() and proc.poll() is None:
                        assert time.monotonic() < deadline, f"kill {i}: no batch applied in 120s"
                        time.sleep(0.01)
                    time.sleep(kill.arg)  # a random moment, not a correctness assumption
                else:  # "big": kill while the big transaction is partly written to the target
                    assert holder is not None
                    deadline = time.monotonic() + 120
                    while proc.poll() is None:
                        pid = target.waiting_writer(holder)
                        if pid is not None:
                            note = f" inside the big transaction (blocked writing b.id={probe})"
                            break
                        cp_now = target.checkpoint(flow)
                        assert cp_now is None or cp_now[1] < w.changes_before_big + w.big_changes, (
                            "the big transaction was committed although a key it writes is locked"
                        )
                        assert time.monotonic() < deadline, f"kill {i}: never reached the big transaction"
                        time.sleep(0.02)
                assert proc.poll() is None, f"kill {i}: the replicator exited by itself:\n{rep.log()[-3000:]}"
                rc = rep.kill()
            if holder is not None:
                holder.rollback()  # lets the dead replicator's target session end
                holder.close()
                holder = None
            assert rc == -signal.SIGKILL, f"kill {i}: exit status {rc}:\n{rep.log()[-3000:]}"
            assert_clean_log(rep.log(), f"kill {i}")
            kills[kill.how] = kills.get(kill.how, 0) + 1

            cp = target.checkpoint(flow)
            assert cp is not None
            assert cp[1] >= last_changes, f"kill {i}: the checkpoint went backwards: {cp}"
            assert cp[1] <= w.changes, f"kill {i}: more changes applied than exist: {cp}"
            if kill.how == "big":
                # Killed with the big transaction half written: none of it may be visible.
                assert cp[1] <= w.changes_before_big, f"kill {i}: part of the big transaction committed: {cp}"
                assert not target.server.execute(
                    "SELECT 1 FROM b WHERE id = %s", (w.big_probe_ids[0],), dbname=db
                ), f"kill {i}: a row of the uncommitted big transaction is visible"
            last_changes = cp[1]
            print(
                f"kill {i:2d} ({kill.how} {kill.arg}){note} after {time.monotonic() - spawned:.2f}s:"
                f" changes applied {before} -> {cp[1]} of {w.changes}"
            )

        # Recover: a last run applies everything committed on the source, then exits 0.
        rep.start("--once")
        assert rep.proc is not None
        assert rep.proc.wait(timeout=180) == 0, rep.log()[-3000:]
        assert_clean_log(rep.log(), "final run")

        for table in ("a", "b"):
            src = source_rows(mariadb, db, table)
            assert src, f"table {table} is empty on the source"
            assert_same_rows(table, src, target.rows(table))
        cp = target.checkpoint(flow)
        assert cp is not None
        assert cp[1] == w.changes, f"changes_applied {cp[1]} != {w.changes} source row changes"
        assert cp[2] == w.transactions, f"transactions_applied {cp[2]} != {w.transactions}"
        total_kills = sum(kills.values())
        print(f"kills: {kills} = {total_kills}; {rep.runs} replicator runs; {time.monotonic() - t_start:.1f}s")
        assert total_kills >= 10 and kills.get("commit", 0) >= 4 and kills.get("big", 0) >= 1
        assert kills.get("timed", 0) + kills.get("batch", 0) + kills.get("big", 0) >= 6
    finally:
        rep.cleanup()
        if holder is not None:
            holder.close()


# --------------------------------------------------------------------------- 2. connection drops


WRITER_DDL = [
    "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL DEFAULT 0, v TEXT,"
    " amount DECIMAL(12,2), ts DATETIME(6), flag TINYINT) ENGINE=InnoDB",
    "CREATE TABLE b (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL DEFAULT 0, payload TEXT,"
    " qty INT, ts DATETIME(6)) ENGINE=InnoDB",
    "CREATE TABLE ledger (txn BIGINT AUTO_INCREMENT PRIMARY KEY, changes INT NOT NULL) ENGINE=InnoDB",
]


class SourceWriter(threading.Thread):
    """Commits small mixed transactions on the source until stopped, reconnecting on errors.

    Each transaction inserts its own row change count into ``ledger`` (not replicated) before
    committing, so a commit whose outcome the client never learned is still counted exactly.
    """

    def __init__(self, server: Any, db: str, seed: int) -> None:
        super().__init__(name="source-writer", daemon=True)
        self.server = server
        self.db = db
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.attempts = 0
        self.failures = 0
        self.max_id = {"a": 0, "b": 0}
        self.error: BaseException | None = None

    def run(self) -> None:
        conn: Any = None
        try:
            while not self.stopping.is_set():
                try:
                    if conn is None:
                        conn = pymysql.connect(
                            host="127.0.0.1", port=self.server.port, user="root", password="",
                            database=self.db, autocommit=False, connect_timeout=3,
                            read_timeout=10, write_timeout=10,
                        )
                    self.attempts += 1
                    conn.begin()
                    with conn.cursor() as cur:
                        changes = self._transaction(cur)
                        cur.execute("INSERT INTO ledger (changes) VALUES (%s)", (changes,))
                    conn.commit()
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                    self.failures += 1
                    if conn is not None:
                        try:
                            conn.close()
                        except pymysql.err.Error:
                            pass
                    conn = None
                    self.stopping.wait(0.2)
                    continue
                self.stopping.wait(0.005)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            if conn is not None:
                try:
                    conn.close()
                except pymysql.err.Error:
                    pass

    def _transaction(self, cur: Any) -> int:
        rng = self.rng
        changes = 0
        for _ in range(rng.randint(1, 3)):
            table = rng.choice(("a", "b"))
            op = rng.random()
            k = rng.randint(1, 30)
            top = self.max_id[table]
            if op < 0.45 or top < 100:
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
                self.max_id[table] = max(top, first + n - 1)
                changes += n
            elif op < 0.85:
                lo = rng.randint(1, top)
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
                changes += cur.execute(stmt, (f"-{rng.randrange(10**6)}", lo, lo + k))
            else:
                lo = rng.randint(1, top)
                changes += cur.execute(f"DELETE FROM {table} WHERE id BETWEEN %s AND %s", (lo, lo + k // 4))
        return int(changes)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the source writer did not stop"
        if self.error is not None:
            raise self.error


def _keep_reachable(server: Any) -> None:
    """Re-grant o+x on pytest's temp dirs (a concurrent pytest session may have tightened them)."""
    if os.geteuid() != 0 or not hasattr(server, "base_dir"):
        return
    for d in server.base_dir.parents:
        if d.name.startswith("pytest-of-") or d.parent.name.startswith("pytest-of-"):
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH:
                d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


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
    target = PgTarget(pg_target, db)
    target.create_tables()
    flow = f"mdrop_{secrets.token_hex(4)}"
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, source.url(db), target.url, "{max_rows: 200, max_delay_ms: 100}"
    )
    rep = Replicator(cfg, tmp_path)
    writer: SourceWriter | None = None
    try:
        first = rep.start("--once")
        assert first.wait(timeout=120) == 0, rep.log()

        proc = rep.start()
        writer = SourceWriter(source, db, seed=7)
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
            _keep_reachable(source)
            source.start()
            recovered(f"a server {how}", warnings + 2)
            print(f"{how}+start of the source server: replicating again after {time.monotonic() - t0:.1f}s")

        wait_for("more changes after the restarts", progressed_past(applied()))
        writer.stop()
        rows = source.execute(
            "SELECT COALESCE(SUM(changes), 0), COALESCE(SUM(changes > 0), 0) FROM ledger", db=db
        )
        expected_changes, expected_txns = int(rows[0][0]), int(rows[0][1])
        print(
            f"writer: {writer.attempts} transactions tried, {writer.failures} failed;"
            f" source committed {expected_changes} row changes in {expected_txns} transactions"
        )

        def caught_up() -> bool:
            alive()
            n = applied()
            assert n <= expected_changes, f"applied {n} changes, more than the {expected_changes} committed"
            return n == expected_changes

        wait_for(f"the target to catch up with {expected_changes} changes", caught_up)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, rep.log()[-3000:]

        for table in ("a", "b"):
            src = source_rows(source, db, table)
            assert src
            assert_same_rows(table, src, target.rows(table))
        cp = target.checkpoint(flow)
        assert cp is not None
        assert (cp[1], cp[2]) == (expected_changes, expected_txns)

        log = rep.log()
        assert log.count("connection problem, retrying") >= 5, log[-3000:]
        assert_clean_log(log, "streaming run")
        print(
            "retry warnings:\n  "
            + "\n  ".join(line[:220] for line in log.splitlines() if "retrying" in line)
        )
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
    target = PgTarget(pg_target, db)
    target.create_tables()
    flow = f"mpurge_{secrets.token_hex(4)}"
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, source.url(db), target.url, "{max_rows: 500, max_delay_ms: 50}"
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
    cfg = tmp_path / "replicator.yaml"
    cfg.write_text(
        "systems:\n"
        f"  src: {{url: '{source.url(db)}'}}\n"
        f"  dst: {{url: '{pg_target.url(db)}'}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: src\n"
        "    target: dst\n"
        "    tables:\n"
        "      - source: t\n"
    )
    rep = Replicator(cfg, tmp_path)
    try:
        assert rep.start("--once").wait(timeout=120) == 0, rep.log()  # records the start

        _keep_reachable(source)
        source.restart()  # lifetime 1: t is the first table opened
        source.execute("INSERT INTO t VALUES (1, 1)", db=db)
        _keep_reachable(source)
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
        assert_clean_log(rep.log(), "run across the restart")
        rows = [tuple(r) for r in pg_target.execute("SELECT * FROM t ORDER BY id", dbname=db)]
        assert rows == [(1, 1), (2, 2)], f"rows of u arrived in t (decoded with t's stale table map): {rows}"
    finally:
        rep.cleanup()
