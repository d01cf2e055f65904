#!/usr/bin/env python
"""Benchmark: webhooks to a receiver that is DOWN do not slow replication (issue 7).

    .venv/bin/python scripts/bench_webhooks.py [--rows 200000] [--repeat 3] [--keep] [--hook-events dead_letter]

Two throwaway PostgreSQL servers (source with ``wal_level=logical``, target). The workload is
``--rows`` single-row INSERT statements committed every 1,000 rows (a plpgsql procedure), fully
committed on the source while no consumer runs; every 100th row has ``qty = -1``. Two flows
consume it, one after the other (order alternating between rounds), each from its own slot into
its own target database, both with ``validate: ["qty >= 0"]`` on the table, so 1% of the rows
become dead letters (2,000 at the default size):

  quiet    no notifications configured (its own config file, without a ``notifications`` block);
  hooks    ``notifications.webhooks`` with one URL on a free port of 127.0.0.1 that nobody
           listens on (connection refused), ``events: [dead_letter]``, a secret: one
           notification per dead letter, none of which can be delivered.

Each run is ``replicator run --once --flow F``, measured two ways:

  (a) wall time from spawning the process until it exits. ``run --once`` gives the webhooks up
      to 5 s at exit to deliver what is pending (``Notifier.close(wait=5.0)`` in
      ``replicator.pipeline.run_flows``); with the receiver down nothing ever gets delivered, so
      the hooks run pays those 5 s on top -- by design, after replication is done;
  (b) replication time: from the spawn until the target's checkpoint
      (``_replicator.checkpoints.changes_applied`` of the flow, polled every 50 ms from here)
      reaches the expected count, i.e. until the last batch is committed on the target.

What ``changes_applied`` counts (dead letters included or not) is measured once before the timed
rounds, on a small calibration workload run through both flows.

Every round is checked: each target holds exactly the source rows with ``qty >= 0`` (md5 over
every row), and ``_replicator.dead_letters`` on each target has exactly ``rows / 100`` new
entries for its flow, for exactly the ids with ``qty = -1``. Medians of rows/s over
``--repeat`` rounds and the ratio hooks/quiet go to ``scripts/bench_results_webhooks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from replicator.sandbox import PostgresServer, free_port  # noqa: E402

RESULTS_FILE = REPO / "scripts" / "bench_results_webhooks.md"
TXN_ROWS = 1000
BAD_EVERY = 100  # every 100th row has qty = -1 and fails validation
POLL_S = 0.05
CALIBRATION_ROWS = 1000
FLOWS = ("quiet", "hooks")

SOURCE_DDL = """
CREATE TABLE t (
    id bigint PRIMARY KEY,
    qty integer NOT NULL,
    name text, city text, amount numeric(12,2), payload text
)
"""
INSERT_PROC = f"""
CREATE OR REPLACE PROCEDURE bench_insert(first_id int, n int, per_txn int)
LANGUAGE plpgsql AS $$
DECLARE last_id int := first_id + n - 1;
BEGIN
    FOR i IN first_id .. last_id LOOP
        INSERT INTO t VALUES (i, CASE WHEN i % {BAD_EVERY} = 0 THEN -1 ELSE i % 1000 END,
            'name ' || i, 'city ' || (i % 1000), ((i::bigint * 7919) % 10000000) / 100.0,
            rpad(md5(i::text), 60, 'x'));
        IF (i - first_id + 1) % per_txn = 0 OR i = last_id THEN COMMIT; END IF;
    END LOOP;
