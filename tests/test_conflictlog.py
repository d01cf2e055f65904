"""The conflict log on real PostgreSQL and MariaDB targets: DDL, round trip of values, filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from replicator.conflictlog import ConflictEntry, ConflictLog

SCHEMA = "_state"
COMMIT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture(params=["postgres", "mariadb"])
def target(request: pytest.FixtureRequest, fresh_db_name: str) -> Iterator[tuple[Any, str]]:
    """A connection that is not in autocommit, as the sink's, and its (existing) state schema."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_target")
        server.create_database(fresh_db_name)
        c: Any = server.connect(fresh_db_name, autocommit=False)
        c.execute(f"CREATE SCHEMA {SCHEMA}")
        c.commit()
        schema = SCHEMA
    else:
        server = request.getfixturevalue("mariadb")
        server.create_database(fresh_db_name)
        c = server.connect(fresh_db_name, autocommit=False, charset="utf8mb4",
                           init_command="SET time_zone = '+00:00'")
        schema = fresh_db_name
    try:
        yield c, schema
    finally:
        c.close()
        server.drop_database(fresh_db_name)


def entry(flow: str, status: str, **kw: Any) -> ConflictEntry:
    values: dict[str, Any] = dict(
        flow=flow, table="public.clients", key={"id": 7}, origin="crm", target="erp", rule="priority",
        winner="crm", columns=["name", "price"],
        incoming={"id": 7, "name": "Zoë 日本", "price": Decimal("1.50"), "seen": datetime(2024, 1, 2, 3, 4, 5),
                  "blob": b"\x00\xff"},
        current={"id": 7, "name": "Zoe", "price": Decimal("2"), "seen": None, "blob": b""},
        result={"id": 7, "name": "Zoë 日本", "price": Decimal("1.50"), "seen": None, "blob": b""},
        action="write", status=status, position="0/16B3748", commit_time=COMMIT,
    )
    values.update(kw)
    return ConflictEntry(**values)


def test_round_trip_filters_counts_status(target: tuple[Any, str]) -> None:
    conn, schema = target
    log = ConflictLog(conn, schema)
    log.ensure()
    log.ensure()  # idempotent
    conn.commit()
    before = datetime.now(timezone.utc)
    log.add([entry("f1", "resolved"),
             entry("f1", "parked", winner=None, result=None, action="park", position=None, commit_time=None),
             entry("f2", "resolved", current=None, result=None, action="delete", columns=[])])
    log.add([])
    conn.commit()

    rows = log.list()
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    first = rows[0]
    detected = first.pop("detected_at")
    assert before - timedelta(seconds=5) <= detected <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert first == {
        "id": first["id"], "flow": "f1", "table": "public.clients", "key": {"id": 7}, "origin": "crm",
        "target": "erp", "rule": "priority", "winner": "crm", "columns": ["name", "price"],
        "incoming": {"id": 7, "name": "Zoë 日本", "price": "1.50", "seen": "2024-01-02T03:04:05", "blob": "\\x00ff"},
        "current": {"id": 7, "name": "Zoe", "price": "2", "seen": None, "blob": "\\x"},
        "result": {"id": 7, "name": "Zoë 日本", "price": "1.50", "seen": None, "blob": "\\x"},
        "action": "write", "status": "resolved", "position": "0/16B3748", "commit_time": COMMIT,
    }
    assert first["commit_time"].utcoffset() == timedelta(0)
    parked = rows[1]
    assert (parked["winner"], parked["result"], parked["action"], parked["position"], parked["commit_time"]) == (
        None, None, "park", None, None)
    assert (rows[2]["current"], rows[2]["columns"]) == (None, [])

    assert [r["flow"] for r in log.list(flow="f1")] == ["f1", "f1"]
    assert [r["action"] for r in log.list(status="parked")] == ["park"]
    assert [r["id"] for r in log.list(ids=[rows[0]["id"], rows[2]["id"]])] == [rows[0]["id"], rows[2]["id"]]
    assert [r["id"] for r in log.list(limit=2)] == [rows[1]["id"], rows[2]["id"]]  # the newest, newest last
    assert log.list(flow="f2", status="parked") == []
    assert log.counts() == {("f1", "resolved"): 1, ("f1", "parked"): 1, ("f2", "resolved"): 1}

    log.set_status(parked["id"], "taken")
    conn.commit()
    assert log.counts() == {("f1", "resolved"): 1, ("f1", "taken"): 1, ("f2", "resolved"): 1}
    assert log.list(status="parked") == []


def test_add_rolls_back_with_the_transaction(target: tuple[Any, str]) -> None:
    conn, schema = target
    log = ConflictLog(conn, schema)
    log.ensure()
    conn.commit()
    log.add([entry("f1", "resolved")])
    conn.rollback()
    assert log.list() == [] and log.counts() == {}
