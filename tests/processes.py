"""Helpers shared by the slow tests that run the replicator as a process and break things:
``test_crash_safety``, ``test_mariadb_crash`` and ``test_restarts``.

Plain classes and functions, no fixtures; imported as ``from processes import ...`` (pytest
puts ``tests/`` on ``sys.path``, see ``dbhelpers``).

* the replicator process: :func:`start_replicator`, :class:`Replicator`;
* waiting and checking: :func:`wait_for`, :func:`assert_clean_log`, :func:`assert_same_table`;
* servers: :func:`keep_reachable` (before a restart), :func:`drop_slot_when_released`;
* targets with the same small API on both engines: :class:`PgTarget`, :class:`MariaTarget`;
* the crash tests' workload and kill plan: :class:`Workload`, :func:`generate_workload`,
  :class:`Kill`, :func:`kill_as_planned` and the checks around it;
* a source writer that keeps committing through outages: :class:`SourceWriter`.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

REPO = Path(__file__).resolve().parents[1]
CATCH_UP_TIMEOUT = 120.0
KEY_SHIFT = 100_000_000  # primary-key changes move a row to id + KEY_SHIFT
# What the replicator's output must not hold (see assert_clean_log).
LOG_ERRORS = ("Traceback", "level='error'", "flow crashed", "internal error")

# --------------------------------------------------------------------------- the replicator process


def start_replicator(
    cfg: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``replicator -c CFG run EXTRA...`` in the background, stdout and stderr to ``log_path``.

    The environment is this process's without any ``REPLICATOR_TEST_CRASH*`` hook, plus ``env``.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_TEST_CRASH")}
    full_env.update(env or {})
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "replicator.cli", "-c", str(cfg), "run", *extra],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


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
        self.proc = start_replicator(self.cfg, self.log_path, *extra, env=env)
        return self.proc

    def log(self) -> str:
        """The output of the latest run."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> int:
        """SIGKILL the latest run (if it still runs); its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def recover(self, errors: Sequence[str] = LOG_ERRORS) -> None:
        """A last ``run --once`` applies everything committed on the source, then exits 0,
        logging none of ``errors``."""
        self.start("--once")
        assert self.proc is not None
        assert self.proc.wait(timeout=180) == 0, self.log()[-3000:]
        assert_clean_log(self.log(), "final run", errors)


# --------------------------------------------------------------------------- waiting and checking


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = CATCH_UP_TIMEOUT) -> None:
    """Poll ``predicate`` every 0.1 s until it is true; driver errors count as "not yet" (a
    server is restarting). Fails the test after ``timeout`` s."""
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


def assert_clean_log(text: str, what: str, errors: Sequence[str] = LOG_ERRORS) -> None:
    """The replicator's output ``text`` holds none of ``errors``."""
    for bad in errors:
        assert bad not in text, f"{what}: the replicator logged {bad!r}:\n{text[-3000:]}"


def wait_caught_up(applied: Callable[[], int], expected: int, alive: Callable[[], None]) -> None:
    """Wait until ``applied()`` reaches the ``expected`` change count, never passing it;
    ``alive()`` checks the replicator is still running on each poll."""

    def caught_up() -> bool:
        alive()
        n = applied()
        assert n <= expected, f"applied {n} changes, more than the {expected} committed"
        return n == expected

    wait_for(f"the target to catch up with {expected} changes", caught_up)


def print_retry_warnings(log: str) -> None:
    print(
        "retry warnings:\n  "
        + "\n  ".join(line[:220] for line in log.splitlines() if "retrying" in line)
    )


def assert_same_table(table: str, src: list[tuple[Any, ...]], dst: list[tuple[Any, ...]]) -> None:
    """The target rows of ``table`` equal the source rows (both ordered by id); else fail
    with what is missing, extra and different."""
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


