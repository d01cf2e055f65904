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

    def has_row(self, table: str, row_id: int) -> bool:
        return bool(self.server.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,), dbname=self.db))


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

    def has_row(self, table: str, row_id: int) -> bool:
        return bool(self.server.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,), db=self.db))


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


# --------------------------------------------------------------------------- snapshots
# Used by test_snapshot and test_snapshot_crash: configs with several flows, replicator
# commands in the background, the target's snapshot state, a source writer that bumps a
# per-row version, and a target-side log of every row the replicator writes.


def flow_yaml(name: str, source: str, target: str, tables: Sequence[str], **options: str) -> str:
    """One item of a config's ``flows:`` list; ``options`` are flow keys with YAML values."""
    lines = [f"  - name: {name}", f"    source: {source}", f"    target: {target}"]
    lines += [f"    {key}: {value}" for key, value in options.items()]
    lines.append("    tables:")
    lines += [f"      - source: {t}" for t in tables]
    return "\n".join(lines) + "\n"


def write_flows(path: Path, systems: dict[str, str], *flows: str) -> Path:
    """Write a config with ``systems`` (name -> URL) and ``flows`` (:func:`flow_yaml`); ``path``."""
    text = "systems:\n" + "".join(f'  {name}: {{url: "{url}"}}\n' for name, url in systems.items())
    path.write_text(text + "flows:\n" + "".join(flows))
    return path


class Command:
    """``replicator -c CFG ARGS...`` in the background (any subcommand), output to ``log_path``."""

    def __init__(self, cfg: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_TEST_CRASH")}
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "replicator.cli", "-c", str(cfg), *args],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL (if still running); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the replicator did not exit within {timeout:.0f}s:\n{self.log()[-3000:]}")


@dataclass(frozen=True)
class SnapState:
    status: str
    rows_copied: int
    rows_estimated: int | None
    position: str | None


class SnapshotWatch:
    """Reads ``<state schema>.snapshots`` on a target through one open connection (cheap to poll)."""

    def __init__(self, server: Any, db: str, engine: str) -> None:
        self.engine = engine
        if engine == "postgresql":
            self.conn: Any = psycopg.connect(server.url(db), autocommit=True)
        else:
            self.conn = server.connect(db)

    def states(self, flow: str) -> dict[str, SnapState]:
        """Per source table (schema.name); empty before the state table exists."""
        query = (
            "SELECT source_table, status, rows_copied, rows_estimated, position"
            " FROM _replicator.snapshots WHERE flow = %s"
        )
        try:
            if self.engine == "postgresql":
                rows = self.conn.execute(query, (flow,)).fetchall()
            else:
                with self.conn.cursor() as cur:
                    cur.execute(query, (flow,))
                    rows = cur.fetchall()
        except (psycopg.errors.UndefinedTable, pymysql.err.ProgrammingError):
            return {}
        return {str(r[0]): SnapState(str(r[1]), int(r[2]), None if r[3] is None else int(r[3]), r[4]) for r in rows}

    def state(self, flow: str, table: str) -> SnapState | None:
        return self.states(flow).get(table)

    def close(self) -> None:
        self.conn.close()


def version_log_sql(table: str) -> str:
    """PostgreSQL target: log every row written into ``table`` (columns ``id``, ``version``) as
    (id, version, op) in ``version_log``, and every TRUNCATE as op 'T'.

    Statement triggers with transition tables (cheap next to a row trigger: the log costs one
    INSERT … SELECT per statement, COPY included), ``ENABLE ALWAYS`` because the replicator's
    sessions run with ``session_replication_role = replica``, where ordinary triggers do not fire.
    """
    fn = f"log_{table}"
    return f"""
CREATE TABLE IF NOT EXISTS version_log (seq bigserial PRIMARY KEY, tbl text NOT NULL, id bigint,
                                        version integer, op text NOT NULL);
CREATE FUNCTION {fn}_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO version_log (tbl, id, version, op) SELECT '{table}', id, version, 'I' FROM new_rows;
  RETURN NULL; END $$;
CREATE FUNCTION {fn}_upd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO version_log (tbl, id, version, op) SELECT '{table}', id, version, 'U' FROM new_rows;
  RETURN NULL; END $$;
CREATE FUNCTION {fn}_del() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO version_log (tbl, id, version, op) SELECT '{table}', id, version, 'D' FROM old_rows;
  RETURN NULL; END $$;
CREATE FUNCTION {fn}_trunc() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO version_log (tbl, op) VALUES ('{table}', 'T');
  RETURN NULL; END $$;
CREATE TRIGGER {fn}_i AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {fn}_ins();
CREATE TRIGGER {fn}_u AFTER UPDATE ON {table} REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {fn}_upd();
CREATE TRIGGER {fn}_d AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {fn}_del();
CREATE TRIGGER {fn}_t AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {fn}_trunc();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {fn}_i;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {fn}_u;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {fn}_d;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {fn}_t;
"""


def version_log(server: Any, db: str, table: str) -> list[tuple[int | None, int | None, str]]:
    """(id, version, op) of every write the log holds for ``table``, in the order written."""
    return [
        (r[0], r[1], str(r[2]))
        for r in server.execute(
            "SELECT id, version, op FROM version_log WHERE tbl = %s ORDER BY seq", (table,), dbname=db
        )
    ]


