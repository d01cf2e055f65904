"""Throwaway PostgreSQL and MariaDB servers: temporary data directories, free ports.

Why this exists
---------------
Change data capture depends on server features that cannot be faked: PostgreSQL logical
decoding (``wal_level=logical``, replication slots, a walsender connection) and the MariaDB
row-based binary log with full row images and metadata. Mocks would test nothing that
matters, and the servers that a machine already runs (system services on 5432/3306) lack
these settings and must not be disturbed. So the test suite -- and the ``demo`` command,
which is why this lives in the package rather than under ``tests/`` -- start their own
servers from the installed binaries:

* each server gets its own directory (data, socket, log) and a free TCP port on 127.0.0.1;
* settings favour speed over durability (``fsync=off``...), which is fine for throwaway data
  and keeps a start under a second;
* every server can be stopped cleanly, killed with SIGKILL (crash tests), started again
  (it recovers from its own WAL / redo log and binary log) and removed.

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``postgres``
run as the ``postgres`` system user (created by the Debian ``postgresql`` package), and the
base directory is handed to that user; it must be reachable by it (every parent directory
searchable). MariaDB runs as the current user (``--user=root`` when root).

Only the standard library, psycopg and pymysql are used. Nothing here is needed at run time
by the replicator itself.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pymysql
from psycopg import sql

from replicator.errors import ReplicatorError

__all__ = [
    "ExistingMariaDB",
    "ExistingPostgres",
    "MariaDBServer",
    "MySQLLike",
    "PostgresLike",
    "PostgresServer",
    "SandboxError",
    "find_mariadb_binaries",
    "find_pg_bindir",
    "free_port",
]

READY_TIMEOUT = 30.0  # seconds to wait for a server to accept connections
STOP_TIMEOUT = 30.0  # seconds to wait for a clean shutdown before killing
_POLL = 0.05
_LOG_TAIL_LINES = 30
# sun_path is 108 bytes on Linux; keep a margin for the socket file name.
_MAX_SOCKET_DIR = 80
_ADDRESS_IN_USE = re.compile(r"address already in use|errno 98|error: 98", re.IGNORECASE)


class SandboxError(ReplicatorError):
    """A throwaway server could not be set up, started or stopped."""


# --------------------------------------------------------------------------- helpers


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it) and that this process
    has not handed out before: two servers started one after the other must never share one
    (the OS may offer the same free port twice before the first server binds it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def find_pg_bindir() -> Path:
    """The directory holding the PostgreSQL *server* binaries (``postgres``, ``initdb``).

    ``$REPLICATOR_PG_BINDIR`` wins when set. Otherwise the highest version under
    ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu layout), then ``pg_config --bindir``
    and ``$PATH``: on Debian ``pg_config`` may come from the client package and point at a
    directory without the server.
    """
    override = os.environ.get("REPLICATOR_PG_BINDIR")
    if override:
        path = Path(override)
        if not (path / "postgres").is_file():
            raise SandboxError(f"REPLICATOR_PG_BINDIR={override} holds no 'postgres' binary")
        return path

    def version_key(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.parent.name)) or (0,)

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=version_key)
    if found:
        return found[-1].parent
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    for cand in candidates:
        if (cand / "postgres").is_file() and (cand / "initdb").is_file():
            return cand
    raise SandboxError(
        "PostgreSQL server binaries (postgres, initdb) not found under /usr/lib/postgresql/*/bin,"
        " pg_config --bindir or PATH: install postgresql (apt-get install postgresql)"
        " or set REPLICATOR_PG_BINDIR"
    )


def find_mariadb_binaries() -> tuple[Path, Path]:
    """``(mariadbd, mariadb-install-db)``; /usr/sbin is searched even when not on PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])

    def first(*names: str) -> Path | None:
        for name in names:
            hit = shutil.which(name, path=search)
            if hit:
                return Path(hit)
        return None

    server = first("mariadbd", "mysqld")
    install = first("mariadb-install-db", "mysql_install_db")
    if server is None or install is None:
        raise SandboxError(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found:"
            " install mariadb-server (apt-get install mariadb-server)"
        )
    return server, install


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def _short_socket_dir(base_dir: Path, prefix: str) -> tuple[Path, bool]:
    """``base_dir`` if a socket path inside it fits in sun_path, else a new short temp dir.

    Returns ``(directory, is_temporary)``.
    """
    if len(str(base_dir)) <= _MAX_SOCKET_DIR:
        return base_dir, False
    return Path(tempfile.mkdtemp(prefix=prefix)), True


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (Linux)."""
    kids: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 2 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def _is_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return bool(fields) and fields[0] not in ("Z", "X")


def _sigkill(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_is_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


# Servers still running when the interpreter exits are stopped, so a failed test run or an
# interrupted demo does not leave orphans behind.
_RUNNING: set[_ManagedServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            try:
                server.kill()
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------- protocols


class PostgresLike(Protocol):
    """What tests may rely on for a PostgreSQL server: a sandbox one or an existing one."""

    port: int
    managed: bool

    def url(
        self, dbname: str = ..., user: str = ..., password: str | None = ...
    ) -> str: ...

    def execute(
        self, query: str, params: Sequence[Any] | None = ..., *, dbname: str = ...
    ) -> list[tuple[Any, ...]]: ...

    def create_database(self, name: str) -> None: ...

    def drop_database(self, name: str) -> None: ...


class MySQLLike(Protocol):
    """What tests may rely on for a MySQL/MariaDB server: a sandbox one or an existing one."""

    port: int
    managed: bool

    def url(self, db: str = ..., user: str = ..., password: str | None = ...) -> str: ...

    def execute(
        self, query: str, params: Sequence[Any] | None = ..., *, db: str | None = ...
    ) -> list[tuple[Any, ...]]: ...

    def create_database(self, name: str) -> None: ...

    def drop_database(self, name: str) -> None: ...


# --------------------------------------------------------------------------- base class


class _ManagedServer:
    """Process bookkeeping shared by both engines: start/stop/kill/restart, readiness."""

    managed = True
    kind = "server"

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None,
        settings: Mapping[str, str | None] | None,
        name: str,
        stop_at_exit: bool,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.name = name
        self._port_fixed = port is not None
        self.port: int = port if port is not None else free_port()
        self.settings: dict[str, str | None] = dict(settings or {})
        self._stop_at_exit = stop_at_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._temp_dirs: list[Path] = []

    # -- to be provided by subclasses
    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _initialize(self) -> None:
        raise NotImplementedError

    def _spawn(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _try_connect(self) -> None:
        raise NotImplementedError

    def _server_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _after_first_start(self) -> None:
        """Hook run once the server is ready (e.g. account fix-ups)."""

    # -- public API
    @property
    def pid(self) -> int | None:
        """The server's main process (postmaster / mariadbd), or None when not running."""
        return self._server_pid() if self.is_running() else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Initialize the data directory if needed, start the server, wait until it is ready."""
        if self.is_running():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._initialize()
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                break
            except SandboxError:
                port_taken = _ADDRESS_IN_USE.search(_log_tail(self.log_path, 10))
                if attempt + 1 < attempts and port_taken:
                    self.port = free_port()  # lost the race for the port: pick another
                    continue
                raise
        if self._stop_at_exit:
            _RUNNING.add(self)
        self._after_first_start()

    def stop(self) -> None:
        """Clean shutdown; waits for the server to exit (killed after STOP_TIMEOUT)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._request_shutdown(proc)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._proc = None
        _RUNNING.discard(self)

    def kill(self) -> None:
        """Crash the server: SIGKILL its main process and its children at once, wait for them.

        Like a power cut for the server (not the OS): what was committed is in the OS page
        cache and survives; :meth:`start` then runs crash recovery.
        """
        proc = self._proc
        if proc is None:
            return
        pid = self._server_pid()
        pids: list[int] = []
        if proc.poll() is None:
            pids = [proc.pid]
            if pid is not None and pid != proc.pid:
                pids.append(pid)
            for p in list(pids):
                pids.extend(_children_of(p))
            _sigkill(pids)
        proc.wait()
        _wait_gone(pids, timeout=10.0)
        self._proc = None
        _RUNNING.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server if running and remove ``base_dir`` (and any temp socket dir)."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        for d in self._temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._temp_dirs.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.name} port={self.port} {state} {self.base_dir}>"

    # -- internals
    def _request_shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)

    def _start_once(self) -> None:
        self._proc = self._spawn()
        deadline = time.monotonic() + READY_TIMEOUT
        last_error: Exception | None = None
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise SandboxError(
                    f"{self.kind} {self.name!r} exited with code {code} while starting"
                    f" (port {self.port}); end of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            try:
                self._try_connect()
                return
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                last_error = exc
            if time.monotonic() > deadline:
                self.kill()
                raise SandboxError(
                    f"{self.kind} {self.name!r} did not accept connections on port {self.port}"
                    f" within {READY_TIMEOUT:.0f}s (last error: {last_error}); end of"
                    f" {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(_POLL)


# --------------------------------------------------------------------------- PostgreSQL

_HBA_MARKER = "# --- sandbox trust rules (password users are inserted above) ---"
_HBA_TRUST = (
    "local all all trust\n"
    "host all all 127.0.0.1/32 trust\n"
    "host replication all 127.0.0.1/32 trust\n"
)


class PostgresServer(_ManagedServer):
    """A private PostgreSQL cluster configured for logical decoding.

    ``settings`` override or extend the defaults (``{'wal_level': 'replica'}`` for a negative
    test); a value of ``None`` removes a default so the server's built-in value applies.
    Layout of ``base_dir``: ``data/`` (the cluster), ``postgres.log``, the Unix socket.
    """

    kind = "PostgreSQL"

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str | None] | None = None,
        name: str = "pg",
        stop_at_exit: bool = True,
    ) -> None:
        super().__init__(
            base_dir, port=port, settings=settings, name=name, stop_at_exit=stop_at_exit
        )
        self.bindir = find_pg_bindir()
        self.data_dir = self.base_dir / "data"
        self._socket_dir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise SandboxError(
                    "PostgreSQL refuses to run as root and there is no 'postgres' system user:"
                    " install postgresql (it creates the user) or run as a non-root user"
                ) from None

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            self._socket_dir, temporary = _short_socket_dir(self.base_dir, "pgsock-")
            if temporary:
                self._temp_dirs.append(self._socket_dir)
                self._give_to_postgres(self._socket_dir)
        return self._socket_dir

    def effective_settings(self) -> dict[str, str]:
        """The settings written to the server's configuration (defaults + overrides)."""
        merged: dict[str, str | None] = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "logical",
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "fsync": "off",
            # Not "off": asynchronous commit keeps the last commits in shared memory only, so
            # kill() would lose transactions the client saw committed -- a fake data loss in
            # crash tests. With fsync=off a commit costs one write() to the OS page cache.
            "synchronous_commit": "on",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "128MB",
            "wal_sender_timeout": "60s",
            "max_wal_size": "4GB",
            "logging_collector": "off",  # stderr goes to postgres.log
            "log_line_prefix": "%m [%p] ",
        }
        merged.update(self.settings)
        return {k: v for k, v in merged.items() if v is not None}

    # -- process plumbing
    def _popen_user_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],  # drop root's supplementary groups
        }

    def _give_to_postgres(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("PG"):
                del env[key]  # PGDATA, PGPORT... must not redirect our commands
        env["LC_ALL"] = "C"
        if self._run_as is not None:
            env["HOME"] = str(self.base_dir)
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
        return env

    def _run(self, args: Sequence[str | Path]) -> None:
        result = subprocess.run(
            [str(a) for a in args],
            cwd=self.base_dir,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            **self._popen_user_kwargs(),
        )
        if result.returncode != 0:
            out = result.stdout.decode(errors="replace").strip()
            raise SandboxError(f"{args[0]} failed (exit {result.returncode}):\n{out}")

    def _check_reachable(self) -> None:
        """The postgres user must be able to search every parent directory of base_dir."""
        if self._run_as is None:
            return
        uid = self._run_as.pw_uid
        gids = {self._run_as.pw_gid} | set(os.getgrouplist(self._run_as.pw_name, self._run_as.pw_gid))
        for parent in reversed(self.base_dir.parents):
            st = parent.stat()
            if st.st_uid == uid:
                ok = bool(st.st_mode & 0o100)
            elif st.st_gid in gids:
                ok = bool(st.st_mode & 0o010)
            else:
                ok = bool(st.st_mode & 0o001)
            if not ok:
                raise SandboxError(
                    f"PostgreSQL runs as the 'postgres' user, which cannot reach {self.base_dir}:"
                    f" {parent} is not searchable by it. Use a base directory it can reach"
                    f" (e.g. under /tmp) or run: chmod o+x {parent}"
                )

    def _initialize(self) -> None:
        self._give_to_postgres(self.base_dir)
        self._check_reachable()
        if not (self.data_dir / "PG_VERSION").exists():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)  # a half-done initdb
            self._run(
                [
                    self.bindir / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text(f"# written by replicator.sandbox\n{_HBA_MARKER}\n{_HBA_TRUST}")
            with (self.data_dir / "postgresql.conf").open("a") as fh:
                fh.write("\n# replicator.sandbox settings (rewritten at every start)\n")
                fh.write("include 'sandbox.conf'\n")

    def _write_config(self) -> None:
        conf = self.data_dir / "sandbox.conf"
        lines = [
            f"{key} = '{value.replace(chr(39), chr(39) * 2)}'"
            for key, value in self.effective_settings().items()
        ]
        conf.write_text("\n".join(lines) + "\n")
        for path in (conf, self.data_dir / "pg_hba.conf"):
            self._give_to_postgres(path)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._write_config()  # here, not in _initialize: the port may change on a retry
        log = self.log_path.open("ab")
        try:
            if self._run_as is not None and self.log_path.stat().st_uid != self._run_as.pw_uid:
                self._give_to_postgres(self.log_path)
            return subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                cwd=self.base_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C must not reach the server
                **self._popen_user_kwargs(),
            )
        finally:
            log.close()

    def _server_pid(self) -> int | None:
        # Popen runs postgres directly (no wrapper), so the child is the postmaster.
        return self._proc.pid if self._proc is not None else None

    def _request_shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGINT)  # "fast" shutdown

    def _try_connect(self) -> None:
        with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")

    # -- SQL conveniences
    def url(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection as the ``postgres`` superuser (close it yourself)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), **kwargs)

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement (or several, without params) in autocommit; rows if any."""
        return _pg_execute(self.url(dbname), query, params)

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        _pg_create_database(self.url(), name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        _pg_drop_database(self.url(), name)

    def add_password_user(
        self, name: str, password: str, *, superuser: bool = False, replication: bool = False
    ) -> None:
        """Create (or update) a LOGIN role that must authenticate with scram-sha-256 over TCP."""
        attrs = sql.SQL(" ").join(
            sql.SQL(a)
            for a in (
                "LOGIN",
                "SUPERUSER" if superuser else "NOSUPERUSER",
                "REPLICATION" if replication else "NOREPLICATION",
            )
        )
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
            conn.execute(
                sql.SQL("SET password_encryption = 'scram-sha-256'")
            )
            conn.execute(
                sql.SQL("{} {} WITH {} PASSWORD {}").format(
                    verb, sql.Identifier(name), attrs, sql.Literal(password)
                )
            )
            hba = self.data_dir / "pg_hba.conf"
            text = hba.read_text()
            role = '"' + name.replace('"', '""') + '"'
            rules = (
                f"host all {role} 127.0.0.1/32 scram-sha-256\n"
                f"host replication {role} 127.0.0.1/32 scram-sha-256\n"
            )
            if rules not in text:
                if _HBA_MARKER in text:
                    text = text.replace(_HBA_MARKER, rules + _HBA_MARKER, 1)
                else:
                    text = rules + text
                hba.write_text(text)
                self._reload(conn)

    def reload(self) -> None:
        """Make the server re-read its configuration and wait until new sessions see it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            self._reload(conn)

    def _reload(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        # pg_reload_conf() only signals the postmaster. A new backend reports the time the
        # postmaster last loaded the configuration, so wait until that moves forward.
        row = conn.execute("SELECT pg_conf_load_time()").fetchone()
        assert row is not None
        before = row[0]
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with psycopg.connect(self.url(), autocommit=True) as probe:
                now = probe.execute("SELECT pg_conf_load_time()").fetchone()
            if now is not None and now[0] > before:
                return
            time.sleep(_POLL)
        raise SandboxError(f"PostgreSQL {self.name!r} did not reload its configuration in 10s")


def _pg_execute(url: str, query: str, params: Sequence[Any] | None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []


def _pg_create_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _pg_drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --------------------------------------------------------------------------- MariaDB


class MariaDBServer(_ManagedServer):
    """A private MariaDB server with a row-based binary log (full images and metadata) and GTIDs.

    ``settings`` are passed to ``mariadbd`` as ``--key=value`` and override the defaults
    (``{'binlog_format': 'STATEMENT'}`` for a negative test); ``None`` drops a default.
    Layout of ``base_dir``: ``data/`` (datadir, binary logs), ``mariadb.err``, the socket.
    ``root`` has every privilege and an empty password, from 127.0.0.1 and localhost.
    """

    kind = "MariaDB"

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str | None] | None = None,
        name: str = "mariadb",
        server_id: int = 1,
        stop_at_exit: bool = True,
    ) -> None:
        super().__init__(
            base_dir, port=port, settings=settings, name=name, stop_at_exit=stop_at_exit
        )
        self.server_id = server_id
        self.mariadbd, self.install_db = find_mariadb_binaries()
        self.data_dir = self.base_dir / "data"
        self._socket_dir: Path | None = None
        self._accounts_checked = False

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mariadb.err"

    @property
    def socket_path(self) -> Path:
        if self._socket_dir is None:
            self._socket_dir, temporary = _short_socket_dir(self.base_dir, "mysock-")
            if temporary:
                self._temp_dirs.append(self._socket_dir)
        return self._socket_dir / "mariadb.sock"

    def effective_settings(self) -> dict[str, str]:
        """Options given to mariadbd as ``--key=value`` (defaults + overrides)."""
        merged: dict[str, str | None] = {
            "datadir": str(self.data_dir),
            "socket": str(self.socket_path),
            "port": str(self.port),
            "bind_address": "127.0.0.1",
            "pid_file": str(self.base_dir / "mariadb.pid"),
            "log_error": str(self.log_path),
            "log_bin": str(self.data_dir / "mysql-bin"),
            "binlog_format": "ROW",
            "binlog_row_image": "FULL",
            "binlog_row_metadata": "FULL",
            "server_id": str(self.server_id),
            "gtid_strict_mode": "ON",
            "innodb_flush_log_at_trx_commit": "2",
            "sync_binlog": "0",
            "skip_name_resolve": "ON",
            "innodb_buffer_pool_size": "128M",
            "innodb_log_file_size": "16M",
            "character_set_server": "utf8mb4",
            "collation_server": "utf8mb4_unicode_ci",
            "performance_schema": "OFF",
        }
        if os.geteuid() == 0:
            merged["user"] = "root"
        for key, value in self.settings.items():
            merged[key.replace("-", "_")] = value
        return {k: v for k, v in merged.items() if v is not None}

    def _initialize(self) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-done installation
        args = [
            str(self.install_db),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        result = subprocess.run(
            args,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0:
            out = result.stdout.decode(errors="replace").strip()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise SandboxError(f"mariadb-install-db failed (exit {result.returncode}):\n{out}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [str(self.mariadbd), "--no-defaults"]
        args += [f"--{k.replace('_', '-')}={v}" for k, v in self.effective_settings().items()]
        return subprocess.Popen(
            args,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # everything goes to --log-error
            start_new_session=True,
        )

    def _try_connect(self) -> None:
        conn = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2
        )
        conn.close()

    def _after_first_start(self) -> None:
        if self._accounts_checked:
            return
        # mariadb-install-db creates root@127.0.0.1 on 10.11, older/newer versions may not:
        # make sure root has every privilege from both TCP and the socket.
        conn = pymysql.connect(unix_socket=str(self.socket_path), user="root", password="")
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}'")
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
                # root@<hostname> only produces "ignored in --skip-name-resolve mode" warnings.
                cur.execute(
                    "SELECT host FROM mysql.user WHERE user = 'root'"
                    " AND host NOT IN ('localhost', '127.0.0.1', '::1', '%')"
                )
                for (host,) in cur.fetchall():
                    cur.execute(f"DROP USER IF EXISTS 'root'@{_mysql_string(host)}")
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            conn.close()
        self._accounts_checked = True

    def url(self, db: str = "test", user: str = "root", password: str | None = None) -> str:
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"mysql://{auth}@127.0.0.1:{self.port}/{quote(db, safe='')}"

    def connect(self, db: str | None = None, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        """An autocommit connection as root (close it yourself)."""
        kwargs.setdefault("autocommit", True)
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="", database=db, **kwargs
        )

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, db: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit as root; the rows it returns, if any."""
        return _mysql_execute("127.0.0.1", self.port, "root", "", db, query, params)

    def create_database(self, name: str) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS {_mysql_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_mysql_ident(name)}")

    def add_password_user(self, name: str, password: str, privileges: str = "ALL") -> None:
        """Create (or update) ``name`` with ``password``, granted ``privileges`` ON *.*.

        ``privileges`` is SQL, e.g. ``"SELECT, REPLICATION SLAVE, BINLOG MONITOR"``.
        """
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    account = f"{_mysql_string(name)}@'{host}'"
                    cur.execute(f"CREATE USER IF NOT EXISTS {account}")
                    cur.execute(f"ALTER USER {account} IDENTIFIED BY %s", (password,))
                    cur.execute(f"GRANT {privileges} ON *.* TO {account}")
        finally:
            conn.close()


def _mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _mysql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _mysql_execute(
    host: str,
    port: int,
    user: str,
    password: str,
    db: str | None,
    query: str,
    params: Sequence[Any] | None,
) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        host=host, port=port, user=user, password=password, database=db, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
            return [tuple(r) for r in rows] if cur.description is not None else []
    finally:
        conn.close()


# --------------------------------------------------------------------------- existing servers


class _ExistingServer:
    """A server someone else runs, addressed by URL: SQL helpers only, no process control."""

    managed = False
    kind = "server"

    def __init__(self, url: str, default_port: int) -> None:
        self._parts = urlsplit(url)
        self.user = unquote(self._parts.username) if self._parts.username else None
        self.password = unquote(self._parts.password) if self._parts.password is not None else None
        self.host = self._parts.hostname or "127.0.0.1"
        self.port: int = self._parts.port or default_port
        self.database = unquote(self._parts.path.lstrip("/"))

    def _url(self, database: str | None, user: str | None, password: str | None) -> str:
        if user is None:
            user, password = self.user, (password if password is not None else self.password)
        auth = ""
        if user:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{auth}{host}:{self.port}"
        path = "/" + quote(database if database is not None else self.database, safe="")
        return urlunsplit((self._parts.scheme, netloc, path, self._parts.query, ""))

    def _unsupported(self, what: str) -> SandboxError:
        return SandboxError(
            f"cannot {what} {self.kind} at {self.host}:{self.port}: it is an existing server,"
            " not one started by the sandbox"
        )

    def is_running(self) -> bool:
        return True

    def start(self) -> None:
        raise self._unsupported("start")

    def stop(self) -> None:
        raise self._unsupported("stop")

    def kill(self) -> None:
        raise self._unsupported("kill")

    def restart(self) -> None:
        raise self._unsupported("restart")

    def cleanup(self) -> None:
        """Nothing to remove: the server is not ours."""


class ExistingPostgres(_ExistingServer):
    """An existing PostgreSQL server given by URL, with the :class:`PostgresServer` SQL API.

    ``url()``/``execute()`` default to the URL's own user, password and database.
    """

    kind = "PostgreSQL"

    def __init__(self, url: str) -> None:
        super().__init__(url, 5432)
        if not self.database:
            self.database = "postgres"

    def url(
        self, dbname: str | None = None, user: str | None = None, password: str | None = None
    ) -> str:
        return self._url(dbname, user, password)

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), **kwargs)

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        return _pg_execute(self.url(dbname), query, params)

    def create_database(self, name: str) -> None:
        _pg_create_database(self.url(), name)

    def drop_database(self, name: str) -> None:
        _pg_drop_database(self.url(), name)


class ExistingMariaDB(_ExistingServer):
    """An existing MySQL/MariaDB server given by URL, with the :class:`MariaDBServer` SQL API."""

    kind = "MySQL"

    def __init__(self, url: str) -> None:
        super().__init__(url, 3306)
        if not self.database:
            self.database = "test"

    def url(self, db: str | None = None, user: str | None = None, password: str | None = None) -> str:
        return self._url(db, user, password)

    def connect(self, db: str | None = None, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user or "root",
            password=self.password or "",
            database=db,
            **kwargs,
        )

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, db: str | None = None
    ) -> list[tuple[Any, ...]]:
        return _mysql_execute(
            self.host, self.port, self.user or "root", self.password or "", db, query, params
        )

    def create_database(self, name: str) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS {_mysql_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_mysql_ident(name)}")


if TYPE_CHECKING:  # both kinds of server satisfy the protocols tests are written against

    def _conforms(
        a: PostgresServer, b: ExistingPostgres, c: MariaDBServer, d: ExistingMariaDB
    ) -> tuple[PostgresLike, PostgresLike, MySQLLike, MySQLLike]:
        return a, b, c, d
