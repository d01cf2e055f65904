#!/usr/bin/env python
"""Benchmark: PostgreSQL -> PostgreSQL catch-up, the replicator against native logical replication.

    .venv/bin/python scripts/bench_pg_to_pg.py [--rows 500000] [--repeat 3] [--keep]

Two throwaway servers on this host (``replicator.sandbox.PostgresServer``): a source with
``wal_level=logical`` and a separate target. Two workloads, each fully committed on the source
while neither consumer runs (their slots retain the WAL), then applied by each consumer in turn:

  A  ``--rows`` single-row INSERT statements, committed every 1,000 rows (a plpgsql procedure
     doing one INSERT per row and COMMIT every 1,000 rows);
  B  one ``UPDATE t SET amount = amount + 1`` touching every row (one transaction).

Consumers, one after another (never simultaneously), each into its own target database:

  replicator  ``replicator run --once`` as a subprocess, default batch settings; timed from
              spawning the process until it exits (start-up included);
  native      ``CREATE SUBSCRIPTION ... WITH (create_slot = true, copy_data = false)`` created
              beforehand and kept disabled while the workload is generated; timed from
              ``ALTER SUBSCRIPTION ... ENABLE`` until the subscription's replication origin on
              the target has passed the last workload transaction (its commit record starts
              after an LSN captured inside that transaction, so ``remote_lsn > it`` means the
              last commit has been applied).

After every measured run the target table is compared with the source (count, sum(amount) and
an md5 over every column of every row, ordered by id). Each round runs A then B for both
consumers (the order of the consumers alternates between rounds), then truncates the table
(replicated, untimed) so every round starts empty. Medians over ``--repeat`` rounds are
reported as rows/s, with the ratio replicator/native, as a Markdown table printed at the end
and written to ``scripts/bench_results_pg_to_pg.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from replicator.sandbox import PostgresServer, SandboxError, free_port  # noqa: E402

RESULTS_FILE = REPO / "scripts" / "bench_results_pg_to_pg.md"
SRC_DB = "bench"
REPL_DB = "bench_repl"
NATIVE_DB = "bench_native"
FLOW = "bench"
NATIVE_SUB = "bench_native"
NATIVE_PUB = "bench_native_pub"
TXN_ROWS = 1000
CATCHUP_TIMEOUT = 1800.0  # seconds: a consumer that takes longer is reported as failed
POLL = 0.01

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS t (
    id bigint PRIMARY KEY,
    name text,
    email text,
    amount numeric(12,2),
    created_at timestamptz,
    payload text
) WITH (autovacuum_enabled = false)
"""

# One single-row INSERT statement per row, COMMIT every `per_txn` rows. `last_lsn` is the WAL
# insert position inside the last transaction, before its COMMIT: that transaction's commit
# record starts after it, every earlier commit record ends before it.
INSERT_PROC = """
CREATE OR REPLACE PROCEDURE bench_insert(first_id int, n int, per_txn int, INOUT last_lsn pg_lsn DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    last_id int := first_id + n - 1;
BEGIN
    FOR i IN first_id .. last_id LOOP
        INSERT INTO t (id, name, email, amount, created_at, payload)
        VALUES (i, 'name ' || i, 'user' || i || '@example.com', ((i::bigint * 7919) % 10000000) / 100.0,
                timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',
                rpad(md5(i::text), 100, md5((i + 1)::text)));
        IF (i - first_id + 1) % per_txn = 0 OR i = last_id THEN
            IF i = last_id THEN
                last_lsn := pg_current_wal_insert_lsn();
            END IF;
            COMMIT;
        END IF;
    END LOOP;
END
$$
"""

CHECKSUM = """
SELECT count(*), coalesce(sum(amount), 0)::text,
       md5(coalesce(string_agg(md5(t::text), '' ORDER BY id), ''))
FROM t
"""


class BenchError(Exception):
    """The benchmark could not run or a consumer produced wrong data."""


