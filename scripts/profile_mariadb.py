#!/usr/bin/env python
"""Profile the MariaDB catch-up of ``scripts/bench_mariadb.py`` (where the replicator's time goes).

    .venv/bin/python scripts/profile_mariadb.py [--rows 500000] [--update-rows 200000]
        [--workloads A,B] [--targets mariadb,postgres] [--repeat 1]
        [--stages full,idle,read,write] [--pyspy DIR [--idle]] [--cprofile DIR]
        [--digest] [--capture DIR] [--top N] [--keep]

Runs from a copy of the tree too (paths are not resolved): e.g. the committed tree plus the
files being changed, to compare two versions on the same machine state.

Same tables and workloads as the bench (A: single-row INSERTs, 1,000 per transaction; B: one
UPDATE of ``--update-rows`` rows), on three throwaway servers (MariaDB primary, MariaDB target,
PostgreSQL target). Each workload is committed once; every measurement then replays it from a
saved checkpoint, the target table being put back first (untimed) into the state it had before
the workload, so runs can be repeated without generating the workload again.

Stages:

  idle   ``replicator run --once`` with nothing to apply (after each workload): the
         fixed cost of a run (interpreter start-up, imports, connections);
  full   ``replicator run --once`` as a subprocess: wall, process CPU and system CPU
         seconds; with ``--pyspy DIR`` under ``py-spy record`` (the thread holding the GIL;
         with ``--idle`` every thread, also where they wait), summarised as the functions
         with the most samples (own and inclusive) per thread;
  read   in process: ``MySQLSource.stream`` from the saved checkpoint to the workload's end,
         items counted and dropped (reading + decoding only); with ``--cprofile`` the top
         functions by own time; with ``--digest`` a SHA-1 of every change record (to compare
         two versions of the reader); with ``--capture DIR`` the workload's rows events are
         pickled first, for ``scripts/profile_mariadb_micro.py``;
  write  in process: the workload's changes netted into a Batch (untimed), then one timed
         ``sink.apply`` per batch of ``max_rows`` (20,000) changes, rolled back at the end.

The read and write stages run with the garbage collector tuned as ``replicator.pipeline``
tunes it; CPU seconds are steadier than wall seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(os.path.abspath(__file__)).parent.parent  # not resolved: may run from a copy of the tree
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mariadb import INSERT_PROC, MY_TABLE_DDL, PG_TABLE_DDL, TXN_ROWS  # noqa: E402

from replicator.sandbox import MariaDBServer, PostgresServer, free_port  # noqa: E402

DB = "bench"
BATCH_ROWS = 20_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Profiler:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="profile-mariadb-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self.primary = MariaDBServer(self.workdir / "primary", port=free_port(), name="prof_primary", server_id=1)
        self.my_target = MariaDBServer(
            self.workdir / "mytarget", port=free_port(), name="prof_mytarget", server_id=3,
            settings={"log_bin": None},
        )
        self.pg_target = PostgresServer(
            self.workdir / "pgtarget", port=free_port(), name="prof_pgtarget", settings={"wal_level": "replica"},
        )
        self.configs: dict[str, Path] = {}
        self.start: dict[str, str] = {}  # target -> checkpoint text before the workload
        self.end: str = ""
        self.updated: dict[str, bool] = {"mariadb": False, "postgres": False}
        self.last_sys = 0.0  # system CPU seconds of the last replicator run

    def servers(self) -> list[Any]:
        return [self.primary, self.my_target, self.pg_target]

    def target_url(self, target: str) -> str:
        return self.my_target.url(DB) if target == "mariadb" else self.pg_target.url(DB)

    def setup(self) -> None:
        log(f"starting servers under {self.workdir}")
        for s in self.servers():
            s.start()
        self.primary.create_database(DB)
        self.primary.execute(MY_TABLE_DDL, db=DB)
        self.primary.execute(INSERT_PROC, db=DB)
        self.my_target.create_database(DB)
        self.my_target.execute(MY_TABLE_DDL, db=DB)
        self.pg_target.create_database(DB)
        self.pg_target.execute(PG_TABLE_DDL, dbname=DB)
        for target in ("mariadb", "postgres"):
            path = self.workdir / f"replicator-{target}.yaml"
            path.write_text(textwrap.dedent(f"""\
                systems:
                  src: {{url: "{self.primary.url(DB)}"}}
                  dst: {{url: "{self.target_url(target)}"}}
                flows:
                  - name: prof_{target}
                    source: src
                    target: dst
                    tables: [{{source: t}}]
                """))
            self.configs[target] = path
            self.run_replicator(target, "setup", pyspy=False)

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint(self, target: str) -> str:
        flow = f"prof_{target}"
        if target == "mariadb":
            rows = self.my_target.execute("SELECT position FROM _replicator.checkpoints WHERE flow = %s", (flow,))
        else:
            rows = self.pg_target.execute(
                "SELECT position FROM _replicator.checkpoints WHERE flow = %s", (flow,), dbname=DB
            )
        return str(rows[0][0])

    def set_checkpoint(self, target: str, position: str) -> None:
        flow = f"prof_{target}"
        if target == "mariadb":
            self.my_target.execute(
                "UPDATE _replicator.checkpoints SET position = %s WHERE flow = %s", (position, flow)
            )
        else:
            self.pg_target.execute(
                "UPDATE _replicator.checkpoints SET position = %s WHERE flow = %s", (position, flow), dbname=DB
            )

    def reset(self, workload: str, target: str) -> None:
        """Put the target back into its state before the workload."""
        if workload == "A":
            if target == "mariadb":
                self.my_target.execute("TRUNCATE t", db=DB)
            else:
                self.pg_target.execute("TRUNCATE t", dbname=DB)
                self.pg_target.execute("VACUUM ANALYZE t", dbname=DB)
        elif self.updated[target]:
            sql = f"UPDATE t SET amount = amount - 1 WHERE id <= {self.args.update_rows}"
            if target == "mariadb":
                self.my_target.execute(sql, db=DB)
            else:
                self.pg_target.execute(sql, dbname=DB)
                self.pg_target.execute("VACUUM ANALYZE t", dbname=DB)
            self.updated[target] = False
        self.set_checkpoint(target, self.start[target])

    # -- workloads -----------------------------------------------------------------------
    def generate(self, workload: str) -> None:
        conn = self.primary.connect(DB, autocommit=False)
        t0 = time.perf_counter()
        try:
            with conn.cursor() as cur:
                if workload == "A":
                    cur.execute("CALL bench_insert(%s, %s, %s)", (1, self.args.rows, TXN_ROWS))
                else:
                    cur.execute("UPDATE t SET amount = amount + 1 WHERE id <= %s", (self.args.update_rows,))
            conn.commit()
        finally:
            conn.close()
        self.end = str(self.primary.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0])
        log(f"workload {workload} generated in {time.perf_counter() - t0:.1f}s (primary at {self.end})")

    # -- stages --------------------------------------------------------------------------
    def run_replicator(self, target: str, label: str, pyspy: bool) -> tuple[float, float]:
        cmd = [sys.executable, "-m", "replicator.cli", "-c", str(self.configs[target]),
               "--log-format", "logfmt", "run", "--once"]
        out_path = None
        if pyspy:
            assert self.args.pyspy is not None
            out_path = Path(self.args.pyspy) / f"{label}.txt"
            out_path.parent.mkdir(parents=True, exist_ok=True)
            spy = str(Path(sys.executable).with_name("py-spy"))
            mode = "--idle" if self.args.idle else "--gil"
            cmd = [spy, "record", "--format", "raw", "--threads", mode, "--rate", "250", "--nonblocking",
                   "-o", str(out_path), "--", *cmd]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        logfile = self.workdir / f"replicator-{target}-{label}.log"
        with logfile.open("wb") as out:
            t0 = time.perf_counter()
            rc = subprocess.call(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc != 0:
            raise SystemExit(f"replicator failed ({rc}): see {logfile}\n{logfile.read_text()[-3000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.last_sys = after.ru_stime - before.ru_stime
        if out_path is not None:
            summarise_pyspy(out_path, self.args.top)
        return wall, cpu

    def stage_full(self, workload: str, target: str, rnd: int) -> None:
        self.reset(workload, target)
        wall, cpu = self.run_replicator(target, f"{workload}-{target}-{rnd}", pyspy=self.args.pyspy is not None)
        if workload == "B":
            self.updated[target] = True
        n = self.args.rows if workload == "A" else self.args.update_rows
        log(f"  full  {workload} ->{target:<8} wall {wall:6.2f}s CPU {cpu:6.2f}s (sys {self.last_sys:4.2f}s)"
            f" ({n / wall:9,.0f} rows/s)"
            f" [CPU includes interpreter start-up{' and py-spy' if self.args.pyspy else ''}]")

    def source(self) -> Any:
        from replicator.mysql.source import MySQLSource
        from replicator.records import TableId

        src = MySQLSource(self.primary.url(DB), "prof_read")
        src.prepare([TableId(DB, "t")])
        return src

    def stage_read(self, workload: str, rnd: int) -> None:
        src = self.source()
        if self.args.capture and rnd == 0:
            self.capture(src, workload)
        start = src.parse_position(self.start["mariadb"])
        stop = src.parse_position(self.end)
        prof = cProfile.Profile() if self.args.cprofile else None
        counts: Counter[str] = Counter()
        c0, t0 = cpu_self(), time.perf_counter()
        if prof:
            prof.enable()
        digest = hashlib.sha1() if self.args.digest else None
        for item in src.stream(start, stop):
            counts[type(item).__name__] += 1
            if digest is not None and type(item).__name__ == "Change":
                digest.update(repr((item.op, item.table, item.key, item.before, item.after)).encode())
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, cpu_self() - c0
        src.close()
        n = counts["Change"]
        log(f"  read  {workload}            wall {wall:6.2f}s CPU {cpu:6.2f}s ({n / wall:9,.0f} changes/s) {dict(counts)}"
            + (f" digest {digest.hexdigest()}" if digest is not None else ""))
        if prof:
            report(prof, Path(self.args.cprofile) / f"read-{workload}-{rnd}.prof", self.args.top)

    def capture(self, src: Any, workload: str) -> None:
        """Pickle the table map's columns and every rows event body of the workload, for
        ``scripts/profile_mariadb_micro.py``."""
        import pickle

        from replicator.mysql import source as source_module

        events: list[tuple[str, bytes, int]] = []
        columns: list[dict[str, Any]] = []
        original = source_module._TableState.changes

        def changes(state: Any, rkind: str, buf: bytes, start: int, end: int, ncols: int) -> Any:
            if not columns:
                columns.extend(dict(c.__dict__) for c in state.table_map.columns)
            events.append((rkind, bytes(buf[start:end]), ncols))
            return original(state, rkind, buf, start, end, ncols)

        source_module._TableState.changes = changes  # type: ignore[method-assign,assignment]
        try:
            for _ in src.stream(src.parse_position(self.start["mariadb"]), src.parse_position(self.end)):
                pass
        finally:
            source_module._TableState.changes = original  # type: ignore[method-assign]
        path = Path(self.args.capture) / f"{workload}.pickle"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"columns": columns, "events": events, "key": ("id",)}))
        log(f"  captured {len(events)} rows events of workload {workload} in {path}")

    def stage_write(self, workload: str, target: str, rnd: int) -> None:
        from replicator.batch import Batch
        from replicator.mysql.writer import open_mysql_sink
        from replicator.pg.writer import PostgresSink
        from replicator.mapping import TableMapping
        from replicator.records import Change, TableId

        tid = TableId(DB, "t")
        src = self.source()
        changes = [i for i in src.stream(src.parse_position(self.start["mariadb"]), src.parse_position(self.end))
                   if type(i) is Change]
        info = src.describe(tid)
        src.close()
        self.reset(workload, target)
        url = self.target_url(target)
        sink: Any = open_mysql_sink(url, "_replicator") if target == "mariadb" else PostgresSink(url, "_replicator")
        target_tid = tid if target == "mariadb" else TableId("public", "t")
        tinfo = sink.describe(target_tid)
        mapping = TableMapping(tid, target_tid, {})
        mapping.bind(info, tinfo)
        batches = []
        for start in range(0, len(changes), BATCH_ROWS):
            batch = Batch()
            for ch in changes[start : start + BATCH_ROWS]:
                batch.add(ch, mapping)
            batches.append(batch.drain())
        prof = cProfile.Profile() if self.args.cprofile else None
        c0, t0 = cpu_self(), time.perf_counter()
        if prof:
            prof.enable()
        for ops in batches:
            sink.apply(ops)
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, cpu_self() - c0
        sink.rollback()
        sink.close()
        n = len(changes)
        log(f"  write {workload} ->{target:<8} wall {wall:6.2f}s CPU {cpu:6.2f}s ({n / wall:9,.0f} rows/s)"
            f" in {len(batches)} batches (rolled back)")
        if prof:
            report(prof, Path(self.args.cprofile) / f"write-{workload}-{target}-{rnd}.prof", self.args.top)

    def run(self) -> None:
        self.setup()
        for workload in self.args.workloads.split(","):
            for target in ("mariadb", "postgres"):
                self.start[target] = self.checkpoint(target)
            self.generate(workload)
            for rnd in range(self.args.repeat):
                for stage in self.args.stages.split(","):
                    if stage == "read":
                        self.stage_read(workload, rnd)

                    for target in self.args.targets.split(","):
                        if stage == "full":
                            self.stage_full(workload, target, rnd)
                        elif stage == "write":
                            self.stage_write(workload, target, rnd)
            # leave every target caught up with this workload (the next one starts from there)
            for target in ("mariadb", "postgres"):
                if self.checkpoint(target) != self.end or (workload == "B" and not self.updated[target]):
                    self.reset(workload, target)
                    self.run_replicator(target, f"{workload}-{target}-catchup", pyspy=False)
                    if workload == "B":
                        self.updated[target] = True
                self.updated[target] = False  # the next workload's reset starts from here
            if "idle" in self.args.stages.split(","):
                for rnd in range(self.args.repeat):
                    for target in self.args.targets.split(","):
                        wall, cpu = self.run_replicator(target, f"idle-{target}-{rnd}", pyspy=False)
                        log(f"  idle   ->{target:<8} wall {wall:6.2f}s CPU {cpu:6.2f}s (start-up, nothing to apply)")

    def cleanup(self) -> None:
        for s in reversed(self.servers()):
            try:
                s.stop() if self.args.keep else s.cleanup()
            except Exception as exc:  # noqa: BLE001
                print(f"warning: {exc}", file=sys.stderr)
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def report(prof: cProfile.Profile, path: Path, top: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(path))
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    print("\n".join(s.getvalue().splitlines()[:top + 12]))


def summarise_pyspy(path: Path, top: int) -> None:
    """Own and inclusive samples per function, per thread, from py-spy's raw (collapsed) output."""
    own: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]  # 'thread (9415): source-reader'
        names = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]  # 'fn (file:line)' -> 'fn (file)'
        if not names:
            continue
        totals[thread] += n
        own[thread][names[-1]] += n
        for name in set(names):
            incl[thread][name] += n
    grand = sum(totals.values())
    print(f"py-spy {path.name}: {grand} samples (non-idle) per thread: {dict(totals)}")
    for thread, total in totals.most_common():
        print(f"  -- {thread}: {total} samples ({100 * total / grand:.0f}%) -- own | inclusive")
        for name, c in own[thread].most_common(top):
            print(f"    own  {100 * c / grand:5.1f}%  {name}")
        for name, c in incl[thread].most_common(top):
            print(f"    incl {100 * c / grand:5.1f}%  {name}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--update-rows", type=int, default=200_000)
    p.add_argument("--workloads", default="A,B")
    p.add_argument("--targets", default="mariadb,postgres")
    p.add_argument("--stages", default="full")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--pyspy", default=None, help="directory for py-spy records (full stage)")
    p.add_argument("--idle", action="store_true", help="py-spy: sample waiting threads too (where they wait)")
    p.add_argument("--cprofile", default=None, help="directory for cProfile dumps (read/write stages)")
    p.add_argument("--digest", action="store_true", help="read stage: a digest of every change (compare trees)")
    p.add_argument("--capture", default=None, help="directory: pickle the rows events (read stage)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    gc.set_threshold(100_000, 50, 1000)  # as replicator.pipeline runs (read and write stages)
    prof = Profiler(args)
    try:
        prof.run()
    finally:
        prof.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
