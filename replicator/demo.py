"""``replicator demo``: the main job on local throwaway servers, start to finish.

Starts a PostgreSQL server (the "shop") and a MariaDB server (the "crm") in a temporary
directory, creates the four entities of the use case on both, and runs two flows at once:
shop → crm for contacts, orders and inventory (the shop owns them), crm → shop for users (the
CRM owns them). While the flows run it changes data on both sides: inserts, updates, a key
change, deletes, multi-table transactions. Finally it compares both sides row for row and
prints a short account of what the replicator did. Everything is removed at the end.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

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
"""

_PG_USERS = """
CREATE TABLE users (id int PRIMARY KEY, login text NOT NULL, active smallint NOT NULL, roles jsonb);
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
  - name: crm-to-shop
    source: crm
    target: shop
    batch: {{max_rows: 5000, max_delay_ms: 200}}
    tables:
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
            done["inserted"] += rows // 4
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
    return done


def _crm_workload(my: MariaDBServer, rows: int) -> dict[str, int]:
    """The CRM's own changes: its users, which flow to the shop."""
    conn = my.connect("crm", autocommit=False)
    try:
        with conn.cursor() as cur:
            n = rows // 10
            cur.executemany(
                "INSERT INTO users VALUES (%s, %s, %s, %s)",
                [(i, f"login{i}", int(i % 7 != 0), '["staff"]' if i % 3 else '["staff", "admin"]') for i in range(1, n + 1)],
            )
            conn.commit()
            updated = cur.execute("UPDATE users SET login = CONCAT(login, '-renamed') WHERE id % 4 = 0")
            conn.commit()
            deleted = cur.execute("DELETE FROM users WHERE NOT active")
            conn.commit()
    finally:
        conn.close()
    return {"inserted": n, "updated": updated, "deleted": deleted}


def _compare(pg: PostgresServer, my: MariaDBServer) -> list[tuple[str, int, bool]]:
    queries = {
        "contacts": ("SELECT id, first_name, last_name, email, birth_date FROM contacts ORDER BY id",
                     "SELECT id, firstName, last_name, email, birth_date FROM contacts ORDER BY id"),
        "orders": ("SELECT id, contact_id, total, status FROM orders ORDER BY id",
                   "SELECT id, contact_id, total, status FROM orders ORDER BY id"),
        "inventory": ("SELECT sku, name, stock, price FROM inventory ORDER BY sku",
                      "SELECT sku, name, stock, price FROM inventory ORDER BY sku"),
        "users": ("SELECT id, login, active, roles::text FROM users ORDER BY id",
                  "SELECT id, login, active, roles FROM users ORDER BY id"),
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
            pg.execute(_PG_SCHEMA + _PG_USERS, dbname="shop")
            my.create_database("crm")
            for stmt in _MARIADB_SCHEMA:
                my.execute(stmt, db="crm")
            config = parse_config(_CONFIG.format(pg=pg.url("shop"), my=my.url("crm")), "demo")
            stop = threading.Event()
            runners = [FlowRunner(config, flow, stop=stop) for flow in config.flows]
            failure: list[BaseException] = []

            def run(runner: FlowRunner) -> None:
                try:
                    runner.run()
                except BaseException as exc:  # reported below
                    failure.append(exc)
                    stop.set()

            threads = [threading.Thread(target=run, args=(r,), name=f"demo-{r.flow.name}") for r in runners]
            click.echo("Starting the flows shop → crm (contacts, orders, inventory) and crm → shop (users)…")
            for thread in threads:
                thread.start()
            _wait_until_started(pg, my, {f.name: len(f.tables) for f in config.flows}, stop)
            t0 = time.monotonic()
            click.echo(f"Writing to both while the flows run ({rows} contacts and more)…")
            done = _workload(pg, rows, rng)
            for kind, count in _crm_workload(my, rows).items():
                done[kind] += count
            results = _wait_equal(pg, my, stop)
            elapsed = time.monotonic() - t0
            stop.set()
            for thread in threads:
                thread.join()
            if failure:
                raise failure[0]
            _report(runners, done, results, elapsed)


def _wait_until_started(pg: PostgresServer, my: MariaDBServer, flows: dict[str, int], stop: threading.Event) -> None:
    """Each flow streams once it stored its start position and copied its tables (the initial
    snapshot): from then on every change made is one the flow applies."""
    done = "SELECT flow FROM _replicator.snapshots WHERE status = 'done' GROUP BY flow HAVING count(*) = {n}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        started: set[str] = set()
        for flow, n in flows.items():
            if _has_state(my):
                started |= {str(r[0]) for r in my.execute(done.format(n=n), db="crm") if r[0] == flow}
            if _pg_has_state(pg):
                started |= {str(r[0]) for r in pg.execute(done.format(n=n), dbname="shop") if r[0] == flow}
        if set(flows) <= started:
            return
        time.sleep(0.1)
    if not stop.is_set():
        raise RuntimeError("the flows did not start within 60 s")


def _has_state(my: MariaDBServer) -> bool:
    return bool(my.execute(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_replicator' AND TABLE_NAME = 'snapshots'"
    ))


def _pg_has_state(pg: PostgresServer) -> bool:
    return bool(pg.execute("SELECT to_regclass('_replicator.snapshots')::text", dbname="shop")[0][0])


def _wait_equal(pg: PostgresServer, my: MariaDBServer, stop: threading.Event) -> list[tuple[str, int, bool]]:
    """Compare both sides until they agree (or 120 s passed): the flows catch up live."""
    deadline = time.monotonic() + 120
    while True:
        results = _compare(pg, my)
        if all(equal for _, _, equal in results) or time.monotonic() > deadline or stop.is_set():
            return results
        time.sleep(0.2)


def _report(runners: list[FlowRunner], done: dict[str, int], results: list[tuple[str, int, bool]], elapsed: float) -> None:
    click.echo("")
    click.echo("What the replicator did")
    click.echo(f"  source changes made      {sum(done.values())} ({done['inserted']} inserted,"
               f" {done['updated']} updated, {done['deleted']} deleted)")
    for runner in runners:
        stats = runner.stats
        click.echo(f"  {runner.flow.name:<12} applied {stats.changes} changes in {stats.transactions}"
                   f" source transactions, {stats.batches} target commits")
    click.echo(f"  caught up after          {elapsed:.1f} s")
    for table, count, equal in results:
        click.echo(f"  {table:<10} {count:>6} rows   {'equal on both sides' if equal else 'DIFFERENT'}")
    if not all(equal for _, _, equal in results):
        raise SystemExit(1)
    click.echo("Both systems hold the same data. Servers removed.")
