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

from replicator.pg.passthrough import RAW_ROWS_MAX, RawRows
from replicator.records import INSERT, Change, TableId

REPO = Path(__file__).resolve().parents[1]
ROWS = 100_000
BIGGER = 400_000
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


def holding_it_whole_mb(rows: int) -> dict[str, float]:
    """For reference: ``rows`` such rows held at once, in each form the replicator's records
    take (decoded values; PostgreSQL -> PostgreSQL passthrough text) -- what it must NOT do."""
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table = TableId("public", "big")
    names = ("id", "n", "payload", "at")
    out = {}
    for kind in ("decoded", "passthrough"):
        tracemalloc.start()
        if kind == "decoded":
            held: list[object] = [
                Change(INSERT, table, {"id": i}, None, {"id": i, "n": i % 7, "payload": f"{i:032x}" * 6, "at": base + timedelta(seconds=i)})
                for i in range(1, rows + 1)
            ]
        else:
            held = [
                RawRows(
                    table,
                    names,
                    INSERT,
                    [str(i).encode() for i in range(first, min(first + RAW_ROWS_MAX, rows + 1))],
                    [
                        [str(i).encode(), str(i % 7).encode(), (f"{i:032x}" * 6).encode(), str(base + timedelta(seconds=i)).encode()]
                        for i in range(first, min(first + RAW_ROWS_MAX, rows + 1))
                    ],
                )
                for first in range(1, rows + 1, RAW_ROWS_MAX)
            ]
        out[kind] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        del held
    return out


def test_big_transaction_streams_in_bounded_memory(
    pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    """Growth < 60 MiB for 100k rows and, because holding 100k rows costs about that much in
    the leanest record form, also: a transaction four times as big costs no more."""
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

    def big_transaction(first: int, count: int) -> None:
        with psycopg.connect(pg_source.url(db), autocommit=True) as conn:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO big SELECT g, g %% 7, repeat(md5(g::text), 6),"
                    " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'"
                    " FROM generate_series(%s, %s) g",
                    (first, first + count - 1),
                )

    def replicate(name: str, changes: int, transactions: int) -> tuple[float, float]:
        rc, peak, seconds = run_measured(cfg, tmp_path / f"{name}.log")
        assert rc == 0, (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
        assert table_digest(pg_target, db) == table_digest(pg_source, db)
        cp = pg_target.execute(
            "SELECT changes_applied, transactions_applied FROM _replicator.checkpoints WHERE flow = %s",
            (flow,),
            dbname=db,
        )
        assert cp == [(changes, transactions)]
        return peak, seconds

    try:
        rc, _, _ = run_measured(cfg, tmp_path / "setup.log")  # creates the slot and publication
        assert rc == 0, (tmp_path / "setup.log").read_text()
        rc, baseline, base_s = run_measured(cfg, tmp_path / "baseline.log")
        assert rc == 0, (tmp_path / "baseline.log").read_text()

        big_transaction(1, ROWS)
        row_bytes = pg_source.execute("SELECT avg(pg_column_size(big.*)) FROM big", dbname=db)[0][0]
        peak, big_s = replicate("big", ROWS, 1)
        big_transaction(ROWS + 1, BIGGER)
        peak2, big2_s = replicate("bigger", ROWS + BIGGER, 2)

        whole = holding_it_whole_mb(ROWS)
        growth, growth2 = peak - baseline, peak2 - baseline
        print(
            f"\nbaseline (run --once, nothing to do): peak RSS {baseline:.1f} MiB ({base_s:.1f}s)"
            f"\n{ROWS} rows of ~{float(row_bytes):.0f} bytes in one transaction: peak RSS"
            f" {peak:.1f} MiB ({big_s:.1f}s) -> growth {growth:.1f} MiB"
            f"\n{BIGGER} rows in one transaction: peak RSS {peak2:.1f} MiB ({big2_s:.1f}s)"
            f" -> growth {growth2:.1f} MiB"
            f"\nholding {ROWS} such rows would take: "
            + ", ".join(f"{v:.0f} MiB ({k} records)" for k, v in whole.items())
        )
        assert growth < MAX_GROWTH_MB, (
            f"run --once grew by {growth:.1f} MiB for one {ROWS}-row transaction"
            f" (limit {MAX_GROWTH_MB} MiB): the transaction is held in memory"
        )
        # Held, the 300k more rows would add 3x the leanest form's size; run-to-run noise of
        # the peak is ~10 MiB.
        assert growth2 - growth < min(whole.values()), (
            f"peak memory grows with the transaction: +{growth2 - growth:.1f} MiB for"
            f" {BIGGER - ROWS} more rows"
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
