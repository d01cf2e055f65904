"""Exactly-once under real crashes: the replicator process is SIGKILLed again and again.

The whole workload (inserts, updates, deletes, key changes, a big transaction) is committed on
the source first; then the replicator (a real subprocess, small batches so there are many target
commits) is killed with SIGKILL at many moments -- right after a target commit and before the
source acknowledgement (the ``REPLICATOR_TEST_CRASH_AFTER_COMMIT`` hook), at random times, and in
the middle of applying the big transaction -- and restarted each time. At the end the target must
equal the source row for row (every table has a per-row change counter ``n`` that every update
increments, so a lost or doubled update shows), and the checkpoint must count exactly the row
changes and transactions of the workload: nothing applied twice, nothing missed.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

REPO = Path(__file__).resolve().parents[1]
BATCH = {"max_rows": 500, "max_delay_ms": 50}
KEY_SHIFT = 100_000_000  # primary-key changes move a row to id + KEY_SHIFT

pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- helpers


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def write_config(path: Path, flow: str, src_url: str, dst_url: str, tables: list[str]) -> Path:
    lines = [
        "systems:",
        f"  src: {{url: '{src_url}'}}",
        f"  dst: {{url: '{dst_url}'}}",
        "flows:",
        f"  - name: {flow}",
        "    source: src",
        "    target: dst",
        f"    batch: {{max_rows: {BATCH['max_rows']}, max_delay_ms: {BATCH['max_delay_ms']}}}",
        "    tables:",
        *[f"      - source: public.{t}" for t in tables],
    ]
    path.write_text("\n".join(lines) + "\n")
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


@dataclass
class Workload:
    """What was committed on the source, counted the way the checkpoint counts it."""

    changes: int = 0  # row changes (each inserted, updated or deleted row once)
    transactions: int = 0  # transactions that changed at least one row
    big_changes: int = 0
    changes_before_big: int = 0  # the checkpoint counts more than this + big_changes once applied
    big_probe_ids: list[int] = field(default_factory=list)  # ids the big txn inserts into b


SRC_DDL = """
CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text, amount numeric(12,2),
                ts timestamptz, flag boolean);
CREATE TABLE b (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, payload text, qty int,
                ts timestamptz);
