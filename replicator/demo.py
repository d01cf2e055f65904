"""``replicator demo``: the main job on local throwaway servers, start to finish.

Starts a PostgreSQL server (the "shop") and a MariaDB server (the "crm") in a temporary
directory, creates the four entities of the use case (contacts, orders, inventory, users) on
both, starts a flow shop → crm, then changes data on the shop while the flow runs: inserts,
updates, a key change, deletes, a multi-table transaction. Finally it compares both sides row
for row and prints a short account of what the replicator did. Everything is removed at the end.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from .config import parse_config
from .mysql.writer import connect as mysql_connect
from .pipeline import FlowRunner
from .sandbox import MariaDBServer, PostgresServer

_PG_SCHEMA = """
CREATE TABLE contacts (id int PRIMARY KEY, first_name text NOT NULL, last_name text,
    email text, birth_date date, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id bigint PRIMARY KEY, contact_id int NOT NULL, total numeric(12,2) NOT NULL,
    status text NOT NULL, placed_at timestamptz NOT NULL);
CREATE TABLE inventory (sku text PRIMARY KEY, name text NOT NULL, stock int NOT NULL,
    price numeric(10,2) NOT NULL, attributes jsonb);
CREATE TABLE users (id int PRIMARY KEY, login text NOT NULL, active boolean NOT NULL,
    roles text[]);
"""

_MARIADB_SCHEMA = [
    "CREATE TABLE contacts (id INT PRIMARY KEY, firstName TEXT NOT NULL, last_name TEXT,"
    " email TEXT, birth_date DATE, updated_at DATETIME(6) NOT NULL)",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, contact_id INT NOT NULL, total DECIMAL(12,2) NOT NULL,"
    " status VARCHAR(20) NOT NULL, placed_at DATETIME(6) NOT NULL)",
    "CREATE TABLE inventory (sku VARCHAR(40) PRIMARY KEY, name TEXT NOT NULL, stock INT NOT NULL,"
    " price DECIMAL(10,2) NOT NULL, attributes JSON)",
    "CREATE TABLE users (id INT PRIMARY KEY, login VARCHAR(64) NOT NULL, active TINYINT(1) NOT NULL,"
    " roles JSON)",
]

_CONFIG = """
systems:
  shop: {{url: "{pg}"}}
  crm:  {{url: "{my}"}}
flows:
  - name: shop-to-crm
    source: shop
    target: crm
    batch: {{max_rows: 5000, max_delay_ms: 200}}
    tables:
      - source: contacts
        columns: {{first_name: firstName}}
      - source: orders
      - source: inventory
      - source: users
