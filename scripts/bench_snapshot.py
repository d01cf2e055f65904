#!/usr/bin/env python
"""Benchmark: `replicator snapshot` of one large table against each engine's own bulk copy.

    .venv/bin/python scripts/bench_snapshot.py [--rows 1000000] [--repeat 3] [--keep]
                                               [--output scripts/bench_results_snapshot.md]

Four throwaway servers on this host (``replicator.sandbox``), each on a free port:

  pg source   PostgreSQL, wal_level=logical (the replicator creates its slots there);
  pg target   PostgreSQL, wal_level=replica;
  my source   MariaDB, server_id 1, the sandbox's CDC defaults (row-based binlog, full images
              and metadata, GTIDs), as the primary of ``bench_mariadb.py``;
  my target   MariaDB, server_id 2, no binary log (as the targets of ``bench_mariadb.py``).

Every anchor and every replicator flow of a direction writes into its own database of the same
target server, so both run with the same server settings (sandbox defaults: PostgreSQL
fsync=off, synchronous_commit=on; MariaDB innodb_flush_log_at_trx_commit=2, sync_binlog=0;
autovacuum is off on both PostgreSQL servers so it cannot run during a measurement).

Data, generated once per source (``--rows`` rows, inserted 100,000 per transaction, then
VACUUM ANALYZE / ANALYZE TABLE): ``t(id bigint primary key, name varchar(100), email
varchar(200), amount numeric(12,2), created_at, payload)`` with a 100-character payload.
created_at is ``timestamptz`` on PostgreSQL and ``TIMESTAMP(6)`` on MariaDB, which the
replicator's type map turns into ``timestamptz(6)`` on PostgreSQL; PostgreSQL's
``timestamptz`` becomes ``DATETIME(6)`` (holding UTC) on MariaDB. payload is ``text`` on
PostgreSQL (``LONGTEXT`` on a MariaDB target), ``varchar(200)`` on MariaDB.

Measured, one after another (never simultaneously), each timed from spawning the command until
it exits (start-up included):

  PG -> PG     anchor: ``psql -c "COPY public.t TO STDOUT" | psql -c "COPY public.t FROM STDIN"``
               (a bash pipe, ``set -o pipefail``) into a pre-created target table with the
               source's definition, truncated before every run;
  MariaDB -> PG  anchor: ``pgloader`` (Debian package) with a command file, ``WITH data only,
               truncate`` into a pre-created table with the definition the replicator creates
               (primary key included), so both load into the same kind of table;
  MariaDB -> MariaDB  anchor: ``mariadb-dump --single-transaction bench t | mariadb bench_dump``
               over the servers' sockets (the dump drops and creates the table itself);
  PG -> MariaDB  the replicator only (informational).

  replicator   ``replicator snapshot --flow F`` as a subprocess (default --workers 4). Before
               every run the flow's target table is dropped and its state reset (the target's
               ``_replicator`` schema/database dropped; on a PostgreSQL source the flow's
               replication slot and publication dropped), so every run is a full first
               snapshot: the command creates the target table from the source's definition,
               records the flow's start position and copies the rows.

After every run the target table is compared with the source: count, sum(amount) and the sum
over all rows of a 60-bit prefix of the md5 of the row's columns as normalised text (UTC
timestamps with microseconds, the same text on both engines), as in ``bench_mariadb.py``; the
target is then emptied (untimed) and both PostgreSQL servers checkpoint before the next run.
CPU seconds are recorded for the client processes (the replicator; psql, pgloader,
mariadb-dump and mariadb for the anchors; from the children's rusage) and, sampled from /proc
ten times a second, for the source and target servers. Each round runs every measurement once,
the directions in a rotating order and anchor/replicator alternating. Medians over ``--repeat``
rounds are reported as rows/s with the ratio replicator/anchor, as a Markdown table printed at
the end and written to ``scripts/bench_results_snapshot.md``. The machine's load average is
recorded around every run: other processes competing for the CPUs make the numbers noisy.

Needs ``pgloader`` (``apt-get install pgloader``), ``psql`` (postgresql-client) and
``mariadb-dump``/``mariadb`` (mariadb-client, installed with mariadb-server).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import pymysql  # noqa: E402

from replicator.sandbox import (  # noqa: E402
    MariaDBServer,
    PostgresServer,
    SandboxError,
    find_pg_bindir,
    free_port,
)

RESULTS_FILE = REPO / "scripts" / "bench_results_snapshot.md"
SRC_DB = "bench"
GEN_ROWS = 100_000  # rows per generating transaction
RUN_TIMEOUT = 3600.0  # seconds: a run that takes longer is reported as failed

# Directions and who copies in each. Database names on the target servers.
DIRECTIONS = ("pg2pg", "my2pg", "my2my", "pg2my")
DIRECTION_LABELS = {
    "pg2pg": "PostgreSQL → PostgreSQL",
    "my2pg": "MariaDB → PostgreSQL",
    "my2my": "MariaDB → MariaDB",
    "pg2my": "PostgreSQL → MariaDB",
}
ANCHOR_LABELS = {
    "pg2pg": "COPY TO STDOUT | COPY FROM STDIN",
    "my2pg": "pgloader",
    "my2my": "mariadb-dump | mariadb",
}
AIMS = {"pg2pg": 0.70, "my2pg": 1.0, "my2my": 1.0}
ANCHOR_DB = {"pg2pg": "bench_copy", "my2pg": "bench_pgloader", "my2my": "bench_dump"}
REPL_DB = {d: f"repl_{d}" for d in DIRECTIONS}
STATE_SCHEMA = "_replicator"

PG_SOURCE_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint PRIMARY KEY,
    name varchar(100),
    email varchar(200),
    amount numeric(12,2),
    created_at timestamptz,
    payload text
)
"""