"""

MARIADB_DDL = [
    "CREATE TABLE a (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 0, v TEXT,"
    " amount DECIMAL(12,2), ts DATETIME(6), flag BOOLEAN)",
    "CREATE TABLE b (id BIGINT PRIMARY KEY, n INT NOT NULL DEFAULT 0, payload TEXT, qty INT,"
    " ts DATETIME(6))",
]

INSERT_A = (
    "INSERT INTO a (id, n, v, amount, ts, flag) SELECT g, 0, md5(g::text),"
    " (g %% 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',"
    " g %% 2 = 0 FROM generate_series(%s::int, %s::int) g"
)
INSERT_B = (
    "INSERT INTO b (id, n, payload, qty, ts) SELECT g, 0, repeat(md5(g::text), 2), g %% 1000,"
    " timestamptz '2024-06-01 12:00:00.123456+00' + g * interval '1 minute'"
    " FROM generate_series(%s::bigint, %s::bigint) g"
)


def generate_workload(
    conn: psycopg.Connection[Any], rng: random.Random, total: int, big_rows: int, big_at: float
) -> Workload:
    """Commit a mixed workload of about ``total`` row changes, with one big transaction.

    Every count comes from the statements' real row counts (pgoutput sends one change per
    row a statement touched), so the expected totals are exact.
    """
    w = Workload()
    next_id = {"a": 1, "b": 1}

    def insert(table: str, k: int) -> int:
        lo = next_id[table]
        next_id[table] += k
        return conn.execute(INSERT_A if table == "a" else INSERT_B, (lo, lo + k - 1)).rowcount

    def update(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        if table == "a":
            stmt = (
                "UPDATE a SET n = n + 1, v = left(v, 20) || %s, amount = amount + 1.25,"
                " ts = ts + interval '1 hour', flag = NOT flag WHERE id >= %s AND id < %s"
            )
        else:
            stmt = (
                "UPDATE b SET n = n + 1, payload = %s || left(payload, 40), qty = qty + 1"
                " WHERE id >= %s AND id < %s"
            )
        return conn.execute(stmt, (f"u{rng.randrange(1000)}", lo, lo + k)).rowcount

    def delete(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        return conn.execute(f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo, lo + k)).rowcount

    def change_key(k: int) -> int:
        """A primary-key change: the target must delete the old key and insert the new one."""
        lo = rng.randrange(1, max(2, next_id["b"]))
        return conn.execute(
            "UPDATE b SET id = id + %s, n = n + 1 WHERE id >= %s AND id < %s AND id < %s",
            (KEY_SHIFT, lo, lo + k, KEY_SHIFT),
        ).rowcount

    def insert_then_touch(table: str, k: int) -> int:
        """Insert rows, update them twice and delete some, all in the same transaction."""
        lo = next_id[table]
        done = insert(table, k)
        done += conn.execute(
            f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + k)
        ).rowcount
        done += conn.execute(
            f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + max(1, k // 2))
        ).rowcount
        done += conn.execute(
            f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo + k - max(1, k // 4), lo + k)
        ).rowcount
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
        size = transaction_size()
        budget = size  # bounds the statements; the real count can be lower (holes in ranges)
        done = 0
        with conn.transaction():
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
        return done

    def count(done: int) -> None:
        w.changes += done
        if done:
            w.transactions += 1

    big_done = False
    while w.changes < total or not big_done:
        if not big_done and w.changes >= total * big_at:
            with conn.transaction():
                lo = next_id["b"]
                done = insert("b", big_rows)
                w.big_probe_ids = [lo + big_rows // 4, lo + (big_rows * 3) // 4]
                done += conn.execute(
                    "UPDATE a SET n = n + 1, v = v || 'big' WHERE id %% 5 = 0 AND id < %s",
                    (next_id["a"] // 2,),
                ).rowcount
                done += conn.execute(
                    "DELETE FROM b WHERE id %% 11 = 3 AND id < %s", (lo,)
                ).rowcount
            w.changes_before_big = w.changes
            count(done)
            w.big_changes = done
            big_done = True
            continue
        count(one_transaction())
    return w


# --------------------------------------------------------------------------- the two targets


class PgTarget:
    """A PostgreSQL target database: tables, checkpoint, rows, and the big-transaction probe."""

    def __init__(self, server: Any, db: str) -> None:
        self.server = server
        self.db = db
        self.url = server.url(db)

    def create_tables(self) -> None:
        self.server.create_database(self.db)
        self.server.execute(SRC_DDL, dbname=self.db)

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

    def lock_row(self, row_id: int) -> PgRowLock:
        return PgRowLock(self, row_id)


class PgRowLock:
    """Holds an uncommitted insert of ``b.id = row_id`` on the target (rolled back on close).

    The big source transaction inserts that key; the replicator's write of it waits for this
    transaction, so the replicator stops right there, inside the big transaction, with the rows
    before it written to its open target transaction.
    """

    def __init__(self, target: PgTarget, row_id: int) -> None:
        self.target = target
        self.conn = psycopg.connect(target.url)
        # (waits, if a killed replicator's backend still holds the key until it notices)
        self.conn.execute("INSERT INTO b (id) VALUES (%s)", (row_id,))
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        self.pid = int(row[0])

    def poll(self) -> str | None:
        """"blocked" once the replicator waits for this lock (PostgreSQL has no gap locks: only
        a write of this very key can wait for it)."""
        rows = self.target.server.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = %s AND %s = ANY(pg_blocking_pids(pid))",
            (self.target.db, self.pid),
            dbname=self.target.db,
        )
        return "blocked" if rows else None

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()


class MariaTarget:
    """A MariaDB target database (same API as :class:`PgTarget`)."""

    def __init__(self, server: Any, db: str) -> None:
        self.server = server
        self.db = db
        self.url = server.url(db)

    def create_tables(self) -> None:
        self.server.create_database(self.db)
        for ddl in MARIADB_DDL:
            self.server.execute(ddl, db=self.db)

    def checkpoint(self, flow: str) -> tuple[str, int, int] | None:
        try:
            rows = self.server.execute(
                "SELECT position, changes_applied, transactions_applied"
                " FROM _replicator.checkpoints WHERE flow = %s",
                (flow,),
            )
        except pymysql.err.ProgrammingError:  # the state table does not exist yet
            return None
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.server.execute(f"SELECT * FROM {table} ORDER BY id", db=self.db)]

    def lock_row(self, row_id: int) -> MariaRowLock:
        return MariaRowLock(self, row_id)


class MariaRowLock:
    """Like :class:`PgRowLock`, for InnoDB -- which also has gap locks.

    A replicator DELETE of keys the target does not have (rows inserted and deleted within one
    batch) locks the next existing record, which may be our row: such a wait is not inside the
    big transaction, so we let it pass (roll back) and take the lock again later. Taking it
    again can find the key already inserted, uncommitted, by the replicator: then it is inside
    the big transaction right now ("holds").
    """

    def __init__(self, target: MariaTarget, row_id: int) -> None:
        self.target = target
        self.row_id = row_id
        self.conn: Any = None
        self.own_id = 0
        # A killed replicator's transaction may still be rolling back (and holding locks).
        deadline = time.monotonic() + 60
        while self.conn is None:
            assert self._acquire() != "committed", "the big transaction was already applied"
            assert time.monotonic() < deadline, f"could not lock b.id = {row_id} for 60s"

    def _acquire(self) -> str | None:
        conn = self.target.server.connect(self.target.db, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute("SELECT CONNECTION_ID()")
            own = int(cur.fetchone()[0])
            try:
                cur.execute("INSERT INTO b (id) VALUES (%s)", (self.row_id,))
            except pymysql.err.IntegrityError:  # committed: the big transaction was applied
                conn.close()
                return "committed"
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1205:
                    raise
                conn.rollback()
                try:  # does the replicator hold this very key, uncommitted?
                    cur.execute("SELECT id FROM b WHERE id = %s FOR UPDATE NOWAIT", (self.row_id,))
                    held = False
                except pymysql.err.OperationalError as exc2:
                    if exc2.args[0] not in (1205, 3572):
                        raise
                    held = True
                conn.rollback()
                conn.close()
                return "holds" if held else None
        self.conn, self.own_id = conn, own
        return None

    def _release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def poll(self) -> str | None:
        if self.conn is None:
            return self._acquire()
        rows = self.target.server.execute(
            "SELECT p.INFO FROM information_schema.INNODB_TRX t"
            " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
            " WHERE p.DB = %s AND p.ID <> %s AND t.trx_state = 'LOCK WAIT'",
            (self.target.db, self.own_id),
        )
        if not rows:
            return None
        statement = str(rows[0][0] or "")
        if statement.startswith(f"INSERT INTO `{self.target.db}`.`b`"):
            return "blocked"
        self._release()  # a gap-lock wait outside the big transaction: let it pass
        return None

    def close(self) -> None:
        self._release()


def normalize_pg(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Source (PostgreSQL) row → what a MariaDB target stores: naive UTC datetimes."""
    return tuple(
        v.astimezone(timezone.utc).replace(tzinfo=None) if isinstance(v, datetime) else v for v in row
    )


