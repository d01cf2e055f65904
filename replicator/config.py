"""The configuration file: YAML with ``${VAR}`` / ``${VAR:-default}``, validated by pydantic.

Loading is three steps, each with errors that name the key path (``flows[0].tables[1].source``):
parse the YAML, substitute environment variables in string values (never in keys, and after
parsing, so a variable's content cannot change the document's structure), then validate the
models. Cross-references (a flow naming an unknown system) are checked here too, so that
``run`` never starts with a config that cannot work.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from . import urls
from .errors import ConfigError
from .records import TableId

if TYPE_CHECKING:
    from .schedule import Schedule

DEFAULT_CONFIG_PATH = Path("config/replicator.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemConfig(_Model):
    url: str
    # Conflicts between two-way synced systems: the lower number wins (unset: after all others).
    priority: int | None = Field(default=None, ge=0)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        urls.parse(value)  # raises ValueError with a readable reason
        return value

    @property
    def engine(self) -> str:
        return urls.parse(self.url).engine

    @property
    def password(self) -> str | None:
        return urls.parse(self.url).password


class CurrencyConfig(_Model):
    """Amounts: integer minor units <-> decimal, or decimal <-> locale text ("1.234,56 €")."""

    minor_units: int | None = Field(default=None, ge=0, le=18)
    locale: str | None = None
    code: str | None = None  # ISO 4217, e.g. EUR; the symbol the text carries
    nbsp: bool = False  # write the locale's no-break spaces ("1.234,56\u00a0€"); plain spaces by default

    @model_validator(mode="after")
    def _one_kind(self) -> CurrencyConfig:
        if (self.minor_units is None) == (self.locale is None):
            raise ValueError("give either minor_units (e.g. 2) or locale (e.g. de_DE, with code: EUR)")
        if self.code is not None and self.locale is None:
            raise ValueError("code goes with locale (text amounts); minor_units needs no code")
        return self


class ColumnRule(_Model):
    """What happens to one source column on its way to the target (see README, "Mapping")."""

    name: str | None = Field(default=None, min_length=1)  # the target column
    exclude: bool = False  # never leaves the source
    mask: Literal["sha256", "md5", "redact"] | None = None
    mask_key: str | None = None  # with sha256/md5: a keyed hash (HMAC), not guessable by brute force
    expr: str | None = Field(default=None, min_length=1)  # computed from the source row (SQL)
    map: dict[Any, Any] | None = None  # value -> value
    default: Any = None  # with map: for values the map does not know
    reverse_default: Any = None  # with map, in the reverse direction
    format: str | None = Field(default=None, min_length=1)  # date/time <-> text (strftime)
    timezone: str | None = None  # with format: time zone of the text
    currency: CurrencyConfig | None = None
    one_way: bool = False  # left out of the reverse direction
    owner: str | None = None  # two-way sync: this system's value wins the column's conflicts

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        given = self.model_fields_set
        if self.exclude and given - {"exclude"}:
            raise ValueError("an excluded column takes no other option")
        if {"default", "reverse_default"} & given and self.map is None:
            raise ValueError("default / reverse_default go with map")
        if self.timezone is not None and self.format is None:
            raise ValueError("timezone goes with format")
        if self.mask_key is not None and self.mask not in ("sha256", "md5"):
            raise ValueError("mask_key goes with mask: sha256 or md5")
        if self.format is not None and self.currency is not None:
            raise ValueError("give format or currency, not both")
        if self.map is not None and not self.map:
            raise ValueError("map is empty")
        return self

    @property
    def transforms(self) -> bool:
        """The value changes on the way (beyond its column's name)."""
        return bool(self.model_fields_set - {"name", "one_way", "owner"})


class TableConfig(_Model):
    source: str = Field(min_length=1)
    target: str | None = None
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    filter: str | None = Field(default=None, min_length=1)  # SQL over the source row
    defaults: dict[str, Any] = Field(default_factory=dict)  # target columns without a source
    validate_: list[str] = Field(default_factory=list, alias="validate")  # SQL over the written row
    poll_column: str | None = Field(default=None, min_length=1)  # mode: poll: this table's column
    # Set when a ``direction: reverse`` flow was turned around at load time: the rules above
    # were declared for the other direction and run inverted (see replicator.transform).
    _reversed: bool = PrivateAttr(default=False)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def reversed(self) -> bool:
        return self._reversed

    @field_validator("columns", mode="before")
    @classmethod
    def _renames(cls, value: Any) -> Any:
        # `old: new` is short for `old: {name: new}` (one model, so an error names the rule's key)
        if isinstance(value, dict):
            return {k: {"name": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("validate_", mode="before")
    @classmethod
    def _one_rule(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def plain(self) -> bool:
        """No option beyond names and renames: no value is transformed on the way."""
        return (
            self.model_fields_set <= {"source", "target", "columns", "poll_column"}
            and all(not (r.transforms or r.one_way) for r in self.columns.values())
        )

    @property
    def renames(self) -> dict[str, str]:
        """Source column -> target column, for columns that are not excluded (in a reversed
        table, the declared renames turned around)."""
        pairs = {col: rule.name for col, rule in self.columns.items() if not rule.exclude and rule.name is not None}
        return {new: old for old, new in pairs.items()} if self.reversed else pairs

    @property
    def excluded(self) -> frozenset[str]:
        """Source columns that never leave the source."""
        return frozenset(c for c, r in self.columns.items() if r.exclude)

    def rule(self, column: str) -> ColumnRule | None:
        return self.columns.get(column)


class BatchConfig(_Model):
    max_rows: int = Field(default=20000, ge=1)
    max_delay_ms: int = Field(default=500, ge=0)


class ScheduleConfig(_Model):
    """Batch mode (see replicator.schedule): sync at set times, netting the backlog per key."""

    every: float | None = None  # seconds; written 30s, 15m, 2h, 1d, 1h30m or a number of seconds
    at: str | None = None  # "HH:MM" daily, wall time in `timezone`
    cron: str | None = None  # "0 2 * * *", in `timezone`
    timezone: str = "UTC"
    # A run nets up to this many source changes in one target transaction (the memory bound);
    # a larger backlog takes several, each exact.
    max_rows: int = Field(default=200_000, ge=1)

    @field_validator("every", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        from .schedule import parse_every

        return None if value is None else parse_every(value)

    @field_validator("at", mode="before")
    @classmethod
    def _time_of_day(cls, value: Any) -> Any:
        from .schedule import parse_at

        if value is not None:
            parse_at(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from .schedule import Cron

        if value is not None:
            Cron.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from .schedule import parse_timezone

        parse_timezone(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleConfig:
        given = [k for k in ("every", "at", "cron") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give one of every (e.g. 15m), at (e.g. \"02:00\") or cron (e.g. \"0 2 * * *\")"
                             + (f", not {' and '.join(given)}" if given else ""))
        if self.every is not None and "timezone" in self.model_fields_set:
            raise ValueError("timezone goes with at or cron")
        return self

    def plan(self) -> Schedule:
        from .schedule import Cron, Schedule, parse_at, parse_timezone

        tz = parse_timezone(self.timezone)
        if self.every is not None:
            return Schedule(every=self.every, text=f"every {self.every:g}s")
        if self.at is not None:
            return Schedule.daily(parse_at(self.at), tz, f"at {self.at} {self.timezone}")
        assert self.cron is not None
        return Schedule(cron=Cron.parse(self.cron), tz=tz, text=f"cron {self.cron!r} {self.timezone}")


class LimitsConfig(_Model):
    """Guards on the volume of changes (see replicator.guards). Counted in source time."""

    max_rows_per_transaction: int | None = Field(default=None, ge=1)
    max_changes_per_minute: int | None = Field(default=None, ge=1)
    max_changes_per_key_per_minute: int | None = Field(default=None, ge=1)
    action: Literal["pause", "alert"] = "pause"


class AuditConfig(_Model):
    enabled: bool = True
    retention_days: float = Field(default=30, gt=0)
    file: str | None = None  # also append JSON lines here


EventName = Literal["conflict", "dead_letter", "paused", "failed", "lag", "snapshot_finished"]
_EVENTS: tuple[EventName, ...] = ("conflict", "dead_letter", "paused", "failed", "lag", "snapshot_finished")


class WebhookConfig(_Model):
    """A URL that gets JSON notifications (see replicator.notify)."""

    url: str
    events: list[EventName] = Field(default_factory=lambda: list(_EVENTS), min_length=1)
    secret: str | None = None  # HMAC-SHA256 key of the X-Replicator-Signature header
    timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("a webhook url starts with http:// or https://")
        return value

    @property
    def name(self) -> str:
        """The URL without credentials, query or path: safe to log."""
        return re.sub(r"^(https?://)(?:[^@/]*@)?([^/?#]+).*$", r"\1\2", self.url)


class NotificationsConfig(_Model):
    webhooks: list[WebhookConfig] = []
    lag_threshold_s: float = Field(default=300.0, gt=0)  # the "lag" event: once per crossing


class HttpConfig(_Model):
    """The endpoint of ``run``: /metrics, /livez, /readyz, /status.json and the dashboard."""

    listen: str = "127.0.0.1:9187"
    token: str | None = None  # bearer token; required unless listening on a loopback address
    ready_max_lag_s: float = Field(default=60.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("listen is HOST:PORT, e.g. 127.0.0.1:9187")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if not self.loopback and not self.token:
            raise ValueError(f"listening on {self.host} needs a token (bearer) -- or listen on 127.0.0.1")
        return self


class PollConfig(_Model):
    """``mode: poll``: read the tables every ``interval_s`` seconds by a column that changes with
    every write (see replicator.poll.source)."""

    column: str | None = Field(default=None, min_length=1)  # e.g. updated_at (tables[].poll_column overrides)
    interval_s: float = Field(default=5.0, gt=0)
    deletes_every_s: float = Field(default=60.0, ge=0)  # compare keys with the target (0: every round)
    overlap_s: float = Field(default=10.0, ge=0)  # re-read this much below the watermark (time columns)
    page_rows: int = Field(default=10_000, ge=1)  # rows per read (one source transaction each)


class RewindConfig(_Model):
    """How far back a flow can be rewound (see replicator.rewind).

    ``window``: a PostgreSQL source is acknowledged only for positions applied longer ago than
    this, so its slot keeps that much WAL and a rewind (or rollback then rewind) within it is
    possible; 0 acknowledges at once. MySQL/MariaDB keep binlogs by their own retention.
    ``history_days``: how long the checkpoint history is kept.
    """

    window: float = 600.0  # seconds; YAML also takes "30m", "1h", "2d"
    history_days: float = Field(default=7, gt=0)

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("window")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``90s``, ``30m``, ``1h``, ``2d`` or ``1h30m`` (raises
    ValueError). The one duration syntax of the config and the command line."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?\s*[smhd]\s*)+", t):
        raise ValueError(f"not a duration: {text!r} (seconds, or like 30s, 15m, 1h30m, 2d)")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", t)))


class FlowConfig(_Model):
    name: str
    source: str
    target: str
    tables: list[TableConfig] = Field(min_length=1)
    batch: BatchConfig = BatchConfig()
    slot: str | None = None
    publication: str | None = None
    server_id: int | None = Field(default=None, ge=1, le=4294967295)
    zero_dates: Literal["error", "null"] = "error"
    snapshot: Literal["initial", "never"] = "initial"
    direction: Literal["one-way", "reverse", "both"] = "one-way"
    conflicts: Literal["priority", "last_writer_wins", "manual"] = "priority"
    clock_skew_ms: int = Field(default=0, ge=0)  # last_writer_wins: closer commit times tie
    limits: LimitsConfig | None = None
    audit: AuditConfig | None = None
    schedule: ScheduleConfig | None = None  # batch mode: sync at these times (replicator.schedule)
    mode: Literal["log", "poll"] = "log"  # poll: no log access, tables read by a column (see `poll`)
    poll: PollConfig | None = None
    rewind: RewindConfig = RewindConfig()  # checkpoint history and rewind window

    @field_validator("audit", mode="before")
    @classmethod
    def _audit_flag(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False or isinstance(value, dict) and value.get("enabled") is False:
            return None
        return value

    @field_validator("zero_dates", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        # `zero_dates: null` (as the error message advises) is YAML's null: it means "null".
        return "null" if value is None else value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _FLOW_NAME.match(value):
            raise ValueError(
                "a flow name is 1-40 letters, digits, '-' or '_', starting with a letter or digit"
            )
        return value

    @property
    def two_way(self) -> bool:
        """One half of a ``direction: both`` flow (after loading, both halves say so)."""
        return self.direction == "both"

    @property
    def poll_settings(self) -> PollConfig:
        return self.poll or PollConfig()

    def poll_column(self, table: TableConfig) -> str | None:
        """The column a polled table is read by."""
        return table.poll_column or self.poll_settings.column

    @property
    def slot_name(self) -> str:
        return self.slot or "replicator_" + self.name.lower().replace("-", "_")

    @property
    def publication_name(self) -> str:
        return self.publication or "replicator_" + self.name.lower().replace("-", "_")


class Config(_Model):
    systems: dict[str, SystemConfig] = Field(min_length=1)
    flows: list[FlowConfig] = Field(min_length=1)
    state_schema: str = "_replicator"
    log_format: Literal["auto", "human", "logfmt", "json"] = "auto"
    http: HttpConfig | None = None  # off unless configured (or `run --listen`)
    notifications: NotificationsConfig = NotificationsConfig()

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        seen: set[str] = set()
        for i, flow in enumerate(self.flows):
            if flow.name in seen:
                raise _PathError(f"flows[{i}].name", f"duplicate flow name {flow.name!r}")
            seen.add(flow.name)
            for key in ("source", "target"):
                name = getattr(flow, key)
                if name not in self.systems:
                    known = ", ".join(sorted(self.systems))
                    raise _PathError(
                        f"flows[{i}].{key}", f"unknown system {name!r} (known: {known})"
                    )
            if flow.source == flow.target:
                raise _PathError(f"flows[{i}].target", "source and target are the same system")
            if flow.schedule is not None and flow.direction == "both":
                raise _PathError(f"flows[{i}].schedule", "a two-way flow (direction: both) cannot be scheduled:"
                                 " its conflicts are decided against each side's current rows as changes"
                                 " arrive: run it continuously")
            if flow.poll is not None and flow.mode != "poll":
                raise _PathError(f"flows[{i}].poll", "poll options go with mode: poll")
            if flow.mode == "poll" and flow.direction == "both":
                raise _PathError(f"flows[{i}].mode", "a two-way flow reads both logs (its loop guard needs them):"
                                 " mode: poll is one-way only")
            targets: set[str] = set()
            for j, table in enumerate(flow.tables):
                src = self.source_table(flow, table)
                if str(src) in targets:
                    raise _PathError(f"flows[{i}].tables[{j}].source", f"{src} is listed twice")
                targets.add(str(src))
                if table.poll_column is not None and flow.mode != "poll":
                    raise _PathError(f"flows[{i}].tables[{j}].poll_column", "poll_column goes with mode: poll")
                if flow.mode == "poll" and flow.poll_column(table) is None:
                    raise _PathError(f"flows[{i}].poll.column", f"a poll flow needs the column to read {table.source}"
                                     " by (e.g. updated_at): set poll.column, or tables[].poll_column")
                for col, rule in table.columns.items():
                    if rule.owner is not None and rule.owner not in self.systems:
                        known = ", ".join(sorted(self.systems))
                        raise _PathError(f"flows[{i}].tables[{j}].columns.{col}.owner",
                                         f"unknown system {rule.owner!r} (known: {known})")
        for i, flow in enumerate(self.flows):
            back = [f.name for f in self.flows if f.source == flow.target and f.target == flow.source]
            if flow.mode == "poll" and back:
                raise _PathError(f"flows[{i}].mode", f"flow {back[0]} writes back into {flow.source}, and a poll"
                                 " cannot tell its rows from the source's own (there is no log to carry the"
                                 " loop guard's tags): they would be sent back; poll one way only")
        _no_loops(self.flows)
        return self

    def flow(self, name: str) -> FlowConfig:
        for flow in self.flows:
            if flow.name == name:
                return flow
        known = ", ".join(f.name for f in self.flows)
        raise ConfigError(f"no flow named {name!r} (flows: {known})")

    def default_schema(self, system: str) -> str:
        parsed = urls.parse(self.systems[system].url)
        return "public" if parsed.engine == "postgresql" else parsed.database

    def source_table(self, flow: FlowConfig, table: TableConfig) -> TableId:
        return split_table_name(table.source, self.default_schema(flow.source))

    def target_table(self, flow: FlowConfig, table: TableConfig) -> TableId:
        name = table.target or split_table_name(table.source, "").name
        return split_table_name(name, self.default_schema(flow.target))

    def table_names(self, flow: FlowConfig, table: TableConfig) -> set[str]:
        """What designates ``table`` on the command line: its source or target, as written in
        the config, schema-qualified, or bare."""
        src, dst = self.source_table(flow, table), self.target_table(flow, table)
        return {table.source, table.target or "", str(src), str(dst), src.name, dst.name} - {""}

    def secrets(self) -> list[str]:
        """What output must never show: passwords, and the keys of keyed masks."""
        keys = [r.mask_key for f in self.flows for t in f.tables for r in t.columns.values() if r.mask_key]
        hooks = [h.secret for h in self.notifications.webhooks if h.secret]
        token = [self.http.token] if self.http is not None and self.http.token else []
        return [s.password for s in self.systems.values() if s.password] + keys + hooks + token


def _no_loops(flows: list[FlowConfig]) -> None:
    """Systems linked by flows must form a tree (two-way pairs count as one link): around a
    loop of three or more systems a change would arrive twice at each of them, once each way.
    Chains (A -> B -> C) and hubs (A, B, C <-> a central store) are trees."""
    parent: dict[str, str] = {}

    def root(s: str) -> str:
        while parent.get(s, s) != s:
            s = parent[s]
        return s

    links: set[frozenset[str]] = set()
    for i, flow in enumerate(flows):
        link = frozenset((flow.source, flow.target))
        if link in links:
            continue
        links.add(link)
        a, b = root(flow.source), root(flow.target)
        if a == b:
            raise _PathError(
                f"flows[{i}]",
                f"flows {flow.source} -> {flow.target} close a loop of systems: a change would reach"
                " some system twice (link the systems as a chain or through one hub)",
            )
        parent[a] = b


class _PathError(ValueError):
    """A semantic error at a precise key path (raised inside model validation)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def split_table_name(name: str, default_schema: str) -> TableId:
    schema, dot, table = name.rpartition(".")
    return TableId(schema if dot else default_schema, table)


def _interpolate(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ConfigError(
                f"config error at {path or '<root>'}: environment variable {var} is not set"
                " (set it, or write ${" + var + ":-default})"
            )

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path or "<root>"


def _secrets_in(raw: Any) -> list[str]:
    found: list[str] = []
    if isinstance(raw, dict):
        for v in raw.values():
            found += _secrets_in(v)
    elif isinstance(raw, list):
        for v in raw:
            found += _secrets_in(v)
    elif isinstance(raw, str) and "://" in raw:
        try:
            pw = urls.parse(raw).password
        except ValueError:
            pw = None
        if pw:
            found.append(pw)
    return found


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the file must be a YAML mapping with 'systems' and 'flows'")
    raw = _interpolate(raw, "")
    secrets = _secrets_in(raw)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _PathError):
            path, msg = ctx_error.path, ctx_error.message
        else:
            path = _loc_to_path(tuple(err["loc"]))
            msg = _describe(err)
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(urls.scrub(f"{source}: config error at {path}: {msg}{more}", secrets)) from None
    return _checked(config, source, secrets)


def _checked(config: Config, source: str, secrets: list[str]) -> Config:
    """Check every table's mapping as far as it can be without a database (formats, SQL
    syntax, inverting), and turn ``direction: reverse`` flows around: they read the flow's
    target system and write its source system, with the declared rules inverted."""
    from .transform import MappingError, check_table

    flows: list[FlowConfig] = []
    for i, flow in enumerate(config.flows):
        halves = [(flow, False)]
        if flow.direction == "reverse":
            halves = [(flow, True)]
        elif flow.direction == "both":  # one declaration, two flows: the second one turned around
            if flow.conflicts == "last_writer_wins" and {config.systems[flow.source].engine,
                                                          config.systems[flow.target].engine} == {"mysql"}:
                raise ConfigError(f"{source}: config error at flows[{i}].conflicts: last_writer_wins needs a"
                                  " PostgreSQL system on one side (MySQL keeps no commit time per row; between"
                                  " two MySQL systems use priority or manual)")
            # No copy at start: a copy empties its target table first, and the flow back would
            # replay that as a truncate of its own target (copied rows are not tagged).
            if flow.snapshot == "initial" and "snapshot" in flow.model_fields_set:
                raise ConfigError(f"{source}: config error at flows[{i}].snapshot: a two-way flow starts from equal"
                                  " tables (copy them first with a one-way flow or `replicator snapshot`,"
                                  " before the first `run`): leave snapshot out or set it to never")
            flow = flow.model_copy(update={"snapshot": "never"})
            back = flow.model_copy(update={"name": reverse_name(flow.name)})
            halves = [(flow, False), (back, True)]
        for half, turned in halves:
            tables: list[TableConfig] = []
            for j, table in enumerate(half.tables):
                if turned:
                    table = reverse_table(table)
                try:
                    check_table(table)
                except MappingError as exc:
                    raise ConfigError(urls.scrub(
                        f"{source}: config error at flows[{i}].tables[{j}].{exc.path}: {exc.message}", secrets
                    )) from None
                tables.append(table)
            if turned:
                half = half.model_copy(update={"source": half.target, "target": half.source, "tables": tables})
                seen: set[TableId] = set()
                for j, table in enumerate(half.tables):
                    src = config.source_table(half, table)
                    if src in seen:
                        raise ConfigError(f"{source}: config error at flows[{i}].tables[{j}].target: {src} is"
                                          " listed twice (the flow reads it in the reverse direction)")
                    seen.add(src)
            if any(f.name == half.name for f in flows):
                raise ConfigError(f"{source}: config error at flows[{i}].name: two flows are named {half.name!r}"
                                  f" (the reverse half of a `direction: both` flow is named {{name}}-reverse)")
            flows.append(half)
    return config.model_copy(update={"flows": flows})


def reverse_name(name: str) -> str:
    """The name of the reverse half of a ``direction: both`` flow."""
    return f"{name}-reverse"


def reverse_table(table: TableConfig) -> TableConfig:
    """The table seen from the other side: names swapped, rules kept (run inverted)."""
    source_name = table.target or split_table_name(table.source, "").name
    out = table.model_copy(update={"source": source_name, "target": table.source})
    out._reversed = True
    return out


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the config reference in README.md)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def load_config(path: str | Path | None) -> Config:
    """Load the config from ``path``, else ``$REPLICATOR_CONFIG``, else config/replicator.yaml."""
    chosen = Path(path or os.environ.get("REPLICATOR_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {chosen} not found: pass --config FILE or set REPLICATOR_CONFIG"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {chosen}: {exc.strerror}") from None
    return parse_config(text, str(chosen))
