"""A flow's two ends: opening its source and sink, binding its tables, its first checkpoint.

Streaming and snapshots both start here, so both refuse the same misfits (a missing table, a
mapped column that does not exist, a target key not fed by the source) before writing
anything, with the same messages, and both record the flow's start position the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Config, FlowConfig, TableConfig
from .errors import ConfigError, SchemaError
from .mapping import TableInfo, TableMapping
from .mysql.passthrough import mysql_passthrough_key, pg_passthrough_key
from .pg.passthrough import passthrough_key
from .protocols import Checkpoint, Sink, Source
from .transform import MappingError, RowTransform
if TYPE_CHECKING:
    from .pg.rawtransform import RawTransform
    from .poll.source import PollSource
from .transform import build as build_transform


def open_source(config: Config, flow: FlowConfig) -> Source:
    system = config.systems[flow.source]
    if flow.mode == "poll":
        return open_poll_source(config, flow)
    if system.engine == "postgresql":
        from .pg.source import PostgresSource

        return PostgresSource(system.url, flow.slot_name, flow.publication_name, hold_back=flow.rewind.window)
    from .mysql.source import MySQLSource

    return MySQLSource(system.url, flow.name, server_id=flow.server_id, zero_dates=flow.zero_dates)


def open_poll_source(config: Config, flow: FlowConfig) -> PollSource:
    """A ``mode: poll`` flow's source (replicator.poll.source); it learns the tables' keys from
    their bound mappings (:meth:`PollSource.bind`)."""
    from .poll.source import PolledTable, PollSettings, PollSource

    p = flow.poll_settings
    tables = [
        PolledTable(config.source_table(flow, t), config.target_table(flow, t), flow.poll_column(t) or "")
        for t in flow.tables
    ]
    return PollSource(
        config.systems[flow.source].url, config.systems[flow.source].engine, tables, flow=flow.name,
        target_url=config.systems[flow.target].url, target_engine=config.systems[flow.target].engine,
        state_schema=config.state_schema,
        settings=PollSettings(p.interval_s, p.deletes_every_s, p.overlap_s, p.page_rows),
        snapshot=flow.snapshot, zero_dates=flow.zero_dates,
    )


def open_sink(config: Config, flow: FlowConfig) -> Sink:
    system = config.systems[flow.target]
    if system.engine == "postgresql":
        from .pg.writer import PostgresSink

        return PostgresSink(system.url, config.state_schema)
    from .mysql.writer import open_mysql_sink

    return open_mysql_sink(system.url, config.state_schema)


def ensure_checkpoint(flow: FlowConfig, source: Source, sink: Sink) -> Checkpoint:
    """The flow's committed checkpoint; for a new flow, where it starts, recorded first, so
    that changes made while it is down (or being snapshotted) are never skipped."""
    checkpoint = sink.read_checkpoint(flow.name)
    if checkpoint is None:
        first = source.initial_position()
        sink.commit(Checkpoint(flow.name, source.format_position(first), None, 0, 0))
        checkpoint = sink.read_checkpoint(flow.name)
        assert checkpoint is not None
    return checkpoint


@dataclass
class BoundTable:
    config: TableConfig
    mapping: TableMapping
    source: TableInfo
    target: TableInfo
    passthrough: tuple[str, ...] | None  # rows as text (replicator.pg/mysql.passthrough): the key's source columns
    same_types: bool = False  # same engine, every column of the very same type, no transform
    transform: RowTransform | None = None  # the table's value rules, filter and checks, if any
    raw: RawTransform | None = None  # the transform on passthrough text (PostgreSQL -> PostgreSQL)

    @property
    def name(self) -> str:
        return str(self.mapping.source)


def bind_tables(
    config: Config, flow: FlowConfig, source: Source, sink: Sink, tables: list[TableConfig] | None = None
) -> list[BoundTable]:
    """Describe every table on both sides and bind its mapping; raises SchemaError."""
    same_engine = config.systems[flow.source].engine == config.systems[flow.target].engine
    same_engine_pg = same_engine and config.systems[flow.source].engine == "postgresql"
    mysql_to_pg = config.systems[flow.source].engine == "mysql" and config.systems[flow.target].engine == "postgresql"
    bound: list[BoundTable] = []
    for table in tables if tables is not None else flow.tables:
        src = config.source_table(flow, table)
        dst = config.target_table(flow, table)
        src_info = source.describe(src)
        if src_info is None:
            raise SchemaError(f"flow {flow.name}: source table {src} does not exist")
        dst_info = sink.describe(dst)
        if dst_info is None:
            raise SchemaError(
                f"flow {flow.name}: target table {dst} does not exist: create it first"
                " (or run `replicator snapshot`, which creates missing target tables)"
            )
        if table.plain:
            mapping = TableMapping(src, dst, table.renames)
            mapping.bind(src_info, dst_info)
            raw = flow.audit is None and not flow.two_way  # two-way needs values
            key: tuple[str, ...] | None = None
            if raw and same_engine_pg:
                key = passthrough_key(table, mapping, src_info, dst_info)
            elif raw and mysql_to_pg:
                key = pg_passthrough_key(table, mapping, src_info, dst_info)
            elif raw and same_engine:  # MySQL -> MySQL
                key = mysql_passthrough_key(table, mapping, src_info, dst_info)
            same = same_engine and _same_types(table, mapping, src_info, dst_info)
            bound.append(BoundTable(table, mapping, src_info, dst_info, key, same))
            continue
        try:
            rt = build_transform(table, src_info, dst_info)
        except MappingError as exc:
            where = f"flows[{config.flows.index(flow)}].tables[{flow.tables.index(table)}]"
            raise ConfigError(f"config error at {where}.{exc.path}: {exc.message}") from None
        raw_plan: RawTransform | None = None
        if same_engine_pg and flow.audit is None and not flow.two_way:
            from .pg.rawtransform import plan, raw_key

            raw_plan = plan(table, rt, src_info, dst_info)
        key = raw_key(rt) if raw_plan is not None else None
        bound.append(BoundTable(table, rt.mapping, src_info, dst_info, key, False, rt, raw_plan))
    return bound


def _same_types(table: TableConfig, mapping: TableMapping, source: TableInfo, target: TableInfo) -> bool:
    """Every source column lands in a target column of the very same declared type."""
    if not table.plain:
        return False
    types = {c.name: c.type for c in target.columns}
    return all(types.get(mapping.target_name(c.name)) == c.type for c in source.columns)
