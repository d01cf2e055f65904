"""Shared fixtures: real, throwaway database servers (see ``replicator/sandbox.py``).

* ``pg_source``, ``pg_target`` (two separate PostgreSQL servers) and ``mariadb``: started on
  first use, shared by the whole session, stopped and removed at the end. Tests share them,
  so each test works in its own database (``fresh_db_name``) and must not change
  server-wide settings; a test that needs different settings starts its own server with
  ``sandbox_factory``.
* To run the suite against servers you already have, set ``REPLICATOR_TEST_PG_SOURCE_URL``,
  ``REPLICATOR_TEST_PG_TARGET_URL`` and/or ``REPLICATOR_TEST_MYSQL_URL``. The fixture then
  gives an object with the same ``url()`` / ``execute()`` / ``create_database()`` API, and any
  test that tries to ``kill()``/``stop()``/``start()``/``restart()`` it is skipped.
* ``REPLICATOR_TEST_KEEP=1`` keeps the servers' directories (data, logs) after the run.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import pytest

from replicator.sandbox import (
    ExistingMariaDB,
    ExistingPostgres,
    MariaDBServer,
    PostgresServer,
    SandboxError,
    find_mariadb_binaries,
    find_pg_bindir,
)

# The helper modules hold asserts moved out of test modules: rewrite them the same way, so a
# failing comparison still shows its values.
pytest.register_assert_rewrite("dbhelpers", "processes")

ENV_PG_SOURCE = "REPLICATOR_TEST_PG_SOURCE_URL"
ENV_PG_TARGET = "REPLICATOR_TEST_PG_TARGET_URL"
ENV_MYSQL = "REPLICATOR_TEST_MYSQL_URL"
ENV_KEEP = "REPLICATOR_TEST_KEEP"
OVERRIDE_VARS = (ENV_PG_SOURCE, ENV_PG_TARGET, ENV_MYSQL)

# Makes fresh_db_name differ between runs, so leftovers on an existing server never collide.
_SESSION_SALT = secrets.token_hex(4)


def _skip_process_control(server: ExistingPostgres | ExistingMariaDB, what: str) -> NoReturn:
    pytest.skip(
        f"cannot {what} the {server.kind} server at {server.host}:{server.port}: the suite runs"
        " against an existing server (REPLICATOR_TEST_*_URL is set)"
    )


class ExistingPostgresForTests(ExistingPostgres):
    """An existing PostgreSQL server: kill()/stop()/start()/restart() skip the test."""

    def _unsupported(self, what: str) -> NoReturn:
        _skip_process_control(self, what)


class ExistingMariaDBForTests(ExistingMariaDB):
    """An existing MySQL/MariaDB server: kill()/stop()/start()/restart() skip the test."""

    def _unsupported(self, what: str) -> NoReturn:
        _skip_process_control(self, what)


def _keep() -> bool:
    return os.environ.get(ENV_KEEP, "") not in ("", "0")


def _server_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A new directory under pytest's temp dir that the ``postgres`` user can reach.

    pytest makes its temp dirs 0700; when we are root, PostgreSQL runs as ``postgres`` and
    must traverse them, so grant search (not read) permission on pytest's own directories.
    """
    path = tmp_path_factory.mktemp(name)
    if os.geteuid() == 0:
        basetemp = tmp_path_factory.getbasetemp()
        own_dirs = [basetemp]
        if basetemp.parent.name.startswith("pytest-of-"):
            own_dirs.append(basetemp.parent)
        for d in own_dirs:
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH:
                d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return path


def _finish(server: PostgresServer | MariaDBServer) -> None:
    if _keep():
        server.stop()
        print(f"\nkept {server!r} (logs: {server.log_path})")
    else:
        server.cleanup()


def _postgres(
    tmp_path_factory: pytest.TempPathFactory, env_var: str, name: str
) -> Iterator[PostgresServer | ExistingPostgresForTests]:
    url = os.environ.get(env_var)
    if url:
        yield ExistingPostgresForTests(url)
        return
    server = PostgresServer(_server_dir(tmp_path_factory, name), name=name)
    try:
        server.start()
        yield server
    finally:
        _finish(server)