def assert_each_change_applied_once(log: list[tuple[int | None, int | None, str]], what: str) -> int:
    """After the log's last TRUNCATE: per id, every written version is higher than the one
    before it (a change applied twice repeats a version, an old change applied late goes back),
    and nothing is written to an id after its delete (the writers never re-use an id).
    Returns how many writes were checked."""
    truncates = [i for i, entry in enumerate(log) if entry[2] == "T"]
    assert truncates, f"{what}: the log has no TRUNCATE (the snapshot truncates the table first)"
    last: dict[int, int] = {}
    deleted: set[int] = set()
    problems: list[str] = []
    entries = log[truncates[-1] + 1:]
    for row_id, version, op in entries:
        assert row_id is not None and version is not None
        if op == "D":
            deleted.add(row_id)
            continue
        if row_id in deleted:
            problems.append(f"id {row_id}: version {version} written ({op}) after the row was deleted")
        elif row_id in last and version <= last[row_id]:
            kind = "written twice" if version == last[row_id] else "went back"
            problems.append(f"id {row_id}: version {version} {kind} after version {last[row_id]} ({op})")
        last[row_id] = version
    assert not problems, (
        f"{what}: {len(problems)} changes applied twice or out of order, e.g. {problems[:8]}"
    )
    return len(entries)


class VersionWriter(threading.Thread):
    """Keeps changing the source table ``t (id, version, v)`` until stopped, one transaction at a
    time: update 5 random rows (``version = version + 1``), every 20th transaction also a slice of
    ~1/997 of all rows spread over the whole key range, delete one random row, insert two new
    rows at random unused odd ids (the table starts with even ids only). Ids are never re-used.
    Random over the whole key range: during a copy it changes rows already copied and rows not
    yet copied. ``pause()`` returns once the writer sits between transactions (everything it
    committed is committed); ``resume()``; ``stop()`` raises what the writer raised."""

    def __init__(self, ids: Sequence[int], top: int, seed: int = 7) -> None:
        super().__init__(name="version-writer", daemon=True)
        self.rng = random.Random(seed)
        self.live = list(ids)
        self.used = set(ids)
        self.top = top
        self.committed = 0
        self.halt = threading.Event()
        self.pause_request = threading.Event()
        self.idle = threading.Event()
        self.error: BaseException | None = None

    # -- the engine's part
    def connect(self) -> Any:
        raise NotImplementedError

    def one_transaction(self, conn: Any, update: list[int], slice_mod: int | None, delete: int, insert: list[int]) -> None:
        raise NotImplementedError

    # -- the loop
    def _new_id(self) -> int:
        while True:
            candidate = self.rng.randrange(1, self.top, 2)
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def run(self) -> None:
        conn = None
        try:
            conn = self.connect()
            while not self.halt.is_set():
                if self.pause_request.is_set():
                    self.idle.set()
                    time.sleep(0.01)
                    continue
                self.idle.clear()
                update = self.rng.sample(self.live, 5)
                slice_mod = self.rng.randrange(997) if self.committed % 20 == 0 else None
                i = self.rng.randrange(len(self.live))
                self.live[i], self.live[-1] = self.live[-1], self.live[i]
                delete = self.live.pop()
                if delete in update:
                    update.remove(delete)
                insert = [self._new_id(), self._new_id()]
                self.one_transaction(conn, update, slice_mod, delete, insert)
                self.live += insert
                self.committed += 1
                time.sleep(0.005)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.idle.set()
            if conn is not None:
                conn.close()

    def pause(self) -> None:
        self.idle.clear()
        self.pause_request.set()
        assert self.idle.wait(30), "the writer did not pause"
        self.check()

    def resume(self) -> None:
        self.pause_request.clear()

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the source writer failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the source writer did not stop"
        self.check()


class PgVersionWriter(VersionWriter):
    def __init__(self, server: Any, db: str, ids: Sequence[int], top: int, seed: int = 7) -> None:
        super().__init__(ids, top, seed)
        self.url = server.url(db)

    def connect(self) -> Any:
        return psycopg.connect(self.url, autocommit=True)

    def one_transaction(self, conn: Any, update: list[int], slice_mod: int | None, delete: int, insert: list[int]) -> None:
        with conn.transaction():
            conn.execute("UPDATE t SET version = version + 1, v = md5(v) WHERE id = ANY(%s)", (update,))
            if slice_mod is not None:
                conn.execute("UPDATE t SET version = version + 1 WHERE id %% 997 = %s", (slice_mod,))
            conn.execute("DELETE FROM t WHERE id = %s", (delete,))
            conn.execute("INSERT INTO t (id, version, v) SELECT unnest(%s::bigint[]), 0, 'new'", (insert,))


class MariaVersionWriter(VersionWriter):
    def __init__(self, server: Any, db: str, ids: Sequence[int], top: int, seed: int = 7) -> None:
        super().__init__(ids, top, seed)
        self.server, self.db = server, db

    def connect(self) -> Any:
        return self.server.connect(self.db)

    def one_transaction(self, conn: Any, update: list[int], slice_mod: int | None, delete: int, insert: list[int]) -> None:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                f"UPDATE t SET version = version + 1, v = MD5(v) WHERE id IN ({', '.join(['%s'] * len(update))})",
                update,
            )
            if slice_mod is not None:
                cur.execute("UPDATE t SET version = version + 1 WHERE id %% 997 = %s", (slice_mod,))
            cur.execute("DELETE FROM t WHERE id = %s", (delete,))
            cur.executemany("INSERT INTO t (id, version, v) VALUES (%s, 0, 'new')", [(i,) for i in insert])
            cur.execute("COMMIT")