MY_SOURCE_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint PRIMARY KEY,
    name varchar(100),
    email varchar(200),
    amount decimal(12,2),
    created_at timestamp(6) NULL DEFAULT NULL,
    payload varchar(200)
) ENGINE=InnoDB
"""

# pgloader's target: what the replicator creates for MY_SOURCE_DDL on PostgreSQL (typemap:
# TIMESTAMP(6) -> timestamptz(6), varchar(n) -> varchar(n), decimal -> numeric); checked at
# setup against a table created by `replicator snapshot --schema-only`.
PG_FROM_MY_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint NOT NULL PRIMARY KEY,
    name varchar(100),
    email varchar(200),
    amount numeric(12,2),
    created_at timestamptz(6),
    payload varchar(200)
)
"""

PG_GENERATE = """
INSERT INTO t (id, name, email, amount, created_at, payload)
SELECT i, 'name ' || i, 'user' || i || '@example.com', ((i * 7919) %% 10000000) / 100.0,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second'
           + ((i * 37) %% 1000000) * interval '1 microsecond',
       rpad(md5(i::text), 100, md5((i + 1)::text))
FROM generate_series(%s::bigint, %s::bigint) AS i
"""

MY_GENERATE = """
INSERT INTO t (id, name, email, amount, created_at, payload)
SELECT seq, CONCAT('name ', seq), CONCAT('user', seq, '@example.com'), ((seq * 7919) % 10000000) / 100,
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq * 37) % 1000000 MICROSECOND,
       RPAD(MD5(seq), 100, MD5(seq + 1))
FROM seq_{lo}_to_{hi}
"""

# count, sum(amount), sum of a 60-bit md5 prefix of every row as text: order-independent and
# computed on the server. Sessions run in UTC, so timestamps print the same on both engines
# (MariaDB TIMESTAMP converts to the session zone; a DATETIME(6) from PostgreSQL holds UTC).
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

PGLOADER_COMMANDS = """\
LOAD DATABASE
     FROM mysql://root@127.0.0.1:{my_port}/{src_db}
     INTO postgresql://postgres@127.0.0.1:{pg_port}/{dst_db}
 WITH data only, truncate
 INCLUDING ONLY TABLE NAMES MATCHING 't'
 ALTER SCHEMA '{src_db}' RENAME TO 'public';
"""

_COPIED = re.compile(r": (\d+) rows copied in ([\d.]+) s")


class BenchError(Exception):
    """The benchmark could not run or a copy produced wrong data."""


@dataclass
class Run:
    seconds: float
    client_cpu: float  # CPU seconds of the command and its children (replicator, psql, ...)
    client_rss_kb: int  # peak RSS of the command's largest process
    source_cpu: float  # CPU seconds of the source server's processes during the run
    target_cpu: float
    copy_seconds: float | None = None  # the replicator's own copy phase, as it reports it


@dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average around every run
    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, direction: str, consumer: str, run: Run) -> None:
        self.runs.setdefault((direction, consumer), []).append(run)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cell(command: str) -> str:
    """A command as code in a Markdown table cell (a bare '|' would end the cell)."""
    return "`" + command.replace("|", "\\|") + "`"


def code_version() -> tuple[str, str]:
    """(git HEAD and the replicator/ files changed since, a digest of replicator/'s sources):
    other people edit the package while benchmarks run."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD").strip() or "?"
    changed = [ln[3:] for ln in git("status", "--porcelain", "--", "replicator").splitlines() if len(ln) > 3]
    digest = hashlib.sha1()
    for path in sorted((REPO / "replicator").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    text = f"commit {head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
    return text, digest.hexdigest()[:12]


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def clean_env() -> dict[str, str]:
    """The environment for the client commands: no PG*/MYSQL* variables redirecting them."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "MARIADB"))}


