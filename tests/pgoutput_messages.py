"""Builders of pgoutput (protocol version 1) messages for byte-fixture tests.

``struct.pack`` per PostgreSQL's "Logical Replication Message Formats";
``tests/test_pgoutput.py::test_builder_matches_captured_bytes`` checks them byte for byte against
messages captured from a real server, so other tests may rely on them too.
"""

from __future__ import annotations

import struct
from typing import Any

import psycopg


UNCHANGED = object()
"""Tuple value marker for an unchanged TOASTed column (kind 'u')."""


def oid(name: str) -> int:
    """OID of a built-in type (stable across PostgreSQL versions)."""
    info = psycopg.postgres.types.get(name.removesuffix("[]"))
    assert info is not None
    return info.array_oid if name.endswith("[]") else info.oid


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def msg_begin(final_lsn: int, commit_ts_us: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, commit_ts_us, xid)


def msg_commit(commit_lsn: int, end_lsn: int, commit_ts_us: int, flags: int = 0) -> bytes:
    return b"C" + struct.pack(">BQQq", flags, commit_lsn, end_lsn, commit_ts_us)


def msg_origin(lsn: int, name: str) -> bytes:
    return b"O" + struct.pack(">Q", lsn) + cstr(name)


def msg_type(type_oid: int, namespace: str, name: str) -> bytes:
    return b"Y" + struct.pack(">I", type_oid) + cstr(namespace) + cstr(name)


def msg_relation(
    rel_oid: int,
    namespace: str,
    name: str,
    columns: list[tuple[str, int, int, bool]],
    identity: str = "d",
) -> bytes:
    """``columns``: (name, type OID, typmod, part of the replica identity)."""
    out = b"R" + struct.pack(">I", rel_oid) + cstr(namespace) + cstr(name)
    out += identity.encode() + struct.pack(">h", len(columns))
    for colname, type_oid, typmod, is_key in columns:
        out += struct.pack(">B", 1 if is_key else 0) + cstr(colname)
        out += struct.pack(">Ii", type_oid, typmod)
    return out


def tuple_data(values: list[Any]) -> bytes:
    """``None`` -> 'n', ``UNCHANGED`` -> 'u', str/bytes -> 't' (text format)."""
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def msg_insert(rel_oid: int, new: list[Any]) -> bytes:
    return b"I" + struct.pack(">I", rel_oid) + b"N" + tuple_data(new)


def msg_update(
    rel_oid: int, new: list[Any], old: list[Any] | None = None, old_kind: bytes = b"K"
) -> bytes:
    out = b"U" + struct.pack(">I", rel_oid)
    if old is not None:
        out += old_kind + tuple_data(old)
    return out + b"N" + tuple_data(new)


def msg_delete(rel_oid: int, old: list[Any], old_kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", rel_oid) + old_kind + tuple_data(old)


def msg_truncate(rel_oids: list[int], options: int = 0) -> bytes:
    return b"T" + struct.pack(">iB", len(rel_oids), options) + b"".join(
        struct.pack(">I", o) for o in rel_oids
    )


def msg_message(transactional: bool, lsn: int, prefix: str, content: bytes) -> bytes:
    return (
        b"M"
        + struct.pack(">BQ", 1 if transactional else 0, lsn)
        + cstr(prefix)
        + struct.pack(">i", len(content))
        + content
    )
