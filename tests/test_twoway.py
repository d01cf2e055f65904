"""Two-way and three-way sync (issue 6), end to end on real servers through the ``replicator`` command.

MariaDB (``crm``, priority 1) <-> PostgreSQL (``shop``, priority 2), one ``direction: both``
flow; a third system ``erp`` (a second PostgreSQL database) for chains and hubs.

* writes on both sides at once to different rows converge (``verify`` equal both ways); every
  change is applied once per peer (the flows' change counters equal the changes made on their
  sources: echoes are skipped, not applied); once writes stop, neither side moves (MariaDB's
  GTIDs, the checkpoints, shop's row versions): no echo, no ping-pong checkpoints;
* the same rows changed on both sides while the replicator was down (1,025 keys: update vs
  update, update vs delete both ways, insert vs insert): ``priority`` gives every row crm's
  version on both sides, each conflict logged once; ``last_writer_wins`` (1,000 keys) the
  later commit's; ``manual`` parks them until ``conflicts resolve --take``;
* the same rows changed on both sides while the flows run: both converge;
* a conflict keeps the winner's row, also when the two sides changed different columns; a
  column with an ``owner`` always takes its owner's value;
* a chain (crm -> shop -> erp) forwards crm's changes to erp exactly once; a hub (crm <-> shop
  <-> erp) brings a change made in any system to the other two exactly once;
* kill -9 again and again during two-way traffic (own rows and shared rows): after restarts
  both sides converge, counters exact;
* ``check`` asks for what two-way sync needs.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from dbhelpers import cli, my_connect, my_fetch, my_script, pg_fetch, pg_script
from processes import Replicator, assert_clean_log, wait_for
from replicator.pipeline import IDLE_CHECKPOINT_SECONDS

MY_DDL = "CREATE TABLE contacts (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100), stock INT, price DECIMAL(10,2))"
PG_DDL = [
    "CREATE TABLE contacts (id int PRIMARY KEY, name text, email text, stock int, price numeric(10,2))",
    # two-way tables send their old rows (conflict detection compares them with the target's)
    "ALTER TABLE contacts REPLICA IDENTITY FULL",
    "ALTER TABLE contacts SET (autovacuum_enabled = false)",  # the idle check counts transactions
]
QUERY = "SELECT id, name, email, stock, price FROM contacts ORDER BY id"
Row = tuple[Any, ...]


@dataclass
class Systems:
    """crm on MariaDB, shop (and erp) as databases of one PostgreSQL server."""

    mariadb: Any
    pg: Any
    db: str
    tmp: Path

    @property
    def shop_db(self) -> str:
        return self.db + "_shop"

    @property
    def erp_db(self) -> str:
        return self.db + "_erp"

    def create(self, erp: bool = False) -> None:
        self.mariadb.create_database(self.db)
        my_script(self.mariadb, self.db, MY_DDL)
        for name in [self.shop_db] + ([self.erp_db] if erp else []):
            self.pg.create_database(name)
            pg_script(self.pg, name, *PG_DDL)

    def url(self, system: str) -> str:
        if system == "crm":
            return str(self.mariadb.url(self.db))
        return str(self.pg.url(self.shop_db if system == "shop" else self.erp_db))

    def config(self, flows: str, name: str = "replicator.yaml", systems: tuple[str, ...] = ("crm", "shop")) -> Path:
        prio = {"crm": 1, "shop": 2, "erp": 3}
        text = "systems:\n" + "".join(
            f'  {s}: {{url: "{self.url(s)}", priority: {prio[s]}}}\n' for s in systems
        ) + "flows:\n" + flows
        path = self.tmp / name
        path.write_text(text)
        return path

    def rows(self, system: str) -> list[Row]:
        if system == "crm":
            return my_fetch(self.mariadb, self.db, QUERY)
        return [tuple(r) for r in pg_fetch(self.pg, self.shop_db if system == "shop" else self.erp_db, QUERY)]

    def write(self, system: str, statements: list[str]) -> None:
        """Statements as one transaction on ``system``."""
        if system == "crm":
            my_script(self.mariadb, self.db, "BEGIN", *statements, "COMMIT")
        else:
            pg_script(self.pg, self.shop_db if system == "shop" else self.erp_db, "BEGIN", *statements, "COMMIT")

    def applied(self, flow: str, target: str) -> int:
        """The change counter of ``flow``'s checkpoint on its target (0 before the first)."""
        q = "SELECT changes_applied FROM _replicator.checkpoints WHERE flow = %s"
        if target == "crm":
            rows = my_fetch(self.mariadb, "_replicator", q, (flow,))
        else:
            rows = pg_fetch(self.pg, self.shop_db if target == "shop" else self.erp_db, q, (flow,))
        return int(rows[0][0]) if rows else 0

    def conflicts(self, flow: str, target: str) -> list[tuple[Any, ...]]:
        q = "SELECT row_key, winner, action FROM _replicator.conflicts WHERE flow = %s ORDER BY id"
        try:
            if target == "crm":
                return my_fetch(self.mariadb, "_replicator", q, (flow,))
            return [tuple(r) for r in pg_fetch(self.pg, self.shop_db if target == "shop" else self.erp_db, q, (flow,))]
        except (pymysql.err.ProgrammingError, psycopg.errors.UndefinedTable):
            return []

    def log_positions(self) -> tuple[Any, ...]:
        """What a write by the replicator would move: MariaDB's binlog GTIDs, and on the
        PostgreSQL side the newest transaction id among shop's rows and both flows'
        checkpoint rows (position, counters, save time) on either side. (Not the server's
        WAL or next xid: autovacuum of other tests' databases moves those.)"""
        gtid = str(my_fetch(self.mariadb, self.db, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0])
        shop = pg_fetch(self.pg, self.shop_db, "SELECT max(xmin::text::bigint), count(*) FROM contacts")[0]
        q = "SELECT flow, position, changes_applied, updated_at FROM _replicator.checkpoints WHERE flow LIKE %s"
        on_shop = [tuple(r) for r in pg_fetch(self.pg, self.shop_db, q, ("tw%",))]
        on_crm = my_fetch(self.mariadb, "_replicator", q, ("tw%",))
        return gtid, tuple(shop), on_shop, on_crm


