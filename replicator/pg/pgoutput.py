"""Decode PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

Why a pure decoder: receiving the stream (libpq COPY_BOTH, keepalives, feedback) and making
sense of its bytes are different jobs. Keeping the byte-level part free of I/O means every
message shape can be unit-tested from byte fixtures, the stream reader stays small, and the
decoder is reusable by the slower ``pg_logical_slot_peek_binary_changes`` fallback.

The decoder is stateful only where the protocol is: pgoutput sends a Relation message (and,
for non-built-in column types, a Type message) once per session before the first change of a
table, and later messages refer to the relation by OID only. Call :meth:`PgOutputDecoder.reset`
(or use a new decoder) whenever a new replication session starts.

Transactions. pgoutput v1 sends a transaction only after it committed, as Begin, an optional
Origin (always right after Begin, for transactions written under a replication origin),
the changes, then Commit. The decoder holds the Begin back and emits it lazily, right before
the first Change or the Commit of the transaction, so that the emitted :class:`Begin` already
carries the ``origin`` (the loop guard needs it before it sees any change). The Commit's
``position`` is the commit's *end* LSN, the position to acknowledge and resume from.

Values. Column values arrive in PostgreSQL's text output format. They are converted with
psycopg's own loaders (C-accelerated with psycopg-binary), one
:class:`psycopg.adapt.Transformer` per relation with the loader types set once, and each row
loaded with a single ``load_sequence`` call. This gives the same Python types a snapshot read
through psycopg gives: ``Decimal`` for numeric (``NaN`` too), tz-aware ``datetime`` for
timestamptz, parsed JSON, ``bytes`` for bytea, ``UUID``, ``timedelta``, lists for arrays of
built-in types, ``str`` for enums and other types psycopg does not know. A domain over a
built-in type is loaded like its base type (pgoutput describes it in a Type message), because
a normal query's row description reports the base type too.

Loaders assume the server's default output styles, so the replication session must run
with ``DateStyle=ISO``, ``IntervalStyle=postgres``, ``client_encoding=UTF8``, and should run
with ``TimeZone=UTC`` and ``extra_float_digits=3`` (e.g. ``options='-c TimeZone=UTC ...'`` in the
conninfo). Without a connection psycopg loads timestamptz values in UTC: the text carries
the offset, so the instant is right whatever the server's TimeZone.

Values with no Python equivalent (``infinity``/``-infinity`` dates and timestamps, BC dates)
raise :class:`replicator.errors.DataError` naming the table and column.

Row conventions follow :mod:`replicator.records`: SQL NULL is ``None``; an unchanged TOASTed
value (pgoutput's ``'u'``) is *absent* from the row dict. ``key`` holds the columns pgoutput
flags as part of the replica identity (all columns under ``REPLICA IDENTITY FULL``), or is
``None`` for a table without one. An old tuple of kind ``'K'`` carries only the identity
columns (the others arrive as ``'n'`` but are not NULL), so ``before`` then holds only those.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.abc import Transformer as TransformerProto
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import AdaptersMap, Loader, Transformer
from psycopg.pq import Format

from replicator.errors import DataError, ReplicatorError
from replicator.pg.passthrough import NULL as _RAW_NULL
from replicator.pg.passthrough import RAW_ROWS_MAX, RawKey, RawRows
from replicator.pg.passthrough import escape as _raw_escape
from replicator.records import (
    DELETE,
    INSERT,
    JSON_NULL,
    TRUNCATE,
    UPDATE,
    Begin,
    Change,
    Commit,
    Interval,
    Item,
    Row,
    TableId,
)

__all__ = [
    "Column",
    "PgOutputDecoder",
    "ProtocolError",
    "Relation",
    "lsn_to_str",
    "str_to_lsn",
]

_TEXT = Format.TEXT

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)

_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_BEGIN = struct.Struct(">QqI")  # final LSN, commit timestamp, xid
_COMMIT = struct.Struct(">BQQq")  # flags, commit LSN, end LSN, commit timestamp
_ORIGIN_LSN = struct.Struct(">Q")
_REL_HEAD = struct.Struct(">I")  # relation OID
_REL_TAIL = struct.Struct(">Bh")  # replica identity, number of columns
_COL_TAIL = struct.Struct(">Ii")  # type OID, type modifier
_TRUNC_HEAD = struct.Struct(">iB")  # number of relations, option bits
_unpack_i16 = _I16.unpack_from
_unpack_i32 = _I32.unpack_from
_unpack_u32 = _U32.unpack_from

# Message type bytes.
_B, _C, _O, _R, _Y, _I, _U, _D, _T, _M = b"BCORYIUDTM"
# Old/new tuple markers (tuple column kinds are inlined in _read_tuple).
_OLD_KEY, _OLD_FULL, _NEW = b"KON"

_LSN_RE = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")

_REPLICA_IDENTITY = {ord("d"): "default", ord("n"): "nothing", ord("f"): "full", ord("i"): "index"}


class ProtocolError(ReplicatorError, ValueError):
    """The replication stream does not follow pgoutput protocol version 1 as expected."""


def lsn_to_str(lsn: int) -> str:
    """Format an LSN the way PostgreSQL does: ``0x16B374D848`` -> ``'16/B374D848'``."""
    if not 0 <= lsn <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(s: str) -> int:
    """Parse a PostgreSQL LSN: ``'16/B374D848'`` -> ``0x16B374D848``."""
    match = _LSN_RE.fullmatch(s.strip())
    if match is None:
        raise ValueError(f"not a PostgreSQL LSN (expected e.g. '16/B374D848'): {s!r}")
    return (int(match[1], 16) << 32) | int(match[2], 16)


def _pg_timestamp(us: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return _PG_EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Column:
    """One column as described by a Relation message."""

    name: str
    type_oid: int
    type_modifier: int
    is_key: bool
    """Part of the replica identity (every column under ``REPLICA IDENTITY FULL``)."""


@dataclass(eq=False, slots=True)
class Relation:
    """A table as last described by a Relation message, plus what decoding needs."""

    oid: int
    table: TableId
    replica_identity: str
    """``default``, ``nothing``, ``full`` or ``index``."""
    columns: tuple[Column, ...]
    names: tuple[str, ...]
    key_names: tuple[str, ...]
    transformer: TransformerProto
    passthrough: tuple[int, ...] | None = None
    """Positions of the target key's columns when the table is in passthrough (see
    :mod:`replicator.pg.passthrough`): its simple changes are emitted as ``RawRows``."""
    raw_heads: tuple[bytes, bytes] = (b"", b"")
    """Passthrough: the first 8 bytes of an Insert and of an Update-without-old-tuple message
    of this relation (type, OID, 'N', column count), for :func:`_split_row`."""


class PgOutputDecoder:
    """Turn pgoutput v1 messages (XLogData payloads) into :mod:`replicator.records` items.

    Not thread-safe; one decoder per replication stream.
    """

    __slots__ = ("_adapters", "_relations", "_types", "_begin", "_in_tx", "_passthrough", "_pending")

    def __init__(self) -> None:
        # A private copy-on-write view of psycopg's global adapters: loaders the application
        # registered globally are honoured, domain loaders added here stay private.
        self._adapters = _private_adapters()
        self._relations: dict[int, Relation] = {}
        self._types: dict[int, tuple[str, str]] = {}
        self._begin: Begin | None = None  # Begin not yet emitted
        self._in_tx = False
        self._passthrough: dict[TableId, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._pending: RawRows | None = None  # passthrough rows not emitted yet

    def set_passthrough(self, tables: Mapping[TableId, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
        """Emit the simple changes of these tables as :class:`~replicator.pg.passthrough.RawRows`.

        ``tables`` maps a table to ``(columns, key)``: its source column names as they were when
        the flow checked it (a Relation message with other columns turns passthrough off for
        the table) and the source columns of the target key, in target-key order.
        """
        self._passthrough = dict(tables)
        for rel in list(self._relations.values()):
            self._relations[rel.oid] = self._make_relation(
                rel.oid, rel.table, rel.replica_identity, rel.columns
            )

    # -- public helpers ------------------------------------------------------------------

    @property
    def relations(self) -> Mapping[int, Relation]:
        """The relations described so far in this session, by OID."""
        return self._relations

    @property
    def types(self) -> Mapping[int, tuple[str, str]]:
        """Non-built-in types described by Type messages: OID -> (schema, name)."""
        return self._types

    def reset(self) -> None:
        """Forget all session state (relations, types, any half-received transaction).

        Call when a new replication session starts: the server re-sends Relation and Type
        messages, and restarts from a transaction boundary.
        """
        self._adapters = _private_adapters()
        self._relations.clear()
        self._types.clear()
        self._begin = None
        self._in_tx = False
        self._pending = None

    # -- decoding --------------------------------------------------------------------------

    def decode(self, data: bytes | memoryview) -> list[Item]:
        """Decode one pgoutput message; return the records it yields (often none or one)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data:
            raise ProtocolError("empty pgoutput message")
        try:
            return self._dispatch(data)
        except (struct.error, IndexError) as exc:
            raise ProtocolError(
                f"truncated or malformed pgoutput {chr(data[0])!r} message: {exc}"
            ) from exc

    def _dispatch(self, data: bytes) -> list[Item]:
        kind = data[0]
        if kind == _I:
            return self._insert(data)
        if kind == _U:
            return self._update(data)
        if kind == _D:
            return self._delete(data)
        if kind == _B:
            return self._begin_msg(data)
        if kind == _C:
            return self._commit(data)
        if kind == _R:
            self._relation(data)
            return []
        if kind == _O:
            self._origin(data)
            return []
        if kind == _Y:
            self._type(data)
            return []
        if kind == _T:
            return self._truncate(data)
        if kind == _M:
            return []  # logical decoding message (pg_logical_emit_message): not row data
        raise ProtocolError(
            f"unsupported pgoutput message type {chr(kind)!r} (only protocol version 1, "
            "without streaming or two-phase, is supported)"
        )

    # -- transaction framing ---------------------------------------------------------------

    def _begin_msg(self, data: bytes) -> list[Item]:
        if self._in_tx:
            raise ProtocolError(
                "Begin received inside a transaction (call reset() on a new session)"
            )
        final_lsn, ts, xid = _BEGIN.unpack_from(data, 1)
        self._begin = Begin(xid=xid, commit_time=_pg_timestamp(ts), position=final_lsn)
        self._in_tx = True
        return []

    def _origin(self, data: bytes) -> None:
        if self._begin is None:
            raise ProtocolError("Origin message not directly after Begin")
        name, _ = _read_string(data, 1 + _ORIGIN_LSN.size)
        self._begin.origin = name

    def _commit(self, data: bytes) -> list[Item]:
        if not self._in_tx:
            raise ProtocolError("Commit received outside a transaction")
        _flags, _commit_lsn, end_lsn, ts = _COMMIT.unpack_from(data, 1)
        commit = Commit(position=end_lsn, commit_time=_pg_timestamp(ts))
        begin = self._begin
        self._begin = None
        self._in_tx = False
        pending = self._pending
        if pending is not None:
            self._pending = None
            return [pending, commit]  # type: ignore[list-item]
        return [begin, commit] if begin is not None else [commit]

    def _emit(self, change: Change) -> list[Item]:
        begin = self._begin
        if begin is None:
            if not self._in_tx:
                raise ProtocolError("row change received outside a transaction")
            pending = self._pending
            if pending is not None:
                self._pending = None
                return [pending, change]  # type: ignore[list-item]
            return [change]
        self._begin = None
        return [begin, change]

    def _raw(self, rel: Relation, op: str, key: RawKey, fields: list[bytes] | None) -> list[Item]:
        """Add a passthrough row to the pending :class:`RawRows` (same relation, same kind of
        change); emits what must come before it: the Begin, or the pending group it cannot
        join. Pending rows go out at the latest with the Commit, which pgoutput sends right
        after the transaction's last change."""
        pending = self._pending
        out: list[Item] = []
        if pending is not None:
            if pending.names is rel.names and pending.op == op and len(pending.keys) < RAW_ROWS_MAX:
                pending.keys.append(key)
                if fields is not None:
                    pending.fields.append(fields)
                return out
            out.append(pending)  # type: ignore[arg-type]
        else:
            begin = self._begin
            if begin is not None:
                out.append(begin)
                self._begin = None
            elif not self._in_tx:
                raise ProtocolError("row change received outside a transaction")
        self._pending = RawRows(rel.table, rel.names, op, [key], [] if fields is None else [fields])
        return out

    # -- schema messages -------------------------------------------------------------------

    def _relation(self, data: bytes) -> None:
        (oid,) = _REL_HEAD.unpack_from(data, 1)
        namespace, pos = _read_string(data, 1 + _REL_HEAD.size)
        name, pos = _read_string(data, pos)
        ident, ncols = _REL_TAIL.unpack_from(data, pos)
        pos += _REL_TAIL.size
        columns = []
        for _ in range(ncols):
            flags = data[pos]
            colname, pos = _read_string(data, pos + 1)
            type_oid, typmod = _COL_TAIL.unpack_from(data, pos)
            pos += _COL_TAIL.size
            columns.append(Column(colname, type_oid, typmod, bool(flags & 1)))
        table = TableId(namespace or "pg_catalog", name)
        self._relations[oid] = self._make_relation(
            oid, table, _REPLICA_IDENTITY.get(ident, chr(ident)), tuple(columns)
        )

    def _make_relation(
        self, oid: int, table: TableId, ident: str, columns: tuple[Column, ...]
    ) -> Relation:
        tx = Transformer(self._adapters)
        tx.set_loader_types([c.type_oid for c in columns], _TEXT)
        names = tuple(c.name for c in columns)
        passthrough = None
        raw_heads = (b"", b"")
        spec = self._passthrough.get(table)
        if spec is not None and spec[0] == names:
            passthrough = tuple(names.index(n) for n in spec[1])
            tail = _U32.pack(oid) + b"N" + _I16.pack(len(columns))
            raw_heads = (b"I" + tail, b"U" + tail)
        return Relation(
            oid=oid,
            table=table,
            replica_identity=ident,
            columns=columns,
            names=names,
            key_names=tuple(c.name for c in columns if c.is_key),
            transformer=tx,
            passthrough=passthrough,
            raw_heads=raw_heads,
        )

    def _type(self, data: bytes) -> None:
        (oid,) = _unpack_u32(data, 1)
        namespace, pos = _read_string(data, 1 + _U32.size)
        name, _ = _read_string(data, pos)
        self._types[oid] = (namespace or "pg_catalog", name)
        # pgoutput describes a domain by its *base* type's schema and name. For a domain over
        # a built-in type, load it like the base type (as psycopg does in a normal query,
        # whose row description reports the base type).
        if namespace not in ("", "pg_catalog") or self._adapters.get_loader(oid, _TEXT):
            return
        if name.startswith("_"):
            info = self._adapters.types.get(name[1:])
            base = info.array_oid if info else 0
        else:
            info = self._adapters.types.get(name)
            base = info.oid if info else 0
        loader = self._adapters.get_loader(base, _TEXT) if base and base != oid else None
        if loader is None:
            return
        self._adapters.register_loader(oid, loader)
        for rel in list(self._relations.values()):
            if any(c.type_oid == oid for c in rel.columns):
                self._relations[rel.oid] = self._make_relation(
                    rel.oid, rel.table, rel.replica_identity, rel.columns
                )

    # -- row changes -----------------------------------------------------------------------

    def _rel(self, oid: int) -> Relation:
        try:
            return self._relations[oid]
        except KeyError:
            raise ProtocolError(
                f"change for relation OID {oid} before its Relation message"
            ) from None

    def _insert(self, data: bytes) -> list[Item]:
        # The hot path: kept flat on purpose (no helper calls beyond parse and load).
        rel = self._relations.get(_unpack_u32(data, 1)[0])
        if rel is None or data[5] != 78:  # 'N'
            raise self._bad_change(data, "Insert", "new tuple 'N'")
        if rel.passthrough is not None:
            raw = _split_row(rel, data, 0) or _raw_insert(rel, data)
            if raw is not None:
                pending = self._pending  # the hot path: append to the pending group of inserts
                if (
                    pending is not None
                    and pending.names is rel.names
                    and pending.op == INSERT
                    and len(pending.keys) < RAW_ROWS_MAX
                ):
                    pending.keys.append(raw[0])
                    pending.fields.append(raw[1])
                    return []
                return self._raw(rel, INSERT, raw[0], raw[1])
        values, unchanged, _ = _read_tuple(data, 6, rel)
        after = _load_row(rel, values, unchanged)
        key_names = rel.key_names
        if not key_names:
            key = None
        elif unchanged is None:
            key = {n: after[n] for n in key_names}
        else:
            key = {n: after[n] for n in key_names if n in after}
        change = Change(INSERT, rel.table, key, None, after)
        if self._begin is None and self._in_tx and self._pending is None:
            return [change]
        return self._emit(change)

    def _bad_change(self, data: bytes, what: str, expected: str) -> ProtocolError:
        (oid,) = _unpack_u32(data, 1)
        rel = self._relations.get(oid)
        if rel is None:
            return ProtocolError(f"{what} for relation OID {oid} before its Relation message")
        return ProtocolError(f"{what} for {rel.table}: expected {expected}, got {data[5:6]!r}")

    def _update(self, data: bytes) -> list[Item]:
        (oid,) = _unpack_u32(data, 1)
        rel = self._rel(oid)
        if rel.passthrough is not None:
            raw = _split_row(rel, data, 1) or _raw_update(rel, data)
            if raw is not None:
                pending = self._pending
                if (
                    pending is not None
                    and pending.names is rel.names
                    and pending.op == UPDATE
                    and len(pending.keys) < RAW_ROWS_MAX
                ):
                    pending.keys.append(raw[0])
                    pending.fields.append(raw[1])
                    return []
                return self._raw(rel, UPDATE, raw[0], raw[1])
        marker = data[5]
        before: Row | None = None
        key: Row | None
        pos = 6
        if marker == _OLD_KEY or marker == _OLD_FULL:
            values, unchanged, pos = _read_tuple(data, 6, rel)
            before = _load_row(rel, values, unchanged)
            if marker == _OLD_KEY:
                before = {n: before[n] for n in rel.key_names if n in before}
            key = _key(rel, before)
            marker = data[pos]
            pos += 1
        if marker != _NEW:
            raise ProtocolError(f"Update of {rel.table}: expected new tuple 'N'")
        values, unchanged, _ = _read_tuple(data, pos, rel)
        after = _load_row(rel, values, unchanged)
        if before is None:
            key = _key(rel, after)
        return self._emit(Change(UPDATE, rel.table, key, before, after, unchanged is not None))

    def _delete(self, data: bytes) -> list[Item]:
        (oid,) = _unpack_u32(data, 1)
        rel = self._rel(oid)
        if rel.passthrough is not None:
            old_key = _raw_delete(rel, data)
            if old_key is not None:
                return self._raw(rel, DELETE, old_key, None)
        marker = data[5]
        if marker != _OLD_KEY and marker != _OLD_FULL:
            raise ProtocolError(f"Delete from {rel.table}: expected old tuple 'K' or 'O'")
        values, unchanged, _ = _read_tuple(data, 6, rel)
        before = _load_row(rel, values, unchanged)
        if marker == _OLD_KEY:
            before = {n: before[n] for n in rel.key_names if n in before}
        return self._emit(Change(DELETE, rel.table, _key(rel, before), before, None))

    def _truncate(self, data: bytes) -> list[Item]:
        nrels, _options = _TRUNC_HEAD.unpack_from(data, 1)
        pos = 1 + _TRUNC_HEAD.size
        out: list[Item] = []
        for _ in range(nrels):
            (oid,) = _unpack_u32(data, pos)
            pos += 4
            out.extend(self._emit(Change(TRUNCATE, self._rel(oid).table, None, None, None)))
        return out


