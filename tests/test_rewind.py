"""Checkpoint history, rewind and rollback, end to end on real servers (PostgreSQL → PostgreSQL
and MariaDB → MariaDB), through the real command line.

How a rewind is shown to re-apply exactly what follows the point, and nothing before it: after
two rounds of source changes are applied, the target is damaged by hand in a row that only
round 1 changed and in rows that round 2 changed; a rewind to the point between the rounds and a
``run --once`` must repair the round-2 rows (whole rows equal to the source's) and leave the
round-1 damage alone (nothing before the point was re-applied).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from replicator.pg.pgoutput import str_to_lsn as lsn

from dbhelpers import cli, gtid_seq, my_fetch, my_script, pg_fetch, pg_script, write_config

PG_DDL = """
CREATE TABLE items (
    id integer PRIMARY KEY,
    name text,
    price numeric(12,2),
    seen timestamptz,
    blob bytea,
    doc jsonb,
    flag boolean,
    span interval,
    tags text[]
);
ALTER TABLE items REPLICA IDENTITY FULL;
CREATE TABLE plain (id integer PRIMARY KEY, v text);
"""

ROW = "({i}, 'item {i}', {i}.25, '2024-01-0{d} 10:00:00.123456+02', '\\x00ff{i:02x}'::bytea," \
      " '{{\"k\": {i}, \"l\": [1, \"a\"]}}', {flag}, '1 day 02:03:04.5', ARRAY['a{i}', NULL])"


def rows_sql(ids: range) -> str:
    return ", ".join(ROW.format(i=i, d=1 + i % 9, flag="true" if i % 2 else "false") for i in ids)


def run(cfg: Path, *args: str, expect: int = 0) -> str:
    proc = cli(cfg, *args)
    assert proc.returncode == expect, f"replicator {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


class PgPair:
    def __init__(self, pg_source: Any, pg_target: Any, tmp_path: Path, extra: str = "") -> None:
        token = secrets.token_hex(4)
        self.db = f"rw_{token}"
        self.flow = f"rw-{token}"
        self.src, self.dst = pg_source, pg_target
        pg_source.create_database(self.db)
        pg_target.create_database(self.db)
        pg_script(pg_source, self.db, PG_DDL)
        pg_script(pg_target, self.db, PG_DDL)
        self.cfg = write_config(tmp_path / f"{token}.yaml", self.flow, pg_source.url(self.db), pg_target.url(self.db),
                                ["items", "plain"], options="    snapshot: never\n" + extra)

    def source(self, *statements: str) -> None:
        pg_script(self.src, self.db, *statements)

    def target(self, *statements: str) -> None:
        pg_script(self.dst, self.db, *statements)

    def rows(self, server: Any, table: str = "items") -> list[tuple[Any, ...]]:
        return pg_fetch(server, self.db, f"SELECT * FROM {table} ORDER BY id")

    def checkpoint(self) -> str:
        return str(pg_fetch(self.dst, self.db, "SELECT position FROM _replicator.checkpoints WHERE flow = %s",
                            (self.flow,))[0][0])

    def assert_equal(self) -> None:
        for table in ("items", "plain"):
            assert self.rows(self.dst, table) == self.rows(self.src, table), table


def two_rounds(p: PgPair) -> tuple[str, str]:
    """Round 1, applied; the checkpoint and a time between the rounds; round 2, applied."""
    run(p.cfg, "run", "--once")  # creates the slot; the flow starts here
    p.source(f"INSERT INTO items VALUES {rows_sql(range(1, 31))}", "INSERT INTO plain VALUES (1, 'a'), (2, 'b')")
    p.source("UPDATE items SET name = 'round 1' WHERE id = 3")
    run(p.cfg, "run", "--once")
    between = p.checkpoint()
    time.sleep(1.1)
    when = utc_now()
    time.sleep(1.1)
    p.source("UPDATE items SET price = price * 2, name = 'round 2' WHERE id BETWEEN 10 AND 19",
             "DELETE FROM items WHERE id IN (20, 21)",
             f"INSERT INTO items VALUES {rows_sql(range(31, 36))}",
             "UPDATE items SET id = 100 WHERE id = 22")  # a key change: delete + insert
    run(p.cfg, "run", "--once")
    p.assert_equal()
    return between, when


def damage(p: PgPair) -> None:
    """Row 3 changed only in round 1; rows 10, 31, 100 in round 2; 20 was deleted in round 2."""
    p.target("UPDATE items SET name = 'damaged' WHERE id IN (3, 10)",
             "DELETE FROM items WHERE id IN (31, 100)",
             f"INSERT INTO items VALUES {rows_sql(range(20, 21))}")


def assert_repaired(p: PgPair) -> None:
    src = {r[0]: r for r in p.rows(p.src)}
    dst = {r[0]: r for r in p.rows(p.dst)}
    assert dst[3][1] == "damaged", "a change before the point was applied again"
    dst[3] = src[3]
    assert dst == src


def test_rewind_by_position_and_by_time_reapplies_exactly_what_follows(pg_source: Any, pg_target: Any,
                                                                      tmp_path: Path) -> None:
    p = PgPair(pg_source, pg_target, tmp_path)
    between, when = two_rounds(p)
    end = p.checkpoint()

    damage(p)
    out = run(p.cfg, "checkpoint", "rewind", p.flow, "--to", between, "--yes")
    assert f"rewound from {end} to {between}" in out
    assert p.checkpoint() == between
    run(p.cfg, "run", "--once")
    assert_repaired(p)
    assert lsn(p.checkpoint()) >= lsn(end)

    damage(p)
    out = run(p.cfg, "checkpoint", "rewind", p.flow, "--to", when, "--yes")
    # the checkpoint that stood before round 2's first commit (maybe moved on by a keepalive)
    assert lsn(between) <= lsn(p.checkpoint()) < lsn(end)
    run(p.cfg, "run", "--once")
    assert_repaired(p)

    history = json.loads(run(p.cfg, "checkpoint", "show", "--flow", p.flow, "--history", "--json"))
    events = [h["event"] for h in history if h["event"]]
    assert len(events) == 2 and events[0] == f"rewind from {end}", events
    text = run(p.cfg, "checkpoint", "show", "--flow", p.flow, "--history")
    assert between in text and "rewind from" in text

    # without --yes and without a terminal: refused, nothing changed
    now = p.checkpoint()
    out = run(p.cfg, "checkpoint", "rewind", p.flow, "--to", between, expect=2)
    assert "--yes" in out and p.checkpoint() == now


def test_rewind_past_the_slot_is_refused_and_the_slot_really_cannot_go_back(pg_source: Any, pg_target: Any,
                                                                          tmp_path: Path) -> None:
    p = PgPair(pg_source, pg_target, tmp_path, extra="    rewind: {window: 0}\n")
    run(p.cfg, "run", "--once")
    start = p.checkpoint()
    p.source(f"INSERT INTO items VALUES {rows_sql(range(1, 6))}")
    run(p.cfg, "run", "--once")
    p.source("UPDATE items SET name = 'x' WHERE id = 1")
    run(p.cfg, "run", "--once")  # acknowledges the first round at its start (window 0)
    end = p.checkpoint()

    proc = cli(p.cfg, "checkpoint", "rewind", p.flow, "--to", start, "--yes")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the source no longer holds {start}" in lines[0] and "rewind.window" in lines[0], lines
    assert p.checkpoint() == end

    # Why it is refused: moved back by hand, the slot still starts at its confirmed_flush_lsn
    # (PostgreSQL does not say so), and the round-1 rows are not sent again.
    p.target("DELETE FROM items WHERE id = 2",
             f"UPDATE _replicator.checkpoints SET position = '{start}' WHERE flow = '{p.flow}'")
    run(p.cfg, "run", "--once")
    assert 2 not in [r[0] for r in p.rows(p.dst)]

    # a flow running holds its lock: refused with "stop the flow first"
    from replicator.snapstate import FlowLock

    lock = FlowLock(pg_target.url(p.db), p.flow)
    assert lock.acquire()
    try:
        out = run(p.cfg, "checkpoint", "rewind", p.flow, "--to", start, "--yes", expect=1)
        assert "stop the flow first" in out
    finally:
        lock.release()


def test_rollback_restores_the_earlier_rows_then_pauses(pg_source: Any, pg_target: Any, tmp_path: Path) -> None:
    p = PgPair(pg_source, pg_target, tmp_path, extra="    audit: true\n")
    run(p.cfg, "run", "--once")
    p.source(f"INSERT INTO items VALUES {rows_sql(range(1, 31))}", "INSERT INTO plain VALUES (1, 'a'), (2, 'b')")
    run(p.cfg, "run", "--once")
    before = p.rows(p.dst)
    time.sleep(1.1)
    when = utc_now()
    time.sleep(1.1)
    p.source("UPDATE items SET price = price * 2, name = 'bad' WHERE id BETWEEN 10 AND 19",
             "UPDATE items SET price = 0, doc = '{\"bad\": true}', seen = now(), flag = NULL WHERE id = 10",
             "DELETE FROM items WHERE id IN (20, 21)",
             f"INSERT INTO items VALUES {rows_sql(range(31, 36))}",
             "UPDATE items SET id = 100 WHERE id = 22",
             "DELETE FROM items WHERE id = 31",
             f"INSERT INTO items VALUES {rows_sql(range(20, 21))}")
    run(p.cfg, "run", "--once")
    p.assert_equal()
    assert p.rows(p.dst) != before

    out = run(p.cfg, "rollback", p.flow, "--to", when, "--yes")
    assert "rolled back" in out and "paused" in out
    assert p.rows(p.dst) == before

    again = run(p.cfg, "rollback", p.flow, "--to", when, "--yes")  # nothing left to undo
    assert "rolled back 0 change(s)" in again
    assert p.rows(p.dst) == before

    p.source("UPDATE items SET name = 'after' WHERE id = 1")
    out = run(p.cfg, "run", "--once", expect=1)  # paused before the source's next change
    assert "paused" in out and p.rows(p.dst) == before
    run(p.cfg, "resume", p.flow)
    run(p.cfg, "run", "--once")
    rows = {r[0]: r for r in p.rows(p.dst)}
    assert rows[1][1] == "after" and rows[10] == {r[0]: r for r in before}[10]

    # a delete recorded with its key only (no REPLICA IDENTITY FULL on `plain`): refused, nothing done
    time.sleep(1.1)
    when = utc_now()
    time.sleep(1.1)
    p.source("UPDATE items SET name = 'late' WHERE id = 2", "DELETE FROM plain WHERE id = 1")
    run(p.cfg, "run", "--once")
    snapshot = p.rows(p.dst)
    proc = cli(p.cfg, "rollback", p.flow, "--to", when, "--yes")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "REPLICA IDENTITY FULL" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert p.rows(p.dst) == snapshot

    # --then rewind: undone, then applied again from the point
    p.source("ALTER TABLE plain REPLICA IDENTITY FULL")
    time.sleep(1.1)
    when = utc_now()
    time.sleep(1.1)
    prior = {r[0]: r for r in p.rows(p.dst)}
    p.source("UPDATE items SET name = 'redo' WHERE id = 3", "DELETE FROM items WHERE id = 4")
    run(p.cfg, "run", "--once")
    p.target("UPDATE items SET name = 'target-side mistake' WHERE id = 3")
    out = run(p.cfg, "rollback", p.flow, "--to", when, "--then", "rewind", "--yes")
    assert "rolled back 2 change(s)" in out
    assert {r[0]: r for r in p.rows(p.dst)} == prior  # the mistake too: the undo sets the old values
    run(p.cfg, "run", "--once")
    prior[3] = {r[0]: r for r in p.rows(p.src)}[3]
    del prior[4]
    assert {r[0]: r for r in p.rows(p.dst)} == prior


def test_rollback_needs_the_audit_trail(pg_source: Any, pg_target: Any, tmp_path: Path) -> None:
    p = PgPair(pg_source, pg_target, tmp_path)
    run(p.cfg, "run", "--once")
    out = run(p.cfg, "rollback", p.flow, "--to", "10m ago", "--yes", expect=1)
    assert "no audit trail" in out


# --------------------------------------------------------------------------- MariaDB

MY_DDL = """
CREATE TABLE items (
    id INT PRIMARY KEY,
    name VARCHAR(50),
    price DECIMAL(12,2),
    seen DATETIME(6),
    blob_col VARBINARY(20),
    dur TIME(3),
    flag TINYINT(1)
)
"""


def my_rows(ids: range) -> str:
    return ", ".join(f"({i}, 'item {i}', {i}.25, '2024-01-02 10:00:0{i % 10}.123456', x'00ff{i:02x}',"
                     f" '-{i}:00:01.5', {i % 2})" for i in ids)


def test_mariadb_rewind_by_gtid_and_time_refusal_after_purge_and_rollback(mariadb: Any, tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    src_db, dst_db, flow = f"rws_{token}", f"rwd_{token}", f"rwm-{token}"
    for db in (src_db, dst_db):
        mariadb.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
        my_script(mariadb, db, MY_DDL)
    cfg = write_config(tmp_path / "my.yaml", flow, mariadb.url(src_db), mariadb.url(dst_db), ["items"],
                       options="    snapshot: never\n    audit: true\n")

    def rows(db: str) -> list[tuple[Any, ...]]:
        return my_fetch(mariadb, db, "SELECT * FROM items ORDER BY id")

    def checkpoint() -> str:
        return str(my_fetch(mariadb, "_replicator", "SELECT position FROM checkpoints WHERE flow = %s", (flow,))[0][0])

    run(cfg, "run", "--once")
    my_script(mariadb, src_db, f"INSERT INTO items VALUES {my_rows(range(1, 21))}",
              "UPDATE items SET name = 'round 1' WHERE id = 3")
    run(cfg, "run", "--once")
    between = checkpoint()
    before = rows(dst_db)
    time.sleep(1.2)
    when = utc_now()
    time.sleep(1.2)
    my_script(mariadb, src_db, "UPDATE items SET price = price * 2, name = 'round 2', seen = NOW(6),"
                               " blob_col = x'ee', dur = '838:59:59' WHERE id BETWEEN 10 AND 14",
              "DELETE FROM items WHERE id IN (15, 16)", f"INSERT INTO items VALUES {my_rows(range(21, 26))}",
              "UPDATE items SET id = 100 WHERE id = 17")
    run(cfg, "run", "--once")
    end = checkpoint()
    assert rows(dst_db) == rows(src_db)

    def damage() -> None:
        my_script(mariadb, dst_db, "UPDATE items SET name = 'damaged' WHERE id IN (3, 10)",
                  "DELETE FROM items WHERE id IN (21, 100)")

    def assert_repaired() -> None:
        src = {r[0]: r for r in rows(src_db)}
        dst = {r[0]: r for r in rows(dst_db)}
        assert dst[3][1] == "damaged", "a change before the point was applied again"
        dst[3] = src[3]
        assert dst == src

    for to in (between, when):
        damage()
        run(cfg, "checkpoint", "rewind", flow, "--to", to, "--yes")
        # by time: the GTID state before round 2's first transaction (the server's binlog also
        # holds the target's own transactions: at or after the flow's checkpoint of round 1)
        assert checkpoint() == between if to == between else gtid_seq(between) <= gtid_seq(checkpoint()) < gtid_seq(end)
        run(cfg, "run", "--once")
        assert_repaired()
        assert gtid_seq(checkpoint()) >= gtid_seq(end)
    my_script(mariadb, dst_db, "UPDATE items SET name = 'round 1' WHERE id = 3")
    assert rows(dst_db) == rows(src_db)

    # rollback of round 2 (DATETIME, DECIMAL, VARBINARY, TIME, key change) restores the copy
    # taken before it; the rewinds re-applied round 2, so its entries are there twice
    run(cfg, "rollback", flow, "--to", when, "--yes")
    assert rows(dst_db) == before
    run(cfg, "resume", flow)

    # binlogs purged past the point: refused, one line, nothing changed
    now = checkpoint()
    mariadb.execute("FLUSH BINARY LOGS")
    current = str(my_fetch(mariadb, src_db, "SHOW BINARY LOGS")[-1][0])
    deadline = time.monotonic() + 30
    while str(my_fetch(mariadb, src_db, "SHOW BINARY LOGS")[0][0]) != current:
        # a log still read by a binlog dump thread (a reader that just exited) is kept
        assert time.monotonic() < deadline, my_fetch(mariadb, src_db, "SHOW PROCESSLIST")
        mariadb.execute(f"PURGE BINARY LOGS TO '{current}'")
        time.sleep(0.5)
    proc = cli(cfg, "checkpoint", "rewind", flow, "--to", between, "--yes")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the source no longer holds {between}" in lines[0], lines
    assert checkpoint() == now


def test_the_window_lets_the_slot_go_on_across_processes(pg_source: Any, pg_target: Any, tmp_path: Path) -> None:
    """``run --once`` from cron: each process is shorter than the window, and the slot must still
    move on (from the checkpoint history), never past the checkpoint."""
    p = PgPair(pg_source, pg_target, tmp_path, extra="    rewind: {window: 1}\n")
    slot = "replicator_" + p.flow.replace("-", "_")

    def confirmed() -> int:
        return lsn(str(pg_fetch(pg_source, p.db, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
                                " WHERE slot_name = %s", (slot,))[0][0]))

    run(p.cfg, "run", "--once")
    p.source(f"INSERT INTO items VALUES {rows_sql(range(1, 4))}")
    run(p.cfg, "run", "--once")
    first = lsn(p.checkpoint())
    assert confirmed() < first  # held back
    time.sleep(1.5)
    p.source("UPDATE items SET name = 'x' WHERE id = 1")
    run(p.cfg, "run", "--once")
    assert first <= confirmed() <= lsn(p.checkpoint())
    p.assert_equal()
