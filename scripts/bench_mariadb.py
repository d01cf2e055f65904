#!/usr/bin/env python
"""Benchmark: MariaDB catch-up, the replicator (-> MariaDB, -> PostgreSQL) against a native replica.

    .venv/bin/python scripts/bench_mariadb.py [--rows 500000] [--update-rows 200000] [--repeat 3]
                                              [--target-binlog] [--keep]

Four throwaway servers on this host (``replicator.sandbox``), each on a free port:

  primary     MariaDB, server_id 1, row-based binlog with full images and metadata, GTIDs;
  replica     MariaDB, server_id 2, a native replica of the primary
              (``CHANGE MASTER TO … MASTER_USE_GTID=slave_pos``, ``slave_parallel_threads`` left
              at its default 0: one SQL thread applies the transactions in order);
  mariadb     MariaDB, server_id 3, the replicator's MariaDB -> MariaDB target;
  postgres    PostgreSQL, the replicator's MariaDB -> PostgreSQL target.

Both MariaDB targets run with the same settings. By default neither writes a binary log (the
replica's ``log_slave_updates`` would be irrelevant); ``--target-binlog`` turns the binlog on
for both (and ``log_slave_updates`` on for the replica), so both pay for logging what they
apply.

Two workloads, each fully committed on the primary while no consumer runs (the replica's
threads are stopped with ``STOP SLAVE``; the replicator keeps its checkpoint on its target),
then applied by each consumer in turn:

  A  ``--rows`` single-row INSERT statements, committed every 1,000 rows (a stored procedure
     with one INSERT per row and a COMMIT every 1,000 rows; under binlog_format=ROW each
     statement is its own table map + rows event);
  B  one ``UPDATE t SET amount = amount + 1 WHERE id <= --update-rows`` (one transaction).

Consumers, one after another (never simultaneously):

  native      timed from ``START SLAVE`` until the replica's ``gtid_slave_pos`` reached the
              primary's ``gtid_binlog_pos`` (the SQL thread committed the last transaction);
  replicator  ``replicator run --once`` as a subprocess (one flow per target, default batch
              settings, the flow initialised by a first run before any workload); timed from
              spawning the process until it exits (interpreter start-up included).

After every measured run the consumer's table is compared with the primary's: count,
sum(amount) and the sum over all rows of a 60-bit prefix of the md5 of the row's columns
as normalised text (the same text on MariaDB and PostgreSQL). Each round runs A then B for all
three consumers (their order rotates between rounds), then truncates the table on the primary
(replicated, untimed) so every round starts empty. Medians over ``--repeat`` rounds are reported
as rows/s with the ratios replicator/native, as a Markdown table printed at the end and written
to ``scripts/bench_results_mariadb.md``. The machine's load average is recorded around every
run: other processes competing for the CPUs make the numbers noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import pymysql  # noqa: E402

from replicator.sandbox import MariaDBServer, PostgresServer, free_port  # noqa: E402

RESULTS_FILE = REPO / "scripts" / "bench_results_mariadb.md"
DB = "bench"
PG_DB = "bench"
TXN_ROWS = 1000
CATCHUP_TIMEOUT = 1800.0  # seconds: a consumer that takes longer is reported as failed
POLL = 0.01

CONSUMERS = ("native", "mariadb", "postgres")
LABELS = {
    "native": "native replica",
    "mariadb": "replicator →MariaDB",
    "postgres": "replicator →PostgreSQL",
}

MY_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint PRIMARY KEY,
    name varchar(64),
    email varchar(128),
    amount decimal(12,2),
    created_at datetime(6),
    payload varchar(200)
) ENGINE=InnoDB
"""

PG_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint PRIMARY KEY,
    name varchar(64),
    email varchar(128),
    amount numeric(12,2),
    created_at timestamp(6),
    payload varchar(200)
) WITH (autovacuum_enabled = false)
"""

# One single-row INSERT statement per row, COMMIT every `per_txn` rows. The calling session runs
# with autocommit off, so the statement after a COMMIT opens the next transaction.
INSERT_PROC = """
CREATE PROCEDURE bench_insert(IN first_id BIGINT, IN n INT, IN per_txn INT)
BEGIN
    DECLARE i BIGINT DEFAULT first_id;
    DECLARE last_id BIGINT DEFAULT first_id + n - 1;
    WHILE i <= last_id DO
        INSERT INTO t (id, name, email, amount, created_at, payload)
        VALUES (i, CONCAT('name ', i), CONCAT('user', i, '@example.com'),
                ((i * 7919) % 10000000) / 100,
                TIMESTAMP '2024-01-01 00:00:00' + INTERVAL i SECOND + INTERVAL (i * 37) % 1000000 MICROSECOND,
                RPAD(MD5(i), 100, MD5(i + 1)));
        IF (i - first_id + 1) % per_txn = 0 OR i = last_id THEN
            COMMIT;
        END IF;
        SET i = i + 1;
    END WHILE;