class _KeepJsonNull(Loader):
    """json/jsonb: the document ``null`` loads as JSON_NULL, not as None (= SQL NULL)."""

    base: type[Loader]

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._base = self.base(oid, context)

    def load(self, data: Buffer) -> object:
        value = self._base.load(data)
        return JSON_NULL if value is None else value


class _ExactInterval(Loader):
    """interval: psycopg's timedelta plus the exact text (months and years survive)."""

    base: type[Loader]

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._base = self.base(oid, context)

    def load(self, data: Buffer) -> object:
        return Interval(self._base.load(data), bytes(data).decode())


def use_exact_loaders(adapters: AdaptersMap) -> None:
    """Register the loaders that keep every value (JSON null, interval text) on ``adapters``
    (a connection's, for a snapshot read that must give what streaming gives)."""
    for name, wrapper in (("json", _KeepJsonNull), ("jsonb", _KeepJsonNull), ("interval", _ExactInterval)):
        info = adapters.types[name]
        base = adapters.get_loader(info.oid, _TEXT)
        if base is not None:
            adapters.register_loader(info.oid, type(wrapper.__name__, (wrapper,), {"base": base}))


def _private_adapters() -> AdaptersMap:
    """A copy-on-write view of psycopg's adapters with the loaders that keep every value."""
    adapters = AdaptersMap(psycopg.adapters)
    use_exact_loaders(adapters)
    return adapters


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    """Read a NUL-terminated UTF-8 string at ``pos``; return it and the position after it."""
    end = data.find(0, pos)
    if end < 0:
        raise ProtocolError("unterminated string in pgoutput message")
    return data[pos:end].decode(), end + 1


