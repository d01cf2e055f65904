"""The loop guard: every transaction the replicator writes says where its changes came from.

With flows both ways between two systems (and chains and hubs of them), a change written by
flow X -> Y shows up in Y's log like any other. Without a mark, flow Y -> X would send it back
to X, and X -> Y to Y again, for ever. So each target transaction carries a *tag*:

- ``origin``: the system where the change was first made (a change forwarded along a chain
  keeps the origin it arrived with), and
- ``via``: the system the writing flow read it from.

A flow X -> Y skips a source transaction whose tag names Y as origin or as via: its changes
came from Y (or were already delivered to Y by the flow that wrote them). In a chain A -> B -> C
the flow B -> C forwards A's changes once; in a hub (A, B, C <-> H) H -> B forwards A's change
to B, and B -> H skips it (via H) -- each change reaches every other system once and never
returns to its origin. Loops of three or more systems are refused by the config (a change would
arrive twice).

How a tag is written depends on the target (DESIGN.md):

- PostgreSQL: a *replication origin* named by the tag (``pg_replication_origin_session_setup``);
  pgoutput sends an Origin message right after Begin, so a reader knows the tag before the
  first change. ``pg_replication_origin_xact_setup`` also gives the transaction the source's
  commit time, which decoding reports as the transaction's commit time downstream.
- MySQL/MariaDB: a marker row written first in the transaction (``loop_tags`` in the state
  database), which native replicas of the target replicate like any row; the binlog reader
  decodes that table too and sees the tag before the transaction's first synced row.

A flow writes tags only when its target is itself a source of another flow; readers always
look at them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .protocols import Checkpoint, Sink
from .records import TableId

TAG_TABLE = "loop_tags"
_PREFIX = "replicator:"


@dataclass(frozen=True, slots=True)
class Tag:
    origin: str  # the system where the change was first made
    via: str  # the system the writing flow read it from
    flow: str  # the writing flow (keeps PostgreSQL origin names one per writing session)

    def encode(self) -> str:
        return _PREFIX + json.dumps([self.origin, self.via, self.flow], separators=(",", ":"))

    def returns_to(self, system: str) -> bool:
        """The tagged changes came from ``system`` (or were delivered to it already)."""
        return self.origin == system or self.via == system


def decode(text: str | None) -> Tag | None:
    """The tag in a replication origin's name or a marker row; None for anything else (an
    origin of another tool is not ours to judge: its changes are synced like local ones)."""
    if not text or not text.startswith(_PREFIX):
        return None
    try:
        origin, via, flow = json.loads(text[len(_PREFIX):])
    except (ValueError, TypeError):
        return None
    return Tag(str(origin), str(via), str(flow))


def tag_table(state_schema: str) -> TableId:
    return TableId(state_schema, TAG_TABLE)


def ensure_tag_table(conn: Any, state_schema: str) -> None:
    """The marker table on a MySQL/MariaDB system (idempotent; commits)."""
    q = "`" + state_schema.replace("`", "``") + "`"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {q}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.`{TAG_TABLE}` (flow VARCHAR(200) NOT NULL PRIMARY KEY,"
            " tag VARCHAR(1000) NOT NULL, n BIGINT NOT NULL) ENGINE=InnoDB"
        )
    conn.commit()


class TaggedSink:
    """A sink whose every transaction carries the tag of the changes it writes.

    The pipeline sets the origin (:meth:`set_origin`) between target transactions; the tag is
    written before the first write of each transaction -- rows or checkpoint -- so a reader
    of the target sees it before any synced row. Everything else is the wrapped sink's.
    """

    def __init__(self, sink: Sink, flow: str, via: str, state_schema: str) -> None:
        self.inner = sink
        self.flow = flow
        self.via = via
        self.state_schema = state_schema
        self.origin = via
        self.is_pg = isinstance(sink.conn, psycopg.Connection)
        self._tagged = False  # the open target transaction carries its tag
        self._session: str | None = None  # PostgreSQL: the origin set up on the session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_origin(self, origin: str) -> None:
        """The origin of the changes of the next target transaction (not the open one)."""
        assert not self._tagged, "the origin changes only between target transactions"
        self.origin = origin

    def ensure_state(self) -> None:
        self.inner.ensure_state()
        if not self.is_pg:
            ensure_tag_table(self.inner.conn, self.state_schema)

    def _tag(self) -> None:
        if self._tagged:
            return
        with self.inner._guard():  # type: ignore[attr-defined]  # driver errors as the sink's own
            self._write_tag(Tag(self.origin, self.via, self.flow).encode())
        self._tagged = True

    def _write_tag(self, name: str) -> None:
        conn = self.inner.conn
        if self.is_pg:
            if self._session != name:
                if self._session is not None:
                    conn.execute("SELECT pg_replication_origin_session_reset()")
                    self._session = None
                conn.execute(
                    "SELECT pg_replication_origin_create(%s) WHERE pg_replication_origin_oid(%s) IS NULL",
                    (name, name),
                )
                conn.execute("SELECT pg_replication_origin_session_setup(%s)", (name,))
                self._session = name
        else:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO `{self.state_schema.replace('`', '``')}`.`{TAG_TABLE}` (flow, tag, n)"
                    " VALUES (%s, %s, 1) ON DUPLICATE KEY UPDATE tag = VALUES(tag), n = n + 1",
                    (self.flow, name),
                )

    def apply(self, ops: Any) -> None:
        self._tag()
        self.inner.apply(ops)

    def apply_raw(self, ops: Any) -> None:
        self._tag()
        self.inner.apply_raw(ops)  # type: ignore[attr-defined]

    def commit(self, checkpoint: Checkpoint) -> None:
        self._tag()
        if self.is_pg:
            self._commit_time(checkpoint.source_commit_time)
        self.inner.commit(checkpoint)
        self._tagged = False

    def _commit_time(self, when: datetime | None) -> None:
        """Downstream readers see the source's commit time as this transaction's."""
        if when is not None:
            with self.inner._guard():  # type: ignore[attr-defined]
                self.inner.conn.execute(sql.SQL("SELECT pg_replication_origin_xact_setup('0/0', %s)"), (when,))

    def rollback(self) -> None:
        self._tagged = False
        self.inner.rollback()
        if self.is_pg and self._session is not None:
            try:  # a rolled-back session keeps its origin; a broken one is closed anyway
                self.inner.conn.execute("SELECT pg_replication_origin_session_reset()")
                self.inner.conn.commit()
            except psycopg.Error:
                pass
            self._session = None
