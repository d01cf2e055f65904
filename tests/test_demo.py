"""The README's second command: ``replicator demo`` syncs live and reports equal tables."""

from __future__ import annotations

import subprocess
import sys


def test_demo_syncs_both_directions_and_reports_equal_tables() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "replicator.cli", "demo", "--rows", "400"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for table in ("contacts", "orders", "inventory", "users"):
        line = next(line for line in out.splitlines() if line.strip().startswith(table))
        assert line.endswith("equal on both sides"), out
    assert "shop-to-crm  applied" in out and "crm-to-shop  applied" in out, out
    made = int(out.split("source changes made")[1].split()[0])
    applied = sum(int(line.split("applied")[1].split()[0]) for line in out.splitlines() if "  applied " in line)
    assert applied == made, out  # every change made on either side was applied exactly once
    assert "Traceback" not in proc.stderr