@pytest.fixture
def systems(mariadb: Any, pg_source: Any, fresh_db_name: str, tmp_path: Path) -> Systems:
    return Systems(mariadb, pg_source, fresh_db_name, tmp_path)


# Chains and hubs count row changes per flow: one row change per target transaction keeps the
# forwarded count equal to the source's (a batch nets several changes of a key into one write).
ONE_BY_ONE = "{max_rows: 1, max_delay_ms: 0}"


def both_flow(name: str, a: str = "crm", b: str = "shop", rule: str = "priority", columns: str = "",
              batch: str = "{max_rows: 500, max_delay_ms: 50}") -> str:
    return (
        f"  - name: {name}\n    source: {a}\n    target: {b}\n    direction: both\n    conflicts: {rule}\n"
        f"    snapshot: never\n    batch: {batch}\n"
        "    tables:\n      - source: contacts\n" + (f"        columns: {columns}\n" if columns else "")
    )


def one_flow(name: str, a: str, b: str) -> str:
    return (
        f"  - name: {name}\n    source: {a}\n    target: {b}\n    snapshot: never\n"
        f"    batch: {ONE_BY_ONE}\n    tables:\n      - source: contacts\n"
    )


def run_once(rep: Replicator) -> None:
    rep.start("--once")
    assert rep.proc is not None
    assert rep.proc.wait(timeout=180) == 0, rep.log()[-3000:]
    assert_clean_log(rep.log(), "run --once")


def synced(s: Systems, flows: str, keys: range | None = None) -> tuple[Path, Replicator]:
    """Tables created, the flows' slots and checkpoints in place, and with ``keys`` those base
    rows inserted on crm and synced to shop; the config and the replicator."""
    s.create()
    cfg = s.config(flows)
    rep = Replicator(cfg, s.tmp)
    run_once(rep)
    if keys is not None:
        s.write("crm", ["INSERT INTO contacts VALUES " + ", ".join(row(i, "base") for i in keys)])
        run_once(rep)
    return cfg, rep


def row(i: int, tag: str) -> str:
    return f"({i}, '{tag}-{i}', 'p{i}@example.com', {i % 97}, {i}.25)"


