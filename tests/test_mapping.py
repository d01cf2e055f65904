"""Mapping between systems (issue 5), end to end on real servers through the ``replicator`` command.

The issue's own table config (renames, a date format, a computed column, a value map with a
default, excluded and masked columns, target defaults, a filter and validation rules) runs
MariaDB -> PostgreSQL and PostgreSQL -> MariaDB: rows copied by the initial snapshot and rows
streamed afterwards must equal what an independent Python rendering of the rules
(:func:`expected_row`) says, row for row. Around it:

* excluded and masked values appear nowhere on the target (tables, audit trail, dead letters)
  nor in the replicator's output;
* rejected rows become dead letters with a readable reason, the flow goes on, and after the
  mapping is fixed ``dlq retry`` writes them;
* a row that stops and starts matching the filter is deleted and written again;
* a mass delete over ``limits.max_rows_per_transaction`` pauses the flow with nothing deleted;
  ``resume`` lets it through;
* the audit trail has one entry per applied change with before/after values; retention prunes;
* a mapping run in the reverse direction inverts renames, formats and value maps, and a mapping
  that cannot be inverted is refused naming the column;
* bad mapping config: one line naming the key path, exit code 2;
* kill -9 after target commits: after restarts, every change is audited exactly once and every
  rejected change is a dead letter exactly once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dbhelpers import cli, my_fetch, my_script, pg_fetch, pg_script
from mapping_yaml import FLOW_TABLES, REVERSIBLE


MY_SOURCE_DDL = (
    "CREATE TABLE contacts (id INT PRIMARY KEY, firstName VARCHAR(50), birthDate DATE, price_cents INT,"
    " status VARCHAR(10), ssn VARCHAR(20), email VARCHAR(100), internal_notes TEXT, country CHAR(2))"
)
PG_SOURCE_DDL = (
    'CREATE TABLE contacts (id int PRIMARY KEY, "firstName" text, "birthDate" date, price_cents int,'
    " status text, ssn text, email text, internal_notes text, country text)"
)
PG_TARGET_DDL = (
    "CREATE TABLE customers (id int PRIMARY KEY, first_name text, birth_date text, price numeric(12,2),"
    " status text, email text, source_system text, country text)"
)
MY_TARGET_DDL = (
    "CREATE TABLE customers (id INT PRIMARY KEY, first_name VARCHAR(50), birth_date VARCHAR(10),"
    " price DECIMAL(12,2), status VARCHAR(10), email CHAR(64), source_system VARCHAR(10), country CHAR(2))"
)
TARGET_QUERY = "SELECT id, first_name, birth_date, price, status, email, source_system, country FROM customers ORDER BY id"
SOURCE_COLUMNS = ("id", "firstName", "birthDate", "price_cents", "status", "ssn", "email", "internal_notes", "country")

Row = tuple[Any, ...]


def secret(kind: str, i: int) -> str:
    return f"{kind}-SECRET-{i:04d}"


def contact(i: int, first: str | None, born: str | None, cents: int | None, status: str | None,
            country: str) -> Row:
    """A source row; its ssn, notes and e-mail are unique secrets that must not reach the target."""
    return (i, first, born, cents, status, secret("SSN", i), f"person{i}.secret@example.com", secret("NOTE", i), country)


def expected_row(src: Row) -> Row | None:
    """What the issue's mapping writes for a source row (None: filtered out), computed here
    independently of the replicator."""
    i, first, born, cents, status, _ssn, email, _notes, country = src
    if not (status is not None and status != "draft" and country in ("DE", "FR")):
        return None
    mapped = None if status is None else {"A": "active", "I": "inactive"}.get(status, "unknown")
    birth = None if born is None else date.fromisoformat(born).strftime("%m/%d/%Y")
    price = None if cents is None else (Decimal(cents) / 100).quantize(Decimal("0.01"))
    digest = hashlib.sha256(email.encode()).hexdigest()
    return (i, first, birth, price, mapped, digest, "crm", country)


def rejected(src: Row) -> str | None:
    """The validate rule a row fails (None: it passes or is filtered out)."""
    if expected_row(src) is None:
        return None
    if src[1] is None or src[1] == "":
        return "first_name IS NOT NULL AND first_name <> ''"
    if src[3] is not None and src[3] < 0:
        return "price >= 0"
    return None


ROUND_1 = [  # in the source before the first run: copied by the snapshot
    contact(1, "Alice", "2024-01-01", 1999, "A", "DE"),
    contact(2, "Bob", "1990-12-31", 0, "I", "FR"),
    contact(3, "Carl", "1985-06-15", 500, "draft", "DE"),  # filtered out: draft
    contact(4, "Dora", "2000-02-29", 700, "A", "US"),  # filtered out: country
    contact(5, "", "1970-01-01", 100, "A", "DE"),  # rejected: empty first name
    contact(6, "Eve", "1999-09-09", -5, "A", "FR"),  # rejected: negative price
    contact(7, "Finn", "2010-10-10", 123456, "X", "DE"),  # unknown status -> default
    contact(8, "Gus", None, None, "I", "FR"),  # NULLs pass through the rules
]
ROUND_2 = [  # streamed
    contact(11, "Hanna", "2024-01-01", 1, "A", "DE"),
    contact(12, "Ivo", "1960-03-01", 99, "I", "FR"),
    contact(13, None, "1961-03-01", 99, "I", "FR"),  # rejected: NULL first name
    contact(14, "Jan", "1962-03-01", -1, "A", "DE"),  # rejected: negative price
    contact(15, "Kim", "1963-03-01", 250, "draft", "FR"),  # filtered out
]


@dataclass
class Side:
    """One database of a scenario, behind the few operations the tests need."""

    kind: str  # "mariadb" | "postgresql"
    server: Any
    db: str

    def url(self) -> str:
        return str(self.server.url(self.db))

    def run(self, *statements: str) -> None:
        if self.kind == "mariadb":
            my_script(self.server, self.db, *statements)
        else:
            pg_script(self.server, self.db, *statements)

    def fetch(self, query: str, params: Any = None) -> list[Row]:
        if self.kind == "mariadb":
            return my_fetch(self.server, self.db, query, params)
        return pg_fetch(self.server, self.db, query, params)

    def state(self, query: str, params: Any = None) -> list[Row]:
        """A query on the state schema's tables (``S.`` stands for the schema; on MariaDB it is
        one database for the whole server, shared by every test: filter by flow)."""
        if self.kind == "mariadb":
            return my_fetch(self.server, self.db, query.replace("S.", "_replicator."), params)
        return pg_fetch(self.server, self.db, query.replace("S.", "_replicator."), params)

    def insert_contacts(self, rows: list[Row]) -> None:
        cols = ", ".join(self.q(c) for c in SOURCE_COLUMNS)
        values = ", ".join("(" + ", ".join(_literal(v) for v in r) + ")" for r in rows)
        self.run(f"INSERT INTO contacts ({cols}) VALUES {values}")

    def q(self, name: str) -> str:
        return f"`{name}`" if self.kind == "mariadb" else f'"{name}"'

    def everything(self) -> str:
        """Every row of every table of the database (state schema included) as text."""
        if self.kind == "postgresql":
            tables = self.fetch(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
            parts = []
            for schema, table in tables:
                parts += [str(r[0]) for r in self.fetch(f'SELECT t::text FROM "{schema}"."{table}" t')]
            return "\n".join(parts)
        parts = []
        for schema in (self.db, "_replicator"):
            for (table,) in my_fetch(self.server, schema, "SHOW TABLES"):
                parts += [repr(r) for r in my_fetch(self.server, schema, f"SELECT * FROM `{table}`")]
        return "\n".join(parts)


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


@dataclass
class Scenario:
    source: Side
    target: Side
    cfg: Path
    flow: str
    output: list[str]  # every CLI invocation's stdout + stderr

    def cli(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = cli(self.cfg, *args)
        self.output.append(proc.stdout + proc.stderr)
        assert proc.returncode == expect, f"replicator {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def target_rows(self) -> list[Row]:
        rows = self.target.fetch(TARGET_QUERY)
        return [tuple(Decimal(v) if i == 3 and v is not None else v for i, v in enumerate(r)) for r in rows]

    def source_rows(self) -> list[Row]:
        cols = ", ".join(self.source.q(c) for c in SOURCE_COLUMNS)
        rows = self.source.fetch(f"SELECT {cols} FROM contacts ORDER BY id")
        return [tuple(v.isoformat() if isinstance(v, date) else v for v in r) for r in rows]

    def expected(self) -> list[Row]:
        out = []
        for src in self.source_rows():
            row = expected_row(src)
            if row is not None and rejected(src) is None:
                out.append(row)
        return out

    def dead_letters(self) -> list[Row]:
        return self.target.state("SELECT row_key, rule, reason, status, op FROM S.dead_letters WHERE flow = %s"
                                 " ORDER BY id", (self.flow,))


def write_cfg(path: Path, flow: str, source: Side, target: Side, tables: str = FLOW_TABLES, extra: str = "",
              audit: str = "true") -> Path:
    path.write_text(
        "systems:\n"
        f"  crm: {{url: \"{source.url()}\"}}\n"
        f"  shop: {{url: \"{target.url()}\"}}\n"
        "flows:\n"
        f"  - name: {flow}\n"
        "    source: crm\n"
        "    target: shop\n"
        f"    audit: {audit}\n"
        + extra
        + "    tables:\n" + tables
    )
    return path


def _setup(kind: str, mariadb: Any, pg_source: Any, pg_target: Any, tmp_path: Path) -> Scenario:
    token = secrets.token_hex(4)
    db = f"t_map_{token}"
    if kind == "my2pg":
        mariadb.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
        pg_target.create_database(db)
        source, target = Side("mariadb", mariadb, db), Side("postgresql", pg_target, db)
        source.run(MY_SOURCE_DDL)
        target.run(PG_TARGET_DDL)
    else:
        pg_source.create_database(db)
        mariadb.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
        source, target = Side("postgresql", pg_source, db), Side("mariadb", mariadb, db)
        source.run(PG_SOURCE_DDL)
        target.run(MY_TARGET_DDL)
    flow = f"map-{token}"
    cfg = write_cfg(tmp_path / "replicator.yaml", flow, source, target)
    return Scenario(source, target, cfg, flow, [])


@pytest.fixture(params=["my2pg", "pg2my"])
def scenario(request: pytest.FixtureRequest, mariadb: Any, pg_source: Any, pg_target: Any, tmp_path: Path) -> Scenario:
    return _setup(request.param, mariadb, pg_source, pg_target, tmp_path)


def assert_no_secrets(sc: Scenario) -> None:
    stored = sc.target.everything()
    logs = "\n".join(sc.output)
    for src in sc.source_rows():
        for value in (src[5], src[6], src[7]):  # ssn, e-mail, notes
            assert value not in stored, f"{value!r} reached the target"
            assert value not in logs, f"{value!r} appears in the replicator's output"
        assert hashlib.sha256(src[6].encode()).hexdigest() in stored or expected_row(src) is None \
            or rejected(src) is not None


# --------------------------------------------------------------------------- tests


def test_issue_mapping_copies_and_streams_exactly_what_the_rules_say(scenario: Scenario) -> None:
    sc = scenario
    sc.source.insert_contacts(ROUND_1)
    sc.cli("run", "--once")  # the snapshot copies round 1
    assert sc.target_rows() == sc.expected()
    assert sc.target_rows()[0] == (1, "Alice", "01/01/2024", Decimal("19.99"), "active",
                                   hashlib.sha256(b"person1.secret@example.com").hexdigest(), "crm", "DE")

    sc.source.insert_contacts(ROUND_2)
    q = sc.source.q
    sc.source.run(
        f"UPDATE contacts SET {q('firstName')} = 'Alicia', status = 'I' WHERE id = 1",
        f"UPDATE contacts SET {q('birthDate')} = '1991-01-31', price_cents = 250 WHERE id = 2",
        "DELETE FROM contacts WHERE id = 8",
        "UPDATE contacts SET status = 'Q' WHERE id = 7",  # unknown -> default again
    )
    sc.cli("run", "--once")
    assert sc.target_rows() == sc.expected()

    letters = sc.dead_letters()
    rules = sorted((json.loads(r[0]) if isinstance(r[0], str) else r[0])["id"] for r in letters)
    assert rules == [5, 6, 13, 14]
    by_id = {(json.loads(r[0]) if isinstance(r[0], str) else r[0])["id"]: r for r in letters}
    assert by_id[5][1] == "validate: first_name IS NOT NULL AND first_name <> ''"
    assert by_id[6][1] == "validate: price >= 0"
    assert by_id[5][2] == "the row does not pass this rule"
    assert all(r[3] == "open" for r in letters)
    assert_no_secrets(sc)


def test_filter_transitions_delete_and_rewrite_the_target_row(scenario: Scenario) -> None:
    sc = scenario
    sc.source.insert_contacts([contact(1, "Ann", "2001-01-01", 10, "A", "DE"), contact(2, "Ben", None, 20, "A", "FR")])
    sc.cli("run", "--once")
    assert [r[0] for r in sc.target_rows()] == [1, 2]
    sc.source.run("UPDATE contacts SET country = 'US' WHERE id = 1")  # stops matching
    sc.cli("run", "--once")
    assert sc.target_rows() == sc.expected() and [r[0] for r in sc.target_rows()] == [2]
    sc.source.run("UPDATE contacts SET country = 'FR', price_cents = 77 WHERE id = 1",  # matches again
                  "UPDATE contacts SET status = 'draft' WHERE id = 2",
                  "UPDATE contacts SET status = 'I' WHERE id = 2")  # out and back in one batch
    sc.cli("run", "--once")
    assert sc.target_rows() == sc.expected()
    assert [r[0] for r in sc.target_rows()] == [1, 2] and sc.target_rows()[0][3] == Decimal("0.77")


def test_rejected_rows_wait_as_dead_letters_and_retry_after_the_mapping_is_fixed(scenario: Scenario) -> None:
    sc = scenario
    tables = FLOW_TABLES.replace("status: {map: {A: active, I: inactive}, default: unknown}",
                                 "status: {map: {A: active, I: inactive}}")
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target, tables)
    sc.source.insert_contacts([contact(1, "Ann", "2001-01-01", 10, "A", "DE")])
    sc.cli("run", "--once")
    sc.source.insert_contacts([contact(2, "Ben", "2002-02-02", 20, "Z", "DE"), contact(3, "Cid", None, 30, "I", "FR")])
    sc.cli("run", "--once")  # Ben's status is not in the map and there is no default: dead letter
    assert [r[0] for r in sc.target_rows()] == [1, 3]
    listing = sc.cli("dlq", "list").stdout
    assert "columns.status.map" in listing and "'Z' is not in the map" in listing
    (letter,) = sc.dead_letters()
    assert letter[1] == "columns.status.map" and letter[2] == "value 'Z' is not in the map and there is no default"

    failed = sc.cli("dlq", "retry", "--all", expect=1).stdout  # the mapping is not fixed yet
    assert "still rejected" in failed and [r[0] for r in sc.target_rows()] == [1, 3]

    write_cfg(sc.cfg, sc.flow, sc.source, sc.target,
              tables.replace("{A: active, I: inactive}", "{A: active, I: inactive, Z: sleeping}"))
    sc.source.run("UPDATE contacts SET price_cents = 21 WHERE id = 2")  # retry takes the current row
    done = sc.cli("dlq", "retry", "--all").stdout
    assert "written" in done and "1 of 1 applied" in done
    row2 = [r for r in sc.target_rows() if r[0] == 2]
    assert row2 == [(2, "Ben", "02/02/2002", Decimal("0.21"), "sleeping",
                     hashlib.sha256(b"person2.secret@example.com").hexdigest(), "crm", "DE")]
    assert [r[3] for r in sc.dead_letters()] == ["retried"]
    sc.cli("run", "--once")  # the flow goes on after the retry (and applies the update with the new map)
    src = {r[0]: r for r in sc.source_rows()}
    assert sc.target_rows() == [expected_row(src[1]), row2[0], expected_row(src[3])]

    sc.source.insert_contacts([contact(4, "Dee", None, 40, "Q", "DE")])  # another unknown status
    sc.cli("run", "--once")
    (open_letter,) = json.loads(sc.cli("dlq", "list", "--json").stdout)
    shown = json.loads(sc.cli("dlq", "show", str(open_letter["id"])).stdout)
    assert shown == [open_letter]
    assert (shown[0]["key"], shown[0]["rule"], shown[0]["op"], shown[0]["status"]) == (
        {"id": 4}, "columns.status.map", "c", "open")
    assert shown[0]["row"]["email"] == hashlib.sha256(b"person4.secret@example.com").hexdigest()
    assert "ssn" not in shown[0]["row"] and "internal_notes" not in shown[0]["row"]
    assert "1 dead letter(s) discarded" in sc.cli("dlq", "discard", "--all").stdout
    assert sc.cli("dlq", "list").stdout.strip() == "no dead letters"
    assert [r[3] for r in sc.dead_letters()] == ["retried", "discarded"]
    assert [r[0] for r in sc.target_rows()] == [1, 2, 3]
    assert_no_secrets(sc)


def test_mass_delete_over_the_limit_pauses_before_writing_and_resume_applies_it(scenario: Scenario) -> None:
    sc = scenario
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target,
              extra="    limits: {max_rows_per_transaction: 5, action: pause}\n")
    sc.source.insert_contacts([contact(i, f"P{i}", None, i, "A", "DE") for i in range(1, 9)])
    sc.cli("run", "--once")
    before = sc.target_rows()
    assert len(before) == 8
    sc.source.run("UPDATE contacts SET price_cents = 1000 WHERE id = 1")  # a normal change first
    sc.source.run("DELETE FROM contacts")  # by mistake
    out = sc.cli("run", "--once", expect=1)
    assert "paused by a change limit" in out.stderr and "more than 5 rows" in out.stderr
    after = sc.target_rows()
    assert [r[0] for r in after] == list(range(1, 9)), "nothing of the mass delete may reach the target"
    assert after[0][3] == Decimal("10.00"), "the transaction before the delete is applied"
    again = sc.cli("run", "--once", expect=1)  # still paused
    assert "is paused" in again.stderr and sc.target_rows() == after
    resumed = sc.cli("resume", sc.flow)
    assert "resumed" in resumed.stdout
    sc.cli("run", "--once")
    assert sc.target_rows() == []


def test_audit_trail_records_each_applied_change_with_before_and_after_and_prunes(scenario: Scenario,
                                                                                    tmp_path: Path) -> None:
    sc = scenario
    jsonl = tmp_path / "audit.jsonl"
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target, audit=f"{{retention_days: 30, file: {jsonl}}}")
    sc.source.insert_contacts([contact(1, "Ann", "2001-01-01", 10, "A", "DE")])
    sc.cli("run", "--once")  # snapshot: rows copied are not operations of the stream
    sc.source.insert_contacts([contact(2, "Ben", None, 20, "A", "FR")])
    q = sc.source.q
    sc.source.run("BEGIN", f"UPDATE contacts SET {q('firstName')} = 'Anna', price_cents = 11 WHERE id = 1",
                  "DELETE FROM contacts WHERE id = 2", "COMMIT")
    sc.cli("run", "--once")
    entries = [json.loads(line) for line in sc.cli("audit", "--flow", sc.flow, "--json").stdout.splitlines()]
    digest2 = hashlib.sha256(b"person2.secret@example.com").hexdigest()
    got = [(e["op"], e["key"], e["before"], e["after"], e["target_table"].split(".")[-1]) for e in entries]
    update_before = {"first_name": "Ann", "price": "0.1"} if sc.source.kind == "mariadb" else None
    update_after = ({"first_name": "Anna", "price": "0.11"} if sc.source.kind == "mariadb" else
                    {"id": 1, "first_name": "Anna", "birth_date": "01/01/2001", "price": "0.11", "status": "active",
                     "email": hashlib.sha256(b"person1.secret@example.com").hexdigest(), "source_system": "crm",
                     "country": "DE"})
    assert got == [
        ("c", {"id": 2}, None, {"id": 2, "first_name": "Ben", "birth_date": None, "price": "0.2", "status": "active",
                                "email": digest2, "source_system": "crm", "country": "FR"}, "customers"),
        ("u", {"id": 1}, update_before, update_after, "customers"),
        ("d", {"id": 2}, ({"id": 2, "first_name": "Ben", "birth_date": None, "price": "0.2", "status": "active",
                           "email": digest2, "source_system": "crm", "country": "FR"}
                          if sc.source.kind == "mariadb" else {"id": 2}), None, "customers"),
    ]
    assert all(e["position"] and e["flow"] == sc.flow for e in entries)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]  # the JSON lines copy
    assert [{k: v for k, v in e.items() if k not in ("id", "applied_at")} for e in lines] == \
        [{k: v for k, v in e.items() if k not in ("id", "applied_at")} for e in entries]
    assert len({e["position"] for e in entries}) == 2  # two source transactions
    by_key = sc.cli("audit", "--flow", sc.flow, "--key", "1", "--json").stdout.splitlines()
    assert [json.loads(line)["op"] for line in by_key] == ["u"]

    # retention: entries older than the configured days are pruned when the flow starts
    sc.target.run(f"UPDATE _replicator.audit SET applied_at = applied_at - INTERVAL '40 days' WHERE op = 'c'"
                  f" AND flow = '{sc.flow}'" if sc.target.kind == "postgresql" else
                  f"UPDATE _replicator.audit SET applied_at = applied_at - INTERVAL 40 DAY WHERE op = 'c'"
                  f" AND flow = '{sc.flow}'")
    sc.cli("run", "--once")
    left = [json.loads(line)["op"] for line in sc.cli("audit", "--flow", sc.flow, "--json").stdout.splitlines()]
    assert left == ["u", "d"]
    assert_no_secrets(sc)


def test_preview_shows_source_rows_next_to_the_rows_written(scenario: Scenario) -> None:
    sc = scenario
    sc.source.insert_contacts(ROUND_1[:4])
    out = sc.cli("preview", "--table", "contacts", "--limit", "3", "--json").stdout
    rows = json.loads(out)
    assert [r["outcome"] for r in rows] == ["write", "write", "filtered out"]
    assert rows[0]["target"] == {"id": 1, "first_name": "Alice", "birth_date": "01/01/2024", "price": "19.99",
                                 "status": "active", "email": hashlib.sha256(b"person1.secret@example.com").hexdigest(),
                                 "source_system": "crm", "country": "DE"}
    assert "ssn" not in rows[0]["source"] and "internal_notes" not in rows[0]["source"]
    assert rows[0]["source"]["email"] == rows[0]["target"]["email"]
    assert sc.target_rows() == []  # a preview writes nothing
    table_out = sc.cli("preview", "--table", "customers").stdout
    assert "filtered out" in table_out and "SECRET" not in table_out


def test_bad_mapping_config_is_one_line_naming_the_key_path_exit_2(scenario: Scenario) -> None:
    sc = scenario
    cases = [
        (FLOW_TABLES.replace("firstName: first_name", "nope: first_name"),
         "config error at flows[0].tables[0].columns.nope: source table has no column 'nope'"),
        (FLOW_TABLES.replace('expr: "price_cents / 100.0"', 'expr: "price_cents / (100.0"'),
         "config error at flows[0].tables[0].columns.price_cents.expr: invalid SQL expression"),
        (FLOW_TABLES.replace('format: "%m/%d/%Y"', 'format: "%Q/%d"'),
         "config error at flows[0].tables[0].columns.birthDate.format:"),
        (FLOW_TABLES.replace('"price >= 0"', '"prize >= 0"'),
         "config error at flows[0].tables[0].validate[1]: unknown column"),
    ]
    for tables, message in cases:
        write_cfg(sc.cfg, sc.flow, sc.source, sc.target, tables)
        proc = cli(sc.cfg, "run", "--once")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    assert sc.target_rows() == []
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target, cases[0][0])
    checked = cli(sc.cfg, "check")
    assert checked.returncode == 1 and "columns.nope: source table has no column 'nope'" in checked.stdout, checked.stdout
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target)
    good = cli(sc.cfg, "check")
    assert "customers columns match" in good.stdout, good.stdout + good.stderr




def test_reverse_direction_inverts_renames_formats_and_maps(mariadb: Any, pg_source: Any, pg_target: Any,
                                                              tmp_path: Path) -> None:
    """The mapping declared for crm -> shop, run shop -> crm: rows written on the shop side come
    back to the crm table in its own names and formats."""
    sc = _setup("my2pg", mariadb, pg_source, pg_target, tmp_path)
    shop, crm = sc.target, sc.source
    write_cfg(sc.cfg, sc.flow, crm, shop, REVERSIBLE, extra="    direction: reverse\n")
    sc.cli("run", "--once")
    shop.run(
        "INSERT INTO customers VALUES (1, 'Alice', '01/31/2024', 19.99, 'active', 'a@example.com', 'shop', 'DE'),"
        " (2, 'Bob', NULL, NULL, 'inactive', NULL, 'shop', 'FR')",
        "UPDATE customers SET price = 5.00 WHERE id = 2",
    )
    sc.cli("run", "--once")
    rows = crm.fetch("SELECT id, firstName, birthDate, price_cents, status, ssn, email, internal_notes, country"
                     " FROM contacts ORDER BY id")
    assert rows == [(1, "Alice", date(2024, 1, 31), 1999, "A", None, "a@example.com", None, "DE"),
                    (2, "Bob", None, 500, "I", None, None, None, "FR")]

    write_cfg(sc.cfg, sc.flow, crm, shop, FLOW_TABLES, extra="    direction: reverse\n")
    proc = cli(sc.cfg, "run", "--once")
    assert proc.returncode == 2 and "columns.price_cents.expr" in proc.stderr \
        and "mark it one_way: true" in proc.stderr, proc.stderr


def test_kill_9_after_commits_audits_and_dead_letters_each_change_exactly_once(
    mariadb: Any, pg_source: Any, pg_target: Any, tmp_path: Path
) -> None:
    import os

    sc = _setup("my2pg", mariadb, pg_source, pg_target, tmp_path)
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target, extra="    batch: {max_rows: 50, max_delay_ms: 0}\n")
    sc.cli("run", "--once")
    rows = [contact(i, f"N{i}" if i % 7 else "", None, i, "A" if i % 3 else "I", "DE" if i % 5 else "US")
            for i in range(1, 601)]
    for start in range(0, 600, 20):  # 30 transactions
        sc.source.insert_contacts(rows[start:start + 20])
    sc.source.run("UPDATE contacts SET price_cents = price_cents + 1 WHERE id % 4 = 0")
    crashes = 0
    for _ in range(40):
        env = dict(os.environ, REPLICATOR_TEST_CRASH_AFTER_COMMIT="3")
        proc = subprocess.run([*_cli_cmd(sc.cfg), "run", "--once"], capture_output=True, text=True, env=env, timeout=180)
        sc.output.append(proc.stdout + proc.stderr)
        if proc.returncode == 0:
            break
        assert proc.returncode == -9, proc.stderr
        crashes += 1
    assert crashes >= 3
    assert sc.target_rows() == sc.expected()
    written = {r[0] for r in sc.expected()}
    audited = sc.target.state("SELECT op, row_key FROM S.audit WHERE flow = %s", (sc.flow,))
    ops = sorted((op, json.loads(k)["id"] if isinstance(k, str) else k["id"]) for op, k in audited)
    updated = {i for i in range(1, 601) if i % 4 == 0 and i in written}
    assert ops == sorted([("c", i) for i in written] + [("u", i) for i in updated])
    letters = sorted((json.loads(k)["id"] if isinstance(k, str) else k["id"]) for k, *_ in sc.dead_letters())
    failing_inserts = [i for i in range(1, 601) if i % 7 == 0 and i % 5]
    failing_updates = [i for i in failing_inserts if i % 4 == 0]
    assert letters == sorted(failing_inserts + failing_updates)


def _cli_cmd(cfg: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "replicator.cli", "-c", str(cfg)]


RAW_TABLES = """\
      - source: contacts
        target: customers
        filter: "status <> 'draft' AND country IN ('DE', 'FR')"
        columns:
          firstName: first_name
          birthDate: {name: birth_date, format: "%m/%d/%Y"}
          status: {map: {A: active, I: inactive}}
          ssn: {exclude: true}
          email: {mask: sha256}
          internal_notes: {exclude: true}
        defaults: {source_system: crm}
        validate: ["first_name <> ''", "price_cents >= 0"]
