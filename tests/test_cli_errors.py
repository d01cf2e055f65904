"""Bad input gets one clear line, the right exit code, no traceback and no password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "Sup3r-s3cret-pw"


def cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    assert PASSWORD not in out, out
    for needle in needles:
        assert needle in out, out
    return out


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


def pg_pg_config(src_url: str, dst_url: str, tables: str = "      - source: items\n") -> str:
    return (
        "systems:\n"
        f"  src: {{url: \"{src_url}\"}}\n"
        f"  dst: {{url: \"{dst_url}\"}}\n"
        "flows:\n"
        "  - name: f1\n    source: src\n    target: dst\n    tables:\n" + tables
    )


def test_malformed_yaml_exit_2_one_line(tmp_path: Path) -> None:
    proc = cli("-c", write(tmp_path, "systems: [\n  oops: {\n"), "check")
    out = assert_clean_failure(proc, 2, "malformed YAML (line")
    assert len(out.strip().splitlines()) == 1


def test_unknown_key_exit_2_names_path(tmp_path: Path) -> None:
    text = pg_pg_config("postgresql://u@127.0.0.1:1/a", "postgresql://u@127.0.0.1:1/b").replace(
        "    target: dst\n", "    target: dst\n    colour: blue\n"
    )
    out = assert_clean_failure(cli("-c", write(tmp_path, text), "run"), 2, "flows[0].colour: unknown key")
    assert len(out.strip().splitlines()) == 1


def test_unknown_system_exit_2_and_password_hidden(tmp_path: Path) -> None:
    text = pg_pg_config(f"postgresql://u:{PASSWORD}@127.0.0.1:1/a", "postgresql://u@127.0.0.1:1/b").replace(
        "    target: dst\n", "    target: erp\n"
    )
    assert_clean_failure(cli("-c", write(tmp_path, text), "check"), 2, "flows[0].target: unknown system 'erp'")


def test_missing_config_file_exit_2(tmp_path: Path) -> None:
    assert_clean_failure(cli("-c", str(tmp_path / "none.yaml"), "check"), 2, "not found")


@pytest.fixture
def dbs(pg_source: Any, pg_target: Any, fresh_db_name: str) -> tuple[str, str]:
    pg_source.create_database(fresh_db_name)
    pg_target.create_database(fresh_db_name)
    return pg_source.url(fresh_db_name), pg_target.url(fresh_db_name)


def test_table_without_primary_key_check_exit_1_with_fix(tmp_path: Path, pg_source: Any, pg_target: Any, fresh_db_name: str, dbs: tuple[str, str]) -> None:
    pg_source.execute("CREATE TABLE items (id int, name text)", dbname=fresh_db_name)
    pg_target.execute("CREATE TABLE items (id int PRIMARY KEY, name text)", dbname=fresh_db_name)
    proc = cli("-c", write(tmp_path, pg_pg_config(*dbs)), "check")
    assert_clean_failure(
        proc, 1, "source table public.items has no primary key or replica identity",
        "fix: add a primary key, or ALTER TABLE public.items REPLICA IDENTITY FULL",
    )


def test_missing_target_table_and_column_check_and_run_fail_before_writing(tmp_path: Path, pg_source: Any, pg_target: Any, fresh_db_name: str, dbs: tuple[str, str]) -> None:
    pg_source.execute("CREATE TABLE items (id int PRIMARY KEY, name text, extra text)", dbname=fresh_db_name)
    pg_source.execute("CREATE TABLE other (id int PRIMARY KEY)", dbname=fresh_db_name)
    pg_target.execute("CREATE TABLE items (id int PRIMARY KEY, name text)", dbname=fresh_db_name)
    tables = "      - source: items\n      - source: other\n"
    never = write(tmp_path, pg_pg_config(*dbs, tables=tables).replace("    tables:", "    snapshot: never\n    tables:"))
    proc = cli("-c", never, "check")
    assert_clean_failure(
        proc, 1, "target table public.items has no column 'extra'", "target table public.other does not exist",
        "snapshot --schema-only` creates it",
    )
    # with `snapshot: initial` (the default) the snapshot creates the missing table: no problem
    cfg = write(tmp_path, pg_pg_config(*dbs, tables=tables))
    proc = cli("-c", cfg, "check")
    out = assert_clean_failure(
        proc, 1, "target table public.items has no column 'extra'",
        "ok       flow f1: target table public.other does not exist yet: the snapshot creates it",
    )
    assert "PROBLEM  flow f1: target table public.other" not in out, out
    proc = cli("-c", cfg, "run", "--once")
    assert_clean_failure(proc, 1, "target table public.items has no column 'extra'")
    # The missing table was not created either: the flow failed before any DDL.
    assert pg_target.execute("SELECT to_regclass('public.other')::text", dbname=fresh_db_name) == [(None,)]
    # Nothing was written: not even the state schema's checkpoint row.
    rows = pg_target.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = '_replicator' AND tablename = 'checkpoints'",
        dbname=fresh_db_name,
    )
    if rows[0][0]:
        assert pg_target.execute("SELECT count(*) FROM _replicator.checkpoints", dbname=fresh_db_name) == [(0,)]
    assert pg_target.execute("SELECT count(*) FROM items", dbname=fresh_db_name) == [(0,)]


def test_wal_level_not_logical_check_exit_1_with_fix(tmp_path: Path, sandbox_factory: Any, pg_target: Any, fresh_db_name: str) -> None:
    replica = sandbox_factory.postgres({"wal_level": "replica"}, name="pg_replica_level")
    replica.create_database("shop")
    replica.execute("CREATE TABLE items (id int PRIMARY KEY)", dbname="shop")
    pg_target.create_database(fresh_db_name)
    pg_target.execute("CREATE TABLE items (id int PRIMARY KEY)", dbname=fresh_db_name)
    cfg = write(tmp_path, pg_pg_config(replica.url("shop"), pg_target.url(fresh_db_name)))
    assert_clean_failure(
        cli("-c", cfg, "check"), 1, "wal_level is replica", "set wal_level = logical in postgresql.conf and restart"
    )


def test_wrong_password_check_and_run_exit_1_password_not_printed(tmp_path: Path, pg_source: Any, pg_target: Any, fresh_db_name: str, dbs: tuple[str, str]) -> None:
    pg_source.add_password_user("pwuser", "the-right-one", replication=True)
    pg_source.execute("CREATE TABLE items (id int PRIMARY KEY)", dbname=fresh_db_name)
    pg_target.execute("CREATE TABLE items (id int PRIMARY KEY)", dbname=fresh_db_name)
    wrong = pg_source.url(fresh_db_name, user="pwuser", password=PASSWORD)
    cfg = write(tmp_path, pg_pg_config(wrong, dbs[1]))
    assert_clean_failure(cli("-c", cfg, "check"), 1, 'password authentication failed for user "pwuser"')
    assert_clean_failure(cli("-c", cfg, "run", "--once"), 1, 'password authentication failed for user "pwuser"')
    assert_clean_failure(cli("-c", cfg, "checkpoint", "show"), 1, "password authentication failed")
