"""Unit tests of the pure parts of rewind and rollback (no database): durations, positions, the
PostgreSQL source's held-back acknowledgements, undo statements from audit entries, and values
brought back from the audit trail's JSON for each target engine."""

from __future__ import annotations

import time

import pytest

from replicator.audit import AuditEntry
from replicator.config import RewindConfig, parse_config, parse_duration
from replicator.errors import ConfigError
from replicator.pg.source import PostgresSource
from replicator.records import TableId
from replicator.rewind import RewindRefused, compare, looks_like_position
from replicator.rollback import after_point, my_value, pg_text, undo_of

T = TableId("public", "items")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800),
                                           ("1.5h", 5400), (" 10m ", 600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert RewindConfig(window=text).window == seconds  # type: ignore[arg-type]


def test_rewind_config_defaults_and_errors() -> None:
    cfg = parse_config("systems: {a: {url: 'postgresql://h/db'}, b: {url: 'postgresql://h/db2'}}\n"
                       "flows: [{name: f, source: a, target: b, tables: [{source: t}]}]")
    assert (cfg.flows[0].rewind.window, cfg.flows[0].rewind.history_days) == (600, 7)
    with pytest.raises(ConfigError, match=r"flows\[0\]\.rewind\.window"):
        parse_config("systems: {a: {url: 'postgresql://h/db'}, b: {url: 'postgresql://h/db2'}}\n"
                     "flows: [{name: f, source: a, target: b, rewind: {window: 'soon'}, tables: [{source: t}]}]")


@pytest.mark.parametrize("engine, text, expected", [
    ("postgresql", "0/16B3748", True), ("postgresql", "2026-01-31T12:00:00", False), ("postgresql", "10m ago", False),
    ("mysql", "0-1-123", True), ("mysql", "0-1-123,1-2-5", True), ("mysql", "mysql-bin.000003:1234", True),
    ("mysql", "2026-01-31T12:00:00", False), ("mysql", "2026-01-31 12:00", False), ("mysql", "2026-01-31", False), ("mysql", "30m", False),
])
def test_positions_are_told_from_times(engine: str, text: str, expected: bool) -> None:
    assert looks_like_position(engine, text) is expected


def test_compare_positions() -> None:
    assert compare("postgresql", "0/10", "0/20") == -1
    assert compare("postgresql", "1/0", "0/FFFFFFFF") == 1
    assert compare("mysql", "0-1-5", "0-1-5") == 0
    assert compare("mysql", "0-1-5", "0-1-7") == -1
    assert compare("mysql", "0-1-9,1-1-2", "0-1-7,1-1-2") == 1


def test_audit_entries_after_a_point() -> None:
    assert after_point("postgresql", "0/200", "0/200")  # the commit record starts at the checkpoint
    assert not after_point("postgresql", "0/1F8", "0/200")
    assert after_point("mysql", "0-1-8", "0-1-7")
    assert not after_point("mysql", "0-1-7", "0-1-7")
    assert after_point("mysql", "1-3-1", "0-1-7")  # a domain the point has not seen
    with pytest.raises(RewindRefused, match="GTID"):
        after_point("mysql", "0", "mysql-bin.000001:4")


def test_postgres_acknowledgements_are_held_back_for_the_window() -> None:
    src = PostgresSource("postgresql://nowhere/db", "slot", "pub", hold_back=0.3)
    src.acknowledge(100)
    src.acknowledge(200)  # within a second: one entry, the newest position
    assert src._ack == 0
    time.sleep(0.35)
    src._release()
    assert src._ack == 200
    src.release(150)  # never backwards
    assert src._ack == 200
    now = PostgresSource("postgresql://nowhere/db", "slot", "pub")
    now.acknowledge(100)
    assert now._ack == 100  # no window: at once


def entry(op: str, before: dict[str, object] | None, after: dict[str, object] | None) -> AuditEntry:
    return AuditEntry("f", "public.items", "public.items", {"id": 1}, op, before, after, "0/10", None, id=7)


def test_undo_statements_from_audit_entries() -> None:
    cols = ["id", "name", "price"]
    assert undo_of(entry("c", None, {"id": 1, "name": "a", "price": "1.00"}), T, cols).kind == "delete"
    u = undo_of(entry("u", {"name": "a"}, {"name": "b"}), T, cols)
    assert (u.kind, u.values, u.key) == ("update", {"name": "a"}, {"id": 1})
    assert undo_of(entry("u", {}, {}), T, cols).values == {}  # changed nothing: skipped when run
    d = undo_of(entry("d", {"id": 1, "name": "a", "price": "1.00"}, None), T, cols)
    assert (d.kind, d.values) == ("insert", {"id": 1, "name": "a", "price": "1.00"})


@pytest.mark.parametrize("op, before, reason", [
    ("u", None, "REPLICA IDENTITY FULL"),
    ("d", {"id": 1}, "only the deleted row's key was recorded, not name, price"),
    ("t", None, "a truncate cannot be undone"),
])
def test_undo_refuses_what_the_trail_does_not_hold(op: str, before: dict[str, object] | None, reason: str) -> None:
    with pytest.raises(RewindRefused, match=reason) as exc:
        undo_of(entry(op, before, None), T, ["id", "name", "price"])
    assert "audit entry 7" in str(exc.value)


@pytest.mark.parametrize("value, pg_type, text", [
    (None, "text", None), (True, "boolean", "true"), (12, "integer", "12"), ("12.50", "numeric(12,2)", "12.50"),
    (0.1, "double precision", "0.1"), ({"a": [1]}, "jsonb", '{"a": [1]}'), ("\\x00ff", "bytea", "\\x00ff"),
    ("1 day, 2:03:04.500000", "interval", "1 day 2:03:04.500000"), (["a", None], "text[]", ["a", None]),
    ("2024-01-01T10:00:00+00:00", "timestamp with time zone", "2024-01-01T10:00:00+00:00"),
])
def test_values_for_postgresql(value: object, pg_type: str, text: object) -> None:
    assert pg_text(value, pg_type) == text


@pytest.mark.parametrize("value, data_type, out", [
    (None, "int", None), (True, "tinyint", 1), (5, "bit", 5), ("12.50", "decimal", "12.50"),
    ("\\x00ff", "varbinary", b"\x00\xff"), ("\\x00ff", "varchar", "\\x00ff"),
    ("2024-01-01T10:00:00.5+02:00", "datetime", "2024-01-01 08:00:00.500000"),
    ("2024-01-01T10:00:00", "timestamp", "2024-01-01 10:00:00"),
    ("1 day, 2:03:04.500000", "time", "26:03:04.500000"), ("-1 day, 23:00:00", "time", "-01:00:00"),
    ({"a": 1}, "longtext", '{"a": 1}'),
])
def test_values_for_mysql(value: object, data_type: str, out: object) -> None:
    assert my_value(value, data_type) == out