def normalize_mariadb(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if table == "a":  # flag BOOLEAN is TINYINT(1)
        return (*row[:5], None if row[5] is None else bool(row[5]))
    return row


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


# --------------------------------------------------------------------------- the scenario


@dataclass
class Kill:
    how: str  # "commit": the crash hook; "timed": s after spawn; "batch": s after 1st batch; "big"
    arg: float


def slot_confirmed(pg: Any, slot: str) -> int | None:
    rows = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
    return lsn(str(rows[0][0])) if rows and rows[0][0] else None


def drop_slot(pg: Any, slot: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            pg.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s",
                (slot,),
            )
            return
        except psycopg.errors.ObjectInUse:  # the walsender of a killed process is still exiting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_clean_log(text: str, what: str) -> None:
    for bad in ("Traceback", "level='error'", "flow crashed", "internal error"):
        assert bad not in text, f"{what}: the replicator logged {bad!r}:\n{text[-3000:]}"


def run_crash_scenario(
    *,
    pg_source: Any,
    target: PgTarget | MariaTarget,
    src_db: str,
    tmp_path: Path,
    total: int,
    big_rows: int,
    plan: list[Kill],
    seed: int,
) -> None:
    t_start = time.monotonic()
    flow = f"crash_{secrets.token_hex(4)}"
    slot = f"replicator_{flow}"
    pg_source.create_database(src_db)
    pg_source.execute(SRC_DDL, dbname=src_db)
    target.create_tables()
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(src_db), target.url, ["a", "b"])
    rep = Replicator(cfg, tmp_path)
    try:
        # No initial snapshot exists yet: a first run creates the slot and the publication.
        rep.start("--once")
        assert rep.proc is not None
        assert rep.proc.wait(timeout=120) == 0, rep.log()
        assert slot_confirmed(pg_source, slot) is not None, "the first run created no slot"

        rng = random.Random(seed)
        t0 = time.monotonic()
        with psycopg.connect(pg_source.url(src_db), autocommit=True) as conn:
            w = generate_workload(conn, rng, total, big_rows, big_at=0.25)
        print(
            f"\nworkload: {w.changes} row changes in {w.transactions} transactions"
            f" (big transaction: {w.big_changes} changes after {w.changes_before_big})"
            f" generated in {time.monotonic() - t0:.1f}s"
        )
        assert w.changes >= total and w.big_changes >= big_rows

        kills: dict[str, int] = {}
        last_changes = 0
        for i, kill in enumerate(plan, 1):
            cp = target.checkpoint(flow)
            before = cp[1] if cp else 0
            env = {"REPLICATOR_TEST_CRASH_AFTER_COMMIT": str(int(kill.arg))} if kill.how == "commit" else {}
            if kill.how == "big":
                assert before < w.changes_before_big + w.big_changes, (
                    "test plan: the big transaction was applied before the kill meant for it"
                )
            if kill.how in ("commit", "batch"):
                assert before < w.changes, f"test plan: no work left for kill {i} ({kill.how})"
            spawned = time.monotonic()
            note = ""
            with ExitStack() as stack:
                if kill.how == "big":
                    # Hold a row the big transaction inserts: the replicator stops there, inside
                    # the big transaction, with everything before it written but not committed.
                    lock = target.lock_row(w.big_probe_ids[int(kill.arg)])
                    stack.callback(lock.close)
                proc = rep.start(env=env)
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
                        time.sleep(kill.arg)
                    else:
                        deadline = time.monotonic() + 120
                        while (state := lock.poll()) not in ("blocked", "holds"):
                            assert state is None, f"kill {i}: the big transaction was applied: {state}"
                            assert proc.poll() is None, f"kill {i}: exited:\n{rep.log()[-3000:]}"
                            cp_now = target.checkpoint(flow)
                            assert cp_now is None or cp_now[1] < w.changes_before_big + w.big_changes, (
                                "the big transaction was committed past the row lock"
                            )
                            assert time.monotonic() < deadline, f"kill {i}: never blocked in the big transaction"
                            time.sleep(0.02)
                        note = f" inside the big transaction ({state})"
                    assert proc.poll() is None, f"kill {i}: the replicator exited by itself:\n{rep.log()[-3000:]}"
                    rc = rep.kill()
            assert rc == -signal.SIGKILL, f"kill {i}: exit status {rc}:\n{rep.log()[-3000:]}"
            assert_clean_log(rep.log(), f"kill {i}")
            kills[kill.how] = kills.get(kill.how, 0) + 1

            cp = target.checkpoint(flow)
            if kill.how == "big":  # killed before the big transaction committed on the target
                assert cp is None or cp[1] < w.changes_before_big + w.big_changes
            confirmed = slot_confirmed(pg_source, slot)
            assert confirmed is not None
            if cp is not None:
                # The source is never acknowledged past what the target committed ...
                assert confirmed <= lsn(cp[0]), f"kill {i}: slot acknowledged past the checkpoint"
                if kill.how == "commit":
                    # ... and the hook really killed between the target commit and the ack.
                    assert confirmed < lsn(cp[0])
                assert cp[1] >= last_changes, "the checkpoint went backwards"
                assert cp[1] <= w.changes, f"kill {i}: more changes applied than exist: {cp}"
                last_changes = cp[1]
            print(
                f"kill {i:2d} ({kill.how} {kill.arg}){note} after {time.monotonic() - spawned:.2f}s:"
                f" changes applied {before} -> {cp[1] if cp else 0} of {w.changes}"
            )

        # Recover: a last run applies everything committed on the source, then exits 0.
        rep.start("--once")
        assert rep.proc is not None
        assert rep.proc.wait(timeout=180) == 0, rep.log()[-3000:]
        assert_clean_log(rep.log(), "final run")

        for table in ("a", "b"):
            src_rows = [tuple(r) for r in pg_source.execute(f"SELECT * FROM {table} ORDER BY id", dbname=src_db)]
            dst_rows = target.rows(table)
            if isinstance(target, MariaTarget):
                src_rows = [normalize_pg(r) for r in src_rows]
                dst_rows = [normalize_mariadb(table, r) for r in dst_rows]
            assert src_rows, f"table {table} is empty on the source"
            assert_same_rows(table, src_rows, dst_rows)
        cp = target.checkpoint(flow)
        assert cp is not None
        assert cp[1] == w.changes, f"changes_applied {cp[1]} != {w.changes} source row changes"
        assert cp[2] == w.transactions, f"transactions_applied {cp[2]} != {w.transactions}"
        total_kills = sum(kills.values())
        print(f"kills: {kills} = {total_kills}; {rep.runs} replicator runs; {time.monotonic() - t_start:.1f}s")
        assert total_kills >= 10 and kills.get("commit", 0) >= 4
        assert kills.get("timed", 0) + kills.get("batch", 0) + kills.get("big", 0) >= 6
    finally:
        rep.cleanup()
        drop_slot(pg_source, slot)
        pg_source.execute(f"DROP PUBLICATION IF EXISTS replicator_{flow}", dbname=src_db)