"""
PG2PG_TARGET_DDL = (
    "CREATE TABLE customers (id int PRIMARY KEY, first_name text, birth_date text, price_cents int,"
    " status text, email text, source_system text, country text)"
)


def raw_expected(src: Row) -> Row | None:
    i, first, born, cents, status, _ssn, email, _notes, country = src
    if not (status is not None and status != "draft" and country in ("DE", "FR")):
        return None
    if status not in ("A", "I") or first == "" or (cents is not None and cents < 0):
        return None  # a dead letter
    birth = None if born is None else date.fromisoformat(born).strftime("%m/%d/%Y")
    digest = None if email is None else hashlib.sha256(email.encode()).hexdigest()
    return (i, first, birth, cents, {"A": "active", "I": "inactive"}[status], digest, "crm", country)


def test_pg_to_pg_mapping_on_passthrough_text_equals_the_values_path(pg_source: Any, pg_target: Any,
                                                                      tmp_path: Path) -> None:
    """PostgreSQL -> PostgreSQL runs an eligible mapping on pgoutput's text; a second flow with
    an audit trail takes the values path. Both targets must hold the same rows -- the ones the
    rules say -- and the same dead letters, also for text that COPY must escape."""
    token = secrets.token_hex(4)
    db = f"t_rawmap_{token}"
    pg_source.create_database(db)
    source = Side("postgresql", pg_source, db)
    source.run(PG_SOURCE_DDL)
    targets = {}
    for kind in ("raw", "values"):
        pg_target.create_database(f"{db}_{kind}")
        targets[kind] = Side("postgresql", pg_target, f"{db}_{kind}")
        targets[kind].run(PG2PG_TARGET_DDL)
    cfg = tmp_path / "replicator.yaml"
    cfg.write_text(
        "systems:\n"
        f"  crm: {{url: \"{source.url()}\"}}\n"
        + "".join(f"  {k}: {{url: \"{t.url()}\"}}\n" for k, t in targets.items())
        + "flows:\n"
        + "".join(
            f"  - name: {k}-{token}\n    source: crm\n    target: {k}\n"
            + ("    audit: true\n" if k == "values" else "") + "    tables:\n" + RAW_TABLES
            for k in targets
        )
    )
    tricky = ["Tab\there", "Back\\slash", "New\nline", "Emoji 🎉", "Ca\rrriage", "Quote ' \" done"]
    rows = [contact(i, tricky[i % len(tricky)], "2024-02-29" if i % 4 else None, (i * 37) % 500 - (50 if i % 9 == 0 else 0),
                    ["A", "I", "draft", "Z"][i % 4] if i % 11 else "A", ["DE", "FR", "US"][i % 3])
            for i in range(1, 121)]
    rows.append(contact(200, "", "2000-01-01", 5, "A", "DE"))  # rejected: empty first name
    email_row = list(contact(201, "Esc", None, 1, "I", "FR"))
    email_row[6] = "tab\tand\\backslash@example.com"
    rows.append(tuple(email_row))
    source.insert_contacts(rows[:40])
    runs = []

    def run_both() -> None:
        for k in targets:
            proc = cli(cfg, "run", "--once", "--flow", f"{k}-{token}")
            runs.append(proc.stderr + proc.stdout)
            assert proc.returncode == 0, proc.stderr

    run_both()  # snapshot of the first 40
    source.insert_contacts(rows[40:])
    q = source.q
    source.run(
        "BEGIN",
        f"UPDATE contacts SET {q('firstName')} = {q('firstName')} || ' v2', country = 'DE' WHERE id % 5 = 0",
        "UPDATE contacts SET country = 'US' WHERE id % 7 = 0",  # stop matching
        "UPDATE contacts SET status = 'A' WHERE id % 13 = 0",  # some start matching
        "DELETE FROM contacts WHERE id % 17 = 0",
        "COMMIT",
    )
    run_both()
    got = {k: t.fetch("SELECT id, first_name, birth_date, price_cents, status, email, source_system, country"
                      " FROM customers ORDER BY id") for k, t in targets.items()}
    cols = ", ".join(q(c) for c in SOURCE_COLUMNS)
    src = [tuple(v.isoformat() if isinstance(v, date) else v for v in r)
           for r in source.fetch(f"SELECT {cols} FROM contacts ORDER BY id")]
    want = [r for r in map(raw_expected, src) if r is not None]
    assert got["values"] == want
    assert got["raw"] == want
    letters = {k: sorted((json.loads(r[0]) if isinstance(r[0], str) else r[0])["id"] for r in
                         t.state("SELECT row_key, rule FROM S.dead_letters WHERE flow = %s", (f"{k}-{token}",)))
               for k, t in targets.items()}
    assert letters["raw"] == letters["values"] and letters["raw"]
    assert any("runs_on='passthrough text'" in r or 'runs_on="passthrough text"' in r or "runs_on=passthrough text" in r
               for r in runs[::2]), runs[0]
    assert any("values" in r and "runs_on" in r for r in runs[1::2]), runs[1]


def test_currency_and_time_zone_formats_mariadb_to_pg(mariadb: Any, pg_target: Any, tmp_path: Path) -> None:
    """Amounts as locale text with their currency ("1.234,56 €", "$1,234.56"), integer minor
    units as decimals, a TIMESTAMP as Berlin wall time text, a DATE as German text."""
    token = secrets.token_hex(4)
    db = f"t_fmt_{token}"
    mariadb.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
    pg_target.create_database(db)
    source, target = Side("mariadb", mariadb, db), Side("postgresql", pg_target, db)
    source.run("CREATE TABLE payments (id INT PRIMARY KEY, amount DECIMAL(12,2), amount_usd DECIMAL(12,2),"
               " cents BIGINT, paid_at TIMESTAMP(0) NULL, local_day DATE)")
    target.run("CREATE TABLE payments (id int PRIMARY KEY, amount text, amount_usd text, cents numeric(14,2),"
               " paid_at text, local_day text)")
    tables = """\
      - source: payments
        columns:
          amount: {currency: {locale: de_DE, code: EUR}}
          amount_usd: {currency: {locale: en_US, code: USD}}
          cents: {currency: {minor_units: 2}}
          paid_at: {format: "%d.%m.%Y %H:%M:%S", timezone: Europe/Berlin}
          local_day: {format: "%d.%m.%Y"}