# --------------------------------------------------------------------------- CPU sampling

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process, all its threads) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


class CpuSampler:
    """Approximate CPU seconds used during a measurement by each server: its main process
    (mariadbd's threads, the postmaster) and its children (PostgreSQL backends, walsenders,
    background processes), sampled from /proc ten times a second (a backend that exits between
    two samples loses at most its last 0.1 s)."""

    def __init__(self, servers: dict[str, int]) -> None:
        self._servers = servers  # name -> main pid
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial: bool) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            st = _proc_stat(pid)
            if st is None:
                continue
            ppid, cpu = st
            owner = next((n for n, p in self._servers.items() if p in (pid, ppid)), None)
            if owner is None:
                continue
            if pid not in self._first:
                self._first[pid] = cpu if initial else 0.0  # started during the measurement
            self._last[pid] = (owner, cpu)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample(False)

    def __enter__(self) -> CpuSampler:
        self._sample(True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(False)

    def total(self, owner: str) -> float:
        return sum(cpu - self._first[pid] for pid, (o, cpu) in self._last.items() if o == owner)


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, rows: int, repeat: int, keep: bool) -> None:
        self.rows = rows
        self.repeat = repeat
        self.keep = keep
        self.results = Results()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.pg_bindir = find_pg_bindir()
        pg_settings = {"timezone": "UTC", "autovacuum": "off"}
        self.pg_source = PostgresServer(
            self.workdir / "pgsrc", port=free_port(), name="bench_pgsrc",
            settings={**pg_settings, "wal_level": "logical"},
        )
        self.pg_target = PostgresServer(
            self.workdir / "pgdst", port=free_port(), name="bench_pgdst",
            settings={**pg_settings, "wal_level": "replica"},
        )
        my_settings: dict[str, str | None] = {"default_time_zone": "+00:00"}
        self.my_source = MariaDBServer(
            self.workdir / "mysrc", port=free_port(), name="bench_mysrc", server_id=1,
            settings=my_settings,
        )
        self.my_target = MariaDBServer(
            self.workdir / "mydst", port=free_port(), name="bench_mydst", server_id=2,
            settings={**my_settings, "log_bin": None},
        )
        self.config_path = self.workdir / "replicator.yaml"
        self.pgloader_path = self.workdir / "pgloader.load"
        self.source_sums: dict[str, tuple[int, Decimal, int]] = {}
        self.load_start = load_text()
        self.created_ddl: dict[str, str] = {}
        self.code_start = code_version()

    def servers(self) -> list[MariaDBServer | PostgresServer]:
        return [self.pg_source, self.pg_target, self.my_source, self.my_target]

    def source_of(self, direction: str) -> MariaDBServer | PostgresServer:
        return self.pg_source if direction.startswith("pg") else self.my_source

    def target_of(self, direction: str) -> MariaDBServer | PostgresServer:
        return self.pg_target if direction.endswith("pg") else self.my_target

    # -- connections ---------------------------------------------------------------------
    def pg(self, server: PostgresServer, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(server.url(db), autocommit=True, options="-c TimeZone=UTC")

    def my(self, server: MariaDBServer, db: str | None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="", database=db,
                               autocommit=True, init_command="SET time_zone = '+00:00'")

    def my_exec(self, server: MariaDBServer, query: str, db: str | None = None) -> list[tuple[Any, ...]]:
        conn = self.my(server, db)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            conn.close()

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        log(f"starting servers under {self.workdir} (load average {self.load_start});"
            f" replicator code: {self.code_start[0]}, digest {self.code_start[1]}")
        for server in self.servers():
            try:
                server.start()
            except SandboxError as exc:
                # mariadb-install-db, bootstrapping in the shared /tmp, sometimes fails when
                # another one runs at the same time ("Could not remove temporary table
                # '/tmp/#sql-temptable-…'"): it removes its half-done data directory, try again once.
                if "install-db failed" not in str(exc):
                    raise
                log(f"{server.name}: {str(exc).splitlines()[0]}; trying again")
                time.sleep(2)
                server.start()
        ports = {s.port for s in self.servers()}
        if len(ports) != 4 or not all(s.is_running() for s in self.servers()):
            raise BenchError(f"the four servers are not running on four ports (logs under {self.workdir})")

        # Sources and their data, generated once.
        self.pg_source.create_database(SRC_DB)
        t0 = time.perf_counter()
        with self.pg(self.pg_source, SRC_DB) as c:
            c.execute(PG_SOURCE_DDL)
            for lo in range(1, self.rows + 1, GEN_ROWS):
                c.execute(PG_GENERATE, (lo, min(lo + GEN_ROWS - 1, self.rows)))
            c.execute("VACUUM ANALYZE t")
            c.execute("CHECKPOINT")
        log(f"PostgreSQL source: {self.rows:,} rows generated in {time.perf_counter() - t0:.1f}s")

        self.my_source.create_database(SRC_DB)
        t0 = time.perf_counter()
        conn = self.my(self.my_source, SRC_DB)
        try:
            with conn.cursor() as cur:
                cur.execute(MY_SOURCE_DDL)
                for lo in range(1, self.rows + 1, GEN_ROWS):
                    cur.execute(MY_GENERATE.format(lo=lo, hi=min(lo + GEN_ROWS - 1, self.rows)))
                cur.execute("ANALYZE TABLE t")
                cur.fetchall()
        finally:
            conn.close()
        log(f"MariaDB source: {self.rows:,} rows generated in {time.perf_counter() - t0:.1f}s")

        for direction in ("pg2pg", "my2pg"):
            self.source_sums[direction[:2]] = self.checksum(self.source_of(direction), SRC_DB)
        for name, sums in self.source_sums.items():
            if sums[0] != self.rows:
                raise BenchError(f"the {name} source holds {sums[0]} rows, expected {self.rows}")
        if self.source_sums["pg"] != self.source_sums["my"]:
            # Not required (each target is compared with its own source), but expected.
            log(f"note: the two sources' checksums differ: {self.source_sums}")

        # Target databases.
        for db in (ANCHOR_DB["pg2pg"], ANCHOR_DB["my2pg"], REPL_DB["pg2pg"], REPL_DB["my2pg"]):
            self.pg_target.create_database(db)
        for db in (ANCHOR_DB["my2my"], REPL_DB["my2my"], REPL_DB["pg2my"]):
            self.my_target.create_database(db)
        with self.pg(self.pg_target, ANCHOR_DB["pg2pg"]) as c:
            c.execute(PG_SOURCE_DDL)
        with self.pg(self.pg_target, ANCHOR_DB["my2pg"]) as c:
            c.execute(PG_FROM_MY_DDL)

        systems = {
            "pgsrc": self.pg_source.url(SRC_DB),
            "mysrc": self.my_source.url(SRC_DB),
            "pgdst_pg2pg": self.pg_target.url(REPL_DB["pg2pg"]),
            "pgdst_my2pg": self.pg_target.url(REPL_DB["my2pg"]),
            "mydst_my2my": self.my_target.url(REPL_DB["my2my"]),
            "mydst_pg2my": self.my_target.url(REPL_DB["pg2my"]),
        }
        flows = {
            "pg2pg": ("pgsrc", "pgdst_pg2pg", "public.t"),
            "my2pg": ("mysrc", "pgdst_my2pg", "t"),
            "my2my": ("mysrc", "mydst_my2my", "t"),
            "pg2my": ("pgsrc", "mydst_pg2my", "public.t"),
        }
        text = "systems:\n" + "".join(f'  {n}: {{url: "{u}"}}\n' for n, u in systems.items())
        text += "flows:\n" + "".join(
            f"  - name: {name}\n    source: {src}\n    target: {dst}\n    tables: [{{source: {table}}}]\n"
            for name, (src, dst, table) in flows.items()
        )
        self.config_path.write_text(text)
        self.pgloader_path.write_text(
            PGLOADER_COMMANDS.format(my_port=self.my_source.port, src_db=SRC_DB,
                                     pg_port=self.pg_target.port, dst_db=ANCHOR_DB["my2pg"])
        )
        self.check_pgloader_target()

    def check_pgloader_target(self) -> None:
        """pgloader's pre-created table must be what the replicator creates for the same source:
        create the replicator's (``snapshot --schema-only``) and compare the columns."""
        self.reset_replicator("my2pg")
        self.run_cmd(
            [sys.executable, "-m", "replicator.cli", "-c", str(self.config_path), "--log-format", "logfmt",
             "snapshot", "--flow", "my2pg", "--schema-only"],
            "schema-only-my2pg",
        )
        query = (
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a"
            " WHERE a.attrelid = 'public.t'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        )
        pkey = (
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.t'::regclass"
            " AND contype = 'p'"
        )
        defs = []
        for db in (REPL_DB["my2pg"], ANCHOR_DB["my2pg"]):
            with self.pg(self.pg_target, db) as c:
                defs.append((c.execute(query).fetchall(), c.execute(pkey).fetchall()))
        if defs[0] != defs[1]:
            raise BenchError(
                f"pgloader's target table differs from the one the replicator creates:"
                f" replicator {defs[0]}, pgloader {defs[1]}"
            )
        self.reset_replicator("my2pg")

    # -- running commands ----------------------------------------------------------------
    def run_cmd(self, cmd: list[str] | str, label: str) -> tuple[float, float, int, Path]:
        """Run a command (a list, or a bash script with pipefail); returns (wall seconds, CPU
        seconds and peak RSS in KiB of the command and everything it waited for, its log file).
        The child is reaped with wait4() so its own rusage is known (RUSAGE_CHILDREN's peak RSS
        would be the largest of every child so far, pgloader's included)."""
        logfile = self.workdir / f"{label}.log"
        argv = ["bash", "-c", "set -o pipefail; " + cmd] if isinstance(cmd, str) else cmd
        reaped: list[tuple[int, resource.struct_rusage, float]] = []
        with logfile.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                    stdin=subprocess.DEVNULL)

            def reap() -> None:
                _pid, status, usage = os.wait4(proc.pid, 0)
                reaped.append((status, usage, time.perf_counter()))

            waiter = threading.Thread(target=reap, daemon=True)
            waiter.start()
            waiter.join(RUN_TIMEOUT)
            if not reaped:
                proc.kill()
                waiter.join(30)
                raise BenchError(f"{label} did not finish in {RUN_TIMEOUT}s (log: {logfile})")
        status, usage, t1 = reaped[0]
        proc.returncode = rc = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if rc != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"{label} exited with {rc}; last lines of {logfile}:\n{tail}")
        return t1 - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, logfile

    def anchor_command(self, direction: str) -> str:
        if direction == "pg2pg":
            psql = self.pg_bindir / "psql"
            return (
                f"{psql} -X -q -v ON_ERROR_STOP=1 'host=127.0.0.1 port={self.pg_source.port} user=postgres"
                f" dbname={SRC_DB}' -c 'COPY public.t TO STDOUT'"
                f" | {psql} -X -q -v ON_ERROR_STOP=1 'host=127.0.0.1 port={self.pg_target.port}"
                f" user=postgres dbname={ANCHOR_DB['pg2pg']}' -c 'COPY public.t FROM STDIN'"
            )
        if direction == "my2pg":
            return f"pgloader --root-dir {self.workdir / 'pgloader'} --logfile {self.workdir / 'pgloader.log'} {self.pgloader_path}"
        if direction == "my2my":
            return (
                f"mariadb-dump --no-defaults --socket={self.my_source.socket_path} -u root"
                f" --single-transaction {SRC_DB} t"
                f" | mariadb --no-defaults --socket={self.my_target.socket_path} -u root {ANCHOR_DB['my2my']}"
            )
        raise ValueError(direction)

    # -- resets (untimed) ----------------------------------------------------------------
    def clear_anchor(self, direction: str) -> None:
        db = ANCHOR_DB[direction]
        if direction == "my2my":
            self.my_exec(self.my_target, "DROP TABLE IF EXISTS t", db)
        else:
            with self.pg(self.pg_target, db) as c:
                c.execute("TRUNCATE t")

    def reset_replicator(self, direction: str) -> None:
        """Drop the flow's target table and state, and its slot and publication on a PG source."""
        db = REPL_DB[direction]
        if direction.endswith("pg"):
            with self.pg(self.pg_target, db) as c:
                c.execute("DROP TABLE IF EXISTS public.t")
                c.execute(f"DROP SCHEMA IF EXISTS {STATE_SCHEMA} CASCADE")
        else:
            self.my_exec(self.my_target, "DROP TABLE IF EXISTS t", db)
            self.my_exec(self.my_target, f"DROP DATABASE IF EXISTS {STATE_SCHEMA}")
        if direction.startswith("pg"):
            slot = pub = f"replicator_{direction}"
            with self.pg(self.pg_source, SRC_DB) as c:
                if c.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
                    c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                c.execute(f"DROP PUBLICATION IF EXISTS {pub}")

    def clear(self, direction: str, consumer: str) -> None:
        if consumer == "anchor":
            self.clear_anchor(direction)
        else:
            self.reset_replicator(direction)

    def quiesce(self) -> None:
        for server in (self.pg_source, self.pg_target):
            server.execute("CHECKPOINT")

    # -- checks --------------------------------------------------------------------------
    def checksum(self, server: MariaDBServer | PostgresServer, db: str) -> tuple[int, Decimal, int]:
        if isinstance(server, PostgresServer):
            with self.pg(server, db) as c:
                row = c.execute(PG_CHECKSUM).fetchone()
        else:
            rows = self.my_exec(server, MY_CHECKSUM, db)
            row = rows[0] if rows else None
        assert row is not None
        return int(row[0]), Decimal(row[1]), int(row[2])

    def verify(self, direction: str, consumer: str, what: str) -> None:
        db = ANCHOR_DB[direction] if consumer == "anchor" else REPL_DB[direction]
        want = self.source_sums[direction[:2]]
        got = self.checksum(self.target_of(direction), db)
        if got != want:
            raise BenchError(f"{what}: the target differs from the source: {got} != {want}")

    # -- one measurement -----------------------------------------------------------------
    def measure(self, direction: str, consumer: str, rnd: int) -> None:
        label = f"{DIRECTION_LABELS[direction]}, {consumer}"
        self.clear(direction, consumer)
        self.quiesce()
        source, target = self.source_of(direction), self.target_of(direction)
        self.results.load.append(os.getloadavg()[0])
        with CpuSampler({"source": source.pid or -1, "target": target.pid or -1}) as sampler:
            if consumer == "anchor":
                secs, cpu, rss, logfile = self.run_cmd(self.anchor_command(direction), f"anchor-{direction}-{rnd}")
            else:
                secs, cpu, rss, logfile = self.run_cmd(
                    [sys.executable, "-m", "replicator.cli", "-c", str(self.config_path),
                     "--log-format", "logfmt", "snapshot", "--flow", direction],
                    f"replicator-{direction}-{rnd}",
                )
        self.results.load.append(os.getloadavg()[0])
        copy_seconds = None
        if consumer == "replicator":
            out = logfile.read_text(errors="replace")
            m = _COPIED.search(out)
            if m is None or int(m.group(1)) != self.rows:
                tail = "\n".join(out.splitlines()[-10:])
                raise BenchError(f"{label}: no '{self.rows} rows copied' line in {logfile}:\n{tail}")
            copy_seconds = float(m.group(2))
            if direction not in self.created_ddl:
                self.created_ddl[direction] = " ".join(
                    ln.strip() for ln in out.splitlines() if ln.startswith(("CREATE", "  ", ")"))
                )
        self.verify(direction, consumer, f"{label}, round {rnd + 1}")
        run = Run(secs, cpu, rss, sampler.total("source"), sampler.total("target"), copy_seconds)
        self.results.add(direction, consumer, run)
        self.clear(direction, consumer)  # frees the target before the next measurement
        extra = f", copy phase {copy_seconds:.1f}s" if copy_seconds is not None else ""
        log(
            f"  {DIRECTION_LABELS[direction]:<24} {consumer:<10} {secs:7.2f}s ({self.rows / secs:9,.0f} rows/s;"
            f" CPU s: client {cpu:.2f}, source {run.source_cpu:.2f}, target {run.target_cpu:.2f}{extra});"
            f" load {load_text()}"
        )

    def round(self, rnd: int) -> None:
        k = rnd % len(DIRECTIONS)
        order = list(DIRECTIONS[k:] + DIRECTIONS[:k])
        consumers = ["anchor", "replicator"] if rnd % 2 == 0 else ["replicator", "anchor"]
        log(f"round {rnd + 1}/{self.repeat}: directions {', '.join(order)}; {' then '.join(consumers)}")
        for direction in order:
            for consumer in consumers:
                if consumer == "anchor" and direction not in ANCHOR_LABELS:
                    continue
                try:
                    self.measure(direction, consumer, rnd)
                except BenchError as exc:
                    # Reported, and the other measurements go on: one direction failing (wrong
                    # data, an error, a timeout) must not hide the others.
                    self.results.failures.setdefault((direction, consumer), []).append(f"round {rnd + 1}: {exc}")
                    log(f"  {DIRECTION_LABELS[direction]:<24} {consumer:<10} FAILED: {exc}")

    def run(self) -> str:
        self.setup()
        for rnd in range(self.repeat):
            self.round(rnd)
        return self.report()

    # -- report --------------------------------------------------------------------------
    def versions(self) -> str:
        my_version = self.my_source.execute("SELECT VERSION()")[0][0]
        pg_version = self.pg_source.execute("SHOW server_version")[0][0]

        def first_line(cmd: list[str]) -> str:
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env())
                return (out.stdout or out.stderr).strip().splitlines()[0]
            except (OSError, subprocess.SubprocessError, IndexError):
                return "?"

        pgloader = first_line(["pgloader", "--version"])
        package = first_line(["dpkg-query", "-W", "-f", "${Version}", "pgloader"])
        if package != "?":
            pgloader += f" (Debian package {package})"
        dump = first_line(["mariadb-dump", "--version"])
        return (
            f"MariaDB {my_version}, PostgreSQL {pg_version}, {pgloader}, {dump},"
            f" Python {platform.python_version()}"
        )

    def report(self) -> str:
        code_end = code_version()

        def med(direction: str, consumer: str, attr: str) -> float:
            return float(statistics.median(getattr(r, attr) for r in self.results.runs[(direction, consumer)]))

        def rate(direction: str, consumer: str) -> float | None:
            if not self.results.runs.get((direction, consumer)):
                return None  # every run failed
            return self.rows / med(direction, consumer, "seconds")

        def rate_text(value: float | None, direction: str, consumer: str) -> str:
            if value is None:
                return "failed"
            n_failed = len(self.results.failures.get((direction, consumer), []))
            return f"{value:,.0f}" + (f" ({n_failed} failed)" if n_failed else "")

        lines = [
            "| direction | anchor | anchor rows/s | replicator rows/s | replicator / anchor | aim | met |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for d in DIRECTIONS:
            rep = rate(d, "replicator")
            if d in ANCHOR_LABELS:
                anc = rate(d, "anchor")
                aim = f"≥ {AIMS[d]:.2f}" if AIMS[d] < 1 else "> 1"
                if rep is None or anc is None:
                    ratio_text, met = "–", "**no**" if rep is None else "?"
                else:
                    ratio = rep / anc
                    ratio_text = f"{ratio:.2f}"
                    met = "yes" if (ratio >= AIMS[d] if AIMS[d] < 1 else ratio > 1) else "**no**"
                lines.append(
                    f"| {DIRECTION_LABELS[d]} | {cell(ANCHOR_LABELS[d])} | {rate_text(anc, d, 'anchor')}"
                    f" | {rate_text(rep, d, 'replicator')} | {ratio_text} | {aim} | {met} |"
                )
            else:
                lines.append(f"| {DIRECTION_LABELS[d]} | – | – | {rate_text(rep, d, 'replicator')} | – | – | – |")
        table = "\n".join(lines)

        cpu_lines = [
            "| direction | consumer | client processes | source server | target server | total | wall s"
            " | replicator's copy phase s | client peak RSS MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        details = []
        for d in DIRECTIONS:
            for c in ("anchor", "replicator"):
                if c == "anchor" and d not in ANCHOR_LABELS:
                    continue
                name = f"`{ANCHOR_LABELS[d]}`" if c == "anchor" else "replicator"
                for failure in self.results.failures.get((d, c), []):
                    short = " ".join(failure.split())
                    short = short if len(short) <= 800 else short[:800] + " …"
                    details.append(f"- {DIRECTION_LABELS[d]}, {name}: **failed**, {short}")
                runs = self.results.runs.get((d, c))
                if not runs:
                    continue
                who = cell(ANCHOR_LABELS[d]) if c == "anchor" else "replicator"
                cli, src, dst, wall = (med(d, c, a) for a in ("client_cpu", "source_cpu", "target_cpu", "seconds"))
                phase = f"{med(d, c, 'copy_seconds'):.1f}" if c == "replicator" else "–"
                rss = max(r.client_rss_kb for r in runs) / 1024
                cpu_lines.append(
                    f"| {DIRECTION_LABELS[d]} | {who} | {cli:.2f} | {src:.2f} | {dst:.2f} | {cli + src + dst:.2f}"
                    f" | {wall:.2f} | {phase} | {rss:.0f} |"
                )
                text = ", ".join(f"{r.seconds:.2f}s" for r in runs)
                text += f" (client CPU {', '.join(f'{r.client_cpu:.2f}s' for r in runs)}"
                if c == "replicator":
                    text += f"; copy phase as reported {', '.join(f'{r.copy_seconds:.1f}s' for r in runs)}"
                details.append(f"- {DIRECTION_LABELS[d]}, {name}: {text})")
        loads = self.results.load
        header = (
            "# Snapshot of one table: `replicator snapshot` vs COPY pipe, pgloader, mariadb-dump\n\n"
            f"{self.rows:,} rows (id bigint primary key, name, email, amount numeric(12,2), created_at,"
            " 100-character payload). Medians of"
            f" {self.repeat} run(s) each; ratio = replicator rows/s / anchor rows/s (> 1: the replicator"
            " is faster). Aims (issue 4): ≥ 0.70 of the COPY pipe for PostgreSQL → PostgreSQL, faster"
            " than pgloader and than mariadb-dump.\n"
            f"Generated by `scripts/bench_snapshot.py --rows {self.rows} --repeat {self.repeat}`"
            f" on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs,"
            f" {self.versions()}).\n"
            f"Load average (1/5/15 min): {self.load_start} at the start, {load_text()} at the end;"
            f" 1-minute load around the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f},"
            f" max {max(loads):.2f}. The machine was shared: other load makes the numbers noisy.\n"
            f"Replicator code: {self.code_start[0]} (sources digest {self.code_start[1]}"
            + (")" if code_end[1] == self.code_start[1] else
               f"; **replicator/ changed during the run**: digest {code_end[1]} at the end)")
            + ".\n"
        )
        ddl = "".join(f"\n- {DIRECTION_LABELS[d]}: `` {self.created_ddl[d]} ``" for d in DIRECTIONS if d in self.created_ddl)
        footer = (
            "\nCPU seconds per run (medians; client = the processes the command spawns, from their"
            " rusage; servers sampled from /proc ten times a second, all their processes/threads;"
            " peak RSS: the largest client process, max over the runs):\n\n"
            + "\n".join(cpu_lines)
            + "\n\nRuns (wall time, spawn to exit):\n"
            + "\n".join(details)
            + "\n"
            "\nAnchors, exactly (ports and sockets of the sandbox servers):\n\n"
            "- PostgreSQL → PostgreSQL, into a pre-created table (the source's definition, primary key"
            " included), truncated before every run:\n"
            "  `psql -X -q -v ON_ERROR_STOP=1 'host=127.0.0.1 port=SRC user=postgres dbname=bench'"
            " -c 'COPY public.t TO STDOUT' | psql -X -q -v ON_ERROR_STOP=1 'host=127.0.0.1 port=DST"
            " user=postgres dbname=bench_copy' -c 'COPY public.t FROM STDIN'` (bash, pipefail)\n"
            "- MariaDB → PostgreSQL: `pgloader --root-dir DIR --logfile FILE pgloader.load` with the"
            " command file\n\n"
            + textwrap.indent(PGLOADER_COMMANDS.format(my_port="SRC", src_db=SRC_DB, pg_port="DST",
                                                        dst_db=ANCHOR_DB["my2pg"]), "      ")
            + "\n  into a pre-created table identical to the one `replicator snapshot` creates (checked"
            " at setup: same column types, primary key), truncated before every run (pgloader's"
            " defaults otherwise; with `data only` it keeps the existing primary key index, as the"
            " replicator's target has it during the copy)\n"
            "- MariaDB → MariaDB: `mariadb-dump --no-defaults --socket=SRC.sock -u root"
            " --single-transaction bench t | mariadb --no-defaults --socket=DST.sock -u root"
            " bench_dump` (bash, pipefail; the dump drops and creates the table, then extended"
            " INSERTs)\n"
            "\nReplicator: `replicator -c replicator.yaml --log-format logfmt snapshot --flow F` (default"
            " --workers 4), timed from spawning until it exits (interpreter start-up, target table"
            " creation, slot/checkpoint creation included; 'copy phase' is the command's own"
            " reported copy time). Before every run the flow's target table is dropped and its state"
            " reset (the target's `_replicator` schema or database dropped; for a PostgreSQL source"
            " the flow's replication slot and publication dropped), so every run is a full first"
            " snapshot that creates the target table. Tables it created:"
            + ddl
            + "\n\nSetup: four sandbox servers on the same host: PostgreSQL source (wal_level=logical),"
            " PostgreSQL target (wal_level=replica), MariaDB source (row-based binlog, GTIDs, the"
            " sandbox's CDC defaults), MariaDB target (no binlog). PostgreSQL: fsync=off,"
            " synchronous_commit=on, full_page_writes=off, shared_buffers=128MB, autovacuum=off."
            " MariaDB: innodb_flush_log_at_trx_commit=2, sync_binlog=0, innodb_buffer_pool_size=128M,"
            " innodb_log_file_size=16M. Anchor and replicator write into separate databases of the"
            " same target server. Every run is verified against its source (count, sum(amount), sum"
            " of md5 prefixes of every row as text); the target is emptied after each run and both"
            " PostgreSQL servers checkpoint before the next.\n"
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
            print(f"kept {self.workdir} (server logs, command logs)", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def missing_tools() -> list[str]:
    problems = []
    if shutil.which("pgloader") is None:
        problems.append("pgloader is not installed: apt-get install pgloader (the Debian package)")
    for tool in ("mariadb-dump", "mariadb"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed: apt-get install mariadb-client")
    try:
        if not (find_pg_bindir() / "psql").is_file():
            problems.append("psql is not installed: apt-get install postgresql-client")
    except SandboxError as exc:
        problems.append(str(exc))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default 1000000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="where to write the table")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    problems = missing_tools()
    if problems:
        for p in problems:
            print(f"bench_snapshot: {p}", file=sys.stderr)
        return 2

    try:
        bench = Bench(args.rows, args.repeat, args.keep)
    except SandboxError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    try:
        report = bench.run()
    except (BenchError, SandboxError, psycopg.Error, pymysql.Error) as exc:
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