def _read_tuple(
    data: bytes, pos: int, rel: Relation
) -> tuple[list[bytes | None], list[int] | None, int]:
    """Read TupleData at ``pos``: raw values (None for NULL and unchanged-TOAST), indexes of
    the unchanged-TOAST columns (None if there are none), and the position after the tuple.

    The hot loop of the decoder: kind bytes are compared as int literals (``116`` = ``'t'``,
    ``110`` = ``'n'``, ``117`` = ``'u'``) to avoid global lookups.
    """
    (ncols,) = _unpack_i16(data, pos)
    if ncols != len(rel.names):
        raise ProtocolError(
            f"tuple for {rel.table} has {ncols} columns, but its Relation message has "
            f"{len(rel.names)}"
        )
    pos += 2
    unpack_len = _unpack_i32
    values: list[bytes | None] = []
    append = values.append
    unchanged: list[int] | None = None
    for i in range(ncols):
        kind = data[pos]
        if kind == 116:  # 't': text value
            (n,) = unpack_len(data, pos + 1)
            pos += 5
            append(data[pos : pos + n])
            pos += n
        elif kind == 110:  # 'n': NULL
            append(None)
            pos += 1
        elif kind == 117:  # 'u': unchanged TOASTed value, not sent
            append(None)
            pos += 1
            if unchanged is None:
                unchanged = [i]
            else:
                unchanged.append(i)
        elif kind == 98:  # 'b': binary value
            raise ProtocolError(
                f"binary value for {rel.table}.{rel.names[i]}: the decoder requests text format "
                "only (do not pass the 'binary' option to pgoutput)"
            )
        else:
            raise ProtocolError(f"unknown tuple column kind {kind!r} in {rel.table}.{rel.names[i]}")
    if pos > len(data):
        raise ProtocolError(f"truncated tuple data for {rel.table}")
    return values, unchanged, pos


