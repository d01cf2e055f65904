"""The polling source on real servers: inserts, updates and deletes found by ``updated_at``.

* PostgreSQL (polled) → MariaDB, with ``run --once``: the first run creates the target table
  and copies the rows (the first poll), then rounds of inserts, updates and deletes; whole rows
  compared after each.
* MariaDB (polled) → PostgreSQL, a running flow (interval 0.5 s): changes while it runs, a
  ``sync-now`` request taken by the running flow, deletes found by the key comparison.
* ``snapshot: never`` starts at the current maximum; a renamed key and a filter cause no false
  delete; ``check`` on a poll flow asks for no replication settings.

The kill -9 test of a polled flow is in ``test_poll_crash.py``.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replicator.config import parse_config
from replicator.pipeline import FlowRunner

from dbhelpers import BackgroundFlow, cli, my_fetch, my_script, pg_fetch, pg_script, wait_until, write_config


def poll_config(path: Path, src_url: str, dst_url: str, tables: str, *, poll: str = "{column: updated_at}",
                extra: str = "", flow: str = "polled") -> Path:
    return write_config(path, flow, src_url, dst_url, tables, options=f"    mode: poll\n    poll: {poll}\n" + extra)


def run_once(cfg: Path) -> None:
    config = parse_config(cfg.read_text())
    FlowRunner(config, config.flows[0], once=True).run()


def utc_naive(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.astimezone(timezone.utc).replace(tzinfo=None) if hasattr(v, "tzinfo") and getattr(v, "tzinfo", None)
                 else v for v in row)


PG_ITEMS = (
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), note text,"
    " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


def pg_items(server: Any, db: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg_fetch(server, db, "SELECT id, name, price, note, updated_at FROM items ORDER BY id")]


def my_items(server: Any, db: str, table: str = "items") -> list[tuple[Any, ...]]:
    return my_fetch(server, db, f"SELECT id, name, price, note, updated_at FROM {table} ORDER BY id")


def test_pg_poll_to_mariadb_once(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    pg_source.create_database(db)
    mariadb.create_database(db)
    pg_script(pg_source, db, PG_ITEMS,
              "INSERT INTO items (id, name, price, note) SELECT g, 'item ' || g, g * 1.25, CASE WHEN g % 3 = 0"
              " THEN NULL ELSE repeat('x', g % 50) END FROM generate_series(1, 2500) g")
    cfg = poll_config(tmp_path / "c.yaml", pg_source.url(db), mariadb.url(db), "      - source: items\n",
                      poll="{column: updated_at, page_rows: 400}", flow="poll_" + db[-8:])
    run_once(cfg)  # creates the target table, then the first poll copies the rows (7 pages)
    assert [utc_naive(r) for r in pg_items(pg_source, db)] == my_items(mariadb, db)
    (position,) = my_fetch(mariadb, "_replicator", "SELECT position FROM checkpoints WHERE flow = %s",
                         ("poll_" + db[-8:],))[0]
    doc = json.loads(position)
    assert doc["poll"] == 1 and "r" not in doc["tables"]["public.items"]  # the round finished

    for round_ in range(3):
        pg_script(
            pg_source, db,
            f"UPDATE items SET name = name || ' r{round_}', updated_at = clock_timestamp() WHERE id % 7 = {round_}",
            f"DELETE FROM items WHERE id % 11 = {round_}",
            f"INSERT INTO items (id, name, price) SELECT g, 'new', 1.5 FROM generate_series({3000 + 100 * round_},"
            f" {3049 + 100 * round_}) g",
            # an update in a transaction stamped earlier than rows already read: the overlap catches it
            "BEGIN", "UPDATE items SET note = 'late', updated_at = clock_timestamp() - interval '2 seconds'"
            f" WHERE id = {100 + round_}", "COMMIT",
        )
        run_once(cfg)
        assert [utc_naive(r) for r in pg_items(pg_source, db)] == my_items(mariadb, db)
    assert my_fetch(mariadb, db, "SELECT note FROM items WHERE id = 102") == [("late",)]

    # A row committed after the poll read a later-stamped one (a long transaction stamps its
    # start): 3 s below the watermark, inside the 10 s overlap, so the next poll still sees it.
    pg_script(pg_source, db, "UPDATE items SET note = 'first', updated_at = clock_timestamp() WHERE id = 213")
    run_once(cfg)
    pg_script(pg_source, db, "UPDATE items SET note = 'committed later',"
              " updated_at = (SELECT updated_at FROM items WHERE id = 213) - interval '3 seconds' WHERE id = 214")
    run_once(cfg)
    assert my_fetch(mariadb, db, "SELECT note FROM items WHERE id = 214") == [("committed later",)]
    assert [utc_naive(r) for r in pg_items(pg_source, db)] == my_items(mariadb, db)

    # a real long transaction: stamped (now()) at its start, committed after a later-stamped row
    # was polled; the next poll still finds it
    import psycopg

    with psycopg.connect(pg_source.url(db)) as long_txn:
        long_txn.execute("UPDATE items SET note = 'long transaction', updated_at = now() WHERE id = 301")
        time.sleep(0.5)
        pg_script(pg_source, db, "UPDATE items SET note = 'quick', updated_at = clock_timestamp() WHERE id = 302")
        run_once(cfg)
        assert my_fetch(mariadb, db, "SELECT id, note FROM items WHERE id IN (301, 302) ORDER BY id") == [
            (301, None if 301 % 3 == 0 else "x" * (301 % 50)), (302, "quick")]
        long_txn.commit()
    run_once(cfg)
    assert my_fetch(mariadb, db, "SELECT note FROM items WHERE id = 301") == [("long transaction",)]
    assert [utc_naive(r) for r in pg_items(pg_source, db)] == my_items(mariadb, db)

    # the other commands know a poll flow: verify compares, checkpoint show prints the watermarks
    proc = cli(cfg, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = cli(cfg, "checkpoint", "show", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(proc.stdout)
    assert json.loads(row["position"])["tables"]["public.items"]["v"][0] == "t"


MY_PEOPLE = (
    "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, active TINYINT NOT NULL DEFAULT 1,"
    " score DECIMAL(8,2), updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    " ON UPDATE CURRENT_TIMESTAMP(6))"
)
PEOPLE_TABLES = (
    "      - source: people\n"
    "        target: persons\n"
    "        columns: {id: person_id}\n"
    "        filter: active = 1\n"
)


def my_people(server: Any, db: str) -> list[tuple[Any, ...]]:
    return my_fetch(server, db, "SELECT id, email, active, score, updated_at FROM people WHERE active = 1 ORDER BY id")


def pg_persons(server: Any, db: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg_fetch(
        server, db, "SELECT person_id, email, active, score, updated_at FROM persons ORDER BY person_id")]


def test_mariadb_poll_to_pg_running_with_sync_now(mariadb: Any, pg_target: Any, fresh_db_name: str,
                                                  tmp_path: Path) -> None:
    """A running poll flow (renamed key, filter) and ``sync-now``: with a 60 s interval, only the
    request makes the running flow poll again within seconds; deletes (and rows leaving the
    filter) reach the target, and no row the filter keeps away is deleted by mistake."""
    db = fresh_db_name
    mariadb.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_target, db, "CREATE TABLE persons (person_id int PRIMARY KEY, email varchar(100) NOT NULL,"
              " active smallint NOT NULL, score numeric(8,2), updated_at timestamp(6) NOT NULL)")
    my_script(mariadb, db, MY_PEOPLE,
              "INSERT INTO people (id, email, active, score) SELECT seq, CONCAT('p', seq, '@x.org'), seq % 5 <> 0,"
              " seq / 4 FROM seq_1_to_600")
    cfg = poll_config(tmp_path / "c.yaml", mariadb.url(db), pg_target.url(db), PEOPLE_TABLES,
                      poll="{column: updated_at, interval_s: 60, deletes_every_s: 0, page_rows: 250}")
    check = cli(cfg, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "polled: no replication settings needed" in check.stdout
    assert "polled table" in check.stdout and "binlog" not in check.stdout

    flow = BackgroundFlow(cfg)
    flow.start()
    try:
        wait_until(lambda: _count(pg_target, db) == 480, 60, "the first poll's copy")
        assert pg_persons(pg_target, db) == my_people(mariadb, db)
        time.sleep(1.5)  # the round is over: the flow waits 60 s for the next one
        my_script(
            mariadb, db,
            "UPDATE people SET score = score + 1 WHERE id % 7 = 1",
            "UPDATE people SET active = 0 WHERE id BETWEEN 11 AND 19",  # leave the filter: deleted
            "UPDATE people SET active = 1 WHERE id = 20",  # enters the filter: inserted
            "DELETE FROM people WHERE id % 13 = 2",
            "INSERT INTO people (id, email) SELECT 1000 + seq, 'new' FROM seq_1_to_40",
        )
        time.sleep(1.0)
        assert _count(pg_target, db) == 480  # not polled yet
        proc = cli(cfg, "sync-now", "polled")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "syncing now" in proc.stdout
        wait_until(lambda: pg_persons(pg_target, db) == my_people(mariadb, db), 20, "the requested poll")
    finally:
        flow.stop_event.set()
        flow.join(timeout=60)
    assert flow.error is None, flow.error

    # no `run` active: sync-now polls once by itself
    my_script(mariadb, db, "DELETE FROM people WHERE id < 100", "UPDATE people SET email = 'changed' WHERE id > 1030")
    proc = cli(cfg, "sync-now", "polled")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran once here" in proc.stdout
    assert pg_persons(pg_target, db) == my_people(mariadb, db)
    assert min(r[0] for r in pg_persons(pg_target, db)) >= 100


def _count(server: Any, db: str) -> int:
    try:
        return int(pg_fetch(server, db, "SELECT count(*) FROM persons")[0][0])
    except Exception:
        return -1


def test_poll_needs_select_only(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    """A PostgreSQL user without the REPLICATION attribute, allowed to SELECT one table: ``check``
    passes for a poll flow (and says what a log flow would lack), ``run --once`` copies; missing
    rights, a nullable poll column, a missing column and a missing key are named clearly."""
    if not hasattr(pg_source, "add_password_user"):
        pytest.skip("needs a sandbox server (creates a user)")
    db = fresh_db_name
    pg_source.create_database(db)
    mariadb.create_database(db)
    pg_source.add_password_user("poller", "s3cret-poll")
    pg_script(pg_source, db, PG_ITEMS,
              "INSERT INTO items (id, name, price) SELECT g, 'n' || g, g FROM generate_series(1, 50) g",
              "CREATE TABLE loose (id int PRIMARY KEY, updated_at timestamptz)",
              "CREATE TABLE nokey (id int, updated_at timestamptz NOT NULL)",
              "GRANT SELECT ON items TO poller")
    url = pg_source.url(db, user="poller", password="s3cret-poll")
    cfg = poll_config(tmp_path / "ok.yaml", url, mariadb.url(db), "      - source: items\n", flow="poll_" + db[-8:])
    proc = cli(cfg, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REPLICATION" not in proc.stdout and "s3cret" not in proc.stdout
    proc = cli(cfg, "run", "--once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [utc_naive(r) for r in pg_items(pg_source, db)] == my_items(mariadb, db)
    proc = cli(cfg, "snapshot")  # needs no replication slot: the first poll was the copy
    assert proc.returncode == 0 and "its first poll copies the tables" in proc.stdout, proc.stdout + proc.stderr

    log_mode = tmp_path / "log.yaml"
    log_mode.write_text(cfg.read_text().replace("    mode: poll\n    poll: {column: updated_at}\n", ""))
    proc = cli(log_mode, "check")
    assert proc.returncode == 1 and "lacks the REPLICATION attribute" in proc.stdout, proc.stdout
    proc = cli(log_mode, "sync-now", "poll_" + db[-8:])
    assert proc.returncode == 0 and "reads the source's log" in proc.stdout, proc.stdout + proc.stderr
    proc = cli(log_mode, "sync-now", "nope")
    assert proc.returncode == 2 and "no flow named 'nope'" in proc.stderr, proc.stderr

    bad = poll_config(tmp_path / "bad.yaml", url, mariadb.url(db),
                      "      - source: loose\n      - source: nokey\n", flow="poll_" + db[-8:])
    proc = cli(bad, "check")
    assert proc.returncode == 1, proc.stdout
    assert "poll column public.loose.updated_at may be NULL" in proc.stdout
    assert "cannot read public.loose: permission denied" in proc.stdout
    assert "polled table public.nokey has no primary key" in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr

    missing = poll_config(tmp_path / "missing.yaml", url, mariadb.url(db), "      - source: items\n",
                          poll="{column: changed_at}", flow="poll_" + db[-8:])
    proc = cli(missing, "run", "--once")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "has no column 'changed_at' to poll by" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(missing, "check")
    assert proc.returncode == 1 and "has no column 'changed_at' to poll by" in proc.stdout


def test_snapshot_never_starts_at_the_current_maximum(pg_source: Any, pg_target: Any, fresh_db_name: str,
                                                      tmp_path: Path) -> None:
    db = fresh_db_name
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_source, db, PG_ITEMS, "INSERT INTO items (id, name) SELECT g, 'old' FROM generate_series(1, 20) g")
    pg_script(pg_target, db, PG_ITEMS)
    cfg = poll_config(tmp_path / "c.yaml", pg_source.url(db), pg_target.url(db), "      - source: items\n",
                      extra="    snapshot: never\n")
    run_once(cfg)
    assert pg_items(pg_target, db) == []  # rows from before the start are not copied
    pg_script(pg_source, db, "INSERT INTO items (id, name) VALUES (21, 'new')",
              "UPDATE items SET name = 'changed', updated_at = clock_timestamp() WHERE id = 3")
    run_once(cfg)
    assert pg_items(pg_target, db) == [r for r in pg_items(pg_source, db) if r[0] in (3, 21)]


def test_poll_source_columns_change_while_running(mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    """A column added to a polled table while the flow runs: the flow reads the table's
    definition again and, once the target has the column too, writes its values."""
    src, dst = fresh_db_name, fresh_db_name[:56] + "_dst"
    mariadb.create_database(src)
    mariadb.create_database(dst)
    my_script(mariadb, src, MY_PEOPLE, "INSERT INTO people (id, email) SELECT seq, 'a' FROM seq_1_to_10")
    cfg = poll_config(tmp_path / "c.yaml", mariadb.url(src), mariadb.url(dst), "      - source: people\n",
                      poll="{column: updated_at, interval_s: 0.2}", flow="poll_" + src[-8:])
    flow = BackgroundFlow(cfg)
    flow.start()
    try:
        wait_until(lambda: _my_count(mariadb, dst) == 10, 30, "the copy")
        my_script(mariadb, dst, "ALTER TABLE people ADD COLUMN city VARCHAR(20)")
        my_script(mariadb, src, "ALTER TABLE people ADD COLUMN city VARCHAR(20)",
                  "UPDATE people SET city = 'Lyon' WHERE id <= 3")
        wait_until(lambda: my_fetch(mariadb, dst, "SELECT count(*) FROM people WHERE city = 'Lyon'") == [(3,)], 30,
                   "the new column's values")
    finally:
        flow.stop_event.set()
        flow.join(timeout=60)
    assert flow.error is None, flow.error
    cols = "id, email, active, score, updated_at, city"
    assert my_fetch(mariadb, src, f"SELECT {cols} FROM people ORDER BY id") == \
        my_fetch(mariadb, dst, f"SELECT {cols} FROM people ORDER BY id")


def _my_count(server: Any, db: str) -> int:
    try:
        return int(my_fetch(server, db, "SELECT count(*) FROM people")[0][0])
    except Exception:
        return -1


def test_composite_key_pg_poll_to_mariadb(pg_source: Any, mariadb: Any, fresh_db_name: str, tmp_path: Path) -> None:
    """A two-column text/int key: pages continue after (column, tenant, id) pairs with equal
    stamps, and the key comparison pages through 12,000 target keys (three pages)."""
    db = fresh_db_name
    pg_source.create_database(db)
    mariadb.create_database(db)
    pg_script(pg_source, db,
              "CREATE TABLE acct (tenant text, id int, bal numeric(12,2) NOT NULL,"
              " changed timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant, id))",
              # one statement: every row shares one stamp (now() is the transaction's start)
              "INSERT INTO acct (tenant, id, bal) SELECT t, g, g FROM unnest(ARRAY['Ab', 'aB', 'b c']) t,"
              " generate_series(1, 4000) g")
    mariadb.execute("CREATE TABLE acct (tenant VARCHAR(10) COLLATE utf8mb4_bin, id INT, bal DECIMAL(12,2) NOT NULL,"
                    " changed DATETIME(6) NOT NULL, PRIMARY KEY (tenant, id))", db=db)
    cfg = poll_config(tmp_path / "c.yaml", pg_source.url(db), mariadb.url(db), "      - source: acct\n",
                      poll="{column: changed, page_rows: 700}", flow="poll_" + db[-8:])

    def same() -> None:
        src = [utc_naive(tuple(r)) for r in pg_fetch(pg_source, db, "SELECT * FROM acct ORDER BY tenant COLLATE \"C\", id")]
        dst = my_fetch(mariadb, db, "SELECT * FROM acct ORDER BY tenant, id")
        assert src == dst

    run_once(cfg)
    same()
    pg_script(pg_source, db, "DELETE FROM acct WHERE id % 997 = 0 OR (tenant = 'aB' AND id > 3990)",
              "UPDATE acct SET bal = -bal, changed = clock_timestamp() WHERE id % 1000 = 1",
              "INSERT INTO acct (tenant, id, bal) VALUES ('Ab', 5000, 1), ('b c', 0, 2)")
    run_once(cfg)
    same()
    assert my_fetch(mariadb, db, "SELECT count(*) FROM acct")[0][0] == 12000 - 12 - 10 + 2


def test_change_limit_pauses_a_mass_delete(pg_source: Any, pg_target: Any, fresh_db_name: str,
                                           tmp_path: Path) -> None:
    """The key comparison's deletes count against the flow's limits: a mass delete pauses the
    flow before anything of it is written (also in the next run), `resume` lets it through."""
    db = fresh_db_name
    pg_source.create_database(db)
    pg_target.create_database(db)
    pg_script(pg_source, db, PG_ITEMS, "INSERT INTO items (id, name) SELECT g, 'n' FROM generate_series(1, 40) g")
    cfg = poll_config(tmp_path / "c.yaml", pg_source.url(db), pg_target.url(db), "      - source: items\n",
                      poll="{column: updated_at, overlap_s: 1}", flow="poll_" + db[-8:])
    run_once(cfg)  # the copy, without limits
    assert len(pg_items(pg_target, db)) == 40
    time.sleep(1.5)  # past the overlap: the copied rows are not read again (they would count)
    guarded = tmp_path / "guarded.yaml"
    guarded.write_text(cfg.read_text().replace("    mode: poll\n",
                                               "    mode: poll\n    limits: {max_rows_per_transaction: 5}\n"))
    pg_script(pg_source, db, "DELETE FROM items WHERE id > 25")
    for _ in range(2):  # the pause holds across runs: the same transaction is found again
        proc = cli(guarded, "run", "--once")
        assert proc.returncode == 1 and "paused by a change limit" in proc.stderr, proc.stdout + proc.stderr
        assert len(pg_items(pg_target, db)) == 40
    (position,) = pg_fetch(pg_target, db, "SELECT position FROM _replicator.pauses")[0]
    assert position.startswith("poll deletes public.items from ")
    proc = cli(guarded, "resume", "poll_" + db[-8:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = cli(guarded, "run", "--once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pg_items(pg_target, db) == pg_items(pg_source, db)
