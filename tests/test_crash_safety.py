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

import random
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from dbhelpers import write_config
from processes import (
    Kill,
    MariaTarget,
    PgTarget,
    Replicator,
    WorkloadSql,
    assert_applied_exactly_once,
    assert_clean_log,
    assert_kill_mix,
    assert_same_table,
    assert_work_left,
    drop_slot_when_released,
    generate_workload,
    kill_as_planned,
    utc_naive,
)

BATCH = "{max_rows: 500, max_delay_ms: 50}"

pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- helpers


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


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


class PgWorkloadSql(WorkloadSql):
    """The workload on a PostgreSQL source (pgoutput sends one change per row a statement
    touched, so the statements' row counts are the changes)."""

    update_a = (
        "UPDATE a SET n = n + 1, v = left(v, 20) || %s, amount = amount + 1.25,"
        " ts = ts + interval '1 hour', flag = NOT flag WHERE id >= %s AND id < %s"
    )
    update_b = "UPDATE b SET n = n + 1, payload = %s || left(payload, 40), qty = qty + 1 WHERE id >= %s AND id < %s"
    big_update = "UPDATE a SET n = n + 1, v = v || 'big' WHERE id %% 5 = 0 AND id < %s"
    big_delete = "DELETE FROM b WHERE id %% 11 = 3 AND id < %s"
    insert_a = (
        "INSERT INTO a (id, n, v, amount, ts, flag) SELECT g, 0, md5(g::text),"
        " (g %% 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',"
        " g %% 2 = 0 FROM generate_series(%s::int, %s::int) g"
    )
    insert_b = (
        "INSERT INTO b (id, n, payload, qty, ts) SELECT g, 0, repeat(md5(g::text), 2), g %% 1000,"
        " timestamptz '2024-06-01 12:00:00.123456+00' + g * interval '1 minute'"
        " FROM generate_series(%s::bigint, %s::bigint) g"
    )

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, stmt: str, params: tuple[Any, ...] = ()) -> int:
        return self.conn.execute(stmt, params).rowcount  # type: ignore[arg-type]

    def insert(self, table: str, lo: int, hi: int) -> int:
        return self.execute(self.insert_a if table == "a" else self.insert_b, (lo, hi))

    def transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()


# --------------------------------------------------------------------------- the two targets


class LockablePgTarget(PgTarget):
    """The PostgreSQL target, with the big-transaction probe."""

    def __init__(self, server: Any, db: str, ddl: str = SRC_DDL) -> None:
        super().__init__(server, db, ddl)

    def lock_row(self, row_id: int) -> PgRowLock:
        return PgRowLock(self, row_id)


class PgRowLock:
    """Holds an uncommitted insert of ``b.id = row_id`` on the target (rolled back on close).

    The big source transaction inserts that key; the replicator's write of it waits for this
    transaction, so the replicator stops right there, inside the big transaction, with the rows
    before it written to its open target transaction.
    """

    def __init__(self, target: LockablePgTarget, row_id: int) -> None:
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


class LockableMariaTarget(MariaTarget):
    """The MariaDB target, with the big-transaction probe."""

    def __init__(self, server: Any, db: str, ddl: Sequence[str] = MARIADB_DDL) -> None:
        super().__init__(server, db, ddl)

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

    def __init__(self, target: LockableMariaTarget, row_id: int) -> None:
        self.target = target
        self.row_id = row_id
        self.conn: Any = None
        self.own_id = 0
        self.last_read = 0.0
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
        # INNODB_TRX is served from a cache that InnoDB refreshes only when nobody read it in
        # the last 100 ms: polled faster, it shows the same stale transactions for ever.
        time.sleep(max(0.0, self.last_read + 0.15 - time.monotonic()))
        self.last_read = time.monotonic()
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


def normalize_mariadb(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if table == "a":  # flag BOOLEAN is TINYINT(1)
        return (*row[:5], None if row[5] is None else bool(row[5]))
    return row


# --------------------------------------------------------------------------- the scenario


def slot_confirmed(pg: Any, slot: str) -> int | None:
    rows = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
    return lsn(str(rows[0][0])) if rows and rows[0][0] else None


def run_crash_scenario(
    *,
    pg_source: Any,
    target: LockablePgTarget | LockableMariaTarget,
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
    cfg = write_config(
        tmp_path / "replicator.yaml", flow, pg_source.url(src_db), target.url, ["public.a", "public.b"], batch=BATCH
    )
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
            w = generate_workload(PgWorkloadSql(conn), rng, total, big_rows, big_at=0.25)
        w.report(t0)
        assert w.changes >= total and w.big_changes >= big_rows

        kills: dict[str, int] = {}
        last_changes = 0
        for i, kill in enumerate(plan, 1):
            cp = target.checkpoint(flow)
            before = cp[1] if cp else 0
            assert_work_left(kill, i, before, w)
            with ExitStack() as stack:
                lock: PgRowLock | MariaRowLock | None = None
                if kill.how == "big":
                    # Hold a row the big transaction inserts: the replicator stops there, inside
                    # the big transaction, with everything before it written but not committed.
                    lock = target.lock_row(w.big_probe_ids[int(kill.arg)])
                    stack.callback(lock.close)

                def in_big(proc: subprocess.Popen[bytes]) -> str:
                    assert lock is not None
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
                    return f" inside the big transaction ({state})"

                rc, spawned, note = kill_as_planned(rep, kill, i, in_big)
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

        rep.recover()

        for table in ("a", "b"):
            src_rows = [tuple(r) for r in pg_source.execute(f"SELECT * FROM {table} ORDER BY id", dbname=src_db)]
            dst_rows = target.rows(table)
            if isinstance(target, MariaTarget):
                src_rows = [utc_naive(r) for r in src_rows]
                dst_rows = [normalize_mariadb(table, r) for r in dst_rows]
            assert src_rows, f"table {table} is empty on the source"
            assert_same_table(table, src_rows, dst_rows)
        assert_applied_exactly_once(target.checkpoint(flow), w)
        assert_kill_mix(kills, rep.runs, t_start)
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, slot)
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
        batch(),
        Kill("commit", 2),
        batch(),
        Kill("commit", 6),
        batch(),
        timed(),
        timed(),
        timed(),
        timed(),
    ]


def test_crash_safety_pg_to_pg(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    run_crash_scenario(
        pg_source=pg_source,
        target=LockablePgTarget(pg_target, fresh_db_name),
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
        target=LockableMariaTarget(mariadb, fresh_db_name),
        src_db=fresh_db_name,
        tmp_path=tmp_path,
        total=200_000,
        big_rows=12_000,
        plan=make_plan(12),
        seed=2,
    )
