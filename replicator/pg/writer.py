"""The PostgreSQL target: upserts by key, deletes by key, truncates, checkpoint in the same txn.

Speed comes from doing per-row work in C and per-batch work on the server: rows of a batch are
streamed with COPY (psycopg's C row formatter) into a temporary staging table, then merged with
one ``INSERT … SELECT … ON CONFLICT DO UPDATE``; deletes are one ``DELETE … USING unnest(…)``
per table. Small batches skip staging (a COPY round trip costs more than a few inserts).

The session runs with ``session_replication_role = replica`` when the role may set it (as
PostgreSQL's own logical replication does): foreign keys and triggers do not fire for rows that
were already checked on the source, so a batch's per-table order cannot violate them.

A role that may not (no superuser) has the target's foreign keys enforced. A committed batch
holds the source's state at a transaction boundary, which satisfied them; only the order of
the statements can violate them, because changes of many source transactions are netted per
table. So such a session defers what can be deferred (``SET CONSTRAINTS ALL DEFERRED`` in each
transaction: ``DEFERRABLE`` keys are checked at commit, against the final rows), and orders
each call's writes by the target's ``NOT DEFERRABLE`` foreign keys between the tables at hand:
first every table's upserts, parents before children (a row's parent is then in place: it is
either untouched or written before it), then every table's deletes, children before parents
(no row left or written references a deleted one). Limits, said in the README: a key moving
between rows of a unique non-key column within one batch can conflict in that order (upserts
come before deletes), and a batch written in several calls (more than ``max_rows`` changes, or
normal and passthrough changes interleaved) is ordered per call only — declare the keys
``DEFERRABLE`` for those.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper, PyFormat
from psycopg.types.json import Json, Jsonb, set_json_dumps

from ..batch import TableOps, group_by_columns
from ..history import History
from ..errors import DataError, SchemaError, TransientError
from ..mapping import TableInfo
from ..protocols import Checkpoint
from ..records import AddedColumn, Interval, JsonText, Row, TableId, json_default
from ..typemap import UnsupportedType, mysql_to_pg
from .catalog import describe_table
from .conn import connect, first_line
from .passthrough import RawTableOps

COPY_CHUNK_ROWS = 2000  # rows per COPY data message in passthrough
COPY_CONFLICT_BACKOFF = 16  # batches that upsert inserts after a direct COPY met a key conflict

STAGE_THRESHOLD = 64

_STATE_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    flow text PRIMARY KEY,
    position text NOT NULL,
    source_commit_time timestamptz,
    changes_applied bigint NOT NULL DEFAULT 0,
    transactions_applied bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


def _ident(table: TableId) -> sql.Composed:
    return sql.SQL(".").join([sql.Identifier(table.schema), sql.Identifier(table.name)])


def _cols(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


class _IntervalDumper(Dumper):
    """Writes an :class:`Interval` as its exact source text (months and years kept)."""

    oid = psycopg.adapters.types["interval"].oid

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self._timedelta = psycopg.adapters.get_dumper(timedelta, PyFormat.TEXT)(timedelta, context)

    def dump(self, obj: Any) -> Buffer | None:
        if isinstance(obj, Interval):
            return obj.text.encode()
        return self._timedelta.dump(obj)


def _json_dumps(obj: Any) -> str:
    """JSON text from a MySQL source goes in verbatim; JSON_NULL is the document null."""
    if isinstance(obj, JsonText):
        return str(obj)
    return json.dumps(obj, default=json_default)


def _keep_exact_values(conn: psycopg.Connection[Any]) -> None:
    """JSON_NULL is written as the JSON document null; an Interval as its exact text (also
    through COPY, which picks dumpers by the column's type)."""
    set_json_dumps(_json_dumps, context=conn)
    conn.adapters.register_dumper(Interval, _IntervalDumper)


class PostgresSink:
    """Writes netted batches to one PostgreSQL database."""

    raw_format = "copy"  # passthrough rows (apply_raw) are COPY text

    def __init__(self, url: str, state_schema: str = "_replicator") -> None:
        self.url = url
        self.state_schema = state_schema
        self.conn = connect(url, "target")
        _keep_exact_values(self.conn)
        self._types: dict[TableId, dict[str, tuple[int, str]]] = {}
        self._stages: dict[tuple[TableId, tuple[str, ...]], sql.Identifier] = {}
        self._copy_backoff: dict[TableId, int] = {}
        self.enforces_fks = False  # the role cannot switch foreign keys off (see the module doc)
        self._parents: dict[TableId, set[TableId]] | None = None  # NOT DEFERRABLE keys: child -> parents
        self._deferred = False  # SET CONSTRAINTS ALL DEFERRED ran in the open transaction
        try:
            self.conn.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            self.enforces_fks = True
        self.conn.autocommit = False

    # -- catalog -------------------------------------------------------------------------
    def ensure_state(self) -> None:
        with self._guard():
            self.conn.execute(
                sql.SQL(_STATE_DDL).format(schema=sql.Identifier(self.state_schema))
            )
            History(self.conn, self.state_schema).ensure()
            self.conn.commit()

    def describe(self, table: TableId) -> TableInfo | None:
        with self._guard():
            info = describe_table(self.conn, table)
            if info is not None:
                rows = self.conn.execute(
                    "SELECT a.attname, a.atttypid::int, format_type(a.atttypid, a.atttypmod)"
                    " FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0"
                    " AND NOT a.attisdropped",
                    (f'"{table.schema}"."{table.name}"',),
                ).fetchall()
                self._types[table] = {str(r[0]): (int(r[1]), str(r[2])) for r in rows}
            self.conn.commit()
            return info

    def read_checkpoint(self, flow: str) -> Checkpoint | None:
        with self._guard():
            row = self.conn.execute(
                sql.SQL(
                    "SELECT position, source_commit_time, changes_applied, transactions_applied,"
                    " updated_at FROM {}.checkpoints WHERE flow = %s"
                ).format(sql.Identifier(self.state_schema)),
                (flow,),
            ).fetchone()
            self.conn.commit()
        if row is None:
            return None
        return Checkpoint(flow, row[0], row[1], row[2], row[3], row[4])

    # -- writing -------------------------------------------------------------------------
    def apply(self, ops: list[TableOps]) -> None:
        with self._guard():
            rank = self._fk_rank([o.mapping.target for o in ops], any(o.truncate or o.rekeys for o in ops))
            if rank is not None:  # foreign keys are enforced: upserts parents first, then deletes children first
                for o in sorted(ops, key=lambda o: rank[o.mapping.target]):
                    for cols, rows in group_by_columns(o.upserts):
                        self._upsert(o.mapping.target, o.mapping.target_key, cols, rows)
                    for cols, rows in group_by_columns(o.updates):
                        self._update(o.mapping.target, o.mapping.target_key, cols, rows)
                for o in sorted(ops, key=lambda o: -rank[o.mapping.target]):
                    if o.deletes:
                        self._delete(o.mapping.target, o.mapping.target_key, o.deletes)
                return
            truncates = [o.mapping.target for o in ops if o.truncate]
            if truncates:
                self.conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(_ident, truncates))))
            for o in ops:
                table = o.mapping.target
                key = o.mapping.target_key
                if o.deletes:
                    self._delete(table, key, o.deletes)
                if o.upserts:
                    for cols, rows in group_by_columns(o.upserts):
                        self._upsert(table, key, cols, rows)
                if o.updates:
                    for cols, rows in group_by_columns(o.updates):
                        self._update(table, key, cols, rows)
                for old_key, row in o.rekeys:
                    self._rekey(table, key, old_key, row)

    def _type(self, table: TableId, column: str) -> tuple[int, str]:
        try:
            return self._types[table][column]
        except KeyError:
            raise SchemaError(f"target table {table} has no column {column!r}") from None

    def _copy_oid(self, oid: int) -> int:
        """The type COPY dumps a column's values as: psycopg has no dumper for some types
        (``char(n)``, ``money``, ``xml``, ``bit``, enums…), whose values arrive as text anyway;
        COPY's text format lets the server parse that text as the column's type."""
        try:
            self.conn.adapters.get_dumper_by_oid(oid, psycopg.pq.Format.TEXT)
            return oid
        except psycopg.ProgrammingError:
            return 25  # text

    def _wrap(self, table: TableId, cols: Sequence[str]) -> list[type[Json] | type[Jsonb] | None]:
        wrappers: list[type[Json] | type[Jsonb] | None] = []
        for c in cols:
            oid = self._type(table, c)[0]
            wrappers.append(Jsonb if oid == 3802 else Json if oid == 114 else None)
        return wrappers

    def _params(self, table: TableId, cols: Sequence[str], rows: list[Row]) -> list[list[Any]]:
        wrappers = self._wrap(table, cols)
        out = []
        for row in rows:
            values: list[Any] = []
            for c, w in zip(cols, wrappers):
                v = row[c]
                values.append(w(v) if w is not None and v is not None else v)
            out.append(values)
        return out

    def _upsert(self, table: TableId, key: Sequence[str], cols: tuple[str, ...], rows: list[Row]) -> None:
        non_key = [c for c in cols if c not in key]
        conflict: sql.Composable
        if non_key:
            conflict = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key
                )
            )
        else:
            conflict = sql.SQL("DO NOTHING")
        cur = self.conn.cursor()
        if len(rows) < STAGE_THRESHOLD:
            stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
                _ident(table), _cols(cols), sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                _cols(key), conflict,
            )
            cur.executemany(stmt, self._params(table, cols, rows))
            return
        stage = self._stage(table, cols)
        # itemgetter builds each row's value tuple in C (a one-column getter gives the value).
        values = itemgetter(*cols)
        one = len(cols) == 1
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, _cols(cols))) as copy:
            copy.set_types([self._copy_oid(self._type(table, c)[0]) for c in cols])
            write_row = copy.write_row
            for row in rows:
                write_row((values(row),) if one else values(row))
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                _ident(table), _cols(cols), _cols(cols), stage, _cols(key), conflict
            )
        )
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))

    def _stage(self, table: TableId, cols: tuple[str, ...]) -> sql.Identifier:
        stage = self._stages.get((table, cols))
        if stage is None:
            stage = sql.Identifier(f"_replicator_stage_{len(self._stages)}")
            self.conn.execute(
                sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, _cols(cols), _ident(table)
                )
            )
            self._stages[(table, cols)] = stage
        return stage

    def _delete(self, table: TableId, key: Sequence[str], keys: list[tuple[object, ...]]) -> None:
        arrays = [[k[i] for k in keys] for i in range(len(key))]
        unnest = sql.SQL(", ").join(
            sql.SQL("{}::{}[]").format(sql.Placeholder(), sql.SQL(self._type(table, c)[1]))
            for c in key
        )
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{0} = u.{0}").format(sql.Identifier(c)) for c in key
        )
        self.conn.execute(
            sql.SQL("DELETE FROM {} AS t USING unnest({}) AS u({}) WHERE {}").format(
                _ident(table), unnest, _cols(key), match
            ),
            arrays,
        )

    def _update(self, table: TableId, key: Sequence[str], cols: tuple[str, ...], rows: list[Row]) -> None:
        set_cols = [c for c in cols if c not in key]
        if not set_cols:
            return
        stmt = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            _ident(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in set_cols),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key),
        )
        ordered = tuple(set_cols) + tuple(key)
        self.conn.cursor().executemany(stmt, self._params(table, ordered, rows))

    def _rekey(self, table: TableId, key: Sequence[str], old_key: tuple[object, ...], row: Row) -> None:
        """Move a row to its new key in place, keeping the columns the change left out."""
        cols = tuple(row)
        stmt = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            _ident(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key),
        )
        self.conn.execute(stmt, [*self._params(table, cols, [row])[0], *old_key])

    def copy_rows(self, table: TableId, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """COPY value tuples (in ``cols`` order) straight into ``table`` inside the open
        transaction: a snapshot's load of a table it emptied (no key can conflict). Values
        are dumped by the target column's type, as the upsert path's COPY does."""
        n = 0
        with self._guard(), self.conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(_ident(table), _cols(cols))
        ) as copy:
            copy.set_types([self._copy_oid(self._type(table, c)[0]) for c in cols])
            write = copy.write_row
            for row in rows:
                write(row)
                n += 1
        return n

    # -- passthrough: rows as COPY text fields (see replicator.pg.passthrough) ---------------
    def apply_raw(self, ops: list[RawTableOps]) -> None:
        """Write netted passthrough rows inside the open transaction: deletes, upserts, then
        inserts (COPY straight into the table; an upsert if a key is already there)."""
        with self._guard():
            if self.conn.info.encoding != "utf-8":
                self.conn.execute("SET client_encoding = 'UTF8'")  # the fields are UTF-8 text
            rank = self._fk_rank([o.mapping.target for o in ops], False)
            if rank is None:
                for o in ops:
                    self._raw_deletes(o)
                    self._raw_writes(o)
                return
            for o in sorted(ops, key=lambda o: rank[o.mapping.target]):  # see apply()
                self._raw_writes(o)
            for o in sorted(ops, key=lambda o: -rank[o.mapping.target]):
                self._raw_deletes(o)

    def _raw_deletes(self, o: RawTableOps) -> None:
        if o.deletes:
            # PostgreSQL sources: the keys' text; MySQL sources: their values
            keys: list[tuple[object, ...]] = [
                (k.decode(),) if isinstance(k, bytes)
                else tuple(v.decode() if isinstance(v, bytes) else v for v in k) if isinstance(k, tuple)
                else (k,)
                for k in o.deletes
            ]
            self._delete(o.mapping.target, o.mapping.target_key, keys)

    def _raw_writes(self, o: RawTableOps) -> None:
        mapping = o.mapping
        table, key = mapping.target, mapping.target_key
        cols = tuple(map(mapping.target_name, o.names))
        if o.upserts:
            self._upsert_raw(table, key, cols, o.upserts)
        if o.inserts:
            self._insert_raw(table, key, cols, o.inserts)

    # -- foreign keys, where the role cannot switch them off (see the module doc) ----------
    def _fk_rank(self, tables: list[TableId], keep_order: bool) -> dict[TableId, int] | None:
        """Per table its depth below its parents (0: references none of ``tables``), when
        foreign keys are enforced and some ``NOT DEFERRABLE`` key links two of ``tables``;
        else None (the given order is kept; also when ``keep_order``: truncates and moved
        keys are applied as segments in order). Defers the deferrable keys first."""
        if not self.enforces_fks:
            return None
        if not self._deferred or self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("SET CONSTRAINTS ALL DEFERRED")
            self._deferred = True
        if self._parents is None:
            self._parents = {}
            for row in self.conn.execute(
                "SELECT cn.nspname, cl.relname, pn.nspname, pl.relname FROM pg_constraint c"
                " JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace"
                " JOIN pg_class pl ON pl.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace"
                " WHERE c.contype = 'f' AND NOT c.condeferrable AND c.conrelid <> c.confrelid"
            ).fetchall():
                self._parents.setdefault(TableId(row[0], row[1]), set()).add(TableId(row[2], row[3]))
        present = set(tables)
        parents = {t: self._parents.get(t, set()) & present for t in present}
        if keep_order or not any(parents.values()):
            return None
        rank: dict[TableId, int] = {}

        def depth(t: TableId, seen: frozenset[TableId]) -> int:
            if t not in rank:
                above = [depth(p, seen | {t}) + 1 for p in parents[t] if p not in seen]  # a cycle ends
                rank[t] = max(above, default=0)
            return rank[t]

        for t in present:
            depth(t, frozenset())
        return rank

    def _upsert_raw(self, table: TableId, key: Sequence[str], cols: tuple[str, ...], rows: list[list[bytes]]) -> None:
        """Rows that are most likely on the target already (updates): staged with COPY, then
        one ``UPDATE … FROM`` the stage by key (an index lookup per row: a plain update writes
        less WAL and costs less than ``ON CONFLICT DO UPDATE``, which also locks each row), and
        an upsert of the staged rows the update did not find, if any."""
        stage = self._stage(table, cols)
        cur = self.conn.cursor()
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, _cols(cols))) as copy:
            _write_fields(copy, rows)
        non_key = [c for c in cols if c not in key]
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(c)) for c in key)
        # The stage has no statistics: without these the planner may hash the whole table.
        cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        found = 0
        if non_key:
            cur.execute(
                sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
                    _ident(table),
                    sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in non_key),
                    stage,
                    match,
                )
            )
            found = cur.rowcount
        if found < len(rows):
            conflict = (
                sql.SQL("DO UPDATE SET {}").format(
                    sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key)
                )
                if non_key
                else sql.SQL("DO NOTHING")
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} AS s"
                    " WHERE NOT EXISTS (SELECT FROM {} AS t WHERE {}) ON CONFLICT ({}) {}"
                ).format(
                    _ident(table), _cols(cols), _cols(cols), stage, _ident(table), match, _cols(key), conflict
                )
            )
        cur.execute("SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT")
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))

    def _insert_raw(self, table: TableId, key: Sequence[str], cols: tuple[str, ...], rows: list[list[bytes]]) -> None:
        """COPY rows the source inserted straight into the table, in a savepoint: if one of
        their keys is already there (rows written before the flow started...), roll that
        back and upsert them instead, and upsert this table's inserts for a while."""
        backoff = self._copy_backoff.get(table, 0)
        if backoff:
            self._copy_backoff[table] = backoff - 1
            self._upsert_raw(table, key, cols, rows)
            return
        cur = self.conn.cursor()
        cur.execute("SAVEPOINT _replicator_copy")
        try:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_ident(table), _cols(cols))) as copy:
                _write_fields(copy, rows)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT _replicator_copy")
            self._copy_backoff[table] = COPY_CONFLICT_BACKOFF
            self._upsert_raw(table, key, cols, rows)
        else:
            cur.execute("RELEASE SAVEPOINT _replicator_copy")

    # -- following source DDL --------------------------------------------------------------
    def _definition(self, column: AddedColumn, source_engine: str) -> tuple[str, str | None]:
        if source_engine != "mysql":
            return column.type_sql, column.default_sql
        try:
            pg_type = mysql_to_pg(column.type_sql)
        except UnsupportedType as exc:
            raise SchemaError(str(exc)) from None
        default = None
        if column.default_sql is not None:
            import sqlglot  # only here: importing it costs a tenth of a second at every start

            default = sqlglot.transpile(column.default_sql, read="mysql", write="postgres")[0]
        return pg_type, default

    def add_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        pg_type, default = self._definition(column, source_engine)
        ddl = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}{}").format(
            _ident(table),
            sql.Identifier(name),
            sql.SQL(pg_type),
            sql.SQL(f" DEFAULT {default}") if default is not None else sql.SQL(""),
            sql.SQL(" NOT NULL") if column.not_null else sql.SQL(""),
        )
        self._ddl(ddl, f"cannot add column {name} to {table}")

    def modify_column(self, table: TableId, name: str, column: AddedColumn, source_engine: str) -> None:
        pg_type, _ = self._definition(column, source_engine)
        ddl = sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} TYPE {2} USING {1}::{2}, ALTER COLUMN {1} {3}").format(
            _ident(table),
            sql.Identifier(name),
            sql.SQL(pg_type),
            sql.SQL("SET NOT NULL" if column.not_null else "DROP NOT NULL"),
        )
        self._ddl(ddl, f"cannot change column {name} of {table} to {pg_type}")

    def _ddl(self, ddl: sql.Composed, what: str) -> None:
        try:
            self.conn.execute(ddl)
            self.conn.commit()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise TransientError(f"lost the target connection: {first_line(exc)}") from None
        except psycopg.Error as exc:
            self.rollback()
            raise SchemaError(f"{what}: {first_line(exc)}; change the target by hand, then restart") from None
        self._stages.clear()

    def commit(self, checkpoint: Checkpoint) -> None:
        with self._guard():
            self.conn.execute(
                sql.SQL(
                    # the history row in the same statement (one round trip; see replicator.history)
                    "WITH h AS (INSERT INTO {}.checkpoint_history (flow, position, source_commit_time,"
                    " changes_applied, transactions_applied, recorded_at)"
                    " VALUES (%s, %s, %s, %s, %s, clock_timestamp()))"
                    " INSERT INTO {}.checkpoints AS c (flow, position, source_commit_time,"
                    " changes_applied, transactions_applied, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, clock_timestamp())"
                    " ON CONFLICT (flow) DO UPDATE SET position = EXCLUDED.position,"
                    " source_commit_time = EXCLUDED.source_commit_time,"
                    " changes_applied = EXCLUDED.changes_applied,"
                    " transactions_applied = EXCLUDED.transactions_applied,"
                    " updated_at = EXCLUDED.updated_at"
                ).format(sql.Identifier(self.state_schema), sql.Identifier(self.state_schema)),
                (
                    checkpoint.flow,
                    checkpoint.position,
                    checkpoint.source_commit_time,
                    checkpoint.changes_applied,
                    checkpoint.transactions_applied,
                ) * 2,
            )
            self.conn.commit()
            self._deferred = False

    def rollback(self) -> None:
        self._deferred = False
        self._stages.clear()  # temp tables created in the aborted transaction are gone
        try:
            self.conn.rollback()
        except psycopg.Error:
            pass

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass

    def _guard(self) -> _Guard:
        return _Guard(self)


class _Guard:
    """Translate driver errors into the replicator's categories."""

    def __init__(self, sink: PostgresSink) -> None:
        self.sink = sink

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, psycopg.Error):
            return
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or self.sink.conn.closed:
            raise TransientError(f"lost the target connection: {first_line(exc)}") from None
        self.sink.rollback()
        raise DataError(f"the target rejected a write: {first_line(exc)}") from None


def _write_fields(copy: psycopg.Copy, rows: list[list[bytes]]) -> None:
    """Send rows of COPY text fields, a chunk of rows per message. A row from a MySQL source
    is one ``str`` field: its whole line (see :mod:`replicator.mysql.passthrough`)."""
    first: object = rows[0][0] if rows else None
    tab, nl = ("\t", "\n") if isinstance(first, str) else (b"\t", b"\n")  # type: Any, Any
    for i in range(0, len(rows), COPY_CHUNK_ROWS):
        chunk = [tab.join(fields) for fields in rows[i : i + COPY_CHUNK_ROWS]]
        chunk.append(nl[:0])
        copy.write(nl.join(chunk))
