#!/usr/bin/env python
"""CPU cost per row of each replicator stage on captured MariaDB rows events (no server).

    .venv/bin/python scripts/profile_mariadb_micro.py CAPTURE.pickle [--repeat 5] [--limit N]
        [--stages decode,changes,batch,apply] [--cprofile STAGE]

``CAPTURE.pickle`` comes from ``scripts/profile_mariadb.py --stages read --capture DIR`` (the
bench table's column metadata and every rows event body of a workload). Stages, each timed
alone in CPU seconds (``time.process_time``, best of ``--repeat``), with the garbage collector
tuned as ``replicator.pipeline`` tunes it:

  decode   ``RowDecoder.decode`` of every event (row images -> dicts);
  changes  ``_TableState.changes`` of every event (decode + Change records), what the source
           thread does per rows event besides reading packets;
  batch    ``Batch.add`` of every change, drained every 20,000 changes (the pipeline thread);
  apply    ``MariaDBSink.apply`` of the drained batches on a connection that only counts the
           statements' bytes (rendering the SQL text: the writer thread's Python work).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import io
import os
import pickle
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(os.path.abspath(__file__)).parent.parent  # not resolved: may run from a copy of the tree
sys.path.insert(0, str(REPO))

from pymysqlreplication.column import Column  # noqa: E402
from pymysqlreplication.table import Table  # noqa: E402

from replicator.batch import Batch, TableOps  # noqa: E402
from replicator.mapping import ColumnInfo, TableInfo, TableMapping  # noqa: E402
from replicator.mysql import source as source_module  # noqa: E402
from replicator.mysql.rows import RowDecoder  # noqa: E402
from replicator.mysql.writer import MariaDBSink  # noqa: E402
from replicator.records import Change, TableId  # noqa: E402

BATCH_ROWS = 20_000
TID = TableId("bench", "t")
MY_TYPES = {
    "id": "bigint(20)", "name": "varchar(64)", "email": "varchar(128)", "amount": "decimal(12,2)",
    "created_at": "datetime(6)", "payload": "varchar(200)",
}


class _Cursor:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: Any = None) -> int:
        self.conn.statements += 1
        self.conn.chars += len(sql)
        return 0

    def executemany(self, sql: str, params: Any) -> int:
        self.conn.statements += 1
        return 0


class _Conn:
    """Counts what the sink sends; escapes like pymysql on a utf8mb4 connection."""

    server_status = 0
    encoding = "utf8"

    def __init__(self) -> None:
        import pymysql

        self.statements = 0
        self.chars = 0
        real: Any = pymysql.connections.Connection(defer_connect=True, charset="utf8mb4")
        real.server_status = 0
        self._real = real

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def escape(self, value: Any) -> str:
        text: str = self._real.escape(value)
        return text

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return min(times), result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture", type=Path)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--limit", type=int, default=0, help="only the first N events")
    p.add_argument("--stages", default="decode,changes,batch,apply")
    p.add_argument("--cprofile", default=None, help="profile this stage (one run) and print the top")
    args = p.parse_args()
    gc.set_threshold(100_000, 50, 1000)  # as replicator.pipeline runs

    data = pickle.loads(args.capture.read_bytes())
    events: list[tuple[str, bytes, int]] = data["events"]
    if args.limit:
        events = events[: args.limit]
    table = Table(1, TID.schema, TID.name, [Column(**c) for c in data["columns"]])
    key = tuple(data["key"])
    decoder = RowDecoder(table, key_columns=key)
    state = source_module._TableState(table, decoder, TID, key, (), 4)
    nrows = sum(len(decoder.decode(k, b, n)) for k, b, n in events[:1000])
    nrows = nrows * len(events) // min(len(events), 1000)

    event_changes: Callable[[str, bytes, int], list[Change]]
    if len(inspect.signature(state.changes).parameters) == 3:  # older: changes(kind, body, ncols)
        event_changes = state.changes  # type: ignore[assignment]
    else:
        def event_changes(k: str, b: bytes, n: int) -> list[Change]:
            return state.changes(k, b, 0, len(b), n)  # type: ignore[no-any-return]
    changes: list[Change] = [c for k, b, n in events for c in event_changes(k, b, n)]
    nrows = len(changes)
    info = TableInfo(TID, tuple(ColumnInfo(c["name"], MY_TYPES.get(c["name"], "text")) for c in data["columns"]), key)
    mapping = TableMapping(TID, TID, {})
    mapping.bind(info, info)

    def run_decode() -> int:
        dec = decoder.decode
        return sum(len(dec(k, b, n)) for k, b, n in events)

    def run_changes() -> int:
        return sum(len(event_changes(k, b, n)) for k, b, n in events)

    def run_batch() -> list[list[TableOps]]:
        out = []
        for start in range(0, len(changes), BATCH_ROWS):
            batch = Batch()
            add = batch.add
            for c in changes[start : start + BATCH_ROWS]:
                add(c, mapping)
            out.append(batch.drain())
        return out

    batches = run_batch()
    sink: Any = MariaDBSink.__new__(MariaDBSink)
    sink.conn = _Conn()
    sink.state_schema = "_replicator"
    sink._columns = {TID: {c.name: c for c in info.columns}}
    sink._renderers = {}

    def run_apply() -> int:
        for ops in batches:
            sink.apply(ops)
        return int(sink.conn.statements)

    stages = {"decode": run_decode, "changes": run_changes, "batch": run_batch, "apply": run_apply}
    print(f"{args.capture.name}: {len(events)} events, {nrows} rows")
    for name in args.stages.split(","):
        secs, _ = best(stages[name], args.repeat)
        print(f"  {name:<8} {secs:7.3f}s CPU  {1e6 * secs / nrows:6.2f} µs/row")
    if args.cprofile:
        prof = cProfile.Profile()
        prof.enable()
        stages[args.cprofile]()
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(20)
        print(s.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
