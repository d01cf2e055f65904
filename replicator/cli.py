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
@click.pass_context
@handle_errors
def run(ctx: click.Context, flows: tuple[str, ...], once: bool) -> None:
    """Stream changes until SIGTERM/SIGINT (then commit what is complete and exit 0)."""
    from .pipeline import run_flows

    config = _config(ctx)
    selected = [config.flow(name) for name in flows] if flows else list(config.flows)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failures = run_flows(config, selected, once=once, stop=stop)
    if failures:
        for name, exc in failures:
            click.echo(scrub(f"replicator: flow {name} failed: {exc}", config.secrets()), err=True)
        sys.exit(1)


@cli.group()
def checkpoint() -> None:
    """Inspect where each flow stands."""


@checkpoint.command("show")
@click.option("--flow", "flow_name", default=None, help="Only this flow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def checkpoint_show(ctx: click.Context, flow_name: str | None, as_json: bool) -> None:
    """Per flow: committed source position, when, changes applied, and the source's position now."""
    from .status import checkpoint_rows

    config = _config(ctx)
    flows = [config.flow(flow_name)] if flow_name else list(config.flows)
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


def main() -> None:
    cli(prog_name="replicator")


if __name__ == "__main__":
    main()
