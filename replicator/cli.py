"""The ``replicator`` command: a thin click layer over the library.

Exit codes: 0 ok; 1 a check/verify found a problem or a flow failed; 2 bad usage or config.
User errors print one line, never a traceback, and never a password.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from . import logging as rlog
from .config import Config, load_config
from .errors import ConfigError, ReplicatorError
from .urls import scrub

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int, secrets: list[str]) -> None:
    click.echo(f"replicator: {scrub(message, secrets)}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        secrets: list[str] = ctx.obj.get("secrets", []) if isinstance(ctx.obj, dict) else []
        try:
            return func(*args, **kwargs)
        except ReplicatorError as exc:
            _fail(f"error: {exc}", exc.exit_code, secrets)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # an unexpected bug: still one line unless asked for more
            if os.environ.get("REPLICATOR_DEBUG"):
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (set REPLICATOR_DEBUG=1 for the traceback)",
                1,
                secrets,
            )

    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> Config:
    obj: dict[str, Any] = ctx.obj
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj["config_path"])
        except ConfigError as exc:
            _fail(str(exc), 2, [])
        obj["secrets"] = obj["config"].secrets()
        rlog.setup(obj["log_format"] or obj["config"].log_format, obj["secrets"])
    config: Config = obj["config"]
    return config


@click.group()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), help="Config file (default: $REPLICATOR_CONFIG, else config/replicator.yaml).")
@click.option("--log-format", type=click.Choice(["auto", "human", "logfmt", "json"]), default=None, help="Log line format.")
@click.version_option(package_name="replicator")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str | None) -> None:
    """Change-data-capture replicator: keeps tables in sync across PostgreSQL and MySQL/MariaDB."""
    ctx.obj = {"config_path": config_path, "log_format": log_format}


@cli.command()
@click.pass_context
@handle_errors
def check(ctx: click.Context) -> None:
    """Connect to every system and verify every prerequisite; exit 1 if anything is missing."""
    from .checks import check_config

    config = _config(ctx)
    ok, problems = check_config(config)
    for line in ok:
        click.echo(f"ok       {line}")
    for p in problems:
        click.echo(scrub(f"PROBLEM  {p.where}: {p.what}\n         fix: {p.fix}", config.secrets()))
    if problems:
        click.echo(f"{len(problems)} problem(s) found.")
        sys.exit(1)
    click.echo("All checks passed.")


@cli.command()
@click.option("--flow", "flows", multiple=True, help="Run only this flow (repeatable).")
@click.option("--once", is_flag=True, help="Apply what the source had committed when started, then exit.")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Serve /metrics, /livez, /readyz, /status.json and the dashboard here (default: http.listen).")
@click.pass_context
@handle_errors
def run(ctx: click.Context, flows: tuple[str, ...], once: bool, listen: str | None) -> None:
    """Stream changes until SIGTERM/SIGINT (then commit what is complete and exit 0)."""
    from pydantic import ValidationError

    from .config import HttpConfig
    from .pipeline import run_flows

    config = _config(ctx)
    selected = [config.flow(name) for name in flows] if flows else list(config.flows)
    http = config.http
    if listen is not None:
        try:
            http = HttpConfig(**{**(http.model_dump() if http else {}), "listen": listen})
        except ValidationError as exc:
            raise ConfigError(f"--listen: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        failures = run_flows(config, selected, once=once, stop=stop, http=http)
    except OSError as exc:  # the endpoint's port
        raise ConfigError(f"cannot listen on {http.listen if http else '?'}: {exc.strerror}") from None
    if failures:
        for name, err in failures:
            click.echo(scrub(f"replicator: flow {name} failed: {err}", config.secrets()), err=True)
        sys.exit(2 if all(isinstance(err, ConfigError) for _n, err in failures) else 1)


@cli.command()
@click.option("--flow", "flow_name", default=None, help="Only this flow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, flow_name: str | None, as_json: bool) -> None:
    """Per flow: state, last sync, lag, changes applied, errors, conflicts, dead letters,
    batch times -- from the targets, and live from a running `run` (http endpoint)."""
    from .status import flow_status

    config = _config(ctx)
    doc = flow_status(config, [config.flow(flow_name)] if flow_name else list(config.flows))
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    rows = []
    for f in doc["flows"]:
        since = f["since_start"] or {}
        batch = f["batch_ms"] or {}
        rows.append({
            "flow": f["flow"], "route": f"{f['source']} -> {f['target']}",
            "state": f["state"] + (f" ({f['reason']})" if f["reason"] and f["state"] != "running" else ""),
            "last sync": f["last_sync"], "lag s": f["lag_seconds"],
            "lag pos": None if f["lag_position"] is None else f"{f['lag_position']} {f['lag_unit']}",
            "ins/upd/del since start": "/".join(str(since.get(k, "-")) for k in ("insert", "update", "delete")) if since else None,
            "total": f["changes_total"], "errors": f["errors"],
            "conflicts": f["conflicts_total"], "parked": f["conflicts_parked"], "dead letters": f["dead_letters_open"],
            "batch ms p50/p99": f"{batch.get('p50')}/{batch.get('p99')}" if batch else None,
        })
    _table(rows, title="replicator status" + ("" if doc["running"] else " (no run answering: target-side figures only)"))
    hooks = doc["webhooks"]
    if hooks:
        click.echo(f"webhooks: {hooks['delivered']} delivered, {hooks['pending']} pending,"
                   f" {hooks['failed_attempts']} failed attempts, {hooks['dropped']} dropped"
                   + (f"; last error: {hooks['last_error']}" if hooks["last_error"] else ""))


@cli.command()
@click.argument("flow_name")
@click.option("--reason", default="paused by an operator", show_default=True)
@click.pass_context
@handle_errors
def pause(ctx: click.Context, flow_name: str, reason: str) -> None:
    """Stop a flow where it is (a running one commits what it has, then waits); `resume` continues."""
    from .review import pause as run_pause

    config = _config(ctx)
    run_pause(config, config.flow(flow_name), reason)
    click.echo(f"flow {flow_name} paused: a running replicator stops within seconds; `replicator resume {flow_name}` continues")


@cli.group()
def checkpoint() -> None:
    """Inspect where each flow stands (and its history); rewind it."""


@checkpoint.command("show")
@click.option("--flow", "flow_name", default=None, help="Only this flow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--history", is_flag=True, help="The timeline: the flow's recent checkpoints and rewinds.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="With --history: rows per flow.")
@click.pass_context
@handle_errors
def checkpoint_show(ctx: click.Context, flow_name: str | None, as_json: bool, history: bool, limit: int) -> None:
    """Per flow: committed source position, when, changes applied, and the source's position now."""
    from .status import checkpoint_rows

    config = _config(ctx)
    flows = [config.flow(flow_name)] if flow_name else list(config.flows)
    if history:
        _show_history(config, flows, limit, as_json)
        return
    rows = checkpoint_rows(config, flows)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        click.echo(f"flow {r['flow']} ({r['source']} -> {r['target']})")
        if r["position"] is None:
            click.echo("  no checkpoint yet (the flow has not applied anything)")
        else:
            click.echo(f"  position          {r['position']}")
            click.echo(f"  source committed  {r['source_commit_time']}")
            click.echo(f"  checkpoint saved  {r['updated_at']}")
            click.echo(f"  changes applied   {r['changes_applied']} in {r['transactions_applied']} transactions")
        click.echo(f"  source now        {r['source_position']}")
        if r["lag_bytes"] is not None:
            click.echo(f"  lag               {r['lag_bytes']} bytes of WAL")
        for snap in r["snapshots"]:
            if snap["status"] == "done":
                what = f"copied {snap['rows_copied']} rows, streaming after {snap['position']}"
            elif snap["status"] == "copying":
                what = f"copying: {snap['rows_copied']} of about {snap['rows_estimated']} rows"
            else:
                what = "requested (the running flow will copy it)"
            click.echo(f"  snapshot          {snap['table']}: {what}")


