"""kill -9 of a scheduled flow, mid-run and between runs: nothing lost, nothing applied twice.

The crash workload of ``test_crash_safety`` (inserts, updates, deletes, key changes, a big
transaction; every update increments a per-row counter ``n``) is committed as a backlog; then a
scheduled flow (``every: 2s``, ``max_rows: 3000`` so that a run takes many target transactions)
is started and SIGKILLed again and again: right after a target commit and before the source
acknowledgement (the crash hook), shortly after a run's first commit, and at random moments. Then more changes arrive
while a process waits for its next run, and it is killed while waiting. A last ``run --once``
finishes; the target must equal the source row for row and the checkpoint must count exactly
the source's changes and transactions.
"""

from __future__ import annotations

import random
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbhelpers import write_config
from processes import (
    Kill,
    PgTarget,
    Replicator,
    assert_applied_exactly_once,
    assert_clean_log,
    assert_same_table,
    drop_slot_when_released,
    generate_workload,
    kill_as_planned,
    wait_for,
)
from test_crash_safety import SRC_DDL, PgWorkloadSql, lsn, slot_confirmed

pytestmark = pytest.mark.slow


def test_kill_scheduled_flow_mid_run(pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    flow = f"schedcrash_{secrets.token_hex(3)}"
    slot = f"replicator_{flow}"
    pg_source.create_database(db)
    pg_source.execute(SRC_DDL, dbname=db)
    target = PgTarget(pg_target, db, SRC_DDL)
    target.create_tables()
    cfg = write_config(tmp_path / "replicator.yaml", flow, pg_source.url(db), target.url, ["public.a", "public.b"])
    cfg.write_text(cfg.read_text().replace(
        "    target: dst\n", "    target: dst\n    snapshot: never\n    schedule: {every: 2s, max_rows: 3000}\n"))
    rep = Replicator(cfg, tmp_path)
    try:
        rep.recover()  # the first run creates the slot and the checkpoint
        with psycopg.connect(pg_source.url(db), autocommit=True) as conn:
            w = generate_workload(PgWorkloadSql(conn), random.Random(5), 100_000, 10_000, big_at=0.5)
        rng = random.Random(6)
        plan = [Kill("commit", 1), Kill("commit", 3), Kill("commit", 2)]
        plan += [Kill("batch", round(rng.uniform(0.0, 0.2), 2)) for _ in range(3)]  # after a run's first commit
        plan += [Kill("timed", round(rng.uniform(1.0, 1.5), 2)) for _ in range(2)]
        last = target.checkpoint(flow)
        assert last is not None
        mid_run = 0
        for i, kill in enumerate(plan, 1):
            before = target.checkpoint(flow)
            assert before is not None
            if before[1] >= w.changes:
                break  # everything applied already: the remaining kills would kill an idle wait
            rc, spawned, _note = kill_as_planned(rep, kill, i, lambda proc: "")
            assert rc == -signal.SIGKILL, f"kill {i}: exit status {rc}:\n{rep.log()[-3000:]}"
            assert_clean_log(rep.log(), f"kill {i}")
            cp = target.checkpoint(flow)
            assert cp is not None and before[1] <= cp[1] <= w.changes, (before, cp, w.changes)
            confirmed = slot_confirmed(pg_source, slot)
            assert confirmed is not None and confirmed <= lsn(cp[0]), f"kill {i}: acknowledged past the checkpoint"
            if kill.how == "commit":
                assert confirmed < lsn(cp[0]), "the hook kills between the target commit and the acknowledgement"
            if "scheduled run done" not in rep.log() and cp[1] < w.changes:
                mid_run += 1  # inside a run, with work left
            print(f"kill {i} ({kill.how} {kill.arg}) after {time.monotonic() - spawned:.2f}s:"
                  f" changes applied {before[1]} -> {cp[1]} of {w.changes}")
        assert mid_run >= 5, f"only {mid_run} kills inside a run"

        # Killed while waiting for its next run, with changes committed meanwhile.
        rep.start()
        wait_for("a scheduled run to finish", lambda: "next scheduled run" in rep.log(), timeout=180)
        with psycopg.connect(pg_source.url(db), autocommit=True) as conn:
            for k in range(5):
                w.changes += conn.execute("UPDATE a SET n = n + 1 WHERE id %% 13 = %s", (k,)).rowcount
                w.transactions += 1
        assert rep.kill() == -signal.SIGKILL
        assert_clean_log(rep.log(), "killed while waiting")

        rep.recover()
        for table in ("a", "b"):
            src = [tuple(r) for r in pg_source.execute(f"SELECT * FROM {table} ORDER BY id", dbname=db)]
            assert src
            assert_same_table(table, src, target.rows(table))
        assert_applied_exactly_once(target.checkpoint(flow), w)
    finally:
        rep.cleanup()
        drop_slot_when_released(pg_source, slot)