def utc_naive(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A PostgreSQL row as a MariaDB target stores it: aware datetimes → naive UTC."""
    return tuple(
        v.astimezone(timezone.utc).replace(tzinfo=None) if isinstance(v, datetime) else v for v in row
    )


# --------------------------------------------------------------------------- servers


def keep_reachable(server: Any) -> None:
    """Let the ``postgres`` user reach the server's directory again before a restart.

    conftest grants o+x on pytest's own temp directories when it creates a server directory,
    but any pytest session that starts later (e.g. a concurrent run) tightens
    ``/tmp/pytest-of-<user>`` back to 0700, and a restart then fails the sandbox's
    reachability check. Grant it again, exactly as conftest does.
    """
    if os.geteuid() != 0 or not hasattr(server, "base_dir"):
        return
    for d in server.base_dir.parents:
        if d.name.startswith("pytest-of-") or d.parent.name.startswith("pytest-of-"):
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH:
                d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def drop_slot_when_released(pg: Any, slot: str) -> None:
    """Drop replication slot ``slot``, waiting up to 30 s for a killed process's walsender
    to release it."""
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


# --------------------------------------------------------------------------- targets

_CHECKPOINT_QUERY = (
    "SELECT position, changes_applied, transactions_applied FROM _replicator.checkpoints WHERE flow = %s"
)


class PgTarget:
    """A PostgreSQL target database: its tables (``ddl``), the flow's checkpoint, rows.

    ``url`` is what the replicator connects with (default: the server's superuser URL).
    """

    def __init__(self, server: Any, db: str, ddl: str, url: str | None = None) -> None:
        self.server, self.db, self.ddl = server, db, ddl
        self.url = server.url(db) if url is None else url

    def create_tables(self) -> None:
        self.server.create_database(self.db)
        self.server.execute(self.ddl, dbname=self.db)

    def checkpoint(self, flow: str) -> tuple[str, int, int] | None:
        """(position, changes_applied, transactions_applied), or None before the first one."""
        try:
            rows = self.server.execute(_CHECKPOINT_QUERY, (flow,), dbname=self.db)
        except psycopg.errors.UndefinedTable:
            return None
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.server.execute(f"SELECT * FROM {table} ORDER BY id", dbname=self.db)]


class MariaTarget:
    """A MariaDB target database (same API as :class:`PgTarget`; ``ddl`` one statement each)."""

    def __init__(self, server: Any, db: str, ddl: Sequence[str], url: str | None = None) -> None:
        self.server, self.db, self.ddl = server, db, ddl
        self.url = server.url(db) if url is None else url

    def create_tables(self) -> None:
        self.server.create_database(self.db)
        for stmt in self.ddl:
            self.server.execute(stmt, db=self.db)

    def checkpoint(self, flow: str) -> tuple[str, int, int] | None:
        try:
            rows = self.server.execute(_CHECKPOINT_QUERY, (flow,))
        except pymysql.err.ProgrammingError:  # the state table does not exist yet
            return None
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.server.execute(f"SELECT * FROM {table} ORDER BY id", db=self.db)]


# --------------------------------------------------------------------------- the crash workload


@dataclass
class Workload:
    """What was committed on the source, counted the way the checkpoint counts it."""

    changes: int = 0  # row changes (each inserted, updated or deleted row once)
    transactions: int = 0  # transactions that changed at least one row
    big_changes: int = 0
    changes_before_big: int = 0  # the checkpoint counts more than this + big_changes once applied
    big_probe_ids: list[int] = field(default_factory=list)  # ids the big transaction inserts into b

    def report(self, started: float) -> None:
        print(
            f"\nworkload: {self.changes} row changes in {self.transactions} transactions"
            f" (big transaction: {self.big_changes} changes after {self.changes_before_big})"
            f" generated in {time.monotonic() - started:.1f}s"
        )


class WorkloadSql:
    """One source engine's SQL for :func:`generate_workload` on tables ``a`` and ``b``
    (``id`` key, ``n`` change counter, ...). Statements take ``%s`` parameters."""

    update_a: str  # params: (tag, lo, hi): n = n + 1 and change the other columns of lo <= id < hi
    update_b: str
    big_update: str  # params: (limit,): n = n + 1 on a fifth of the rows of a with id < limit
    big_delete: str  # params: (lo,): delete an eleventh of the rows of b with id < lo

    def execute(self, stmt: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    def insert(self, table: str, lo: int, hi: int) -> int:
        """Insert rows ``lo..hi`` (n = 0) into ``table``; the number inserted."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction around the block, committed at its end."""
        raise NotImplementedError


def generate_workload(sql: WorkloadSql, rng: random.Random, total: int, big_rows: int, big_at: float) -> Workload:
    """Commit a mixed workload of about ``total`` row changes, with one big transaction of
    ``big_rows`` inserts (and more) once ``big_at`` of ``total`` is done.

    Every count comes from the statements' real row counts, so the expected totals are exact
    (every UPDATE increments ``n``, so each matched row really changes and is one change).
    """
    w = Workload()
    next_id = {"a": 1, "b": 1}

    def insert(table: str, k: int) -> int:
        lo = next_id[table]
        next_id[table] += k
        return sql.insert(table, lo, lo + k - 1)

    def update(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        stmt = sql.update_a if table == "a" else sql.update_b
        return sql.execute(stmt, (f"u{rng.randrange(1000)}", lo, lo + k))

    def delete(table: str, k: int) -> int:
        lo = rng.randrange(1, max(2, next_id[table]))
        return sql.execute(f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo, lo + k))

    def change_key(k: int) -> int:
        """A primary-key change: the target must delete the old key and insert the new one."""
        lo = rng.randrange(1, max(2, next_id["b"]))
        return sql.execute(
            "UPDATE b SET id = id + %s, n = n + 1 WHERE id >= %s AND id < %s AND id < %s",
            (KEY_SHIFT, lo, lo + k, KEY_SHIFT),
        )

    def insert_then_touch(table: str, k: int) -> int:
        """Insert rows, update them twice and delete some, all in the same transaction."""
        lo = next_id[table]
        done = insert(table, k)
        done += sql.execute(f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + k))
        done += sql.execute(f"UPDATE {table} SET n = n + 1 WHERE id >= %s AND id < %s", (lo, lo + max(1, k // 2)))
        done += sql.execute(f"DELETE FROM {table} WHERE id >= %s AND id < %s", (lo + k - max(1, k // 4), lo + k))
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
        budget = transaction_size()  # bounds the statements; the real count can be lower (holes in ranges)
        done = 0
        with sql.transaction():
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
            with sql.transaction():
                lo = next_id["b"]
                done = insert("b", big_rows)
                w.big_probe_ids = [lo + big_rows // 4, lo + (big_rows * 3) // 4]
                done += sql.execute(sql.big_update, (next_id["a"] // 2,))
                done += sql.execute(sql.big_delete, (lo,))
            w.changes_before_big = w.changes
            count(done)
            w.big_changes = done
            big_done = True
            continue
        count(one_transaction())
    return w


# --------------------------------------------------------------------------- the kill plan


@dataclass
class Kill:
    how: str  # "commit": the crash hook after arg commits; "timed": arg s after spawn;
    # "batch": arg s after the first applied batch; "big": inside the big transaction (arg:
    # which of Workload.big_probe_ids to block on)
    arg: float


def assert_work_left(kill: Kill, i: int, before: int, w: Workload) -> None:
    """The plan is still possible with ``before`` changes applied: a kill inside the big
    transaction needs it unapplied, kills after a commit or a batch need work left."""
    if kill.how == "big":
        assert before < w.changes_before_big + w.big_changes, (
            "test plan: the big transaction was applied before the kill meant for it"
        )
    if kill.how in ("commit", "batch"):
        assert before < w.changes, f"test plan: no work left for kill {i} ({kill.how})"


def kill_as_planned(
    rep: Replicator, kill: Kill, i: int, in_big: Callable[[subprocess.Popen[bytes]], str]
) -> tuple[int, float, str]:
    """Start a streaming run and end it the way ``kill`` says; (exit status, spawn time, note).

    A "commit" kill sets the crash hook and waits for the process to kill itself; the others
    SIGKILL it: ``arg`` s after the spawn, ``arg`` s after its first applied batch, or once
    ``in_big(proc)`` returns (it waits until the run is inside the big transaction, and
    returns a note for the log).
    """
    env = {"REPLICATOR_TEST_CRASH_AFTER_COMMIT": str(int(kill.arg))} if kill.how == "commit" else {}
    spawned = time.monotonic()
    proc = rep.start(env=env)
    note = ""
    if kill.how == "commit":
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rep.kill()
            pytest.fail(f"kill {i}: the crash hook did not fire:\n{rep.log()[-3000:]}")
        return rc, spawned, note
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
    else:
        note = in_big(proc)
    assert proc.poll() is None, f"kill {i}: the replicator exited by itself:\n{rep.log()[-3000:]}"
    return rep.kill(), spawned, note


def assert_applied_exactly_once(cp: tuple[str, int, int] | None, w: Workload) -> None:
    """The final checkpoint counts exactly the workload's row changes and transactions."""
    assert cp is not None
    assert cp[1] == w.changes, f"changes_applied {cp[1]} != {w.changes} source row changes"
    assert cp[2] == w.transactions, f"transactions_applied {cp[2]} != {w.transactions}"


def assert_kill_mix(kills: dict[str, int], runs: int, started: float, *, min_big: int = 0) -> None:
    """Report the kills, then: at least 10, 4 of them by the crash hook, ``min_big`` inside the
    big transaction, and 6 at moments of the test's choosing (timed, after a batch, big)."""
    total_kills = sum(kills.values())
    print(f"kills: {kills} = {total_kills}; {runs} replicator runs; {time.monotonic() - started:.1f}s")
    assert total_kills >= 10 and kills.get("commit", 0) >= 4 and kills.get("big", 0) >= min_big
    assert kills.get("timed", 0) + kills.get("batch", 0) + kills.get("big", 0) >= 6


# --------------------------------------------------------------------------- a writer through outages


class SourceWriter(threading.Thread):
    """Commits small mixed transactions on the source until stopped, reconnecting on errors.

    Each transaction inserts its own row change count into ``ledger`` (not replicated) before
    committing, so a commit whose outcome the client never learned (the server died under it)
    is still counted exactly. Subclasses give the engine's connection and statements.
    """

    connection_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, seed: int) -> None:
        super().__init__(name="source-writer", daemon=True)
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.attempts = 0
        self.committed = 0  # transactions whose commit the client saw succeed
        self.failures = 0
        self.max_id = {"a": 0, "b": 0}
        self.error: BaseException | None = None

    # -- the engine's part

    def connect(self) -> Any:
        raise NotImplementedError

    def is_closed(self, conn: Any) -> bool:
        return False

    def close(self, conn: Any) -> None:
        conn.close()

    def commit_one(self, conn: Any) -> None:
        """One transaction of :meth:`changes` and its ledger row, committed."""
        raise NotImplementedError

    def insert(self, conn: Any, table: str, k: int) -> tuple[int, int]:
        """Insert ``k`` rows; (rows inserted, the highest new id)."""
        raise NotImplementedError

    def update(self, conn: Any, table: str, tag: str, lo: int, hi: int) -> int:
        """n = n + 1 (and change other columns, with ``tag``) where lo <= id <= hi; rows changed."""
        raise NotImplementedError

    def execute(self, conn: Any, stmt: str, params: tuple[Any, ...]) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    # -- the loop

    def run(self) -> None:
        conn: Any = None
        try:
            while not self.stopping.is_set():
                try:
                    if conn is None or self.is_closed(conn):
                        conn = self.connect()
                    self.attempts += 1
                    self.commit_one(conn)
                    self.committed += 1
                except self.connection_errors:
                    self.failures += 1
                    if conn is not None:
                        self.close(conn)
                    conn = None
                    self.stopping.wait(0.2)
                    continue
                self.stopping.wait(0.005)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            if conn is not None:
                self.close(conn)

    def changes(self, conn: Any) -> int:
        """1-3 statements inserting, updating or deleting up to 30 rows; the rows changed."""
        rng = self.rng
        changes = 0
        for _ in range(rng.randint(1, 3)):
            table = rng.choice(("a", "b"))
            op = rng.random()
            k = rng.randint(1, 30)
            top = self.max_id[table]
            if op < 0.45 or top < 100:
                n, highest = self.insert(conn, table, k)
                self.max_id[table] = max(top, highest)
                changes += n
            elif op < 0.85:
                lo = rng.randint(1, top)
                changes += self.update(conn, table, f"-{rng.randrange(10**6)}", lo, lo + k)
            else:
                lo = rng.randint(1, top)
                changes += self.execute(conn, f"DELETE FROM {table} WHERE id BETWEEN %s AND %s", (lo, lo + k // 4))
        return changes

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the source writer did not stop"
        if self.error is not None:
            raise self.error

    def report(self, changes: int, transactions: int) -> None:
        """Print the attempts, failures and what the source committed (from its ledger)."""
        print(
            f"writer: {self.attempts} transactions tried, {self.failures} failed;"
            f" source committed {changes} row changes in {transactions} transactions"
        )