class Writer:
    """Random inserts, updates and deletes of its own key range on one system, in small
    transactions; counts the row changes it commits."""

    def __init__(self, systems: Systems, system: str, lo: int, n: int, seed: int, per_txn: int = 8) -> None:
        self.systems, self.system, self.lo, self.n = systems, system, lo, n
        self.per_txn = per_txn
        self.rng = random.Random(seed)
        self.changes = 0
        self.live: list[int] = []
        self.next = lo

    def step(self) -> None:
        stmts: list[str] = []
        for _ in range(self.rng.randint(1, self.per_txn)):
            r = self.rng.random()
            if r < 0.5 or len(self.live) < 5:
                stmts.append(f"INSERT INTO contacts (id, name, email, stock, price) VALUES {row(self.next, self.system)}")
                self.live.append(self.next)
                self.next += 1
            elif r < 0.85:
                k = self.rng.choice(self.live)
                stmts.append(f"UPDATE contacts SET name = 'u{self.rng.randint(0, 9999)}', stock = stock + 1 WHERE id = {k}")
            else:
                k = self.live.pop(self.rng.randrange(len(self.live)))
                stmts.append(f"DELETE FROM contacts WHERE id = {k}")
        self.systems.write(self.system, stmts)
        self.changes += len(stmts)

    def run(self) -> None:
        while self.next < self.lo + self.n:
            self.step()


def hammer(s: Systems, system: str, seed: int, keys: range, rounds: int, made: dict[str, int]) -> None:
    """Update 4 random rows of ``keys`` per transaction on ``system``, ``rounds`` times, the
    other system doing the same to the same rows; ``made[system]`` counts the row changes."""
    rng = random.Random(seed)
    for n in range(rounds):
        stmts = [f"UPDATE contacts SET name = '{system}-{n}', stock = {n} WHERE id = {k}" for k in rng.sample(keys, 4)]
        while True:  # the replicator locks rows too: an application retries its deadlocks
            try:
                s.write(system, stmts)
                break
            except (pymysql.err.OperationalError, psycopg.errors.DeadlockDetected) as exc:
                if isinstance(exc, pymysql.err.OperationalError) and exc.args[0] not in (1205, 1213):
                    raise
        made[system] += len(stmts)


def running(rep: Replicator) -> Callable[[], None]:
    """A check that the streaming run is still alive (its log tail if not)."""

    def alive() -> None:
        assert rep.proc is not None and rep.proc.poll() is None, rep.log()[-3000:]

    return alive