"""

_FIRST = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Günter", "Hiro", "Ines", "José"]
_LAST = ["Lee", "Smith", "Müller", "Rossi", "Tanaka", "Nowak", "García", "Dubois"]


def _workload(pg: PostgresServer, rows: int, rng: random.Random) -> dict[str, int]:
    """Changes made on the shop while the flow runs; returns counts by kind."""
    done = {"inserted": 0, "updated": 0, "deleted": 0}
    conn = pg.connect(dbname="shop")
    with conn:
        with conn.transaction():
            for i in range(1, rows + 1):
                conn.execute(
                    "INSERT INTO contacts (id, first_name, last_name, email, birth_date)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (i, rng.choice(_FIRST), rng.choice(_LAST), f"user{i}@example.com",
                     f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"),
                )
            done["inserted"] += rows
        with conn.transaction():
            for i in range(1, rows // 4 + 1):
                conn.execute(
                    "INSERT INTO inventory VALUES (%s, %s, %s, %s, %s)",
                    (f"SKU-{i:05d}", f"Item {i}", rng.randint(0, 500), Decimal(rng.randint(100, 99999)) / 100,
                     '{"color": "%s"}' % rng.choice(["red", "blue", "green"])),
                )
            for i in range(1, rows // 10 + 1):
                conn.execute(
                    "INSERT INTO users VALUES (%s, %s, %s, %s)",
                    (i, f"login{i}", i % 7 != 0, ["staff"] if i % 3 else ["staff", "admin"]),
                )
            done["inserted"] += rows // 4 + rows // 10
        order_id = 0
        for _ in range(rows // 50):  # many small multi-table transactions, like a shop's checkout
            with conn.transaction():
                for _ in range(3):
                    order_id += 1
                    conn.execute(
                        "INSERT INTO orders VALUES (%s, %s, %s, 'new', now())",
                        (order_id, rng.randint(1, rows), Decimal(rng.randint(100, 50000)) / 100),
                    )
                sku = f"SKU-{rng.randint(1, rows // 4):05d}"
                conn.execute("UPDATE inventory SET stock = stock - 1 WHERE sku = %s", (sku,))
                done["inserted"] += 3
                done["updated"] += 1
            time.sleep(0.002)
        cur = conn.execute("UPDATE orders SET status = 'shipped' WHERE id % 2 = 0")
        done["updated"] += cur.rowcount
        cur = conn.execute("UPDATE contacts SET email = lower(first_name) || id || '@example.org' WHERE id % 5 = 0")
        done["updated"] += cur.rowcount
        conn.execute("UPDATE contacts SET id = id + 1000000 WHERE id = 1")  # a primary-key change
        done["updated"] += 1
        cur = conn.execute("DELETE FROM orders WHERE id % 10 = 0")
        done["deleted"] += cur.rowcount
        cur = conn.execute("DELETE FROM users WHERE NOT active")
        done["deleted"] += cur.rowcount
    return done


def _compare(pg: PostgresServer, my: MariaDBServer) -> list[tuple[str, int, bool]]:
    queries = {
        "contacts": ("SELECT id, first_name, last_name, email, birth_date FROM contacts ORDER BY id",
                     "SELECT id, firstName, last_name, email, birth_date FROM contacts ORDER BY id"),
        "orders": ("SELECT id, contact_id, total, status FROM orders ORDER BY id",
                   "SELECT id, contact_id, total, status FROM orders ORDER BY id"),
        "inventory": ("SELECT sku, name, stock, price FROM inventory ORDER BY sku",
                      "SELECT sku, name, stock, price FROM inventory ORDER BY sku"),
        "users": ("SELECT id, login, active::int FROM users ORDER BY id",
                  "SELECT id, login, active FROM users ORDER BY id"),
    }
    out = []
    with pg.connect(dbname="shop") as pconn:
        mconn = mysql_connect(my.url("crm"))
        try:
            for table, (pq_, mq) in queries.items():
                src = [tuple(r) for r in pconn.execute(pq_).fetchall()]
                with mconn.cursor() as cur:
                    cur.execute(mq)
                    dst = [tuple(r) for r in cur.fetchall()]
                out.append((table, len(src), src == dst))
        finally:
            mconn.close()
    return out


def run_demo(rows: int = 2000, seed: int = 7) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="replicator-demo-") as tmp:
        base = Path(tmp)
        base.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir
        click.echo("Starting a throwaway PostgreSQL (shop) and MariaDB (crm)…")
        with PostgresServer(base / "pg", name="shop") as pg, MariaDBServer(base / "mariadb", name="crm") as my:
            pg.create_database("shop")
            pg.execute(_PG_SCHEMA, dbname="shop")
            my.create_database("crm")
            for stmt in _MARIADB_SCHEMA:
                my.execute(stmt, db="crm")
            config = parse_config(_CONFIG.format(pg=pg.url("shop"), my=my.url("crm")), "demo")
            flow = config.flows[0]
            stop = threading.Event()
            runner = FlowRunner(config, flow, stop=stop)
            failure: list[BaseException] = []

            def run() -> None:
                try:
                    runner.run()
                except BaseException as exc:  # reported below
                    failure.append(exc)
                    stop.set()

            thread = threading.Thread(target=run, name="demo-flow")
            click.echo("Starting the flow shop → crm (contacts, orders, inventory, users)…")
            thread.start()
            _wait_for_slot(pg, flow.slot_name, stop)
            t0 = time.monotonic()
            click.echo(f"Writing to the shop while the flow runs ({rows} contacts and more)…")
            done = _workload(pg, rows, rng)
            target_lsn = pg.execute("SELECT pg_current_wal_lsn()::text", dbname="shop")[0][0]
            _wait_caught_up(my, flow.name, str(target_lsn), stop)
            elapsed = time.monotonic() - t0
            stop.set()
            thread.join()
            if failure:
                raise failure[0]
            results = _compare(pg, my)
            _report(runner, done, results, elapsed)


def _wait_for_slot(pg: PostgresServer, slot: str, stop: threading.Event) -> None:
    for _ in range(300):
        if stop.is_set():
            return
        if pg.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,), dbname="shop"):
            return
        time.sleep(0.1)
    raise RuntimeError("the flow did not create its replication slot within 30 s")


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def _wait_caught_up(my: MariaDBServer, flow: str, lsn: str, stop: threading.Event) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stop.is_set():
        rows: list[Any] = my.execute(
            "SELECT position FROM _replicator.checkpoints WHERE flow = %s", (flow,), db="crm"
        )
        if rows and _lsn(str(rows[0][0])) >= _lsn(lsn):
            return
        time.sleep(0.2)


def _report(runner: FlowRunner, done: dict[str, int], results: list[tuple[str, int, bool]], elapsed: float) -> None:
    stats = runner.stats
    click.echo("")
    click.echo("What the replicator did")
    click.echo(f"  source changes made      {sum(done.values())} ({done['inserted']} inserted,"
               f" {done['updated']} updated, {done['deleted']} deleted)")
    click.echo(f"  changes applied          {stats.changes} in {stats.transactions} source transactions,"
               f" {stats.batches} target commits")
    click.echo(f"  caught up after          {elapsed:.1f} s")
    for table, count, equal in results:
        click.echo(f"  {table:<10} {count:>6} rows   {'equal on both sides' if equal else 'DIFFERENT'}")
    if not all(equal for _, _, equal in results):
        raise SystemExit(1)
    click.echo("Both systems hold the same data. Servers removed.")