@pytest.fixture(scope="session")
def pg_source(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PostgresServer | ExistingPostgresForTests]:
    """The PostgreSQL server that plays the source (shared by the session)."""
    yield from _postgres(tmp_path_factory, ENV_PG_SOURCE, "pg_source")


@pytest.fixture(scope="session")
def pg_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PostgresServer | ExistingPostgresForTests]:
    """A second, separate PostgreSQL server that plays the target (shared by the session)."""
    yield from _postgres(tmp_path_factory, ENV_PG_TARGET, "pg_target")


@pytest.fixture(scope="session")
def mariadb(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MariaDBServer | ExistingMariaDBForTests]:
    """The MariaDB server (shared by the session)."""
    url = os.environ.get(ENV_MYSQL)
    if url:
        yield ExistingMariaDBForTests(url)
        return
    server = MariaDBServer(_server_dir(tmp_path_factory, "mariadb"), name="mariadb")
    try:
        server.start()
        yield server
    finally:
        _finish(server)


@pytest.fixture
def fresh_db_name(request: pytest.FixtureRequest) -> str:
    """A database name unique to this test (and this run), valid on PostgreSQL and MariaDB.

    Only a name: create it on whichever server the test uses (``create_database``).
    """
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    digest = hashlib.sha1(f"{_SESSION_SALT}:{request.node.nodeid}".encode()).hexdigest()[:8]
    return f"t_{stem}_{digest}"


class SandboxFactory:
    """Starts extra, private servers for one test (e.g. with non-default settings)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._servers: list[PostgresServer | MariaDBServer] = []

    def postgres(
        self, settings: Mapping[str, str | None] | None = None, *, name: str = "pg_extra",
        start: bool = True,
    ) -> PostgresServer:
        self._need(find_pg_bindir)
        server = PostgresServer(_server_dir(self._tmp, name), settings=settings, name=name)
        self._servers.append(server)
        if start:
            server.start()
        return server

    def mariadb(
        self, settings: Mapping[str, str | None] | None = None, *, name: str = "mariadb_extra",
        server_id: int = 1, start: bool = True,
    ) -> MariaDBServer:
        self._need(find_mariadb_binaries)
        server = MariaDBServer(
            _server_dir(self._tmp, name), settings=settings, name=name, server_id=server_id
        )
        self._servers.append(server)
        if start:
            server.start()
        return server

    @staticmethod
    def _need(find: Callable[[], object]) -> None:
        try:
            find()
        except SandboxError as exc:
            if any(os.environ.get(v) for v in OVERRIDE_VARS):
                pytest.skip(f"needs a private server, but {exc}")
            raise

    def close(self) -> None:
        for server in reversed(self._servers):
            if _keep():
                server.stop()
            else:
                server.cleanup()
        self._servers.clear()


@pytest.fixture
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFactory]:
    """Private servers for this test only (stopped and removed when it ends)."""
    factory = SandboxFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(autouse=True)
def _drop_test_slots(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test, drop the replication slots its flows left on the shared PostgreSQL source
    (those of databases named after the test): the server has a fixed number of slots, and the
    suite runs hundreds of flows."""
    yield
    server = request.node.funcargs.get("pg_source") if hasattr(request.node, "funcargs") else None
    name = request.node.funcargs.get("fresh_db_name") if hasattr(request.node, "funcargs") else None
    if server is None or not name:
        return
    import time

    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            rows = server.execute("SELECT slot_name, active FROM pg_replication_slots WHERE database LIKE %s",
                                  (name + "%",))
        except psycopg.Error:
            return  # the server is down (a test stopped it): nothing to tidy
        for slot, active in rows:
            if not active:
                try:
                    server.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                except psycopg.errors.ObjectInUse:
                    pass
        if all(not active for _s, active in rows) or time.monotonic() > deadline:
            return
        time.sleep(0.2)