def in_parallel(*fns: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def wait_converged(s: Systems, names: tuple[str, ...], counters: dict[tuple[str, str], int], alive: Callable[[], None]) -> None:
    """Until every system holds the same rows and each flow's counter is what it must be
    (never more)."""

    def done() -> bool:
        alive()
        for (flow, target), want in counters.items():
            got = s.applied(flow, target)
            assert got <= want, f"{flow} applied {got} changes, more than the {want} made on its source"
            if got != want:
                return False
        first = s.rows(names[0])
        return all(s.rows(n) == first for n in names[1:])

    try:
        wait_for("convergence", done, timeout=120)
    except pytest.fail.Exception:
        rows = {n: s.rows(n) for n in names}
        differ = [r for r in zip(*rows.values()) if len(set(r)) > 1][:10]
        got = {k: s.applied(*k) for k in counters}
        pytest.fail(f"no convergence: counters {got} (want {counters}); rows that differ: {differ}")


def test_both_ways_different_rows_converge_once_and_stay_idle(systems: Systems) -> None:
    s = systems
    cfg, rep = synced(s, both_flow("tw"))  # streaming starts from here
    try:
        rep.start()
        crm, shop = Writer(s, "crm", 1, 400, seed=1), Writer(s, "shop", 100_001, 400, seed=2)
        in_parallel(crm.run, shop.run)

        alive = running(rep)

        wait_converged(s, ("crm", "shop"), {("tw", "shop"): crm.changes, ("tw-reverse", "crm"): shop.changes}, alive)
        rows = s.rows("crm")
        assert rows == s.rows("shop")
        assert {r[0] for r in rows} == set(crm.live) | set(shop.live)
        assert len(rows) == len(crm.live) + len(shop.live)
        assert proc_verify(cfg, "tw") and proc_verify(cfg, "tw-reverse")
        checked = cli(cfg, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "sends old rows (REPLICA IDENTITY FULL)" in checked.stdout
        assert "writes can be tagged with replication origins" in checked.stdout

        # No new writes: after the idle checkpoint interval, both logs stand still.
        time.sleep(2)
        before = s.log_positions()
        cps = (s.applied("tw", "shop"), s.applied("tw-reverse", "crm"))
        time.sleep(IDLE_CHECKPOINT_SECONDS + 5)
        after = s.log_positions()
        print(f"crm changes {crm.changes}, shop changes {shop.changes}; idle logs {before} -> {after}")
        assert after == before, f"the replicator wrote while nothing changed: {before} -> {after}"
        assert (s.applied("tw", "shop"), s.applied("tw-reverse", "crm")) == cps
        assert_clean_log(rep.log(), "streaming run")
        assert "conflicts resolved" not in rep.log()
    finally:
        rep.cleanup()


def proc_verify(cfg: Path, flow: str) -> bool:
    proc = cli(cfg, "verify", "--flow", flow)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return True


def test_priority_resolves_concurrent_updates_and_deletes(systems: Systems) -> None:
    s = systems
    n = 1000
    cfg, rep = synced(s, both_flow("pr"), range(1, n + 21))
    try:
        assert s.rows("shop") == s.rows("crm")
        # Replicator down: the same rows change on both sides.
        s.write("crm", [f"UPDATE contacts SET name = CONCAT('crm-', id), stock = id + 1 WHERE id <= {n + 10}",
                        f"DELETE FROM contacts WHERE id > {n + 10}"])           # crm deletes 1011..1020
        s.write("shop", [f"UPDATE contacts SET name = 'shop-' || id, stock = id + 2 WHERE id <= {n} OR id > {n + 10}",
                         f"DELETE FROM contacts WHERE id > {n} AND id <= {n + 10}"])  # shop deletes 1001..1010
        # insert vs insert of the same new keys
        s.write("crm", ["INSERT INTO contacts VALUES " + ", ".join(row(i, "crm") for i in range(5001, 5006))])
        s.write("shop", ["INSERT INTO contacts VALUES " + ", ".join(row(i, "shop") for i in range(5001, 5006))])
        run_once(rep)
        want = [(i, f"crm-{i}", f"p{i}@example.com", i + 1, Decimal(f"{i}.25")) for i in range(1, n + 11)] + [
            (i, f"crm-{i}", f"p{i}@example.com", i % 97, Decimal(f"{i}.25")) for i in range(5001, 5006)]
        assert s.rows("crm") == want
        assert s.rows("shop") == want, "shop must hold crm's version of every conflicting row"
        # Each conflict logged once: by the flow into the winning side.
        logged = s.conflicts("pr-reverse", "crm")
        assert s.conflicts("pr", "shop") == []
        keys = sorted(_key_id(k) for k, _, _ in logged)
        assert keys == list(range(1, n + 21)) + list(range(5001, 5006)), f"{len(keys)} conflicts logged"
        by_key = {_key_id(k): (w, a) for k, w, a in logged}
        assert by_key[1] == ("crm", "skip")          # both updated: crm's values stay on crm
        assert by_key[n + 5][1] == "skip"            # shop deleted what crm updated: the row stays on crm
        assert by_key[n + 15][1] == "skip"           # shop updated what crm deleted: it stays deleted
        out = cli(cfg, "conflicts", "list", "--flow", "pr-reverse")
        assert out.returncode == 0, out.stderr
        assert f"{n + 25} conflict" in out.stdout
        # a later run finds nothing left to do, and no echo
        before = (s.applied("pr", "shop"), s.applied("pr-reverse", "crm"))
        run_once(rep)
        assert (s.applied("pr", "shop"), s.applied("pr-reverse", "crm")) == before
        assert s.rows("shop") == want and s.rows("crm") == want
    finally:
        rep.cleanup()


def _key_id(key: Any) -> int:
    import json

    k = json.loads(key) if isinstance(key, str) else key
    return int(k["id"])


def test_same_rows_changed_on_both_sides_while_running_converge(systems: Systems) -> None:
    """Both systems update the same 300 rows at once while the flows run: whatever crossed,
    both end with the same rows, every change counted once per peer, no echo afterwards."""
    s = systems
    cfg, rep = synced(s, both_flow("lv"), range(1, 301))
    try:
        rep.start()
        made = {"crm": 300, "shop": 0}  # the change counters include the 300 inserts

        in_parallel(lambda: hammer(s, "crm", 1, range(1, 301), 150, made),
                    lambda: hammer(s, "shop", 2, range(1, 301), 150, made))
        wait_converged(s, ("crm", "shop"), {("lv", "shop"): made["crm"], ("lv-reverse", "crm"): made["shop"]},
                       running(rep))
        time.sleep(IDLE_CHECKPOINT_SECONDS + 2)
        assert s.rows("crm") == s.rows("shop")
        assert (s.applied("lv", "shop"), s.applied("lv-reverse", "crm")) == (made["crm"], made["shop"])
        print(f"{len(s.conflicts('lv-reverse', 'crm'))} conflicts logged")
        assert s.conflicts("lv", "shop") == []
        assert_clean_log(rep.log(), "streaming run")
    finally:
        rep.cleanup()


def test_conflicts_take_the_winners_row_and_owners_their_columns(systems: Systems) -> None:
    s = systems
    cfg, rep = synced(s, both_flow("co", columns="{stock: {owner: shop}}"), range(1, 4))
    try:
        # 1: crm changes name, shop changes email -> crm's row (priority)
        # 2: both change stock -> shop owns stock; both change name -> crm (priority)
        # 3: crm changes stock only, shop changes price only -> crm's row, but shop's stock
        s.write("crm", ["UPDATE contacts SET name = 'crm-1' WHERE id = 1",
                        "UPDATE contacts SET name = 'crm-2', stock = 100 WHERE id = 2",
                        "UPDATE contacts SET stock = 300 WHERE id = 3"])
        s.write("shop", ["UPDATE contacts SET email = 'shop1@example.com' WHERE id = 1",
                         "UPDATE contacts SET name = 'shop-2', stock = 200 WHERE id = 2",
                         "UPDATE contacts SET price = 3.99 WHERE id = 3"])
        run_once(rep)
        want = [
            (1, "crm-1", "p1@example.com", 1, Decimal("1.25")),
            (2, "crm-2", "p2@example.com", 200, Decimal("2.25")),
            (3, "base-3", "p3@example.com", 3, Decimal("3.25")),
        ]
        assert s.rows("crm") == want
        assert s.rows("shop") == want
        logged = {_key_id(k): w for k, w, _ in s.conflicts("co-reverse", "crm")}
        assert sorted(logged) == [1, 2, 3]
    finally:
        rep.cleanup()


def test_manual_parks_conflicts_until_an_operator_takes_a_side(systems: Systems) -> None:
    s = systems
    cfg, rep = synced(s, both_flow("mn", rule="manual"), range(1, 5))
    try:
        s.write("crm", ["UPDATE contacts SET name = CONCAT('crm-', id) WHERE id <= 3"])
        s.write("shop", ["UPDATE contacts SET name = 'shop-' || id WHERE id <= 3"])
        run_once(rep)
        names = {"crm": [r[1] for r in s.rows("crm")], "shop": [r[1] for r in s.rows("shop")]}
        assert names == {"crm": ["crm-1", "crm-2", "crm-3", "base-4"], "shop": ["shop-1", "shop-2", "shop-3", "base-4"]}

        def parked(flow: str, target: str) -> dict[int, int]:
            q = "SELECT id, row_key, status FROM _replicator.conflicts WHERE flow = %s ORDER BY id"
            rows = my_fetch(s.mariadb, "_replicator", q, (flow,)) if target == "crm" else \
                pg_fetch(s.pg, s.shop_db, q, (flow,))
            return {_key_id(k): int(i) for i, k, st in rows if st == "parked"}

        at_shop, at_crm = parked("mn", "shop"), parked("mn-reverse", "crm")
        assert sorted(at_shop) == [1, 2, 3] and sorted(at_crm) == [1, 2, 3]  # each side left its row
        listed = cli(cfg, "conflicts", "list", "--status", "parked")
        assert listed.returncode == 0 and "flow mn: 3 conflict(s)" in listed.stdout, listed.stdout + listed.stderr
        took = cli(cfg, "conflicts", "resolve", str(at_shop[1]), "--flow", "mn", "--take", "crm")
        assert took.returncode == 0 and "crm's version written to shop" in took.stdout, took.stdout + took.stderr
        took = cli(cfg, "conflicts", "resolve", str(at_crm[2]), "--flow", "mn-reverse", "--take", "shop")
        assert took.returncode == 0 and "shop's version written to crm" in took.stdout, took.stdout + took.stderr
        bad = cli(cfg, "conflicts", "resolve", str(at_crm[2]), "--flow", "mn-reverse", "--take", "shop")
        assert bad.returncode == 2 and f"no parked conflict with id {at_crm[2]}" in bad.stderr, bad.stderr
        counters = (s.applied("mn", "shop"), s.applied("mn-reverse", "crm"))
        run_once(rep)
        assert (s.applied("mn", "shop"), s.applied("mn-reverse", "crm")) == counters  # the resolutions did not echo
        assert [r[1] for r in s.rows("crm")] == ["crm-1", "shop-2", "crm-3", "base-4"]
        assert [r[1] for r in s.rows("shop")] == ["crm-1", "shop-2", "shop-3", "base-4"]
        assert sorted(parked("mn", "shop")) == [3] and sorted(parked("mn-reverse", "crm")) == [3]
    finally:
        rep.cleanup()


def test_last_writer_wins_takes_the_later_commit(mariadb: Any, sandbox_factory: Any, fresh_db_name: str,
                                                 tmp_path: Path) -> None:
    # PostgreSQL knows a row's commit time only with track_commit_timestamp (set at start)
    pg = sandbox_factory.postgres({"track_commit_timestamp": "on"}, name="pg_commit_ts")
    s = Systems(mariadb, pg, fresh_db_name, tmp_path)
    cfg, rep = synced(s, both_flow("lw", rule="last_writer_wins"), range(1, 1001))
    try:
        checked = cli(cfg, "check")
        assert checked.returncode == 0 and "track_commit_timestamp = on" in checked.stdout, checked.stdout + checked.stderr
        # 1..500: crm first, shop later (shop wins); 501..1000: shop first, crm later (crm wins).
        # MariaDB's binlog keeps whole seconds: the two writes are > 1 s apart.
        s.write("crm", ["UPDATE contacts SET name = CONCAT('crm-', id), stock = 500 WHERE id <= 500"])
        s.write("shop", ["UPDATE contacts SET name = 'shop-' || id, stock = 600 WHERE id > 500"])
        time.sleep(2.2)
        s.write("shop", ["UPDATE contacts SET name = 'shop-' || id, stock = 600 WHERE id <= 500"])
        s.write("crm", ["UPDATE contacts SET name = CONCAT('crm-', id), stock = 500 WHERE id > 500"])
        run_once(rep)
        want = [(i, f"shop-{i}" if i <= 500 else f"crm-{i}", f"p{i}@example.com", 600 if i <= 500 else 500,
                 Decimal(f"{i}.25")) for i in range(1, 1001)]
        assert s.rows("crm") == want
        assert s.rows("shop") == want
        logged = {_key_id(k): (w, a) for k, w, a in s.conflicts("lw-reverse", "crm")}
        assert s.conflicts("lw", "shop") == []  # logged once: into crm (the better priority)
        assert logged == {i: ("shop", "apply") if i <= 500 else ("crm", "skip") for i in range(1, 1001)}
        before = (s.applied("lw", "shop"), s.applied("lw-reverse", "crm"))
        run_once(rep)
        assert (s.applied("lw", "shop"), s.applied("lw-reverse", "crm")) == before
    finally:
        rep.cleanup()


def test_check_asks_for_old_rows_on_two_way_postgresql_tables(systems: Systems) -> None:
    s = systems
    s.create()
    pg_script(s.pg, s.shop_db, "ALTER TABLE contacts REPLICA IDENTITY DEFAULT")
    out = cli(s.config(both_flow("ck")), "check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ALTER TABLE public.contacts REPLICA IDENTITY FULL" in out.stdout + out.stderr


def test_chain_forwards_once(systems: Systems) -> None:
    s = systems
    s.create(erp=True)
    cfg = s.config(one_flow("ch1", "crm", "shop") + one_flow("ch2", "shop", "erp"), systems=("crm", "shop", "erp"))
    rep = Replicator(cfg, s.tmp)
    try:
        run_once(rep)
        rep.start()
        crm = Writer(s, "crm", 1, 300, seed=3, per_txn=1)
        crm.run()
        s.write("shop", ["INSERT INTO contacts VALUES " + row(500_000, "shop")])  # shop's own: on to erp only

        alive = running(rep)

        wait_for("erp to catch up", lambda: (alive(), s.applied("ch2", "erp") == crm.changes + 1)[1], timeout=180)
        assert s.applied("ch1", "shop") == crm.changes
        time.sleep(1)
        assert s.applied("ch2", "erp") == crm.changes + 1
        assert s.rows("erp") == s.rows("shop")
        assert s.rows("shop") == sorted(s.rows("crm") + [(500_000, "shop-500000", "p500000@example.com", 500_000 % 97, Decimal("500000.25"))])
        assert_clean_log(rep.log(), "chain")
    finally:
        rep.cleanup()


def test_hub_delivers_each_change_once_to_every_other_system(systems: Systems) -> None:
    s = systems
    s.create(erp=True)
    cfg = s.config(both_flow("h1", "crm", "shop", batch=ONE_BY_ONE) + both_flow("h2", "erp", "shop", batch=ONE_BY_ONE),
                   systems=("crm", "shop", "erp"))
    rep = Replicator(cfg, s.tmp)
    try:
        run_once(rep)
        rep.start()
        w = {name: Writer(s, name, lo, 150, seed=i, per_txn=1) for i, (name, lo) in enumerate(
            [("crm", 1), ("shop", 100_001), ("erp", 200_001)])}
        in_parallel(*(x.run for x in w.values()))

        alive = running(rep)

        counters = {
            ("h1", "shop"): w["crm"].changes,                             # crm -> shop
            ("h2", "shop"): w["erp"].changes,                             # erp -> shop
            ("h1-reverse", "crm"): w["shop"].changes + w["erp"].changes,  # shop -> crm: shop's and erp's
            ("h2-reverse", "erp"): w["shop"].changes + w["crm"].changes,  # shop -> erp: shop's and crm's
        }
        wait_converged(s, ("crm", "shop", "erp"), counters, alive)
        time.sleep(2)
        for (flow, target), want in counters.items():
            assert s.applied(flow, target) == want, f"{flow}: a change arrived twice or came back"
        assert len(s.rows("crm")) == sum(len(x.live) for x in w.values())
        assert_clean_log(rep.log(), "hub")
    finally:
        rep.cleanup()


def test_kill9_during_two_way_traffic(systems: Systems) -> None:
    s = systems
    shared = range(900_001, 900_201)  # rows both sides change at once (conflicts)
    cfg, rep = synced(s, both_flow("k9"), shared)
    try:
        made = {"crm": 0, "shop": 0}
        crm, shop = Writer(s, "crm", 1, 3000, seed=7), Writer(s, "shop", 100_001, 3000, seed=8)
        stop = threading.Event()

        def killer() -> None:
            rng = random.Random(9)
            while not stop.is_set():
                rep.start()
                time.sleep(rng.uniform(0.3, 1.5))
                rep.kill()

        k = threading.Thread(target=killer)
        k.start()
        try:
            in_parallel(crm.run, shop.run, lambda: hammer(s, "crm", 5, shared, 300, made),
                        lambda: hammer(s, "shop", 6, shared, 300, made))
        finally:
            stop.set()
            k.join()
        print(f"{rep.runs} runs killed during {crm.changes} + {shop.changes} changes")
        rep.start()

        alive = running(rep)

        wait_converged(s, ("crm", "shop"), {("k9", "shop"): len(shared) + crm.changes + made["crm"],
                                            ("k9-reverse", "crm"): shop.changes + made["shop"]}, alive)
        assert {r[0] for r in s.rows("shop")} == set(crm.live) | set(shop.live) | set(shared)
        assert s.conflicts("k9", "shop") == []  # logged by the flow into crm only
        assert_clean_log(rep.log(), "final run")
    finally:
        rep.cleanup()
