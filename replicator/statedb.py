"""Tables of the state schema on a target (dead letters, audit trail, pauses), both dialects.

The target is the only truth about a flow, and anything recorded about a change (it was
rejected, it was applied, it paused the flow) must commit or roll back *with* that change and
its checkpoint. So these tables live beside the checkpoint in the target's state schema and are
written through the sink's own connection inside the pipeline's open transaction.

:class:`StateDB` hides the two dialects' differences that matter here: quoting, the
auto-increment key, the JSON and timestamp column types, "now" in UTC, and the driver's call
style. Values are always bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from .records import JSON_NULL


class StateDB:
    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.is_pg = isinstance(conn, psycopg.Connection)
        if self.is_pg:
            self.serial = "bigserial PRIMARY KEY"
            self.json = "jsonb"
            self.ts = "timestamptz"
            self.text = "text"
            self.short = "text"
            self.now = "clock_timestamp()"
            self.suffix = ""
        else:
            self.serial = "BIGINT AUTO_INCREMENT PRIMARY KEY"
            self.json = "LONGTEXT"
            self.ts = "DATETIME(6)"
            self.text = "TEXT"
            self.short = "VARCHAR(300)"
            self.now = "UTC_TIMESTAMP(6)"
            self.suffix = " ENGINE=InnoDB"

    def table(self, name: str) -> str:
        if self.is_pg:
            return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name)).as_string(None)
        return "`" + self.schema.replace("`", "``") + "`.`" + name + "`"

    def exec(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.is_pg:
            cur = self.conn.execute(query.encode(), params)
            return list(cur.fetchall()) if cur.description else []
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def exec_count(self, query: str, params: Sequence[object] = ()) -> int:
        if self.is_pg:
            return int(self.conn.execute(query.encode(), params).rowcount)
        with self.conn.cursor() as cur:
            return int(cur.execute(query, params))

    def insert_many(self, query: str, rows: Iterable[Sequence[object]]) -> None:
        rows = list(rows)
        if not rows:
            return
        if self.is_pg:
            with self.conn.cursor() as cur:
                cur.executemany(query.encode(), rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(query, rows)

    def commit(self) -> None:
        self.conn.commit()

    def ts_value(self, value: datetime | None) -> Any:
        """A timestamp as the dialect's column stores it (MySQL: naive UTC)."""
        if value is None or self.is_pg:
            return value
        if value.tzinfo is not None:
            from datetime import timezone

            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value


    def ts_read(self, value: Any) -> Any:
        """A stored timestamp as an aware UTC datetime (MySQL stores naive UTC)."""
        if value is None or self.is_pg or not isinstance(value, datetime) or value.tzinfo is not None:
            return value
        from datetime import timezone

        return value.replace(tzinfo=timezone.utc)


def jsonable(value: Any) -> Any:
    """A value as JSON for people to read (dead letters, audit): exact text for decimals and
    temporal values, ``\\x``-hex for bytes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if value is JSON_NULL:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(jsonable(value), ensure_ascii=False, sort_keys=True)


def loads(text: Any) -> Any:
    if text is None:
        return None
    if isinstance(text, (dict, list)):
        return text  # psycopg loads jsonb itself
    return json.loads(text)