@dataclass
class Results:
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # CPU seconds during a measurement: (source server, target server, replicator process)
    cpu: dict[tuple[str, str], list[tuple[float, float, float]]] = field(default_factory=dict)

    def add(self, workload: str, consumer: str, secs: float, cpu: tuple[float, float, float]) -> None:
        self.seconds.setdefault((workload, consumer), []).append(secs)
        self.cpu.setdefault((workload, consumer), []).append(cpu)


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
    """Approximate CPU seconds used during a measurement by each server's processes (children
    of its postmaster: walsender, backends, apply worker, background processes) and by the
    replicator process, sampled from /proc ten times a second (a process that exits between
    two samples loses at most its last 0.1 s)."""

    def __init__(self, servers: dict[str, int]) -> None:
        self._servers = servers  # name -> postmaster pid
        self.extra: dict[str, int] = {}  # name -> pid (e.g. the replicator), set while running
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
            owner = next((n for n, p in self._servers.items() if ppid == p), None)
            owner = owner or next((n for n, p in self.extra.items() if pid == p), None)
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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def connect(server: PostgresServer, db: str, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(server.url(db), autocommit=autocommit, options="-c TimeZone=UTC")


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, rows: int, repeat: int, keep: bool, batch_rows: int | None) -> None:
        self.rows = rows
        self.repeat = repeat
        self.keep = keep
        self.batch_rows = batch_rows
        self.results = Results()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-pg2pg-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        try:
            self._make_servers()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.config_path = self.workdir / "replicator.yaml"
        self.next_id = 1
        self.max_rss_kb = 0

    def _make_servers(self) -> None:
        # free_port() can hand out the same port twice in a row: the second server would then
        # fail to bind while its readiness probe reached the first one. Two distinct ports.
        src_port = free_port()
        dst_port = free_port()
        while dst_port == src_port:
            dst_port = free_port()
        self.source = PostgresServer(
            self.workdir / "src", port=src_port, name="bench_src",
            settings={"wal_level": "logical"},
        )
        # The launcher starts apply workers at most once per wal_retrieve_retry_interval
        # (5s by default): lowered so ENABLE is not delayed by the previous run's start.
        self.target = PostgresServer(
            self.workdir / "dst", port=dst_port, name="bench_dst",
            settings={"wal_level": "replica", "wal_retrieve_retry_interval": "100ms"},
        )

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        log(f"starting servers under {self.workdir}")
        self.source.start()
        self.target.start()
        dirs = {s.execute("SHOW data_directory")[0][0] for s in (self.source, self.target)}
        if len(dirs) != 2 or not (self.source.is_running() and self.target.is_running()):
            raise BenchError(f"source and target are not two running servers (logs under {self.workdir})")
        self.source.create_database(SRC_DB)
        self.target.create_database(REPL_DB)
        self.target.create_database(NATIVE_DB)
        with connect(self.source, SRC_DB) as c:
            c.execute(TABLE_DDL)
            c.execute(INSERT_PROC)
            c.execute(f"CREATE PUBLICATION {NATIVE_PUB} FOR TABLE t")
        for db in (REPL_DB, NATIVE_DB):
            with connect(self.target, db) as c:
                c.execute(TABLE_DDL)

        batch = f"\n    batch: {{max_rows: {self.batch_rows}}}" if self.batch_rows else ""
        self.config_path.write_text(
            textwrap.dedent(
                f"""\
                systems:
                  src: {{url: "{self.source.url(SRC_DB)}"}}
                  dst: {{url: "{self.target.url(REPL_DB)}"}}
                flows:
                  - name: {FLOW}
                    source: src
                    target: dst
                    tables: [{{source: public.t}}]"""
            )
            + batch
            + "\n"
        )
        # First run: creates the replicator's publication, slot and checkpoint (nothing to copy).
        self.run_replicator("setup")

        with connect(self.target, NATIVE_DB) as c:
            c.execute(
                f"CREATE SUBSCRIPTION {NATIVE_SUB}"
                f" CONNECTION 'host=127.0.0.1 port={self.source.port} dbname={SRC_DB} user=postgres'"
                f" PUBLICATION {NATIVE_PUB} WITH (create_slot = true, copy_data = false)"
            )
            row = c.execute(
                "SELECT 'pg_' || oid FROM pg_subscription WHERE subname = %s", (NATIVE_SUB,)
            ).fetchone()
            assert row is not None
            self.native_origin = str(row[0])
        self.native_disable()

    # -- consumers -----------------------------------------------------------------------
    def run_replicator(self, label: str, sampler: CpuSampler | None = None) -> tuple[float, float]:
        """Run ``replicator run --once``; returns (wall seconds, CPU seconds of the process)."""
        logfile = self.workdir / f"replicator-{label}.log"
        cmd = [
            sys.executable, "-m", "replicator.cli", "-c", str(self.config_path),
            "--log-format", "logfmt", "run", "--once",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with logfile.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            if sampler is not None:
                sampler.extra["replicator"] = proc.pid
            try:
                rc = proc.wait(timeout=CATCHUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise BenchError(f"replicator did not finish in {CATCHUP_TIMEOUT}s (log: {logfile})")
            elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.max_rss_kb = max(self.max_rss_kb, after.ru_maxrss)
        if rc != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"replicator exited with {rc} ({label}); last lines of {logfile}:\n{tail}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return elapsed, cpu

    def native_disable(self) -> None:
        with connect(self.target, NATIVE_DB) as c:
            c.execute(f"ALTER SUBSCRIPTION {NATIVE_SUB} DISABLE")
        # Wait until the apply worker is gone and the source released the slot, so the next
        # ENABLE starts at once instead of retrying against an active slot.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.source.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (NATIVE_SUB,)
            )
            workers = self.target.execute(
                "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL",
                (NATIVE_SUB,),
                dbname=NATIVE_DB,
            )
            if rows and not rows[0][0] and workers[0][0] == 0:
                return
            time.sleep(0.05)
        raise BenchError("the native subscription's slot stayed active 60s after DISABLE")

    def run_native(self, last_lsn: str) -> float:
        """Enable the subscription, wait until it applied the transaction containing ``last_lsn``."""
        log_offset = self.target.log_path.stat().st_size
        with connect(self.target, NATIVE_DB) as poll:
            t0 = time.perf_counter()
            poll.execute(f"ALTER SUBSCRIPTION {NATIVE_SUB} ENABLE")
            deadline = t0 + CATCHUP_TIMEOUT
            next_log_check = t0 + 1.0
            while True:
                row = poll.execute(
                    "SELECT pg_replication_origin_progress(%s, false) > %s::pg_lsn",
                    (self.native_origin, last_lsn),
                ).fetchone()
                if row and row[0]:
                    break
                now = time.perf_counter()
                if now > deadline:
                    raise BenchError(
                        f"native subscription did not catch up in {CATCHUP_TIMEOUT}s"
                        f" (see {self.target.log_path})"
                    )
                if now > next_log_check:  # an apply worker that fails retries forever: fail fast
                    next_log_check = now + 1.0
                    with self.target.log_path.open("rb") as fh:
                        fh.seek(log_offset)
                        errors = [ln for ln in fh.read().decode(errors="replace").splitlines() if "ERROR:" in ln]
                    if errors:
                        raise BenchError(f"native subscription failed on the target: {errors[0]}")
                time.sleep(POLL)
            elapsed = time.perf_counter() - t0
        self.native_disable()
        return elapsed

    # -- workloads -----------------------------------------------------------------------
    def workload_insert(self) -> str:
        first = self.next_id
        with connect(self.source, SRC_DB) as c:
            row = c.execute(
                "CALL bench_insert(%s, %s, %s, NULL)", (first, self.rows, TXN_ROWS)
            ).fetchone()
        self.next_id += self.rows
        assert row is not None
        return str(row[0])

    def workload_update(self) -> str:
        with connect(self.source, SRC_DB, autocommit=False) as c:
            cur = c.execute("UPDATE t SET amount = amount + 1")
            if cur.rowcount != self.rows:
                raise BenchError(f"the UPDATE touched {cur.rowcount} rows, expected {self.rows}")
            row = c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            c.commit()
        assert row is not None
        return str(row[0])

    def workload_truncate(self) -> str:
        with connect(self.source, SRC_DB, autocommit=False) as c:
            c.execute("TRUNCATE t")
            row = c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            c.commit()
        assert row is not None
        return str(row[0])

    # -- checks --------------------------------------------------------------------------
    def checksum(self, server: PostgresServer, db: str) -> tuple[Any, ...]:
        with connect(server, db) as c:
            row = c.execute(CHECKSUM).fetchone()
        assert row is not None
        return tuple(row)

    def verify(self, db: str, what: str, expected_rows: int) -> None:
        want = self.checksum(self.source, SRC_DB)
        got = self.checksum(self.target, db)
        if want[0] != expected_rows:
            raise BenchError(f"{what}: the source holds {want[0]} rows, expected {expected_rows}")
        if got != want:
            raise BenchError(f"{what}: target {db} differs from the source: {got} != {want}")

    def quiesce(self) -> None:
        for server in (self.source, self.target):
            server.execute("CHECKPOINT")

    # -- one measurement -----------------------------------------------------------------
    def measure(self, workload: str, consumer: str, last_lsn: str, rnd: int, expected_rows: int) -> None:
        self.quiesce()
        servers = {"source": self.source.pid or -1, "target": self.target.pid or -1}
        with CpuSampler(servers) as sampler:
            if consumer == "replicator":
                secs, cpu = self.run_replicator(f"{workload}-{rnd}", sampler)
            else:
                secs = self.run_native(last_lsn)
        if consumer == "replicator":
            self.verify(REPL_DB, f"replicator, workload {workload}, round {rnd}", expected_rows)
        else:
            self.verify(NATIVE_DB, f"native, workload {workload}, round {rnd}", expected_rows)
            cpu = 0.0
        usage = (sampler.total("source"), sampler.total("target"), cpu)
        self.results.add(workload, consumer, secs, usage)
        log(
            f"  {workload} {consumer + ':':11s} {secs:.2f}s ({self.rows / secs:,.0f} rows/s; CPU s: source"
            f" server {usage[0]:.2f}, target server {usage[1]:.2f}, replicator {usage[2]:.2f})"
        )

    def round(self, rnd: int) -> None:
        order = ["replicator", "native"] if rnd % 2 == 0 else ["native", "replicator"]
        log(f"round {rnd + 1}/{self.repeat}: consumers in order {', '.join(order)}")

        t0 = time.perf_counter()
        lsn = self.workload_insert()
        log(f"  A generated: {self.rows} INSERTs in {self.rows // TXN_ROWS} txns in {time.perf_counter() - t0:.1f}s")
        for consumer in order:
            self.measure("A", consumer, lsn, rnd, self.rows)

        t0 = time.perf_counter()
        lsn = self.workload_update()
        log(f"  B generated: one UPDATE of {self.rows} rows in {time.perf_counter() - t0:.1f}s")
        for consumer in order:
            self.measure("B", consumer, lsn, rnd, self.rows)

        # Reset (untimed): the truncate is replicated like any change.
        lsn = self.workload_truncate()
        self.run_replicator(f"reset-{rnd}")
        self.run_native(lsn)
        self.verify(REPL_DB, "replicator after reset", 0)
        self.verify(NATIVE_DB, "native after reset", 0)
        for server, dbs in ((self.source, [SRC_DB]), (self.target, [REPL_DB, NATIVE_DB])):
            for db in dbs:
                server.execute("VACUUM ANALYZE t", dbname=db)

    def run(self) -> str:
        self.setup()
        for rnd in range(self.repeat):
            self.round(rnd)
        return self.report()

    # -- report --------------------------------------------------------------------------
    def report(self) -> str:
        names = {"A": f"A: {self.rows:,} single-row INSERTs, {TXN_ROWS:,} per txn",
                 "B": f"B: one UPDATE of {self.rows:,} rows"}
        lines = [
            "| workload | replicator rows/s | native rows/s | ratio |",
            "|---|---:|---:|---:|",
        ]
        details = []
        cpu_lines = [
            "| workload | consumer | source server | target server | replicator process | total |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for w in ("A", "B"):
            rep = self.results.seconds[(w, "replicator")]
            nat = self.results.seconds[(w, "native")]
            rep_rate = self.rows / statistics.median(rep)
            nat_rate = self.rows / statistics.median(nat)
            lines.append(f"| {names[w]} | {rep_rate:,.0f} | {nat_rate:,.0f} | {rep_rate / nat_rate:.2f} |")
            details.append(
                f"- {w}: replicator runs {', '.join(f'{s:.2f}s' for s in rep)};"
                f" native runs {', '.join(f'{s:.2f}s' for s in nat)}"
            )
            for consumer in ("replicator", "native"):
                usage = self.results.cpu[(w, consumer)]
                src, dst, own = (statistics.median(u[i] for u in usage) for i in range(3))
                cpu_lines.append(
                    f"| {w} | {consumer} | {src:.2f} | {dst:.2f} | "
                    + (f"{own:.2f} |" if consumer == "replicator" else "- |")
                    + f" {src + dst + own:.2f} |"
                )
        table = "\n".join(lines)
        with psycopg.connect(self.source.url(), autocommit=True) as c:
            version = c.execute("SHOW server_version").fetchone()
        header = (
            f"# PostgreSQL -> PostgreSQL catch-up: replicator vs native logical replication\n\n"
            f"Medians of {self.repeat} run(s) each; ratio = replicator rows/s / native rows/s"
            f" (> 1: the replicator is faster).\n"
            f"Generated by `scripts/bench_pg_to_pg.py --rows {self.rows} --repeat {self.repeat}`"
            f" on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs,"
            f" PostgreSQL {version[0] if version else '?'}, Python {platform.python_version()}).\n"
        )
        footer = (
            "\nRuns (wall time, consumer start to caught up):\n"
            + "\n".join(details)
            + "\n\nCPU seconds per run (medians; sampled from /proc: the source server is mostly its"
            " walsender decoding the WAL, the target server the replicator's backend or the native"
            " apply worker):\n\n"
            + "\n".join(cpu_lines)
            + "\n"
            + f"\n- replicator peak RSS: {self.max_rss_kb / 1024:.0f} MB\n"
            "\nSetup: source and target are separate sandbox servers on the same host (fsync=off,"
            " synchronous_commit=on, shared_buffers=128MB). The replicator is timed from spawning"
            " `replicator run --once` (default batch settings) until it exits. Native is timed from"
            " `ALTER SUBSCRIPTION ... ENABLE` until the subscription's origin passed the last"
            " transaction (its apply worker commits with the subscription default"
            " synchronous_commit=off). Every run is verified against the source (count, sum,"
            " md5 of all rows).\n"
        )
        return header + "\n" + table + "\n" + footer

    def cleanup(self) -> None:
        for server in (self.target, self.source):
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
    parser.add_argument("--rows", type=int, default=500_000, help="rows per workload (default 500000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    parser.add_argument("--batch-rows", type=int, default=None,
                        help="override the flow's batch.max_rows (default: the replicator's default)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="where to write the table")
    args = parser.parse_args()
    if args.rows < TXN_ROWS or args.rows % TXN_ROWS:
        parser.error(f"--rows must be a positive multiple of {TXN_ROWS}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    try:
        bench = Bench(args.rows, args.repeat, args.keep, args.batch_rows)
    except SandboxError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    try:
        report = bench.run()
    except (BenchError, SandboxError, psycopg.Error) as exc:
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