# -- passthrough (see replicator.pg.passthrough) ---------------------------------------------


_SPLIT_SHORT_TEXT = re.compile(rb"t\x00\x00[\x00-\xff][\x00-\xff]").split


def _split_row(rel: Relation, data: bytes, which: int) -> tuple[RawKey, list[bytes]] | None:
    """The common case at C speed: an Insert (``which`` 0) or an Update without old tuple (1)
    whose values are all text shorter than 64 KiB; None otherwise.

    Every column header is then 't' and a 4-byte length starting with two zero bytes, and text
    values never contain a zero byte: b"t\\0\\0" occurs exactly at the column headers (or
    inside the relation OID: then the first part is not the expected 8-byte message head), so
    one split on the 5-byte headers yields every value. A row with NULLs, unchanged-TOAST or
    long values has fewer parts and takes the general path.
    """
    values = _SPLIT_SHORT_TEXT(data)
    if len(values) != len(rel.names) + 1 or values[0] != rel.raw_heads[which]:
        return None
    del values[0]
    idx: tuple[int, ...] = rel.passthrough  # type: ignore[assignment]
    key = values[idx[0]] if len(idx) == 1 else tuple([values[i] for i in idx])
    if 92 in data or 9 in data or 10 in data or 13 in data:  # backslash, tab, LF, CR
        values = _raw_fields(data, values, 0)
    return key, values


