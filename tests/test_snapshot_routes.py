"""The fast snapshot routes of MariaDB sources give the very values of the exact route.

A MariaDB source formats rows as text for ``LOAD DATA`` (MariaDB targets of the same types) or
for ``COPY`` (PostgreSQL targets whose column types read that text exactly). The value-by-value
route (``REPLICATOR_TEST_NO_TEXT_ROUTES=1``) gives what streaming gives — ``test_snapshot``
shows that for the whole type matrix — so each text route is compared with it here, value by
value, on the type matrix without the column types the text routes leave to it (TIME for
PostgreSQL targets, BIT for MariaDB targets: those tables take the exact route).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dbhelpers import MY_DDL, MY_ROUND_1_TYPES, MY_TYPE_NAMES, assert_same_rows, my_fetch, my_script, pg_fetch
from processes import REPO, flow_yaml, write_flows

MY_TYPES_DDL = next(s for s in MY_DDL if s.startswith("CREATE TABLE types"))


def snapshot(cfg: Path, flow: str, exact: bool) -> str:
    env = dict(os.environ)
    if exact:
        env["REPLICATOR_TEST_NO_TEXT_ROUTES"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "replicator.cli", "-c", str(cfg), "--log-format", "logfmt", "snapshot", "--flow", flow],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def source_table(mariadb: Any, db: str, drop: list[str]) -> list[str]:
    """``types`` (the type matrix, rows written at +05:00) and ``t``: the same rows without
    ``drop``; the column names of ``t``."""
    mariadb.create_database(db)
    my_script(mariadb, db, MY_TYPES_DDL)
    my_script(mariadb, db, *MY_ROUND_1_TYPES, time_zone="+05:00")
    cols = [c for c in MY_TYPE_NAMES if c not in drop]
    my_script(
        mariadb, db, "CREATE TABLE t LIKE types",
        "ALTER TABLE t " + ", ".join(f"DROP COLUMN {c}" for c in drop),
        f"INSERT INTO t SELECT {', '.join(cols)} FROM types",
    )
    return cols


def test_mariadb_to_pg_source_text_route_copies_what_the_exact_route_copies(
    mariadb: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db = fresh_db_name
    cols = source_table(mariadb, db, ["c_time"])
    for name in ("fast", "exact"):
        pg_target.create_database(f"{db}_{name}")
    cfg = write_flows(
        tmp_path / "r.yaml",
        {"src": mariadb.url(db), "fast": pg_target.url(f"{db}_fast"), "exact": pg_target.url(f"{db}_exact")},
        flow_yaml("fast" + db[-8:], "src", "fast", ["t"]),
        flow_yaml("exact" + db[-8:], "src", "exact", ["t"]),
    )
    assert "route='source text'" in snapshot(cfg, "fast" + db[-8:], exact=False)
    assert "route='values'" in snapshot(cfg, "exact" + db[-8:], exact=True)
    # every value as PostgreSQL prints it (and so stores it), row by row
    query = f"SELECT {', '.join(f'{c}::text' for c in cols)} FROM t ORDER BY id"
    fast, exact = pg_fetch(pg_target, f"{db}_fast", query), pg_fetch(pg_target, f"{db}_exact", query)
    assert len(exact) == len(my_fetch(mariadb, db, "SELECT id FROM t")) > 80
    assert_same_rows(exact, fast, cols, same_width=True)


def test_mariadb_to_mariadb_load_data_route_copies_what_the_exact_route_copies(
    mariadb: Any, fresh_db_name: str, tmp_path: Path
) -> None:
    db = fresh_db_name
    cols = source_table(mariadb, db, ["c_bit1", "c_bit64"])
    for name in ("fast", "exact"):
        mariadb.create_database(f"{db}_{name}")
    cfg = write_flows(
        tmp_path / "r.yaml",
        {"src": mariadb.url(db), "fast": mariadb.url(f"{db}_fast"), "exact": mariadb.url(f"{db}_exact")},
        flow_yaml("fast" + db[-8:], "src", "fast", ["t"]),
        flow_yaml("exact" + db[-8:], "src", "exact", ["t"]),
    )
    assert "route='load data'" in snapshot(cfg, "fast" + db[-8:], exact=False)
    assert "route='values'" in snapshot(cfg, "exact" + db[-8:], exact=True)
    # bytes of every value as stored (HEX), FLOAT widened exactly, TIMESTAMP in UTC
    exprs = [f"HEX(CAST({c} AS DOUBLE))" if c == "c_float" else f"HEX({c})" for c in cols]
    query = f"SELECT {', '.join(exprs)} FROM t ORDER BY id"
    fast, exact = my_fetch(mariadb, f"{db}_fast", query), my_fetch(mariadb, f"{db}_exact", query)
    source = my_fetch(mariadb, db, query)
    assert len(exact) == len(source) > 80
    assert_same_rows(exact, fast, cols, same_width=True)
    assert_same_rows(source, fast, cols, same_width=True)