END $$
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def refused(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (the receiver is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


class Bench:
    def __init__(self, rows: int, repeat: int, keep: bool, events: str = "dead_letter") -> None:
        if rows % BAD_EVERY:
            raise SystemExit(f"--rows must be a multiple of {BAD_EVERY}")
        self.rows, self.repeat, self.keep = rows, repeat, keep
        self.events = events
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        p1 = free_port()
        p2 = free_port()
        self.hook_port = free_port()  # free_port never hands out the same port twice
        self.source = PostgresServer(self.workdir / "src", port=p1, name="bench_src", settings={"wal_level": "logical"})
        self.target = PostgresServer(self.workdir / "dst", port=p2, name="bench_dst")
        self.cfg = {"quiet": self.workdir / "quiet.yaml", "hooks": self.workdir / "hooks.yaml"}
        self.wall: dict[str, list[float]] = {f: [] for f in FLOWS}
        self.repl: dict[str, list[float]] = {f: [] for f in FLOWS}
        self.cpu: dict[str, list[float]] = {f: [] for f in FLOWS}
        self.hook_failures: list[int] = []
        self.next_id = 1
        self.load: list[float] = []
        self.dead_counted: bool | None = None  # does changes_applied count the dead letters?

    def conn(self, server: PostgresServer, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(server.url(db), autocommit=True)

    def setup(self) -> None:
        log(f"servers under {self.workdir}; webhook receiver (down) on port {self.hook_port}")
        self.source.start()
        self.target.start()
        self.source.create_database("bench")
        for flow in FLOWS:
            self.target.create_database(flow)
        with self.conn(self.source, "bench") as c:
            c.execute(SOURCE_DDL)
            c.execute(INSERT_PROC)
        for flow in FLOWS:  # a validated table is not created by the replicator
            with self.conn(self.target, flow) as c:
                c.execute(SOURCE_DDL)
        common = (
            "systems:\n"
            f"  src: {{url: \"{self.source.url('bench')}\"}}\n"
            + "".join(f"  {f}: {{url: \"{self.target.url(f)}\"}}\n" for f in FLOWS)
            + "flows:\n"
            + "".join(
                f"  - name: {f}\n    source: src\n    target: {f}\n    tables:\n"
                "      - source: public.t\n        validate: [\"qty >= 0\"]\n"
                for f in FLOWS
            )
        )
        self.cfg["quiet"].write_text(common)
        self.cfg["hooks"].write_text(
            common
            + "notifications:\n  webhooks:\n"
            f"    - url: \"http://127.0.0.1:{self.hook_port}/hook\"\n"
            f"      events: [{self.events}]\n      secret: bench-secret\n"
        )
        for flow in FLOWS:
            self.run_flow(flow, expected=None)  # slot, publication, state tables
        self.calibrate()

    def applied(self, c: psycopg.Connection[Any], flow: str) -> int:
        try:
            row = c.execute("SELECT changes_applied FROM _replicator.checkpoints WHERE flow = %s", (flow,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0

    def dead_letters(self, flow: str, first: int, last: int) -> list[int]:
        with self.conn(self.target, flow) as c:
            rows = c.execute(
                "SELECT (row_key->>'id')::bigint AS id FROM _replicator.dead_letters"
                " WHERE flow = %s AND (row_key->>'id')::bigint BETWEEN %s AND %s ORDER BY 1",
                (flow, first, last),
            ).fetchall()
        return [r[0] for r in rows]

    def run_flow(self, flow: str, expected: int | None) -> tuple[float, float | None, float]:
        """Run ``flow`` once; returns (wall s until exit, s until changes_applied reached
        ``expected`` -- None if not asked or never reached --, process CPU s)."""
        logfile = self.workdir / f"{flow}.log"
        cmd = [sys.executable, "-m", "replicator.cli", "-c", str(self.cfg[flow]), "--log-format", "logfmt",
               "run", "--once", "--flow", flow]
        if flow == "hooks" and not refused(self.hook_port):
            raise SystemExit(f"something listens on port {self.hook_port}: the receiver must be down")
        reached: float | None = None
        with self.conn(self.target, flow) as poll, logfile.open("ab") as out:
            out.write(f"\n=== run at {datetime.now(timezone.utc).isoformat()} ===\n".encode())
            out.flush()
            r0 = os.times()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            try:
                while True:
                    done = proc.poll() is not None
                    if expected is not None and reached is None and self.applied(poll, flow) >= expected:
                        reached = time.perf_counter() - t0
                    if done:
                        break
                    if time.perf_counter() - t0 > 1800:
                        raise SystemExit(f"{flow} still running after 30 min; see {logfile}")
                    time.sleep(POLL_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            secs = time.perf_counter() - t0
            r1 = os.times()
        if proc.returncode != 0:
            raise SystemExit(f"{flow} failed ({proc.returncode}); see {logfile}")
        return secs, reached, (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)

    def workload(self, rows: int) -> tuple[int, int]:
        first = self.next_id
        with self.conn(self.source, "bench") as c:
            c.execute("CALL bench_insert(%s, %s, %s)", (first, rows, TXN_ROWS))
        self.next_id += rows
        return first, self.next_id - 1

    def before(self) -> dict[str, int]:
        out = {}
        for flow in FLOWS:
            with self.conn(self.target, flow) as c:
                out[flow] = self.applied(c, flow)
        return out

    def calibrate(self) -> None:
        """What does changes_applied count? Run a small workload through both flows."""
        start = self.before()
        first, last = self.workload(CALIBRATION_ROWS)
        deltas = {}
        for flow in FLOWS:
            self.run_flow(flow, expected=None)
            with self.conn(self.target, flow) as c:
                deltas[flow] = self.applied(c, flow) - start[flow]
        bad = CALIBRATION_ROWS // BAD_EVERY
        if deltas["quiet"] == CALIBRATION_ROWS:
            self.dead_counted = True
        elif deltas["quiet"] == CALIBRATION_ROWS - bad:
            self.dead_counted = False
        else:
            raise SystemExit(f"calibration: changes_applied grew by {deltas['quiet']} for {CALIBRATION_ROWS} rows"
                             f" ({bad} dead letters); expected {CALIBRATION_ROWS} or {CALIBRATION_ROWS - bad}")
        if deltas["hooks"] != deltas["quiet"]:
            raise SystemExit(f"calibration: changes_applied grew by {deltas}: the flows count differently")
        log(f"calibration: {CALIBRATION_ROWS} rows, {bad} dead letters -> changes_applied +{deltas['quiet']}"
            f" (dead letters {'counted' if self.dead_counted else 'not counted'})")
        self.verify(first, last)

    def expected_delta(self, rows: int) -> int:
        return rows if self.dead_counted else rows - rows // BAD_EVERY

    def verify(self, first: int, last: int) -> None:
        q = ("SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM t"
             " WHERE id BETWEEN %s AND %s AND qty >= 0")
        with self.conn(self.source, "bench") as s:
            want = s.execute(q, (first, last)).fetchone()
        n = last - first + 1
        if want is None or want[0] != n - n // BAD_EVERY:
            raise SystemExit(f"source has {want} valid rows in {first}..{last}, expected {n - n // BAD_EVERY}")
        want_dead = [i for i in range(first, last + 1) if i % BAD_EVERY == 0]
        for flow in FLOWS:
            with self.conn(self.target, flow) as c:
                got = c.execute(
                    "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM t WHERE id BETWEEN %s AND %s",
                    (first, last),
                ).fetchone()
            if got != want:
                raise SystemExit(f"{flow} target differs from the source's valid rows: {got} != {want}")
            dead = self.dead_letters(flow, first, last)
            if dead != want_dead:
                raise SystemExit(f"{flow}: {len(dead)} dead letters for ids {first}..{last}, expected {len(want_dead)}"
                                 f" (the ids with qty = -1)")

    def hook_failures_since(self, mark: int) -> int:
        text = (self.workdir / "hooks.log").read_text(errors="replace")[mark:]
        return len(re.findall(r"webhook delivery failed", text))

    def round(self, rnd: int) -> None:
        first, last = self.workload(self.rows)
        start = self.before()
        order = list(FLOWS) if rnd % 2 == 0 else list(reversed(FLOWS))
        for flow in order:
            self.load.append(os.getloadavg()[0])
            expected = start[flow] + self.expected_delta(self.rows)
            hooks_log = self.workdir / "hooks.log"
            mark = len(hooks_log.read_text(errors="replace")) if hooks_log.exists() else 0
            secs, reached, cpu = self.run_flow(flow, expected)
            if reached is None:
                with self.conn(self.target, flow) as c:
                    now = self.applied(c, flow)
                raise SystemExit(f"{flow}: changes_applied is {now} after the run, expected {expected}")
            self.wall[flow].append(secs)
            self.repl[flow].append(reached)
            self.cpu[flow].append(cpu)
            extra = ""
            if flow == "hooks":
                fails = self.hook_failures_since(mark)
                self.hook_failures.append(fails)
                extra = f", {fails} failed delivery attempts logged"
            log(f"round {rnd + 1}: {flow} replicated in {reached:.2f}s ({self.rows / reached:,.0f} rows/s),"
                f" exited after {secs:.2f}s, CPU {cpu:.2f}s{extra}")
        self.verify(first, last)

    def report(self) -> str:
        rep = {k: statistics.median(v) for k, v in self.repl.items()}
        wall = {k: statistics.median(v) for k, v in self.wall.items()}
        rate = {k: self.rows / v for k, v in rep.items()}
        wrate = {k: self.rows / v for k, v in wall.items()}
        ratio = rate["hooks"] / rate["quiet"]
        wratio = wrate["hooks"] / wrate["quiet"]
        with self.conn(self.source, "bench") as c:
            version = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        dead = self.rows // BAD_EVERY
        opts = "" if self.events == "dead_letter" else f" --hook-events {self.events}"
        if self.events != "dead_letter":
            dead_note = (f"(diagnostic run: the webhook does not take `dead_letter`, so none of the {dead:,}"
                         " dead letters is notified; the hooks run only has the notifier, its delivery thread"
                         " and the lag sampler that comes with it)")
        else:
            dead_note = ""
        runs = "\n".join(
            f"- {k}: replicated in " + ", ".join(f"{s:.2f}s" for s in self.repl[k])
            + "; exited after " + ", ".join(f"{s:.2f}s" for s in self.wall[k])
            + " (process CPU " + ", ".join(f"{s:.2f}s" for s in self.cpu[k]) + ")"
            for k in FLOWS
        )
        return (
            "# Webhooks to a receiver that is down: PostgreSQL -> PostgreSQL catch-up with and without them\n\n"
            f"Medians of {self.repeat} run(s); ratio = hooks rows/s / quiet rows/s (issue 7: replication speed"
            " is unaffected, i.e. ~1.00).\n"
            f"Generated by `scripts/bench_webhooks.py --rows {self.rows} --repeat {self.repeat}{opts}` on"
            f" {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs, PostgreSQL {version},"
            f" Python {platform.python_version()}). 1-minute load around the runs: median"
            f" {statistics.median(self.load):.2f}, max {max(self.load):.2f}.\n\n"
            "| workload | quiet rows/s | hooks rows/s | hooks / quiet | wall until exit: quiet / hooks (s) |\n"
            "|---|---:|---:|---:|---:|\n"
            f"| {self.rows:,} single-row INSERTs, {TXN_ROWS:,} per txn, {dead:,} dead letters"
            f" | {rate['quiet']:,.0f} | {rate['hooks']:,.0f} | {ratio:.2f}"
            f" | {wall['quiet']:.2f} / {wall['hooks']:.2f} ({wratio:.2f}) |\n\n"
            "Both flows: `validate: [\"qty >= 0\"]`; every 100th row has `qty = -1` and becomes a dead letter."
            " `quiet` has no notifications; `hooks` has one webhook for `" + self.events + "` (with a secret) on a"
            " port of 127.0.0.1 where nothing listens (connection refused): its"
            f" {dead:,} notifications per run queue up in memory; delivery is in order per URL, so the"
            " thread keeps retrying the first one with backoff (1 s, 2 s, 4 s, ...) while the rest wait."
            + (" " + dead_note if dead_note else "") + "\n\n"
            "rows/s = rows / replication time: from spawning `replicator run --once --flow F` until the"
            " target's `_replicator.checkpoints.changes_applied` for the flow reached the end of the workload"
            f" (polled every {int(POLL_S * 1000)} ms; changes_applied"
            f" {'counts' if self.dead_counted else 'does not count'} the dead letters, measured on a"
            f" {CALIBRATION_ROWS:,}-row calibration run).\n\n"
            "Wall until exit (ratio in brackets = hooks rows/s / quiet rows/s on wall time): at exit"
            " `run --once` gives pending notifications up to 5 s (`Notifier.close(wait=5.0)` in"
            " `replicator.pipeline.run_flows`). With the receiver down nothing is ever delivered, so the hooks"
            " run waits the full 5 s after replication is done; the undelivered notifications are then"
            " lost with the process (they live in memory only).\n\n"
            f"Runs:\n{runs}\n"
            "- hooks: failed delivery attempts logged per run: " + ", ".join(map(str, self.hook_failures)) + "\n\n"
            "Every round verified: each target holds exactly the source rows with qty >= 0 (md5 over every"
            f" row) and `_replicator.dead_letters` has exactly {dead:,} new entries for its flow, for the ids"
            " with qty = -1.\n"
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
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--hook-events", default="dead_letter",
                        help="events of the hooks flow's webhook (diagnostic: 'paused' keeps the notifier and its"
                             " sampler but sends nothing during the run)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    bench = Bench(args.rows, args.repeat, args.keep, args.hook_events)
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