def _read_raw(data: bytes, pos: int, rel: Relation) -> tuple[list[bytes], int, int]:
    """Read TupleData at ``pos`` as text, unescaped: SQL NULL and unchanged-TOAST values are the
    :data:`~replicator.pg.passthrough.NULL` object. Returns the values, the position after the
    tuple and what it held besides text: 0 nothing, 1 NULLs, 2 an unchanged-TOAST value.
    Same hot loop as :func:`_read_tuple`."""
    (ncols,) = _unpack_i16(data, pos)
    if ncols != len(rel.names):
        raise ProtocolError(
            f"tuple for {rel.table} has {ncols} columns, but its Relation message has "
            f"{len(rel.names)}"
        )
    pos += 2
    unpack_len = _unpack_i32
    null = _RAW_NULL
    values: list[bytes] = []
    append = values.append
    other = 0
    for i in range(ncols):
        kind = data[pos]
        if kind == 116:  # 't'
            (n,) = unpack_len(data, pos + 1)
            pos += 5
            append(data[pos : pos + n])
            pos += n
        elif kind == 110:  # 'n'
            append(null)
            pos += 1
            other |= 1
        elif kind == 117:  # 'u'
            append(null)
            pos += 1
            other = 2
        else:
            raise ProtocolError(f"unexpected tuple column kind {kind!r} in {rel.table}.{rel.names[i]}")
    if pos > len(data):
        raise ProtocolError(f"truncated tuple data for {rel.table}")
    return values, pos, other