# -- checkpoint history, rewind, rollback (replicator.history, .rewind, .rollback) -------------

def _show_history(config: Config, flows: list[Any], limit: int, as_json: bool) -> None:
    from dataclasses import asdict

    from .binding import open_sink
    from .history import History

    for flow in flows:
        sink = open_sink(config, flow)
        try:
            sink.ensure_state()
            rows = History(sink.conn, config.state_schema).timeline(flow.name, limit)
            sink.conn.commit()
        finally:
            sink.close()
        if as_json:
            click.echo(json.dumps([asdict(r) for r in rows], indent=2, default=str))
            continue
        click.echo(f"flow {flow.name}: {len(rows)} checkpoint(s), oldest first")
        _table([{"recorded": r.recorded_at, "position": r.position, "source committed": r.source_commit_time,
                 "changes": r.changes_applied, "event": r.event or ""} for r in rows])


def _to_point(text: str, engine: str) -> Any:
    """``--to``: a position in the source's text form, or a time (ISO, or ``10m``/``10m ago``)."""
    from .rewind import looks_like_position

    if looks_like_position(engine, text):
        return text.strip()
    try:
        return _since(text.strip().removesuffix("ago").strip())
    except ConfigError:
        raise ConfigError(f"--to {text!r}: give a source position (LSN 0/16B3748, GTID 0-1-123) or a time"
                          " (ISO 2026-01-31T12:00:00, or 10m / 2h ago)") from None


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError("not confirmed: add --yes to run this without a terminal")
    if not click.confirm(question, default=False):
        raise ReplicatorError("cancelled: nothing was changed")


