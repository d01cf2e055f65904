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

import hashlib
import hmac
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def items_flow(source: Any, target: Any, db: str, tmp_path: Path, flow: str, *, tables: Any = ("items",),
               on_target: bool = False, extra: str = "") -> tuple[Path, int, Replicator]:
    """Database ``db`` on both servers with table ``items`` on the source (and the target, with
    ``on_target``); a config with flow ``flow`` between them, an endpoint on a free port and
    ``extra`` YAML; the config, the port and a Replicator for it."""
    source.create_database(db)
    target.create_database(db)
    for server in (source, target) if on_target else (source,):
        pg_script(server, db, "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
    port = free_port()
    cfg = write_config(tmp_path / "r.yaml", flow, source.url(db), target.url(db), tables,
                       batch="{max_rows: 500, max_delay_ms: 50}")
    cfg.write_text(cfg.read_text() + f"http: {{listen: '127.0.0.1:{port}'}}\n" + extra)
    return cfg, port, Replicator(cfg, tmp_path)


def metric_samples(port: int) -> dict[str, list[Any]]:
    text = get(port, "/metrics").text
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def test_status_metrics_pause_and_readiness_follow_a_live_run(pg_source: Any, sandbox_factory: Any,
                                                              fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    target = sandbox_factory.postgres(name="pg_status_target")
    cfg, port, rep = items_flow(pg_source, target, db, tmp_path, "st")

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
        # a paused flow applies nothing in a later run: run --once says so
        assert cli(cfg, "pause", "st").returncode == 0
        pg_script(pg_source, db, "INSERT INTO items VALUES (1003, 'held', 3)")
        out = cli(cfg, "run", "--once")
        assert out.returncode == 1 and "flow st is paused" in out.stderr, out.stdout + out.stderr
        assert (1003, "held", 3) not in target_rows()
        assert cli(cfg, "resume", "st").returncode == 0
        out = cli(cfg, "run", "--once")
        assert out.returncode == 0, out.stdout + out.stderr
        assert target_rows() == source_rows()
    finally:
        rep.cleanup()


def test_endpoint_off_loopback_needs_a_token(pg_source: Any, fresh_db_name: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "r.yaml", "tk", pg_source.url(fresh_db_name), pg_source.url(fresh_db_name + "_t"), ["items"])
    cfg.write_text(cfg.read_text() + "http: {listen: '0.0.0.0:9187'}\n")
    out = cli(cfg, "status")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "needs a token" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- webhooks


class Receiver:
    """A local HTTP receiver of webhook notifications (can start later than the replicator)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of ``kind`` notifications, each checked against its signature; a
        delivery id seen twice (a retry that did arrive) counts once."""
        out, seen = [], set()
        for headers, body in list(self.got):
            if headers["x-replicator-event"] != kind or headers["x-replicator-delivery"] in seen:
                continue
            seen.add(headers["x-replicator-delivery"])
            want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-replicator-signature"], want), "bad signature"
            out.append(json.loads(body))
        return out


SECRET = "whsec-test-3f9a"


def hooks_yaml(port: int, events: str) -> str:
    return (f"notifications:\n  webhooks:\n    - url: 'http://127.0.0.1:{port}/hook'\n"
            f"      events: {events}\n      secret: {SECRET}\n")


def test_dead_letter_webhooks_are_signed_and_reach_a_receiver_that_was_down(
        pg_source: Any, pg_target: Any, fresh_db_name: str, tmp_path: Path) -> None:
    db = fresh_db_name
    hook_port = free_port()
    cfg, port, rep = items_flow(pg_source, pg_target, db, tmp_path, "wh", on_target=True,
                                tables="      - source: items\n        validate: ['qty >= 0']\n",
                                extra=hooks_yaml(hook_port, "[dead_letter]"))
    receiver = Receiver(hook_port)  # not listening yet
    try:
        rep.start()
        wait_for("the flow to run", lambda: live_or_none(port, "wh") == "running", timeout=60)
        pg_script(pg_source, db, "INSERT INTO items VALUES (1, 'good', 5), (2, 'bad', -1), (3, 'good', 7)")
        wait_for("the good rows to land", lambda: [tuple(r) for r in pg_fetch(pg_target, db, QUERY)]
                 == [(1, "good", 5), (3, "good", 7)])
        wait_for("failed deliveries to show in status",
                 lambda: get(port, "/status.json").json()["webhooks"]["failed_attempts"] >= 2, timeout=30)
        hooks = get(port, "/status.json").json()["webhooks"]
        assert hooks["pending"] == 1 and hooks["delivered"] == 0 and "HTTP" not in str(hooks["last_error"])
        assert SECRET not in rep.log()
        # rows keep flowing while the notification waits
        pg_script(pg_source, db, "INSERT INTO items VALUES (4, 'later', 1)")
        wait_for("rows to keep flowing", lambda: (4, "later", 1) in [tuple(r) for r in pg_fetch(pg_target, db, QUERY)])
        receiver.start()
        wait_for("the dead letter notification", lambda: len(receiver.events("dead_letter")) == 1, timeout=90)
        (note,) = receiver.events("dead_letter")
        assert note["event"] == "dead_letter" and note["flow"] == "wh"
        assert note["source_table"] == "public.items" and note["key"] == {"id": 2}
        assert note["rule"] == "validate: qty >= 0" and note["row"]["qty"] == -1
        assert get(port, "/status.json").json()["webhooks"]["delivered"] == 1
        assert live(port, "wh")["dead_letters"] == 1
    finally:
        rep.cleanup()
        receiver.stop()


def live_or_none(port: int, flow: str) -> str | None:
    try:
        return str(live(port, flow)["state"])
    except (httpx.HTTPError, ValueError):
        return None


def test_conflict_webhook(mariadb: Any, pg_source: Any, fresh_db_name: str, tmp_path: Path) -> None:
    from test_twoway import Systems, both_flow, synced

    s = Systems(mariadb, pg_source, fresh_db_name, tmp_path)
    hook_port = free_port()
    receiver = Receiver(hook_port)
    receiver.start()
    cfg, rep = synced(s, both_flow("cw"), range(1, 4))
    cfg.write_text(cfg.read_text() + hooks_yaml(hook_port, "[conflict]"))
    try:
        # the same row changed on both sides while the replicator is down
        s.write("crm", ["UPDATE contacts SET name = 'crm-side' WHERE id = 2"])
        s.write("shop", ["UPDATE contacts SET name = 'shop-side' WHERE id = 2"])
        rep.start()
        wait_for("both sides to hold crm's row", lambda: s.rows("shop") == s.rows("crm")
                 and s.rows("crm")[1][1] == "crm-side", timeout=120)
        wait_for("the conflict notification", lambda: len(receiver.events("conflict")) == 1, timeout=60)
        (note,) = receiver.events("conflict")
        assert note["flow"] == "cw-reverse" and note["winner"] == "crm" and note["rule"] == "priority"
        assert note["key"] == {"id": 2} and note["incoming"]["name"] == "shop-side"
        assert note["current"]["name"] == "crm-side"
    finally:
        rep.cleanup()
        receiver.stop()


# --------------------------------------------------------------------------- the dashboard

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_dashboard_in_headless_chromium_shows_flows_and_updates(pg_source: Any, pg_target: Any,
                                                                fresh_db_name: str, tmp_path: Path) -> None:
    """The page at / in a real browser: it loads, lists the flow, and its counters move when
    rows flow -- without reloading. A screenshot goes to test-artifacts/dashboard.png."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    db = fresh_db_name
    cfg, port, rep = items_flow(pg_source, pg_target, db, tmp_path, "dash")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    browser = None
    try:
        rep.start()
        wait_for("the flow to run", lambda: live_or_none(port, "dash") == "running", timeout=60)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        browser.get(f"http://127.0.0.1:{port}/")
        assert browser.title == "replicator"

        def cell(name: str) -> str:
            return str(browser.find_element(By.CSS_SELECTOR, f'#flows tr[data-flow="dash"] td.{name}').text)

        wait_for("the page to list the flow", lambda: bool(browser.find_elements(By.CSS_SELECTOR, '#flows tr[data-flow="dash"]')),
                 timeout=30)
        assert cell("state") == "running" and cell("route") == "src → dst" and cell("inserts") == "0"
        wait_for("the ready badge", lambda: browser.find_element(By.ID, "ready").text == "ready", timeout=30)

        for t in range(5):
            pg_script(pg_source, db, "INSERT INTO items SELECT g, 'n', g FROM generate_series(%d, %d) g" % (t * 40 + 1, t * 40 + 40))
        pg_script(pg_source, db, "UPDATE items SET qty = 0 WHERE id <= 25")
        wait_for("the page to count the rows", lambda: cell("inserts") == "200" and cell("updates") == "25", timeout=60)
        assert cell("total") == "225" and cell("deletes") == "0" and cell("errors") == "0"
        wait_for("the lag chart to draw a line", lambda: bool(browser.find_elements(By.CSS_SELECTOR, "#chart polyline.lag-line")),
                 timeout=30)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert [tuple(r) for r in pg_fetch(pg_target, db, QUERY)] == [tuple(r) for r in pg_fetch(pg_source, db, QUERY)]
    finally:
        if browser is not None:
            browser.quit()
        rep.cleanup()