def make_plan(seed: int) -> list[Kill]:
    """13 kills. Both big-transaction kills come first (the checkpoint is still before it);
    kills that need work left (crash hook, after a batch) come before the purely timed ones."""
    rng = random.Random(seed)

    def timed() -> Kill:
        return Kill("timed", round(rng.uniform(0.2, 1.5), 2))

    def batch() -> Kill:
        return Kill("batch", round(rng.uniform(0.0, 0.3), 2))

    return [
        Kill("big", 0),  # a quarter into the big transaction
        Kill("big", 1),  # three quarters into it
        Kill("commit", 1),
        Kill("commit", 3),
        timed(),
        Kill("commit", 2),
        batch(),
        Kill("commit", 6),
        batch(),
        timed(),
        batch(),
        timed(),
        timed(),
    ]


def test_crash_safety_pg_to_pg(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    run_crash_scenario(
        pg_source=pg_source,
        target=PgTarget(pg_target, fresh_db_name),
        src_db=fresh_db_name,
        tmp_path=tmp_path,
        total=200_000,
        big_rows=25_000,
        plan=make_plan(11),
        seed=1,
    )


def test_crash_safety_pg_to_mariadb(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    run_crash_scenario(
        pg_source=pg_source,
        target=MariaTarget(mariadb, fresh_db_name),
        src_db=fresh_db_name,
        tmp_path=tmp_path,
        total=100_000,
        big_rows=12_000,
        plan=make_plan(12),
        seed=2,
    )
