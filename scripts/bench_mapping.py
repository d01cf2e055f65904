#!/usr/bin/env python
"""Benchmark: what a column mapping costs on a PostgreSQL -> PostgreSQL catch-up.

    .venv/bin/python scripts/bench_mapping.py [--rows 500000] [--repeat 3] [--keep]

Two throwaway PostgreSQL servers (source with ``wal_level=logical``, target). The workload is
``--rows`` single-row INSERT statements committed every 1,000 rows (a plpgsql procedure), fully
committed on the source while no consumer runs. Two flows of the replicator consume it, one
after the other (order alternating between rounds), each from its own slot into its own
target database, each timed from spawning ``replicator run --once --flow F`` until it exits:

  plain    the table as it is (same columns, same types);
  mapped   5 renames, 1 date format (date -> '%m/%d/%Y' text), 1 value map, 1 sha256 mask and
           a filter (``status <> 'X' AND country IN ('DE', 'FR', 'IT')``, which every generated
           row passes, so both flows write the same number of rows).

Every run is checked: the plain target equals the source (md5 over every row), the mapped
target has every row with the expected values for a sample of ids computed here. Medians of
rows/s over ``--repeat`` rounds and the ratio mapped/plain go to
``scripts/bench_results_mapping.md``. Aim (issue 5): mapped >= 0.80 of plain.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from replicator.sandbox import PostgresServer, free_port  # noqa: E402

RESULTS_FILE = REPO / "scripts" / "bench_results_mapping.md"
TXN_ROWS = 1000

SOURCE_DDL = """
CREATE TABLE t (
    id bigint PRIMARY KEY,
    first_name text, last_name text, email text, city text, country text,
    status text, born date, amount numeric(12,2), payload text
)
"""
MAPPED_DDL = """
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    given_name text, family_name text, email text, town text, country text,
    state text, birthday text, total numeric(12,2), notes text
)
"""
INSERT_PROC = """
CREATE OR REPLACE PROCEDURE bench_insert(first_id int, n int, per_txn int)
LANGUAGE plpgsql AS $$
DECLARE last_id int := first_id + n - 1;
BEGIN
    FOR i IN first_id .. last_id LOOP
        INSERT INTO t VALUES (i, 'first ' || i, 'last ' || i, 'user' || i || '@example.com',
            'city ' || (i % 1000), (ARRAY['DE', 'FR', 'IT'])[i % 3 + 1], (ARRAY['A', 'I'])[i % 2 + 1],
            date '1950-01-01' + (i % 20000), ((i::bigint * 7919) % 10000000) / 100.0,
            rpad(md5(i::text), 60, 'x'));
        IF (i - first_id + 1) % per_txn = 0 OR i = last_id THEN COMMIT; END IF;
    END LOOP;
