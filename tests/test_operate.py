"""Operating a running replicator (issue 7): ``status``, the HTTP endpoint, ``pause``.

A PostgreSQL -> PostgreSQL flow (private target server, so it can be stopped) runs as a
process with its endpoint on a free port:

* ``/status.json``, ``replicator status --json`` and ``/metrics`` (parsed with
  prometheus-client's own parser) count exactly the inserts, updates and deletes made on the
  source, by table and op, and the checkpoint's total;
* ``replicator pause``: the flow stops where it is, lag goes up while changes wait, ``/readyz``
  says why; ``resume``: the changes land and lag returns to 0;
* ``/readyz`` flips to 503 when the target goes down and back to 200 when it returns;
* without a run, ``status`` still reports from the target (and says no run answers).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dbhelpers import cli, pg_fetch, pg_script, write_config
from processes import Replicator, assert_clean_log, wait_for
from replicator.sandbox import free_port

QUERY = "SELECT id, name, qty FROM items ORDER BY id"


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def live(port: int, flow: str) -> dict[str, Any]:
    doc = get(port, "/status.json").json()
    (entry,) = [f for f in doc["flows"] if f["flow"] == flow]
    return dict(entry)


def status_json(cfg: Path, flow: str) -> dict[str, Any]:
    out = cli(cfg, "status", "--json", "--flow", flow)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (entry,) = doc["flows"]
    return {"running": doc["running"], **entry}


def metric_samples(port: int) -> dict[str, list[Any]]:
    text = get(port, "/metrics").text
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def test_status_metrics_pause_and_readiness_follow_a_live_run(pg_source: Any, sandbox_factory: Any,
                                                              fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    target = sandbox_factory.postgres(name="pg_status_target")
    pg_source.create_database(db)
    target.create_database(db)
    pg_script(pg_source, db, "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
    port = free_port()
    cfg = write_config(tmp_path / "r.yaml", "st", pg_source.url(db), target.url(db), ["items"],
                       batch="{max_rows: 500, max_delay_ms: 50}")
    cfg.write_text(cfg.read_text() + f"http: {{listen: '127.0.0.1:{port}'}}\n")
    rep = Replicator(cfg, tmp_path)

    def source_rows() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in pg_fetch(pg_source, db, QUERY)]

    def target_rows() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in pg_fetch(target, db, QUERY)]

    def ready() -> bool:
        try:
            return get(port, "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        rep.start()
        wait_for("the endpoint to say ready", ready, timeout=60)
        assert get(port, "/livez").text == "ok\n"

        # 300 inserts (30 transactions), 120 updates, 40 deletes
        for t in range(30):
            pg_script(pg_source, db, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(%d, %d) g"
                      % (t * 10 + 1, t * 10 + 10))
        pg_script(pg_source, db, "UPDATE items SET qty = qty + 1000 WHERE id <= 120")
        pg_script(pg_source, db, "DELETE FROM items WHERE id > 260")
        wait_for("the target to hold the source's rows", lambda: target_rows() == source_rows() and len(source_rows()) == 260)
        wait_for("the counts to be committed", lambda: live(port, "st")["changes_total"] == 460)

        entry = live(port, "st")
        assert entry["state"] == "running"
        assert {k: entry["since_start"][k] for k in ("insert", "update", "delete", "truncate")} == \
            {"insert": 300, "update": 120, "delete": 40, "truncate": 0}
        assert entry["since_start"]["transactions"] == 32
        assert entry["by_table"] == [{"table": "public.items", "op": op, "changes": n}
                                     for op, n in (("delete", 40), ("insert", 300), ("update", 120))]
        assert entry["errors"] == 0 and entry["conflicts"] == 0 and entry["dead_letters"] == 0
        assert entry["batch_ms"]["p50"] is not None and entry["batch_ms"]["p99"] >= entry["batch_ms"]["p50"]
        wait_for("lag 0 when caught up", lambda: live(port, "st")["lag_seconds"] == 0)

        st = status_json(cfg, "st")
        assert st["running"] is True and st["state"] == "running"
        assert st["changes_total"] == 460 and st["transactions_total"] == 32
        assert {k: st["since_start"][k] for k in ("insert", "update", "delete")} == {"insert": 300, "update": 120, "delete": 40}
        assert st["dead_letters_open"] == 0 and st["conflicts_total"] == 0 and st["pause"] is None
        assert st["lag_unit"] == "bytes" and isinstance(st["lag_position"], int)

        m = metric_samples(port)
        changes = {(s.labels["table"], s.labels["op"]): s.value for s in m["replicator_changes"]
                   if s.name == "replicator_changes_total" and s.labels["flow"] == "st"}
        assert changes == {("public.items", "insert"): 300.0, ("public.items", "update"): 120.0,
                           ("public.items", "delete"): 40.0}
        txns = [s.value for s in m["replicator_transactions"] if s.name == "replicator_transactions_total"]
        assert txns == [32.0]
        batches = [s.value for s in m["replicator_batch_duration_seconds"] if s.name.endswith("_count")]
        assert batches == [float(live(port, "st")["since_start"]["batches"])]
        assert [s.value for s in m["replicator_lag_seconds"]] == [0.0]
        assert [(s.labels["state"], s.value) for s in m["replicator_flow_up"]] == [("running", 1.0)]

        # pause: the flow stops where it is; lag grows while changes wait
        out = cli(cfg, "pause", "st")
        assert out.returncode == 0, out.stderr
        wait_for("the flow to pause", lambda: live(port, "st")["state"] == "paused", timeout=30)
        assert "paused" in get(port, "/readyz").json()["problems"][0]
        pg_script(pg_source, db, "INSERT INTO items VALUES (1001, 'late', 1)", "UPDATE items SET name = 'moved' WHERE id = 1")
        wait_for("lag to go up while paused", lambda: live(port, "st")["lag_seconds"] >= 3, timeout=30)
        first = live(port, "st")["lag_seconds"]
        time.sleep(1.5)
        assert live(port, "st")["lag_seconds"] > first, "lag grows while the flow is paused"
        assert status_json(cfg, "st")["state"] == "paused"
        assert (1001, "late", 1) not in target_rows()
        out = cli(cfg, "resume", "st")
        assert out.returncode == 0 and "resumed" in out.stdout, out.stdout + out.stderr
        wait_for("the waiting changes to land", lambda: target_rows() == source_rows(), timeout=30)
        wait_for("lag back to 0", lambda: live(port, "st")["lag_seconds"] == 0 and live(port, "st")["state"] == "running",
                 timeout=30)
        assert live(port, "st")["since_start"]["insert"] == 301

        # readiness follows the target
        target.stop()
        wait_for("/readyz to say the target is gone", lambda: get(port, "/readyz").status_code == 503, timeout=30)
        problems = get(port, "/readyz").json()["problems"]
        assert any("target" in p or "reconnecting" in p for p in problems), problems
        target.start()
        try:
            wait_for("/readyz to recover", ready, timeout=90)
        except BaseException:
            print(rep.log()[-5000:])
            raise
        pg_script(pg_source, db, "INSERT INTO items VALUES (1002, 'after', 2)")
        wait_for("rows to flow again", lambda: target_rows() == source_rows(), timeout=60)
        assert rep.proc is not None and rep.proc.poll() is None

        rep.proc.send_signal(signal.SIGTERM)
        assert rep.proc.wait(timeout=60) == 0
        # the outage is logged as a retried connection problem, nothing worse
        assert_clean_log(rep.log(), "run")
        st = status_json(cfg, "st")
        assert st["running"] is False and st["state"] == "not running"
        assert st["changes_total"] == 463 and st["since_start"] is None
        assert st["lag_position"] is not None
        out = cli(cfg, "status")
        assert out.returncode == 0 and "st" in out.stdout and "no run answering" in out.stdout, out.stdout + out.stderr
    finally:
        rep.cleanup()


def test_endpoint_off_loopback_needs_a_token(pg_source: Any, fresh_db_name: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "r.yaml", "tk", pg_source.url(fresh_db_name), pg_source.url(fresh_db_name + "_t"), ["items"])
    cfg.write_text(cfg.read_text() + "http: {listen: '0.0.0.0:9187'}\n")
    out = cli(cfg, "status")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "needs a token" in out.stderr and "Traceback" not in out.stderr