def _raw_key(values: list[bytes], idx: tuple[int, ...]) -> bytes | tuple[bytes, ...] | None:
    null = _RAW_NULL
    if len(idx) == 1:
        k = values[idx[0]]
        return None if k is null else k
    key = tuple([values[i] for i in idx])
    return None if any(v is null for v in key) else key


def _raw_fields(data: bytes, values: list[bytes], nulls: int) -> list[bytes]:
    """The values as COPY text fields: escaped if one holds a backslash, tab, newline or CR.
    Four scans of the message first (its length bytes can match too), then of the text. (An
    int operand makes ``in`` a plain memchr; a bytes one costs a caught TypeError first.)"""
    if 92 in data or 9 in data or 10 in data or 13 in data:  # backslash, tab, LF, CR
        null = _RAW_NULL
        text = b"".join([v for v in values if v is not null] if nulls else values)
        if 92 in text or 9 in text or 10 in text or 13 in text:
            return [v if v is null else _raw_escape(v) for v in values]
    return values


def _raw_insert(rel: Relation, data: bytes) -> tuple[RawKey, list[bytes]] | None:
    values, _, other = _read_raw(data, 6, rel)
    idx: tuple[int, ...] = rel.passthrough  # type: ignore[assignment]
    if len(idx) == 1:
        key: bytes | tuple[bytes, ...] | None = values[idx[0]]
        if key is _RAW_NULL:
            return None
    else:
        key = _raw_key(values, idx)
        if key is None:
            return None
    return key, _raw_fields(data, values, other)  # type: ignore[return-value]