END $$
"""
MAPPED_TABLE = """\
      - source: public.t
        target: public.customers
        filter: "status <> 'X' AND country IN ('DE', 'FR', 'IT')"
        columns:
          first_name: given_name
          last_name: family_name
          city: town
          amount: total
          payload: notes
          born: {name: birthday, format: "%m/%d/%Y"}
          status: {name: state, map: {A: active, I: inactive}}
          email: {mask: sha256}
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, rows: int, repeat: int, keep: bool) -> None:
        self.rows, self.repeat, self.keep = rows, repeat, keep
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-mapping-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        p1 = free_port()
        p2 = free_port()
        while p2 == p1:
            p2 = free_port()
        self.source = PostgresServer(self.workdir / "src", port=p1, name="bench_src", settings={"wal_level": "logical"})
        self.target = PostgresServer(self.workdir / "dst", port=p2, name="bench_dst")
        self.cfg = self.workdir / "replicator.yaml"
        self.seconds: dict[str, list[float]] = {"plain": [], "mapped": []}
        self.cpu: dict[str, list[float]] = {"plain": [], "mapped": []}
        self.next_id = 1
        self.load: list[float] = []

    def conn(self, server: PostgresServer, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(server.url(db), autocommit=True)

    def setup(self) -> None:
        log(f"servers under {self.workdir}")
        self.source.start()
        self.target.start()
        self.source.create_database("bench")
        self.target.create_database("plain")
        self.target.create_database("mapped")
        with self.conn(self.source, "bench") as c:
            c.execute(SOURCE_DDL)
            c.execute(INSERT_PROC)
        with self.conn(self.target, "plain") as c:
            c.execute(SOURCE_DDL)
        with self.conn(self.target, "mapped") as c:
            c.execute(MAPPED_DDL)
        self.cfg.write_text(
            "systems:\n"
            f"  src: {{url: \"{self.source.url('bench')}\"}}\n"
            f"  plain: {{url: \"{self.target.url('plain')}\"}}\n"
            f"  mapped: {{url: \"{self.target.url('mapped')}\"}}\n"
            "flows:\n"
            "  - name: plain\n    source: src\n    target: plain\n    tables: [{source: public.t}]\n"
            "  - name: mapped\n    source: src\n    target: mapped\n    tables:\n" + MAPPED_TABLE
        )
        for flow in ("plain", "mapped"):
            self.run_flow(flow)  # slot, publication, checkpoint

    def run_flow(self, flow: str) -> tuple[float, float]:
        logfile = self.workdir / f"{flow}.log"
        cmd = [sys.executable, "-m", "replicator.cli", "-c", str(self.cfg), "--log-format", "logfmt",
               "run", "--once", "--flow", flow]
        t0 = time.perf_counter()
        r0 = os.times()
        with logfile.open("ab") as out:
            rc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode
        secs = time.perf_counter() - t0
        r1 = os.times()
        if rc != 0:
            raise SystemExit(f"{flow} failed ({rc}); see {logfile}")
        return secs, (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)

    def workload(self) -> None:
        with self.conn(self.source, "bench") as c:
            c.execute("CALL bench_insert(%s, %s, %s)", (self.next_id, self.rows, TXN_ROWS))
        self.next_id += self.rows

    def verify(self, first: int) -> None:
        last = self.next_id - 1
        with self.conn(self.source, "bench") as s, self.conn(self.target, "plain") as p:
            q = "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM t WHERE id BETWEEN %s AND %s"
            if s.execute(q, (first, last)).fetchone() != p.execute(q, (first, last)).fetchone():
                raise SystemExit("plain target differs from the source")
        with self.conn(self.target, "mapped") as m:
            n = m.execute("SELECT count(*) FROM customers WHERE id BETWEEN %s AND %s", (first, last)).fetchone()
            if n is None or n[0] != self.rows:
                raise SystemExit(f"mapped target has {n} rows, expected {self.rows}")
            for i in (first, first + 1, (first + last) // 2, last):
                row = m.execute("SELECT given_name, email, country, state, birthday, total FROM customers WHERE id = %s",
                                (i,)).fetchone()
                born = date(1950, 1, 1) + timedelta(days=i % 20000)
                want = (f"first {i}", hashlib.sha256(f"user{i}@example.com".encode()).hexdigest(),
                        ["DE", "FR", "IT"][i % 3], ["active", "inactive"][i % 2], born.strftime("%m/%d/%Y"),
                        ((i * 7919) % 10000000) / 100)
                if row is None or row[:5] != want[:5] or float(row[5]) != want[5]:
                    raise SystemExit(f"mapped row {i} is {row}, expected {want}")

    def round(self, rnd: int) -> None:
        first = self.next_id
        self.workload()
        order = ["plain", "mapped"] if rnd % 2 == 0 else ["mapped", "plain"]
        for flow in order:
            self.load.append(os.getloadavg()[0])
            secs, cpu = self.run_flow(flow)
            self.seconds[flow].append(secs)
            self.cpu[flow].append(cpu)
            log(f"round {rnd + 1}: {flow} {secs:.2f}s ({self.rows / secs:,.0f} rows/s, CPU {cpu:.2f}s)")
        self.verify(first)

    def report(self) -> str:
        med = {k: statistics.median(v) for k, v in self.seconds.items()}
        rate = {k: self.rows / v for k, v in med.items()}
        ratio = rate["mapped"] / rate["plain"]
        with self.conn(self.source, "bench") as c:
            version = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        runs = "\n".join(
            f"- {k}: " + ", ".join(f"{s:.2f}s" for s in self.seconds[k])
            + " (process CPU " + ", ".join(f"{s:.2f}s" for s in self.cpu[k]) + ")"
            for k in ("plain", "mapped")
        )
        return (
            "# Mapping cost: PostgreSQL -> PostgreSQL catch-up with and without a column mapping\n\n"
            f"Medians of {self.repeat} run(s); ratio = mapped rows/s / plain rows/s. Aim: >= 0.80.\n"
            f"Generated by `scripts/bench_mapping.py --rows {self.rows} --repeat {self.repeat}` on"
            f" {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs, PostgreSQL {version},"
            f" Python {platform.python_version()}). 1-minute load around the runs: median"
            f" {statistics.median(self.load):.2f}, max {max(self.load):.2f}.\n\n"
            "| workload | plain rows/s | mapped rows/s | mapped / plain |\n|---|---:|---:|---:|\n"
            f"| {self.rows:,} single-row INSERTs, {TXN_ROWS:,} per txn | {rate['plain']:,.0f} | {rate['mapped']:,.0f}"
            f" | {ratio:.2f} |\n\n"
            "Mapping: 5 renames, 1 date format, 1 value map, 1 sha256 mask, a filter (every row passes).\n\n"
            f"Runs (wall time from spawning `replicator run --once --flow F` until it exits):\n{runs}\n"
        )

    def cleanup(self) -> None:
        for s in (self.source, self.target):
            try:
                s.stop()
            except Exception:
                pass
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    bench = Bench(args.rows, args.repeat, args.keep)
    try:
        bench.setup()
        for rnd in range(args.repeat):
            bench.round(rnd)
        text = bench.report()
    finally:
        bench.cleanup()
    print(text)
    args.output.write_text(text)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
