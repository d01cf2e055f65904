"""The throwaway servers really have what CDC needs, survive crashes, and authenticate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from replicator.sandbox import (
    MariaDBServer,
    PostgresServer,
    SandboxError,
    find_pg_bindir,
    free_port,
)


def _managed_only(server: Any) -> None:
    if not server.managed:
        pytest.skip("needs a server started by the sandbox (REPLICATOR_TEST_*_URL is set)")


# --------------------------------------------------------------------------- helpers


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_pg_bindir_has_server_binaries() -> None:
    bindir = find_pg_bindir()
    assert (bindir / "postgres").is_file()
    assert (bindir / "initdb").is_file()


# --------------------------------------------------------------------------- PostgreSQL


def test_pg_is_ready_for_logical_decoding(pg_source: Any) -> None:
    assert pg_source.execute("SHOW wal_level") == [("logical",)]
    slots = int(pg_source.execute("SHOW max_replication_slots")[0][0])
    senders = int(pg_source.execute("SHOW max_wal_senders")[0][0])
    assert slots >= 10 and senders >= 10


def test_pg_accepts_a_replication_connection(pg_source: Any) -> None:
    with psycopg.connect(pg_source.url(), autocommit=True, replication="database") as conn:
        row = conn.execute("IDENTIFY_SYSTEM").fetchone()
    assert row is not None
    systemid, timeline, _xlogpos, dbname = row
    assert int(systemid) > 0 and int(timeline) >= 1
    assert dbname == "postgres" or not pg_source.managed


def test_pg_source_and_target_are_separate_servers(pg_source: Any, pg_target: Any) -> None:
    ids = {
        srv.execute("SELECT system_identifier FROM pg_control_system()")[0][0]
        for srv in (pg_source, pg_target)
    }
    assert len(ids) == 2


def test_pg_url_and_databases(pg_source: Any, fresh_db_name: str) -> None:
    if pg_source.managed:
        assert pg_source.url() == f"postgresql://postgres@127.0.0.1:{pg_source.port}/postgres"
        assert pg_source.url("x", "u", "p w") == f"postgresql://u:p%20w@127.0.0.1:{pg_source.port}/x"
    pg_source.create_database(fresh_db_name)
    pg_source.create_database(fresh_db_name)  # idempotent
    pg_source.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", dbname=fresh_db_name)
    pg_source.execute("INSERT INTO t VALUES (%s, %s)", (1, "a"), dbname=fresh_db_name)
    assert pg_source.execute("SELECT id, v FROM t", dbname=fresh_db_name) == [(1, "a")]
    pg_source.drop_database(fresh_db_name)
    assert not pg_source.execute(
        "SELECT 1 FROM pg_database WHERE datname = %s", (fresh_db_name,)
    )


def test_pg_kill_then_start_recovers_committed_data(pg_source: Any, fresh_db_name: str) -> None:
    _managed_only(pg_source)  # before creating anything on an existing server
    pg_source.create_database(fresh_db_name)
    pg_source.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname=fresh_db_name)
    pg_source.execute(
        "INSERT INTO t SELECT generate_series(1, 1000)", dbname=fresh_db_name
    )
    pg_source.execute("INSERT INTO t VALUES (1001)", dbname=fresh_db_name)  # the last commit
    port = pg_source.port

    pg_source.kill()
    assert not pg_source.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_source.url(), connect_timeout=2).close()

    pg_source.start()
    assert pg_source.is_running() and pg_source.port == port
    assert pg_source.execute("SELECT count(*), max(id) FROM t", dbname=fresh_db_name) == [
        (1001, 1001)
    ]
    log = Path(pg_source.log_path).read_text()
    assert "automatic recovery in progress" in log or "not properly shut down" in log
    pg_source.drop_database(fresh_db_name)


def test_pg_restart_is_clean(pg_source: Any, fresh_db_name: str) -> None:
    _managed_only(pg_source)  # before creating anything on an existing server
    pg_source.create_database(fresh_db_name)
    pg_source.execute("CREATE TABLE t AS SELECT 42 AS x", dbname=fresh_db_name)
    pg_source.restart()
    assert pg_source.execute("SELECT x FROM t", dbname=fresh_db_name) == [(42,)]
    assert pg_source.execute("SHOW wal_level") == [("logical",)]
    pg_source.drop_database(fresh_db_name)


def test_pg_password_user(pg_source: Any, fresh_db_name: str) -> None:
    _managed_only(pg_source)
    user, password = f"u_{fresh_db_name[-8:]}", "s3cr'et pw"
    pg_source.add_password_user(user, password, replication=True)

    with psycopg.connect(pg_source.url(user=user, password=password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
    with psycopg.connect(
        pg_source.url(user=user, password=password), autocommit=True, replication="database"
    ) as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone() is not None

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_source.url(user=user, password="wrong")).close()
    with pytest.raises(psycopg.OperationalError):  # trust does not apply to this user
        psycopg.connect(pg_source.url(user=user)).close()
    # Other users still get in without a password.
    assert pg_source.execute("SELECT current_user") == [("postgres",)]
    pg_source.execute(f'DROP ROLE "{user}"')


def test_pg_settings_override(sandbox_factory: Any) -> None:
    pg = sandbox_factory.postgres({"wal_level": "replica", "max_connections": "20"})
    assert pg.execute("SHOW wal_level") == [("replica",)]
    assert pg.execute("SHOW max_connections") == [("20",)]
    assert pg.execute("SHOW fsync") == [("off",)]  # defaults still apply
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="wal_level"):
        pg.execute("SELECT pg_create_logical_replication_slot('s', 'pgoutput')")


def test_pg_context_manager_and_cleanup(sandbox_factory: Any) -> None:
    spare = sandbox_factory.postgres(name="pg_ctx", start=False)  # never started: borrow its dir
    with PostgresServer(spare.base_dir, name="ctx") as pg:
        assert pg.is_running()
        assert pg.execute("SELECT 1") == [(1,)]
    assert not pg.is_running()
    pg.cleanup()
    assert not pg.base_dir.exists()


def test_pg_start_failure_shows_the_log(sandbox_factory: Any) -> None:
    pg = sandbox_factory.postgres({"wal_level": "bogus"}, start=False)
    with pytest.raises(SandboxError, match="wal_level") as info:
        pg.start()
    assert "exited" in str(info.value)
    assert not pg.is_running()


# --------------------------------------------------------------------------- MariaDB


def test_mariadb_binlog_is_ready_for_cdc(mariadb: Any) -> None:
    row = mariadb.execute(
        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata,"
        " @@gtid_strict_mode"
    )
    assert row == [(1, "ROW", "FULL", "FULL", 1)]
    assert int(mariadb.execute("SELECT @@server_id")[0][0]) >= 1


def test_mariadb_root_over_tcp(mariadb: Any) -> None:
    _managed_only(mariadb)
    assert mariadb.url() == f"mysql://root@127.0.0.1:{mariadb.port}/test"
    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == ("root@127.0.0.1",)
            cur.execute("SHOW GRANTS")
            grant = cur.fetchone()
            assert grant is not None and "ALL PRIVILEGES ON *.*" in grant[0]
    finally:
        conn.close()


def test_mariadb_databases(mariadb: Any, fresh_db_name: str) -> None:
    mariadb.create_database(fresh_db_name)
    mariadb.create_database(fresh_db_name)  # idempotent
    mariadb.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", db=fresh_db_name)
    mariadb.execute("INSERT INTO t VALUES (%s, %s)", (1, "a"), db=fresh_db_name)
    assert mariadb.execute("SELECT id, v FROM t", db=fresh_db_name) == [(1, "a")]
    mariadb.drop_database(fresh_db_name)
    assert not mariadb.execute("SHOW DATABASES LIKE %s", (fresh_db_name,))


def test_mariadb_kill_then_start_recovers(mariadb: Any, fresh_db_name: str) -> None:
    _managed_only(mariadb)  # before creating anything on an existing server
    mariadb.create_database(fresh_db_name)
    mariadb.execute("CREATE TABLE t (id int PRIMARY KEY) ENGINE=InnoDB", db=fresh_db_name)
    values = ", ".join(f"({i})" for i in range(1, 50))
    mariadb.execute(f"INSERT INTO t VALUES {values}", db=fresh_db_name)
    mariadb.execute("INSERT INTO t VALUES (50)", db=fresh_db_name)  # the last commit
    gtid_before = mariadb.execute("SELECT @@gtid_binlog_pos")[0][0]
    port = mariadb.port

    mariadb.kill()
    assert not mariadb.is_running()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2)

    mariadb.start()
    assert mariadb.is_running() and mariadb.port == port
    assert mariadb.execute("SELECT count(*), max(id) FROM t", db=fresh_db_name) == [(50, 50)]
    # The binary log kept every committed transaction: CDC can resume from its GTID.
    assert mariadb.execute("SELECT @@gtid_binlog_pos")[0][0] == gtid_before
    mariadb.drop_database(fresh_db_name)


def test_mariadb_restart_is_clean(mariadb: Any, fresh_db_name: str) -> None:
    _managed_only(mariadb)  # before creating anything on an existing server
    mariadb.create_database(fresh_db_name)
    mariadb.execute("CREATE TABLE t (x int) ENGINE=InnoDB", db=fresh_db_name)
    mariadb.execute("INSERT INTO t VALUES (7)", db=fresh_db_name)
    mariadb.restart()
    assert mariadb.execute("SELECT x FROM t", db=fresh_db_name) == [(7,)]
    mariadb.drop_database(fresh_db_name)


def test_mariadb_password_user(mariadb: Any, fresh_db_name: str) -> None:
    _managed_only(mariadb)
    user, password = f"u_{fresh_db_name[-8:]}", "s3cr'et pw"
    mariadb.add_password_user(user, password, privileges="SELECT, REPLICATION SLAVE")

    conn = pymysql.connect(host="127.0.0.1", port=mariadb.port, user=user, password=password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == (f"{user}@127.0.0.1",)
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="127.0.0.1", port=mariadb.port, user=user, password="wrong")
    assert info.value.args[0] == 1045  # access denied
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=mariadb.port, user=user, password="")
    mariadb.execute(f"DROP USER '{user}'@'127.0.0.1', '{user}'@'localhost'")


def test_mariadb_settings_override(sandbox_factory: Any) -> None:
    my = sandbox_factory.mariadb({"binlog_format": "STATEMENT"}, server_id=7)
    assert my.execute("SELECT @@binlog_format, @@server_id, @@log_bin") == [("STATEMENT", 7, 1)]


def test_mariadb_start_failure_shows_the_log(sandbox_factory: Any) -> None:
    my = sandbox_factory.mariadb({"no_such_option": "1"}, start=False)
    with pytest.raises(SandboxError, match="no-such-option|no_such_option"):
        my.start()
    assert not my.is_running()


def test_sandbox_processes_belong_to_the_right_users(pg_source: Any, mariadb: Any) -> None:
    _managed_only(pg_source)
    _managed_only(mariadb)
    assert isinstance(pg_source, PostgresServer) and isinstance(mariadb, MariaDBServer)
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    assert pg_source.pid is not None and mariadb.pid is not None
    assert os.stat(f"/proc/{pg_source.pid}").st_uid != 0  # PostgreSQL never runs as root
    assert os.stat(f"/proc/{mariadb.pid}").st_uid == 0


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    from replicator.sandbox import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