@checkpoint.command("rewind")
@click.argument("flow_name")
@click.option("--to", "to", required=True, help="A source position (LSN / GTID) or a time (ISO, or 30m ago).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def checkpoint_rewind(ctx: click.Context, flow_name: str, to: str, yes: bool) -> None:
    """Move a stopped flow back to an earlier position; `run` then applies again from there."""
    from . import rewind as rw

    config = _config(ctx)
    flow = config.flow(flow_name)
    point_in = _to_point(to, config.systems[flow.source].engine)
    with rw.stopped(config, flow) as sink:
        current, point = rw.plan(config, flow, sink, point_in)
        if rw.compare(config.systems[flow.source].engine, point.position, current.position) == 0:
            click.echo(f"flow {flow.name} is already at {point.position}: nothing to rewind")
            return
        _confirm(f"Rewind flow {flow.name} from {current.position} to {point.position} ({point.how})?", yes)
        rw.rewind(config, flow, sink, current, point)
    click.echo(f"flow {flow.name} rewound from {current.position} to {point.position}; `replicator run` applies"
               " the source's changes since then again")


@cli.command()
@click.argument("flow_name")
@click.option("--to", "to", required=True, help="A source position (LSN / GTID) or a time (ISO, or 30m ago).")
@click.option("--then", "then", type=click.Choice(["pause", "rewind"]), default="pause", show_default=True,
              help="After the undo: pause the flow before its next change, or rewind it to the point.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def rollback(ctx: click.Context, flow_name: str, to: str, then: str, yes: bool) -> None:
    """Undo on the target what the flow applied after a point (from its audit trail), in one transaction."""
    from . import rewind as rw
    from . import rollback as rb

    config = _config(ctx)
    flow = config.flow(flow_name)
    point_in = _to_point(to, config.systems[flow.source].engine)
    with rw.stopped(config, flow) as sink:
        p = rb.plan(config, flow, sink, point_in)
        _confirm(f"Undo {len(p.undo)} change(s) flow {flow.name} applied after {p.point.position} ({p.point.how}),"
                 f" then {then} the flow?", yes)
        rb.run(config, flow, sink, p, then)
    after = (f"flow {flow.name} paused: `replicator resume {flow.name}` goes on with the source's next change"
             if then == "pause" else f"checkpoint at {p.point.position}: `replicator run` applies the changes again")
    click.echo(f"rolled back {len(p.undo)} change(s) applied after {p.point.position}; {after}")


@cli.command()
@click.option("--flow", "flows", multiple=True, help="Only this flow (repeatable; default: every flow with the tables).")
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable): a refresh; the flow keeps streaming the others.")
@click.option("--schema-only", is_flag=True, help="Print the target tables' DDL and create the missing ones; copy no rows.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64), help="Tables / key ranges copied in parallel.")
@click.pass_context
@handle_errors
def snapshot(ctx: click.Context, flows: tuple[str, ...], tables: tuple[str, ...], schema_only: bool, workers: int) -> None:
    """Copy the flows' tables as of one consistent instant; `run` continues from there.

    Missing target tables are created first. If `run` is active for the flow, the running
    process does the copy (asked through the target's state tables) and this command waits.
    """
    from .progress import progress_for
    from .schema import create_missing
    from .snapshot import has_table, select_tables, snapshot_flow

    config = _config(ctx)
    if flows:
        selected = [config.flow(name) for name in flows]
    elif tables:
        selected = [f for f in config.flows if any(has_table(config, f, t) for t in tables)]
        if not selected:
            _fail(f"no flow has the table(s) {', '.join(tables)}", 2, config.secrets())
    else:
        selected = list(config.flows)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    for flow in selected:
        chosen = select_tables(config, flow, [t for t in tables if has_table(config, flow, t)] if not flows else list(tables))
        for plan in create_missing(config, flow, chosen):
            if plan.exists:
                click.echo(f"-- {flow.name}: target table {plan.target} exists (left as it is)")
                continue
            click.echo(f"-- {flow.name}: created target table {plan.target} (from source {plan.source})")
            for note in plan.notes:
                click.echo(f"--   note: {note}")
            if plan.schema_sql:
                click.echo(plan.schema_sql + ";")
            click.echo(plan.sql + ";")
        if schema_only:
            continue
        if flow.mode == "poll":
            click.echo(f"{flow.name}: polls its source: its first poll copies the tables (`replicator sync-now"
                       f" {flow.name}` polls at once); nothing else to copy")
            continue
        outcomes = snapshot_flow(config, flow, chosen, progress=progress_for(flow.name), stop=stop, workers=workers)
        for o in outcomes:
            took = f" in {o.seconds:.1f} s ({o.rows / o.seconds:,.0f} rows/s)" if o.seconds else ""
            click.echo(f"{flow.name}: {o.table}: {o.rows} rows copied{took}; streaming takes over after {o.position}")


@cli.command()
@click.option("--rows", default=2000, show_default=True, help="Rows of sample data per table.")
@handle_errors
def demo(rows: int) -> None:
    """Start throwaway PostgreSQL and MariaDB servers with sample data and sync them live."""
    from .demo import run_demo

    rlog.setup("logfmt")
    run_demo(rows)


@cli.command()
@click.option("--flow", "flows", multiple=True, help="Verify only this flow (repeatable).")
@click.option("--table", "tables", multiple=True, help="Only this table, by source or target name (repeatable).")
@click.option("--chunk-size", default=10_000, show_default=True, type=click.IntRange(min=1), help="Rows per checksum chunk.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def verify(ctx: click.Context, flows: tuple[str, ...], tables: tuple[str, ...], chunk_size: int, as_json: bool) -> None:
    """Compare source and target after the mapping: row counts, chunk checksums, differing keys; exit 1 if not equal."""
    from .verify import format_report, reports_json, select_tables, verify_flow

    config = _config(ctx)
    selected = [config.flow(name) for name in flows] if flows else list(config.flows)
    if tables:
        unknown = [t for t in tables if not any(select_tables(config, f, [t]) for f in selected)]
        if unknown:
            raise ConfigError(f"no table {', '.join(map(repr, unknown))} in the flow(s) {', '.join(f.name for f in selected)}")
        selected = [f for f in selected if select_tables(config, f, tables)]
    reports = [r for f in selected for r in verify_flow(config, f, tables or None, chunk_size=chunk_size)]
    if as_json:
        click.echo(scrub(json.dumps(reports_json(reports), indent=2, default=str), config.secrets()))
    else:
        click.echo(scrub(format_report(reports), config.secrets()))
    if not all(r.equal for r in reports):
        sys.exit(1)


def _flow(config: Config, name: str | None) -> Any:
    if name is None:
        if len(config.flows) != 1:
            raise ConfigError("several flows are configured: name one with --flow")
        return config.flows[0]
    return config.flow(name)


def _table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Rows as a table on a terminal (rich), as plain aligned text otherwise."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    table = Table(title=title, show_lines=False)
    for col in rows[0]:
        table.add_column(str(col), overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _show(value: Any) -> str:
    from .statedb import dumps

    return "NULL" if value is None else (dumps(value) or "")


@cli.command()
@click.option("--flow", "flow_name", default=None, help="The flow (needed when several are configured).")
@click.option("--table", "table", required=True, help="The table, by source or target name.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 10_000), help="Source rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def preview(ctx: click.Context, flow_name: str | None, table: str, limit: int, as_json: bool) -> None:
    """Show source rows next to the rows the flow's mapping would write (reads only)."""
    from .review import preview as run_preview
    from .statedb import jsonable

    config = _config(ctx)
    rows = run_preview(config, _flow(config, flow_name), table, limit)
    if as_json:
        click.echo(json.dumps([{"source": jsonable(r.source), "target": jsonable(r.target), "outcome": r.outcome}
                               for r in rows], indent=2, ensure_ascii=False))
        return
    _table([{"source row": _show(r.source), "written row": _show(r.target) if r.target is not None else "-",
             "outcome": r.outcome} for r in rows], title=f"preview of {table} ({len(rows)} rows)")


@cli.group()
def conflicts() -> None:
    """Conflicts met by two-way flows (direction: both), and how they were decided."""


@conflicts.command("list")
@click.option("--flow", "flow_name", default=None, help="One flow (default: every two-way flow).")
@click.option("--status", default="all", show_default=True, type=click.Choice(["resolved", "parked", "taken", "all"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="Newest entries shown per flow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def conflicts_list(ctx: click.Context, flow_name: str | None, status: str, limit: int, as_json: bool) -> None:
    """Per flow: how many conflicts, then one line per conflict (key, winner, columns, action)."""
    from .review import conflicts_list as run_list
    from .statedb import jsonable

    config = _config(ctx)
    flows = [config.flow(flow_name)] if flow_name else [f for f in config.flows if f.two_way]
    if not flows:
        raise ConfigError("no flow has direction: both: there are no conflicts to list")
    out: list[dict[str, Any]] = []
    for flow in flows:
        total, found = run_list(config, flow, None if status == "all" else status, limit)
        if as_json:
            out.extend({k: jsonable(v) for k, v in e.items()} for e in found)
            continue
        click.echo(f"flow {flow.name}: {total} conflict(s)" + (f", the newest {len(found)} shown" if total > len(found) else ""))
        if found:
            _table([{"id": e["id"], "table": e["table"], "key": _show(e["key"]), "origin": e["origin"],
                     "winner": e["winner"] or "-", "columns": ", ".join(e["columns"] or []), "action": e["action"],
                     "status": e["status"], "detected": str(e["detected_at"])[:19]} for e in found])
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@conflicts.command("resolve")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--take", required=True, help="The system whose version wins (one of the flow's two).")
@click.option("--flow", "flow_name", default=None, help="The flow whose conflicts the ids are (see `conflicts list`).")
@click.pass_context
@handle_errors
def conflicts_resolve(ctx: click.Context, ids: tuple[int, ...], take: str, flow_name: str | None) -> None:
    """Decide parked conflicts (conflicts: manual): TAKE's current row is written to the other system."""
    from .review import conflicts_resolve as run_resolve

    config = _config(ctx)
    for r in run_resolve(config, _flow(config, flow_name), list(ids), take):
        click.echo(f"conflict {r.entry['id']} ({r.entry['table']} {_show(r.entry['key'])}): {r.outcome}")


@cli.group()
def dlq() -> None:
    """Dead letters: changes the mapping rejected (list, show, retry, discard)."""


@dlq.command("list")
@click.option("--flow", "flow_name", default=None, help="The flow (needed when several are configured).")
@click.option("--status", default="open", show_default=True, type=click.Choice(["open", "retried", "discarded", "all"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def dlq_list(ctx: click.Context, flow_name: str | None, status: str, limit: int, as_json: bool) -> None:
    """One line per dead letter: id, table, key, rule, reason."""
    from .review import dlq_list as run_list

    config = _config(ctx)
    found = run_list(config, _flow(config, flow_name), None if status == "all" else status, None, limit)
    if as_json:
        click.echo(json.dumps([_letter_json(d) for d in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no dead letters")
        return
    _table([{"id": d.id, "table": d.source_table, "key": _show(d.key), "op": d.op, "rule": d.rule,
             "reason": d.reason, "status": d.status} for d in found])


def _letter_json(d: Any) -> dict[str, Any]:
    from .statedb import jsonable

    return {"id": d.id, "flow": d.flow, "source_table": d.source_table, "target_table": d.target_table,
            "key": d.key, "op": d.op, "rule": d.rule, "reason": d.reason, "position": d.position,
            "commit_time": jsonable(d.commit_time), "row": d.row, "status": d.status,
            "created_at": jsonable(d.created_at), "updated_at": jsonable(d.updated_at)}


@dlq.command("show")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--flow", "flow_name", default=None, help="The flow (needed when several are configured).")
@click.pass_context
@handle_errors
def dlq_show(ctx: click.Context, ids: tuple[int, ...], flow_name: str | None) -> None:
    """Everything recorded about these dead letters (the row with sensitive columns removed)."""
    from .review import dlq_list as run_list

    config = _config(ctx)
    found = run_list(config, _flow(config, flow_name), None, list(ids))
    if not found:
        raise ConfigError(f"no dead letter with id {', '.join(map(str, ids))} in this flow")
    click.echo(json.dumps([_letter_json(d) for d in found], indent=2, ensure_ascii=False))


@dlq.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Retry every open dead letter of the flow.")
@click.option("--flow", "flow_name", default=None, help="The flow (needed when several are configured).")
@click.pass_context
@handle_errors
def dlq_retry(ctx: click.Context, ids: tuple[int, ...], everything: bool, flow_name: str | None) -> None:
    """Read each row's current version from the source and write it through the current mapping.
    Exit 1 if some are still rejected."""
    from .review import dlq_retry as run_retry

    if not ids and not everything:
        raise ConfigError("name the dead letters to retry (ids), or pass --all")
    config = _config(ctx)
    outcomes = run_retry(config, _flow(config, flow_name), list(ids))
    for o in outcomes:
        click.echo(f"{o.letter.id}: {o.letter.source_table} {_show(o.letter.key)}: {o.result}")
    click.echo(f"{sum(o.result.startswith(('written', 'deleted')) for o in outcomes)} of {len(outcomes)} applied")
    if any(not o.result.startswith(("written", "deleted")) for o in outcomes):
        sys.exit(1)


@dlq.command("discard")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Discard every open dead letter of the flow.")
@click.option("--flow", "flow_name", default=None, help="The flow (needed when several are configured).")
@click.pass_context
@handle_errors
def dlq_discard(ctx: click.Context, ids: tuple[int, ...], everything: bool, flow_name: str | None) -> None:
    """Mark dead letters as handled without writing them (they stay listed as discarded)."""
    from .review import dlq_discard as run_discard

    if not ids and not everything:
        raise ConfigError("name the dead letters to discard (ids), or pass --all")
    config = _config(ctx)
    n = run_discard(config, _flow(config, flow_name), list(ids))
    click.echo(f"{n} dead letter(s) discarded")


@cli.command()
@click.argument("flow_name")
@click.pass_context
@handle_errors
def resume(ctx: click.Context, flow_name: str) -> None:
    """Let a paused flow go on (paused by a change limit: the transaction that tripped it is applied)."""
    from .guards import ANY_TRANSACTION
    from .review import resume as run_resume

    config = _config(ctx)
    pause = run_resume(config, config.flow(flow_name))
    if pause is None:
        click.echo(f"flow {flow_name} is not paused")
        return
    if pause.position == ANY_TRANSACTION:  # `pause` or a rollback: no transaction was held yet
        click.echo(f"flow {flow_name} resumed: it goes on with the source's next change ({pause.reason})")
    else:
        click.echo(f"flow {flow_name} resumed: the transaction at {pause.position} ({pause.reason}) will be applied")


@cli.command()
@click.option("--flow", "flow_name", default=None, help="Only this flow.")
@click.option("--table", default=None, help="Only this table (source or target name, schema-qualified).")
@click.option("--key", default=None, help="Only this row: its key value, or col=value[,col=value].")
@click.option("--since", default=None, help="Only entries applied since: ISO time (2026-01-31T12:00) or a duration (90m, 2h, 7d).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="JSON lines output.")
@click.pass_context
@handle_errors
def audit(ctx: click.Context, flow_name: str | None, table: str | None, key: str | None, since: str | None,
          limit: int, as_json: bool) -> None:
    """The audit trail: applied operations with before/after values (newest last)."""
    from .audit import AuditTrail
    from .binding import open_sink

    config = _config(ctx)
    flows = [config.flow(flow_name)] if flow_name else [f for f in config.flows if f.audit is not None]
    if not flows:
        raise ConfigError("no flow has an audit trail: set `audit: true` on a flow")
    entries = []
    for flow in flows:
        sink = open_sink(config, flow)
        try:
            trail = AuditTrail(sink.conn, config.state_schema)
            trail.ensure()
            entries += trail.query(flow.name, table, key, _since(since), limit)
            sink.conn.commit()
        finally:
            sink.close()
    if as_json:
        for e in entries:
            click.echo(json.dumps(e.as_json(), ensure_ascii=False, sort_keys=True))
        return
    if not entries:
        click.echo("no audit entries")
        return
    _table([{"id": e.id, "applied": e.applied_at, "flow": e.flow, "table": e.target_table, "op": e.op,
             "key": _show(e.key), "before": _show(e.before), "after": _show(e.after), "position": e.position}
            for e in entries])


def _since(text: str | None) -> Any:
    from datetime import datetime, timedelta, timezone

    if text is None:
        return None
    from .config import parse_duration

    try:
        return datetime.now(timezone.utc) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass  # not a duration: a time
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: give an ISO time (2026-01-31T12:00) or a duration (90m, 2h, 7d)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@cli.command("sync-now")
@click.argument("flow_name")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait for a running flow to take the request.")
@click.pass_context
@handle_errors
def sync_now(ctx: click.Context, flow_name: str, timeout: float) -> None:
    """Sync a polled or scheduled flow now: the running `run` polls (or runs the batch) at once,
    asked through the target's state tables; if none runs, once here like `run --once`."""
    import time

    from . import syncnow
    from .binding import open_sink
    from .pipeline import run_flows
    from .snapstate import FlowLock

    config = _config(ctx)
    flow = config.flow(flow_name)
    if flow.mode != "poll" and flow.schedule is None:
        click.echo(f"flow {flow_name} reads the source's log: it applies changes as they commit while"
                   " `run` is active; nothing to do")
        return
    # a scheduled flow's `run` holds the scheduler's lock between its runs
    lock = FlowLock(config.systems[flow.target].url, f"{flow.name}:schedule" if flow.schedule else flow.name)
    if lock.acquire():
        lock.release()  # no `run` holds the flow: sync it here, once
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        failures = run_flows(config, [flow], once=True, stop=stop)
        if failures:
            for name, exc in failures:
                click.echo(scrub(f"replicator: flow {name} failed: {exc}", config.secrets()), err=True)
            sys.exit(1)
        click.echo(f"flow {flow_name} synced (no `run` was active: ran once here)")
        return
    sink = open_sink(config, flow)
    try:
        syncnow.request(sink.conn, config.state_schema, flow.name)
        deadline = time.monotonic() + timeout
        while syncnow.pending(sink.conn, config.state_schema, flow.name):
            if time.monotonic() > deadline:
                syncnow.take(sink.conn, config.state_schema, flow.name)  # withdrawn
                _fail(f"the running flow {flow_name} did not take the request within {timeout:g} s"
                      " (is it stuck on an error? see its log)", 1, config.secrets())
            time.sleep(0.2)
    finally:
        sink.close()
    click.echo(f"flow {flow_name}: the running `run` is syncing now")


def main() -> None:
    cli(prog_name="replicator")


if __name__ == "__main__":
    main()
