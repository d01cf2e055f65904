"""A huge source transaction streams through in bounded memory.

One source transaction inserts 100,000 rows of ~200 bytes. pgoutput (protocol v1) sends it at
once when it commits; the replicator must stream it through to the target (flushing its batch
into the still-open target transaction) instead of holding it whole. The peak RSS of
``replicator run --once`` is measured exactly (``ru_maxrss`` of a child, read by a small wrapper
process) and compared with the same command on an empty workload.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.records import INSERT, Change, TableId

REPO = Path(__file__).resolve().parents[1]
ROWS = 100_000
MAX_GROWTH_MB = 60

pytestmark = pytest.mark.slow

# Runs the command given as arguments as a child; prints its exit code and peak RSS (KiB) as
# JSON on the last line. RUSAGE_CHILDREN covers exactly the one child this wrapper waited for.
WRAPPER = """
import json, resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=sys.stderr)
print(json.dumps({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

DDL = "CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL, payload text NOT NULL, at timestamptz)"


def run_measured(cfg: Path, log: Path) -> tuple[int, float, float]:
    """``replicator run --once`` in a fresh wrapper process: (exit code, peak RSS MiB, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_TEST_CRASH")}
    t0 = time.monotonic()
    with log.open("wb") as err:
        out = subprocess.run(
            [sys.executable, "-c", WRAPPER, sys.executable, "-m", "replicator.cli", "-c", str(cfg), "run", "--once"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=300,
            check=True,
        )
    result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return int(result["rc"]), result["maxrss_kib"] / 1024, time.monotonic() - t0


def table_digest(server: Any, db: str) -> tuple[int, str]:
    rows = server.execute(
        "SELECT count(*), md5(string_agg(concat_ws('|', id, n, payload, at), ',' ORDER BY id)) FROM big",
        dbname=db,
    )
    return int(rows[0][0]), str(rows[0][1])


def holding_it_whole_mb() -> float:
    """For reference: the change records of this transaction, as the decoder makes them, held
    all at once (what the replicator must NOT do). Measured, so the bound stays meaningful."""
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table = TableId("public", "big")
    tracemalloc.start()
    held = [
        Change(INSERT, table, {"id": i}, None, {"id": i, "n": i % 7, "payload": f"{i:032x}" * 6, "at": base + timedelta(seconds=i)})
        for i in range(1, ROWS + 1)
    ]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return size / 2**20


def test_big_transaction_streams_in_bounded_memory(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db = fresh_db_name
    flow = f"mem_{secrets.token_hex(4)}"
    pg_source.create_database(db)
    pg_source.execute(DDL, dbname=db)
    pg_target.create_database(db)
    pg_target.execute(DDL, dbname=db)
    cfg = tmp_path / "replicator.yaml"
    cfg.write_text(
        "systems:\n"
        f"  src: {{url: '{pg_source.url(db)}'}}\n"
        f"  dst: {{url: '{pg_target.url(db)}'}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: src\n"
        "    target: dst\n"
        "    tables: [{source: public.big}]\n"  # default batch settings, as a user would run it
    )
    try:
        rc, _, _ = run_measured(cfg, tmp_path / "setup.log")  # creates the slot and publication
        assert rc == 0, (tmp_path / "setup.log").read_text()
        rc, baseline, base_s = run_measured(cfg, tmp_path / "baseline.log")
        assert rc == 0, (tmp_path / "baseline.log").read_text()

        with psycopg.connect(pg_source.url(db), autocommit=True) as conn:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO big SELECT g, g %% 7, repeat(md5(g::text), 6),"
                    " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'"
                    " FROM generate_series(1, %s) g",
                    (ROWS,),
                )
            row_bytes = conn.execute("SELECT avg(pg_column_size(big.*)) FROM big").fetchone()
        assert row_bytes is not None

        rc, peak, big_s = run_measured(cfg, tmp_path / "big.log")
        log = (tmp_path / "big.log").read_text(errors="replace")
        assert rc == 0, log[-3000:]
        assert table_digest(pg_target, db) == table_digest(pg_source, db)
        cp = pg_target.execute(
            "SELECT changes_applied, transactions_applied FROM _replicator.checkpoints WHERE flow = %s",
            (flow,),
            dbname=db,
        )
        assert cp == [(ROWS, 1)]

        whole = holding_it_whole_mb()
        print(
            f"\n{ROWS} rows of ~{float(row_bytes[0]):.0f} bytes in one transaction:"
            f" peak RSS {peak:.1f} MiB ({big_s:.1f}s) vs baseline {baseline:.1f} MiB"
            f" ({base_s:.1f}s) -> growth {peak - baseline:.1f} MiB"
            f" (holding its change records would take ~{whole:.0f} MiB)"
        )
        assert whole > MAX_GROWTH_MB, "the bound would not tell streaming from holding the transaction"
        assert peak - baseline < MAX_GROWTH_MB, (
            f"run --once grew by {peak - baseline:.1f} MiB for one {ROWS}-row transaction"
            f" (limit {MAX_GROWTH_MB} MiB): the transaction is held in memory"
        )
    finally:
        for _ in range(150):
            try:
                pg_source.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    (f"replicator_{flow}",),
                )
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)
