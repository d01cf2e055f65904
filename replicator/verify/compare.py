"""Comparing one table: the plan, the bucket summaries, the drill-down, and ``verify_flow``.

For each table this opens both sides, plans the compared columns (the key first), has each
side summarise its rows per hash bucket in one scan (both sides in parallel), and for the
buckets that differ streams both sides' rows in key-md5 order and merges them into missing,
extra and different keys (see the package docstring for the design). Engine differences stay
in ``engines``; this module only composes their expressions and reads the results.
"""

from __future__ import annotations

import bisect
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any, TypeVar

from ..config import Config, FlowConfig, TableConfig
from ..errors import ConfigError, SchemaError
from ..mapping import TableInfo, TableMapping
from ..records import TableId
from .canonical import _py_piece
from .engines import _Col, _Engine, _Expr, _Incomparable, _open, _Pair, _pair, _QueryFailed
from .report import RowDifference, TableReport

DEFAULT_CHUNK_SIZE = 10_000
DEFAULT_MAX_KEYS = 20
_QUEUE_BATCHES = 4  # fetched batches waiting per stream: memory is bounded by their product

T = TypeVar("T")


def verify_flow(
    config: Config,
    flow: FlowConfig | str,
    tables: Sequence[str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> list[TableReport]:
    """Compare every table of ``flow`` (or those named in ``tables``: source or target name,
    with or without schema) between source and target.

    A table that cannot be compared (missing, a column the target lacks, types that cannot be
    compared, a failing query) gets a report with ``error``; a lost connection raises.
    """
    if isinstance(flow, str):
        flow = config.flow(flow)
    if chunk_size < 1:
        raise ConfigError("the chunk size must be at least 1")
    selected = select_tables(config, flow, tables) if tables else list(flow.tables)
    if not selected:
        known = ", ".join(t.source for t in flow.tables)
        raise ConfigError(f"flow {flow.name} has no table {', '.join(tables or [])} (tables: {known})")
    return [_verify_table(config, flow, t, chunk_size, max_keys) for t in selected]


def select_tables(config: Config, flow: FlowConfig, names: Sequence[str]) -> list[TableConfig]:
    """The tables of ``flow`` that any of ``names`` designates (source or target, as written in
    the config, as ``schema.table``, or the bare table name)."""
    wanted = set(names)
    return [t for t in flow.tables if config.table_names(flow, t) & wanted]


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    key: list[_Pair]  # the target's primary key, in its order
    rest: list[_Pair]
    renamed: dict[str, str]

    @property
    def sql_rest(self) -> list[_Pair]:
        return [p for p in self.rest if p.src.sql is not None]

    @property
    def py_rest(self) -> list[_Pair]:
        return [p for p in self.rest if p.src.sql is None]


def _plan(
    src: _Engine, dst: _Engine, s_info: TableInfo, s_cols: dict[str, _Col], d_cols: dict[str, _Col],
    mapping: TableMapping, src_invalid_as_null: bool,
) -> _Plan:
    names = s_info.column_names  # the report names columns in the source table's order
    to_source = {mapping.target_name(c): c for c in names}
    key_sources = [to_source[k] for k in mapping.target_key]
    pairs = {c: _pair(s_cols[c], d_cols[mapping.target_name(c)], src, dst, src_invalid_as_null) for c in names}
    for c in key_sources:
        if pairs[c].src.sql is None:
            raise _Incomparable(f"cannot verify a table keyed by the JSON column {c}")
    return _Plan(
        key=[pairs[c] for c in key_sources],
        rest=[p for c, p in pairs.items() if c not in key_sources],
        renamed={c: mapping.target_name(c) for c in names if mapping.target_name(c) != c},
    )


# --------------------------------------------------------------------------- comparing a table


def _verify_table(
    config: Config, flow: FlowConfig, table: TableConfig, chunk_size: int, max_keys: int
) -> TableReport:
    src_id, dst_id = config.source_table(flow, table), config.target_table(flow, table)
    report = TableReport(flow.name, str(src_id), str(dst_id))
    started = time.monotonic()
    engines: list[_Engine] = []
    try:
        src = _open(config, flow.source, "source")
        engines.append(src)
        dst = _open(config, flow.target, "target")
        engines.append(dst)
        s_desc, d_desc = src.describe(src_id), dst.describe(dst_id)
        if s_desc is None:
            raise SchemaError(f"source table {src_id} does not exist")
        if d_desc is None:
            raise SchemaError(f"target table {dst_id} does not exist")
        if not table.plain:
            raise SchemaError(
                "its values are transformed on the way (formats, maps, expressions, masks, filter):"
                " verify compares tables whose values travel unchanged"
            )
        mapping = TableMapping(src_id, dst_id, table.renames)
        mapping.bind(s_desc[0], d_desc[0])
        invalid_as_null = src.engine == "mysql" and flow.zero_dates == "null"
        plan = _plan(src, dst, s_desc[0], s_desc[1], d_desc[1], mapping, invalid_as_null)
        report.renamed = plan.renamed
        _compare(src, dst, src_id, dst_id, plan, chunk_size, max_keys, report)
    except SchemaError as exc:
        report.error = str(exc)
    except _QueryFailed as exc:
        report.error = str(exc)
    finally:
        for e in engines:
            e.close()
        report.seconds = time.monotonic() - started
    return report


@dataclass
class _SideSql:
    """One side's SQL for a table: canonical key text, row text, their md5s."""

    table: str
    key: str
    key_md5: str
    row_md5: str  # md5 of key | SQL columns
    rest_md5s: list[str]  # one md5 per SQL column of plan.rest (in order)
    py_fetch: list[str]  # raw values for plan.py_rest
    key_raw: list[str]


def _side_sql(e: _Engine, table: TableId, plan: _Plan, which: str) -> _SideSql:
    def expr(p: _Pair) -> _Expr:
        return p.src if which == "src" else p.dst

    def name(p: _Pair) -> str:
        return p.source if which == "src" else p.target

    key = e.concat(_join([e.piece(expr(p)) for p in plan.key], "','"))
    rest = e.concat(_join([e.piece(expr(p)) for p in plan.sql_rest], "','"))
    return _SideSql(
        table=e.table(table),
        key=key,
        key_md5=e.md5(key),
        row_md5=e.md5(e.concat([key, "'|'", rest])),
        rest_md5s=[e.md5(e.piece(expr(p))) for p in plan.sql_rest],
        py_fetch=[expr(p).fetch or "NULL" for p in plan.py_rest],
        key_raw=[e.quote(name(p)) for p in plan.key],
    )


def _py_functions(plan: _Plan, which: str) -> list[Callable[[Any], str | None]]:
    out = []
    for p in plan.py_rest:
        f = p.src.py if which == "src" else p.dst.py
        assert f is not None
        out.append(f)
    return out


def _join(parts: list[str], sep: str) -> list[str]:
    out: list[str] = []
    for i, p in enumerate(parts):
        if i:
            out.append(sep)
        out.append(p)
    return out


Summary = dict[int, tuple[int, int]]  # bucket -> (rows, sum of 60-bit row hashes)


def _summary(e: _Engine, q: _SideSql, pys: list[Callable[[Any], str | None]], n: int) -> Summary:
    bucket = e.bucket(q.key_md5, n)
    if not pys:
        return {int(b): (int(c), int(s)) for b, c, s in e.rows(e.summary_sql(q.table, bucket, e.hash60(q.row_md5)))}
    # JSON columns are canonicalised here: stream (bucket, md5 of the SQL part, JSON values)
    counts, sums = [0] * n, [0] * n
    sql = f"SELECT {bucket}, {q.row_md5}, {', '.join(q.py_fetch)} FROM {q.table}"
    md5, piece = hashlib.md5, _py_piece
    for row in _prefetch(e.batches(sql)):
        text = f"{row[1]}|" + ",".join([piece(f(v)) for f, v in zip(pys, row[2:])])
        b = int(row[0])
        counts[b] += 1
        sums[b] += int(md5(text.encode()).hexdigest()[:15], 16)
    return {b: (counts[b], sums[b]) for b in range(n) if counts[b]}


def _compare(
    src: _Engine, dst: _Engine, src_id: TableId, dst_id: TableId, plan: _Plan, chunk_size: int,
    max_keys: int, report: TableReport,
) -> None:
    sq, dq = _side_sql(src, src_id, plan, "src"), _side_sql(dst, dst_id, plan, "dst")
    count = int(src.rows(f"SELECT COUNT(*) FROM {sq.table}")[0][0])
    n = max(1, -(-count // chunk_size))
    src_py, dst_py = _py_functions(plan, "src"), _py_functions(plan, "dst")
    s_sum, d_sum = _parallel(lambda: _summary(src, sq, src_py, n), lambda: _summary(dst, dq, dst_py, n))
    report.chunks = n
    report.source_rows = sum(c for c, _ in s_sum.values())
    report.target_rows = sum(c for c, _ in d_sum.values())
    differing = sorted(b for b in set(s_sum) | set(d_sum) if s_sum.get(b) != d_sum.get(b))
    report.chunks_differing = len(differing)
    if not differing:
        return
    _drill(src, dst, sq, dq, plan, n, differing, max_keys, report)
    if not (report.missing_total or report.extra_total or report.different_total):
        report.note = (
            "the checksums differed but the rows read again match: the tables changed while"
            " verifying (is the flow still applying changes?)"
        )


def _drill(
    src: _Engine, dst: _Engine, sq: _SideSql, dq: _SideSql, plan: _Plan, n: int, buckets: list[int],
    max_keys: int, report: TableReport,
) -> None:
    """Stream both sides' rows of the differing buckets in key-md5 order and merge them."""

    def query(e: _Engine, q: _SideSql) -> str:
        cols = [f"{e.binary(q.key_md5)} AS __kh", f"{e.binary(q.key)} AS __kc", *q.key_raw, *q.rest_md5s, *q.py_fetch]
        where = "" if len(buckets) == n else f" WHERE {e.bucket(q.key_md5, n)} IN ({', '.join(map(str, buckets))})"
        return e.ordered_sql(", ".join(cols), q.table, where)

    nkey = len(plan.key)
    nsql = len(plan.sql_rest)
    src_py, dst_py = _py_functions(plan, "src"), _py_functions(plan, "dst")
    names = [p.source for p in plan.sql_rest] + [p.source for p in plan.py_rest]
    position = {p.source: i for i, p in enumerate(plan.rest)}  # columns named in the table's order
    key_names = [p.source for p in plan.key]

    def rows(e: _Engine, q: _SideSql, pys: list[Callable[[Any], str | None]]) -> Iterator[_Row]:
        for r in _prefetch(e.batches(query(e, q))):
            key = r[2 : 2 + nkey]
            values = list(r[2 + nkey : 2 + nkey + nsql]) + [f(v) for f, v in zip(pys, r[2 + nkey + nsql :])]
            yield _Row((_text(r[0]), _text(r[1])), key, values)

    missing, extra, different = _First(max_keys), _First(max_keys), _First(max_keys)
    s_it, d_it = rows(src, sq, src_py), rows(dst, dq, dst_py)
    s, d = next(s_it, None), next(d_it, None)
    while s is not None or d is not None:
        if d is None or (s is not None and s.order < d.order):
            assert s is not None
            missing.add(s.key, dict(zip(key_names, map(_jsonable, s.key))))
            s = next(s_it, None)
        elif s is None or s.order > d.order:
            extra.add(d.key, dict(zip(key_names, map(_jsonable, d.key))))
            d = next(d_it, None)
        else:
            cols = tuple(sorted((n for n, a, b in zip(names, s.values, d.values) if a != b), key=position.__getitem__))
            if cols:
                different.add(s.key, RowDifference(dict(zip(key_names, map(_jsonable, s.key))), cols))
            s, d = next(s_it, None), next(d_it, None)
    report.missing, report.missing_total = missing.items(), missing.total
    report.extra, report.extra_total = extra.items(), extra.total
    report.different, report.different_total = different.items(), different.total


def _text(v: Any) -> str:
    """A canonical key text or md5 as read: MariaDB gives binary strings as bytes."""
    return v.decode("utf-8", "surrogateescape") if isinstance(v, (bytes, bytearray)) else str(v)


@dataclass
class _Row:
    order: tuple[str, str]  # (md5 of the canonical key, the canonical key)
    key: tuple[Any, ...]  # the key's values as the driver loads them
    values: list[Any]  # per compared non-key column: md5 (SQL) or canonical text (Python)


class _First:
    """The ``limit`` smallest keys added (with their payload), and how many were added."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._items: list[tuple[tuple[Any, ...], int, Any]] = []

    def add(self, key: tuple[Any, ...], payload: Any) -> None:
        self.total += 1
        if self.limit <= 0:
            return
        sort_key = tuple(_sortable(v) for v in key)
        if len(self._items) >= self.limit and not sort_key < self._items[-1][0]:
            return
        bisect.insort(self._items, (sort_key, self.total, payload))
        del self._items[self.limit :]

    def items(self) -> list[Any]:
        return [p for _, _, p in self._items]


def _sortable(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, (int, float, Decimal)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, (bytes, bytearray)):
        return (2, bytes(v))
    return (3, str(v))


def _jsonable(v: Any) -> Any:
    """A key value as JSON shows it: numbers as numbers, everything else as readable text."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, Decimal):
        exponent = v.as_tuple().exponent
        return int(v) if v.is_finite() and isinstance(exponent, int) and exponent >= 0 else str(v)
    if isinstance(v, (bytes, bytearray)):
        return "\\x" + bytes(v).hex()
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    return str(v)


# --------------------------------------------------------------------------- plumbing


def _parallel(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """Run both (one per side) at once; the first exception wins, after both ended."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()


_END = object()


def _prefetch(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``batches``, fetched in a thread ahead of the consumer (both sides of a merge
    then read at once), at most _QUEUE_BATCHES batches ahead."""
    q: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BATCHES)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    thread = threading.Thread(target=run, name="verify-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from _rows(item)
    finally:
        stop.set()


def _rows(item: object) -> Iterable[tuple[Any, ...]]:
    assert isinstance(item, list)
    return item
