"""Snapshots survive kill -9: the copying process is SIGKILLed at about 10 %, 50 % and 90 % of
the copy, then the snapshot is run again, and the flow ends exact.

The source table has 500,000 narrow rows (even ids), so a copy commits 10 chunks of 50,000 rows
(``replicator.snapshot.CHUNK_ROWS``): the target's ``_replicator.snapshots.rows_copied`` moves
in steps of 10 % of ``rows_estimated``, and the test kills the process as soon as it passes the
step it waits for. A writer keeps changing rows all over the key range the whole time (paused
only while a ``run --once`` catches up), so every restart copies under a new snapshot while the
stream holds changes the new copy already contains. At the end the target equals the source row
for row, the table's snapshot state is ``done``, and a target-side log of every row the
replicator wrote (see ``processes.version_log_sql``) shows that after the last copy started
(its TRUNCATE) no row's ``version`` was written twice or went back: no change applied twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbhelpers import cli, pg_fetch, pg_script
from processes import (
    Command,
    PgVersionWriter,
    SnapshotWatch,
    assert_clean_log,
    assert_each_change_applied_once,
    assert_same_table,
    drop_slot_when_released,
    flow_yaml,
    version_log,
    version_log_sql,
    write_flows,
)

pytestmark = pytest.mark.slow

ROWS = 500_000
TABLE = "public.t"
LOG_ERRORS = ("Traceback", "level='error'", "flow crashed", "internal error")


@dataclass
class Crash:
    src: Any
    dst: Any
    db: str
    flow: str
    cfg: Path
    tmp_path: Path
    watch: SnapshotWatch
    writer: PgVersionWriter
    commands: list[Command]

    def start(self, name: str, *args: str) -> Command:
        cmd = Command(self.cfg, self.tmp_path / f"{name}-{len(self.commands):02d}.log", *args)
        self.commands.append(cmd)
        return cmd

    def kill_at(self, fraction: float, start: Callable[[], Command]) -> float:
        """Start a copying process, SIGKILL it once ``rows_copied`` reached ``fraction`` of
        ``rows_estimated``; the fraction it had copied (committed) when it died."""
        cmd = start()
        deadline = time.monotonic() + 300
        while True:
            self.writer.check()
            assert cmd.running(), f"the process exited before {fraction:.0%} of the copy:\n{cmd.log()[-3000:]}"
            assert time.monotonic() < deadline, f"the copy did not reach {fraction:.0%}:\n{cmd.log()[-3000:]}"
            st = self.watch.state(self.flow, TABLE)
            # 3 % below the step: the estimate may be a little above the rows present
            if st is not None and st.status == "copying" and st.rows_estimated \
                    and st.rows_copied >= 0.97 * fraction * st.rows_estimated:
                break
            time.sleep(0.01)
        assert cmd.kill() == -9
        st = self.watch.state(self.flow, TABLE)
        assert st is not None and st.status == "copying", f"the copy ended before the kill: {st}"
        assert st.rows_estimated
        return st.rows_copied / st.rows_estimated

    def run_once(self) -> None:
        """Pause the writer; ``run --once`` applies everything; resume."""
        self.writer.pause()
        proc = cli(self.cfg, "run", "--once", timeout=300)
        assert proc.returncode == 0, f"run --once failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        assert_clean_log(proc.stdout + proc.stderr, "run --once", LOG_ERRORS)
        self.assert_exact()
        self.writer.resume()

    def assert_exact(self) -> None:
        query = "SELECT id, version, v FROM t ORDER BY id"
        assert_same_table("t", pg_fetch(self.src, self.db, query), pg_fetch(self.dst, self.db, query))
        st = self.watch.state(self.flow, TABLE)
        assert st is not None and st.status == "done", st
        checked = assert_each_change_applied_once(version_log(self.dst, self.db, "t"), "target t")
        assert checked >= ROWS // 2, checked


@pytest.fixture
def crash(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> Iterator[Crash]:
    db = fresh_db_name
    flow = "k" + db[-8:]
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(
        pg_source, db,
        "CREATE TABLE t (id bigint PRIMARY KEY, version integer NOT NULL DEFAULT 0, v text NOT NULL)",
        f"INSERT INTO t SELECT 2 * i, 0, md5(i::text) FROM generate_series(1, {ROWS}) i",
        "ANALYZE t",
    )
    cfg = write_flows(
        tmp_path / "replicator.yaml", {"src": pg_source.url(db), "dst": pg_target.url(db)},
        flow_yaml(flow, "src", "dst", ["t"], batch="{max_rows: 5000, max_delay_ms: 100}"),
    )
    proc = cli(cfg, "snapshot", "--schema-only")
    assert proc.returncode == 0, proc.stderr
    pg_script(pg_target, db, version_log_sql("t"))
    writer = PgVersionWriter(pg_source, db, range(2, 2 * ROWS + 1, 2), 2 * ROWS, seed=11)
    c = Crash(pg_source, pg_target, db, flow, cfg, tmp_path, SnapshotWatch(pg_target, db, "postgresql"), writer, [])
    try:
        yield c
    finally:
        writer.halt.set()
        for cmd in c.commands:
            cmd.kill()
        c.watch.close()
        drop_slot_when_released(pg_source, "replicator_" + flow.lower().replace("-", "_"))


def test_snapshot_command_killed_at_10_50_90_percent_then_run_once_or_a_rerun_of_snapshot_ends_exact(
    crash: Crash,
) -> None:
    crash.writer.start()

    def snapshot() -> Command:
        return crash.start("snapshot", "snapshot", "--workers", "1")  # one chunk after the other

    # killed at 10 %; run --once copies the table again by itself and streams
    killed = [crash.kill_at(0.1, snapshot)]
    crash.run_once()

    # a new snapshot (refresh) killed at 50 %, another at 90 %, then a plain re-run of snapshot
    killed += [crash.kill_at(0.5, snapshot), crash.kill_at(0.9, snapshot)]
    rerun = snapshot()
    assert rerun.wait(300) == 0, rerun.log()[-4000:]
    assert_clean_log(rerun.log(), "snapshot re-run", LOG_ERRORS)
    assert "rows copied" in rerun.log(), rerun.log()
    crash.run_once()
    crash.writer.stop()
    print(f"\nkilled at {[f'{k:.0%}' for k in killed]} of the copy; writer: {crash.writer.committed} transactions")
    assert killed[0] >= 0.097 and killed[1] >= 0.485 and killed[2] >= 0.873, killed


def test_run_killed_at_10_50_90_percent_of_its_initial_snapshot_then_run_once_ends_exact(crash: Crash) -> None:
    crash.writer.start()
    killed = [crash.kill_at(f, lambda: crash.start("run", "run")) for f in (0.1, 0.5, 0.9)]
    crash.run_once()
    crash.writer.stop()
    print(f"\nkilled at {[f'{k:.0%}' for k in killed]} of the copy; writer: {crash.writer.committed} transactions")
    assert killed[0] >= 0.097 and killed[1] >= 0.485 and killed[2] >= 0.873, killed