"""
    cfg = write_cfg(tmp_path / "replicator.yaml", f"fmt-{token}", source, target, tables)
    source.run("INSERT INTO payments VALUES (1, 1234.56, 1234.56, 123456, '2024-01-15 12:00:00', '2024-02-29')")
    assert cli(cfg, "run", "--once").returncode == 0  # snapshot
    source.run("INSERT INTO payments VALUES (2, -5.5, -5.5, -550, '2024-07-01 22:30:00', '1999-12-31'),"
               " (3, NULL, NULL, NULL, NULL, NULL), (4, 0, 1000000.01, 1, '2024-10-27 00:59:59', '0001-01-01')")
    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 0, proc.stderr
    assert target.fetch("SELECT * FROM payments ORDER BY id") == [
        (1, "1.234,56 €", "$1,234.56", Decimal("1234.56"), "15.01.2024 13:00:00", "29.02.2024"),
        (2, "-5,50 €", "-$5.50", Decimal("-5.50"), "02.07.2024 00:30:00", "31.12.1999"),
        (3, None, None, None, None, None),
        (4, "0,00 €", "$1,000,000.01", Decimal("0.01"), "27.10.2024 02:59:59", "01.01.0001"),
    ]


def test_a_running_flow_paused_by_a_limit_goes_on_after_resume(mariadb: Any, pg_source: Any, pg_target: Any,
                                                               tmp_path: Path) -> None:
    """`run` (not --once) pauses at the transaction over the limit, keeps applying nothing of
    it while other changes wait behind it, and applies it all once `resume` is given."""
    from processes import Command, wait_for

    sc = _setup("pg2my", mariadb, pg_source, pg_target, tmp_path)
    write_cfg(sc.cfg, sc.flow, sc.source, sc.target,
              extra="    limits: {max_rows_per_transaction: 3}\n    batch: {max_rows: 1000, max_delay_ms: 50}\n")
    sc.source.insert_contacts([contact(i, f"P{i}", None, i, "A", "DE") for i in range(1, 4)])  # 3 rows: allowed
    run = Command(sc.cfg, tmp_path / "run.log", "run")
    try:
        wait_for("the first rows", lambda: len(sc.target_rows()) == 3)
        sc.source.insert_contacts([contact(i, f"Q{i}", None, i, "I", "FR") for i in range(4, 10)])  # 6 rows
        sc.source.insert_contacts([contact(10, "After", None, 1, "A", "DE")])  # waits behind the paused one
        wait_for("the pause", lambda: "paused by a change limit" in run.log() or "flow is paused" in run.log())
        time.sleep(3)
        assert [r[0] for r in sc.target_rows()] == [1, 2, 3], "nothing of the paused transaction or after it"
        assert run.running()
        assert "resumed" in sc.cli("resume", sc.flow).stdout
        wait_for("the rows after resume", lambda: [r[0] for r in sc.target_rows()] == list(range(1, 11)))
        assert sc.target_rows() == sc.expected()
    finally:
        assert run.stop() == 0, run.log()[-3000:]
    assert "flow resumed" in run.log()