def _raw_update(rel: Relation, data: bytes) -> tuple[RawKey, list[bytes]] | None:
    """A full-row update that keeps its key, or None (the normal path handles the rest)."""
    idx: tuple[int, ...] = rel.passthrough  # type: ignore[assignment]
    marker = data[5]
    if marker == _NEW:
        values, _, other = _read_raw(data, 6, rel)
        key = None if other == 2 else _raw_key(values, idx)
    elif marker == _OLD_KEY or marker == _OLD_FULL:
        old, pos, _ = _read_raw(data, 6, rel)
        if data[pos] != _NEW:
            return None
        values, _, other = _read_raw(data, pos + 1, rel)
        key = None if other == 2 else _raw_key(values, idx)
        if key is not None and key != _raw_key(old, idx):
            return None
    else:
        return None
    if key is None:
        return None
    return key, _raw_fields(data, values, other)


def _raw_delete(rel: Relation, data: bytes) -> RawKey | None:
    marker = data[5]
    if marker != _OLD_KEY and marker != _OLD_FULL:
        return None
    old, _, _ = _read_raw(data, 6, rel)
    return _raw_key(old, rel.passthrough)  # type: ignore[arg-type]


def _load_row(rel: Relation, values: list[bytes | None], unchanged: list[int] | None) -> Row:
    """Convert raw text values to Python values; drop unchanged-TOAST columns."""
    try:
        loaded = rel.transformer.load_sequence(values)
    except (psycopg.Error, ValueError, OverflowError) as exc:
        raise _value_error(rel, values) from exc
    row = dict(zip(rel.names, loaded))
    if unchanged is not None:
        names = rel.names
        for i in unchanged:
            del row[names[i]]
    return row


def _key(rel: Relation, row: Row) -> Row | None:
    if not rel.key_names:
        return None
    return {n: row[n] for n in rel.key_names if n in row}


def _value_error(rel: Relation, values: list[bytes | None]) -> DataError:
    """Find the column whose value cannot be loaded and describe it."""
    tx = rel.transformer
    for col, raw in zip(rel.columns, values):
        if raw is None:
            continue
        try:
            tx.get_loader(col.type_oid, _TEXT).load(raw)
        except Exception as exc:  # noqa: BLE001 - reported with context below
            text = raw[:60].decode(errors="replace") + ("…" if len(raw) > 60 else "")
            hint = ""
            if "infinity" in text or text.endswith(" BC"):
                hint = (
                    " (infinite and BC dates/timestamps have no Python value;"
                    " replace them in the source or exclude the column)"
                )
            info = psycopg.adapters.types.get(col.type_oid)
            typ = f"{info.name}, OID {col.type_oid}" if info else f"type OID {col.type_oid}"
            return DataError(
                f"cannot decode column {col.name!r} of table {rel.table} ({typ}) "
                f"value {text!r}: {exc}{hint}"
            )
    return DataError(f"cannot decode a row of {rel.table}")