END
"""

# count, sum(amount), sum of a 60-bit md5 prefix of every row as text: order-independent and
# computed on the server. The row text is the same on MariaDB and PostgreSQL.
MY_CHECKSUM = """
SELECT COUNT(*), COALESCE(SUM(amount), 0),
       COALESCE(SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', id, name, email, amount,
           DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), payload)), 1, 15), 16, 10) AS UNSIGNED)), 0)
FROM t
"""
PG_CHECKSUM = """
SELECT count(*), coalesce(sum(amount), 0),
       coalesce(sum(('x' || substr(md5(concat_ws('|', id, name, email, amount,
           to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US'), payload)), 1, 15))::bit(60)::bigint), 0)
FROM t
"""


class PeakRss:
    """Polls a process's peak resident set size (``VmHWM`` in ``/proc/PID/status``) until
    stopped. Not ``ru_maxrss``: Linux counts into a child's the parent's resident size at the
    fork, and this script holds workload B's rows for the floor measurement."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for line in self.path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kb = max(self.kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass  # exited (or a zombie without memory figures)
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class BenchError(Exception):
    """The benchmark could not run or a consumer produced wrong data."""


@dataclass
class Results:
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average around every run
    # workload B applied by each target alone, rows already in hand: (target, how) -> seconds
    floor: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, workload: str, consumer: str, secs: float, cpu: float | None = None) -> None:
        self.seconds.setdefault((workload, consumer), []).append(secs)
        if cpu is not None:
            self.cpu.setdefault((workload, consumer), []).append(cpu)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def gtid_seq(position: str, domain: int = 0) -> int:
    """The sequence number of ``domain`` in a MariaDB GTID position ('0-1-40,1-5-3'); 0 if absent."""
    for part in position.split(","):
        part = part.strip()
        if part:
            d, _server, seq = part.split("-")
            if int(d) == domain:
                return int(seq)
    return 0


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, rows: int, update_rows: int, repeat: int, keep: bool, target_binlog: bool) -> None:
        self.rows = rows
        self.update_rows = update_rows
        self.repeat = repeat
        self.keep = keep
        self.target_binlog = target_binlog
        self.results = Results()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-mariadb-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.primary = MariaDBServer(self.workdir / "primary", port=free_port(), name="bench_primary", server_id=1)
        target_settings: dict[str, str | None] = {}
        replica_settings: dict[str, str | None] = {}
        if target_binlog:
            replica_settings["log_slave_updates"] = "ON"
        else:
            target_settings["log_bin"] = None
            replica_settings["log_bin"] = None
        replica_settings["skip_slave_start"] = "1"
        self.replica = MariaDBServer(
            self.workdir / "replica", port=free_port(), name="bench_replica", server_id=2,
            settings={**target_settings, **replica_settings},
        )
        self.my_target = MariaDBServer(
            self.workdir / "mytarget", port=free_port(), name="bench_mytarget", server_id=3,
            settings=target_settings,
        )
        self.pg_target = PostgresServer(
            self.workdir / "pgtarget", port=free_port(), name="bench_pgtarget",
            settings={"wal_level": "replica"},
        )
        self.configs = {
            "mariadb": self.workdir / "replicator-mariadb.yaml",
            "postgres": self.workdir / "replicator-postgres.yaml",
        }
        self.max_rss_kb = 0
        self.last_rss_kb = 0
        self.load_start = load_text()

    def servers(self) -> list[MariaDBServer | PostgresServer]:
        return [self.primary, self.replica, self.my_target, self.pg_target]

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        log(f"starting servers under {self.workdir} (load average {self.load_start})")
        for server in self.servers():
            server.start()
        self.primary.create_database(DB)
        self.primary.execute(MY_TABLE_DDL, db=DB)
        self.primary.execute(INSERT_PROC, db=DB)
        for server in (self.replica, self.my_target):
            server.create_database(DB)
            server.execute(MY_TABLE_DDL, db=DB)
        self.pg_target.create_database(PG_DB)
        self.pg_target.execute(PG_TABLE_DDL, dbname=PG_DB)

        # The replica starts where the primary stands now (its table was created by hand).
        pos = self.primary_gtid()
        self.replica.execute(f"SET GLOBAL gtid_slave_pos = '{pos}'")
        self.replica.execute(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port},"
            " MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos"
        )
        threads = self.replica.execute("SELECT @@GLOBAL.slave_parallel_threads")[0][0]
        self.slave_parallel_threads = int(threads)
        self.run_native(pos)  # checks the replica connects and applies (nothing to apply)

        for consumer, url in (("mariadb", self.my_target.url(DB)), ("postgres", self.pg_target.url(PG_DB))):
            self.configs[consumer].write_text(
                textwrap.dedent(
                    f"""\
                    systems:
                      src: {{url: "{self.primary.url(DB)}"}}
                      dst: {{url: "{url}"}}
                    flows:
                      - name: bench_{consumer}
                        source: src
                        target: dst
                        tables: [{{source: t}}]
                    """
                )
            )
            # First run: records the flow's start position (its checkpoint) on the target.
            self.run_replicator(consumer, "setup")

    def primary_gtid(self) -> str:
        return str(self.primary.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0] or "")

    # -- consumers -----------------------------------------------------------------------
    def run_replicator(self, consumer: str, label: str) -> tuple[float, float]:
        """Run ``replicator run --once``; returns (wall seconds, CPU seconds of the process)."""
        logfile = self.workdir / f"replicator-{consumer}-{label}.log"
        cmd = [
            sys.executable, "-m", "replicator.cli", "-c", str(self.configs[consumer]),
            "--log-format", "logfmt", "run", "--once",
        ]
        with logfile.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            watchdog = threading.Timer(CATCHUP_TIMEOUT, proc.kill)
            watchdog.start()
            peak = PeakRss(proc.pid)
            try:
                # wait4: this process's own CPU time (RUSAGE_CHILDREN sums all children)
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                watchdog.cancel()
                peak.stop()
            elapsed = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        if rc == -9 and elapsed >= CATCHUP_TIMEOUT:
            raise BenchError(f"replicator did not finish in {CATCHUP_TIMEOUT}s (log: {logfile})")
        self.max_rss_kb = max(self.max_rss_kb, peak.kb)
        self.last_rss_kb = peak.kb
        if rc != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"replicator exited with {rc} ({consumer}, {label}); last lines of {logfile}:\n{tail}")
        return elapsed, usage.ru_utime + usage.ru_stime

    def _slave_error(self, conn: Any) -> str | None:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SHOW SLAVE STATUS")
            status = cur.fetchone() or {}
        for key in ("Last_SQL_Error", "Last_IO_Error"):
            if status.get(key):
                return f"{key}: {status[key]}"
        return None

    def run_native(self, primary_pos: str) -> float:
        """START SLAVE, wait until the replica applied everything up to ``primary_pos``, STOP SLAVE."""
        want = gtid_seq(primary_pos)
        conn = self.replica.connect()
        try:
            with conn.cursor() as cur:
                t0 = time.perf_counter()
                cur.execute("START SLAVE")
                deadline = t0 + CATCHUP_TIMEOUT
                next_status = t0 + 1.0
                while True:
                    cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
                    row = cur.fetchone()
                    if row and gtid_seq(str(row[0] or "")) >= want:
                        break
                    now = time.perf_counter()
                    if now > next_status:
                        error = self._slave_error(conn)
                        if error:
                            raise BenchError(f"the native replica failed: {error}")
                        next_status = now + 1.0
                    if now > deadline:
                        raise BenchError(
                            f"the native replica did not catch up in {CATCHUP_TIMEOUT}s"
                            f" (see {self.replica.log_path})"
                        )
                    time.sleep(POLL)
                elapsed = time.perf_counter() - t0
                cur.execute("STOP SLAVE")
        finally:
            conn.close()
        return elapsed

    # -- workloads -----------------------------------------------------------------------
    def workload_insert(self) -> str:
        conn = self.primary.connect(DB, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("CALL bench_insert(%s, %s, %s)", (1, self.rows, TXN_ROWS))
            conn.commit()
        finally:
            conn.close()
        return self.primary_gtid()

    def workload_update(self) -> str:
        conn = self.primary.connect(DB, autocommit=False)
        try:
            with conn.cursor() as cur:
                n = cur.execute("UPDATE t SET amount = amount + 1 WHERE id <= %s", (self.update_rows,))
            if n != self.update_rows:
                raise BenchError(f"the UPDATE touched {n} rows, expected {self.update_rows}")
            conn.commit()
        finally:
            conn.close()
        return self.primary_gtid()

    def workload_truncate(self) -> str:
        self.primary.execute("TRUNCATE t", db=DB)
        return self.primary_gtid()

    # -- checks --------------------------------------------------------------------------
    def checksum(self, consumer: str | None) -> tuple[int, Decimal, int]:
        if consumer == "postgres":
            with psycopg.connect(self.pg_target.url(PG_DB), autocommit=True) as c:
                row = c.execute(PG_CHECKSUM).fetchone()
        else:
            server = {None: self.primary, "native": self.replica, "mariadb": self.my_target}[consumer]
            rows = server.execute(MY_CHECKSUM, db=DB)
            row = rows[0] if rows else None
        assert row is not None
        return int(row[0]), Decimal(row[1]), int(row[2])

    def verify(self, consumer: str, what: str, expected_rows: int) -> None:
        want = self.checksum(None)
        got = self.checksum(consumer)
        if want[0] != expected_rows:
            raise BenchError(f"{what}: the primary holds {want[0]} rows, expected {expected_rows}")
        if got != want:
            raise BenchError(f"{what}: {LABELS[consumer]} differs from the primary: {got} != {want}")

    # -- what the targets alone need for workload B ------------------------------------------
    @contextmanager
    def _floor(self, target: str, how: str, conn: Any) -> Iterator[None]:
        """Time the block as ``(target, how)`` of the floor measurement, then roll ``conn`` back."""
        t0 = time.perf_counter()
        yield
        self.results.floor.setdefault((target, how), []).append(time.perf_counter() - t0)
        conn.rollback()

    def measure_floors(self) -> None:
        """Workload B's rows applied to each target by the statements the replicator's writer
        sends, with the rows already in hand (no binlog, no decoding), and the target's own
        ``UPDATE … SET amount = amount + 1``; each in a transaction that is rolled back. The
        rows carry amount + 1, so every row really changes (InnoDB skips identical rows)."""
        rows = self.primary.execute(
            "SELECT id, name, email, amount + 1, created_at, payload FROM t WHERE id <= %s ORDER BY id"
            % int(self.update_rows), db=DB,
        )
        # PostgreSQL: COPY into a stage, then UPDATE … FROM it by key (replicator.pg.writer)
        lines = "".join(
            "\t".join("\\N" if v is None else str(v) for v in r) + "\n" for r in rows
        ).encode()
        with psycopg.connect(self.pg_target.url(PG_DB)) as conn:
            with self._floor("postgres", "writer", conn):
                conn.execute("CREATE TEMP TABLE stage (LIKE t) ON COMMIT DROP")
                with conn.cursor().copy("COPY stage FROM STDIN") as copy:
                    copy.write(lines)
                conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                conn.execute(
                    "UPDATE t SET name = s.name, email = s.email, amount = s.amount, created_at = s.created_at,"
                    " payload = s.payload FROM stage s WHERE t.id = s.id"
                )
            with self._floor("postgres", "own", conn):
                conn.execute("UPDATE t SET amount = amount + 1 WHERE id <= %s", (self.update_rows,))
        # MariaDB: multi-row INSERT … ON DUPLICATE KEY UPDATE of ~250k characters (replicator.mysql.writer)
        conn = self.my_target.connect(DB, autocommit=False)
        try:
            texts = [
                "(" + ",".join("NULL" if v is None else conn.escape(v) for v in r) + ")" for r in rows
            ]
            head = "INSERT INTO t (id, name, email, amount, created_at, payload) VALUES "
            tail = (" ON DUPLICATE KEY UPDATE name = VALUES(name), email = VALUES(email), amount = VALUES(amount),"
                    " created_at = VALUES(created_at), payload = VALUES(payload)")
            per = max(1, 250_000 // (sum(map(len, texts[:100])) // min(100, len(texts)) + 1))
            with conn.cursor() as cur:
                with self._floor("mariadb", "writer", conn):
                    for i in range(0, len(texts), per):
                        cur.execute(head + ",".join(texts[i : i + per]) + tail)
                with self._floor("mariadb", "own", conn):
                    cur.execute("UPDATE t SET amount = amount + 1 WHERE id <= %s", (self.update_rows,))
        finally:
            conn.close()
        f = self.results.floor
        log(
            "  B alone on the targets: PostgreSQL writer's statements"
            f" {f[('postgres', 'writer')][-1]:.2f}s, own UPDATE {f[('postgres', 'own')][-1]:.2f}s;"
            f" MariaDB writer's statements {f[('mariadb', 'writer')][-1]:.2f}s,"
            f" own UPDATE {f[('mariadb', 'own')][-1]:.2f}s"
        )

    # -- one measurement -----------------------------------------------------------------
    def measure(self, workload: str, consumer: str, pos: str, rnd: int, changed: int) -> None:
        self.results.load.append(os.getloadavg()[0])
        if consumer == "native":
            secs = self.run_native(pos)
            cpu = None
        else:
            secs, cpu = self.run_replicator(consumer, f"{workload}-{rnd}")
        self.results.load.append(os.getloadavg()[0])
        self.verify(consumer, f"{LABELS[consumer]}, workload {workload}, round {rnd + 1}", self.rows)
        self.results.add(workload, consumer, secs, cpu)
        extra = f", CPU {cpu:.2f}s, RSS {self.last_rss_kb / 1024:.0f} MB" if cpu is not None else ""
        log(
            f"  {workload} {LABELS[consumer]:<24} {secs:7.2f}s ({changed / secs:9,.0f} rows/s{extra});"
            f" load {load_text()}"
        )

    def round(self, rnd: int) -> None:
        k = rnd % len(CONSUMERS)
        order = list(CONSUMERS[k:] + CONSUMERS[:k])
        log(f"round {rnd + 1}/{self.repeat}: consumers in order {', '.join(order)}")

        t0 = time.perf_counter()
        pos = self.workload_insert()
        log(f"  A generated: {self.rows} INSERTs in {self.rows // TXN_ROWS} txns in {time.perf_counter() - t0:.1f}s")
        for consumer in order:
            self.measure("A", consumer, pos, rnd, self.rows)

        t0 = time.perf_counter()
        pos = self.workload_update()
        log(f"  B generated: one UPDATE of {self.update_rows} rows in {time.perf_counter() - t0:.1f}s")
        for consumer in order:
            self.measure("B", consumer, pos, rnd, self.update_rows)
        self.measure_floors()

        # Reset (untimed): the truncate is replicated like any change.
        pos = self.workload_truncate()
        self.run_native(pos)
        self.run_replicator("mariadb", f"reset-{rnd}")
        self.run_replicator("postgres", f"reset-{rnd}")
        for consumer in CONSUMERS:
            self.verify(consumer, f"{LABELS[consumer]} after reset", 0)
        self.pg_target.execute("VACUUM ANALYZE t", dbname=PG_DB)

    def run(self) -> str:
        self.setup()
        for rnd in range(self.repeat):
            self.round(rnd)
        return self.report()

    # -- report --------------------------------------------------------------------------
    def report(self) -> str:
        counts = {"A": self.rows, "B": self.update_rows}
        names = {
            "A": f"A: {self.rows:,} single-row INSERTs, {TXN_ROWS:,} per txn",
            "B": f"B: one UPDATE of {self.update_rows:,} rows",
        }
        lines = [
            "| workload | native replica rows/s | replicator →MariaDB rows/s"
            " | replicator →PostgreSQL rows/s | →MariaDB / native | →PostgreSQL / native |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        details = []
        for w in ("A", "B"):
            rate = {c: counts[w] / statistics.median(self.results.seconds[(w, c)]) for c in CONSUMERS}
            lines.append(
                f"| {names[w]} | {rate['native']:,.0f} | {rate['mariadb']:,.0f} | {rate['postgres']:,.0f}"
                f" | {rate['mariadb'] / rate['native']:.2f} | {rate['postgres'] / rate['native']:.2f} |"
            )
            for c in CONSUMERS:
                runs = ", ".join(f"{s:.2f}s" for s in self.results.seconds[(w, c)])
                cpu = self.results.cpu.get((w, c))
                cpu_text = f" (process CPU {', '.join(f'{x:.2f}s' for x in cpu)})" if cpu else ""
                details.append(f"- {w}, {LABELS[c]}: {runs}{cpu_text}")
        table = "\n".join(lines)
        native_b = statistics.median(self.results.seconds[("B", "native")])
        floor_lines = [
            "",
            "",
            f"What the targets alone need for workload B (medians; the rows already in hand, no"
            f" binlog, no decoding; rolled back), and the best ratio to the native replica's"
            f" {native_b:.2f}s that applying through those statements would allow:",
            "",
            "| target | the replicator writer's statements | best ratio | the target's own `UPDATE … amount + 1` |",
            "|---|---:|---:|---:|",
        ]
        for target, label in (("postgres", "PostgreSQL (COPY into a stage, `UPDATE … FROM` it)"),
                              ("mariadb", "MariaDB (multi-row `INSERT … ON DUPLICATE KEY UPDATE`)")):
            writer = statistics.median(self.results.floor[(target, "writer")])
            own = statistics.median(self.results.floor[(target, "own")])
            floor_lines.append(f"| {label} | {writer:.2f}s | {native_b / writer:.2f} | {own:.2f}s |")
        table += "\n".join(floor_lines)
        version = self.primary.execute("SELECT VERSION()")[0][0]
        with psycopg.connect(self.pg_target.url(), autocommit=True) as c:
            pg_version = c.execute("SHOW server_version").fetchone()
        loads = self.results.load
        header = (
            "# MariaDB catch-up: replicator (→MariaDB, →PostgreSQL) vs a native MariaDB replica\n\n"
            f"Medians of {self.repeat} run(s) each; ratio = replicator rows/s / native replica rows/s"
            " (> 1: the replicator is faster). Aim: ≥ 0.60.\n"
            f"Generated by `scripts/bench_mariadb.py --rows {self.rows} --update-rows {self.update_rows}"
            f" --repeat {self.repeat}{' --target-binlog' if self.target_binlog else ''}`"
            f" on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs,"
            f" MariaDB {version}, PostgreSQL {pg_version[0] if pg_version else '?'},"
            f" Python {platform.python_version()}).\n"
            f"Load average (1/5/15 min): {self.load_start} at the start, {load_text()} at the end;"
            f" 1-minute load around the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f},"
            f" max {max(loads):.2f}. The machine was shared: other load makes the numbers noisy.\n"
        )
        binlog = (
            "both write a binary log (the replica with log_slave_updates=ON)"
            if self.target_binlog
            else "neither writes a binary log"
        )
        footer = (
            "\nRuns (wall time, consumer start to caught up):\n"
            + "\n".join(details)
            + f"\n- replicator peak RSS: {self.max_rss_kb / 1024:.0f} MB\n"
            "\nSetup: four sandbox servers on the same host: the MariaDB primary, a native MariaDB"
            f" replica (GTID, slave_parallel_threads={self.slave_parallel_threads}, the default: one"
            " SQL thread), a MariaDB target and a PostgreSQL target for the replicator. The MariaDB"
            " servers run with innodb_flush_log_at_trx_commit=2, sync_binlog=0; the two MariaDB"
            f" targets have the same settings and {binlog}. PostgreSQL: fsync=off,"
            " synchronous_commit=on. The native replica is timed from START SLAVE until its"
            " gtid_slave_pos reached the primary's gtid_binlog_pos (fetching and applying). The"
            " replicator is timed from spawning `replicator run --once` (default batch settings,"
            " interpreter start-up included) until it exits. Every run is verified against the"
            " primary (count, sum(amount), sum of md5 prefixes of every row as text).\n"
        )
        return header + "\n" + table + "\n" + footer

    def cleanup(self) -> None:
        for server in reversed(self.servers()):
            try:
                if self.keep:
                    server.stop()
                else:
                    server.cleanup()
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                print(f"warning: could not stop {server!r}: {exc}", file=sys.stderr)
        if self.keep:
            print(f"kept {self.workdir} (server logs, replicator logs)", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows inserted by workload A (default 500000)")
    parser.add_argument("--update-rows", type=int, default=200_000,
                        help="rows updated by workload B (default 200000, at most --rows)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--target-binlog", action="store_true",
                        help="both MariaDB targets write a binary log (replica: log_slave_updates=ON)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="where to write the table")
    args = parser.parse_args()
    if args.rows < TXN_ROWS or args.rows % TXN_ROWS:
        parser.error(f"--rows must be a positive multiple of {TXN_ROWS}")
    if not 1 <= args.update_rows <= args.rows:
        parser.error("--update-rows must be between 1 and --rows")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    bench = Bench(args.rows, args.update_rows, args.repeat, args.keep, args.target_binlog)
    try:
        report = bench.run()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()
    print()
    print(report)
    args.output.write_text(report)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
