"""A table's mapping applied to passthrough rows (PostgreSQL -> PostgreSQL), on their text.

Passthrough (:mod:`replicator.pg.passthrough`) keeps rows as pgoutput's text and never builds
Python values: that is what makes PostgreSQL -> PostgreSQL fast. A mapping would normally force
every column through Python values and back; here only what the mapping touches is: renamed
and dropped columns are just moved, and a rule column is converted on its text --

* ``map``: a dictionary from the source value's text to the target value's text;
* ``format`` of a ``date`` column: ISO text -> date -> the format;
* ``mask`` of a text column: a hash of the text;

and the filter and validation rules decode just the columns they read (text, integers,
numerics, booleans, dates). The results are the very values the Python path computes (the
tests run both). A table whose mapping needs more (expressions, chained rules, other source
types, a key column with a rule, audit) is not eligible and takes the normal path.
"""

from __future__ import annotations

import hashlib
from binascii import hexlify
import hmac
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from ..config import ColumnRule, TableConfig
from ..mapping import TableInfo
from ..expr import ExprEvalError
from ..transform import Rejected, RowTransform
from .passthrough import KEY_TYPES, NULL, RawRows, escape

Field = bytes
_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}
_ESCAPED = re.compile(rb"\\(.)")
_TEXT_TYPES = ("text", "character varying", "character(")
DATE_CACHE = 100_000  # formatted dates remembered per column


def unescape(field: bytes) -> bytes:
    if b"\\" not in field:
        return field
    return _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(1)), field)


def _text(field: bytes) -> str:
    return field.decode() if b"\\" not in field else unescape(field).decode()


_INLINE: dict[Callable[[bytes], Any], tuple[str, dict[str, Any]]] = {}
"""Rule functions whose common case the generated row builder inlines: a Python-level call
per column and row is a large share of a mapping's cost. ``{x}`` is the field, ``{g}`` the
function itself (the uncommon case), other names are bound from the dict."""


def _builder(parts: list[tuple[int, Callable[[bytes], Any] | None]], constants: list[bytes], as_dict: list[str] | None = None,
             nullable: bool = False) -> Callable[[list[bytes]], Any]:
    """A function of a row's fields built once per table: a list (or a dict with keys
    ``as_dict``) of ``fields[i]`` or ``fn(fields[i])``, then the constants. Generated code holds
    only indices and generated names; the functions and constants are bound as arguments."""
    env: dict[str, Any] = {"NULL": NULL}
    items = []
    for n, (i, fn) in enumerate(parts):
        if fn is None:
            items.append(f"f[{int(i)}]")
        else:
            env[f"g{n}"] = fn
            call = f"g{n}(f[{int(i)}])"
            inline = _INLINE.get(fn)
            if inline is not None:  # the common case in the generated code, the function for the rest
                template, names = inline
                for k, v in names.items():
                    env[f"{k}{n}"] = v
                call = template.format(x=f"f[{int(i)}]", g=f"g{n}", **{k: f"{k}{n}" for k in names})
            elif fn is _text:  # inlined: most text has nothing to unescape
                call = f"(f[{int(i)}].decode() if BS not in f[{int(i)}] else {call})"
                env["BS"] = b"\\"
            items.append(f"(None if f[{int(i)}] is NULL else {call})" if nullable else call)
    for n, value in enumerate(constants):
        env[f"c{n}"] = value
        items.append(f"c{n}")
    if as_dict is not None:
        for n, key in enumerate(as_dict):
            env[f"k{n}"] = key
        body = "{" + ", ".join(f"k{n}: {item}" for n, item in enumerate(items)) + "}"
    else:
        body = "[" + ", ".join(items) + "]"
    args = ", ".join(env)
    code = f"def make({args}):\n    def build(f):\n        return {body}\n    return build\n"
    scope: dict[str, Any] = {}
    exec(compile(code, "<rawtransform>", "exec"), {"__builtins__": {}}, scope)
    return scope["make"](**env)  # type: ignore[no-any-return]



def _decoder(type_name: str) -> Callable[[bytes], Any] | None:
    """Text -> the Python value the normal path would have (None: not decoded here)."""
    if type_name in ("text", "uuid") or type_name.startswith(("character varying", "character(")):
        return _text
    if type_name in ("smallint", "integer", "bigint"):
        return int
    if type_name.startswith("numeric"):
        return lambda f: Decimal(f.decode())
    if type_name == "boolean":
        return lambda f: f == b"t"
    if type_name == "date":
        return lambda f: date.fromisoformat(f.decode())
    return None


def _decode(columns: list[tuple[str, int, Callable[[bytes], Any]]], fields: list[bytes]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, i, dec in columns:
        f = fields[i]
        row[name] = None if f is NULL else dec(f)
    return row


def _literal(value: Any) -> bytes | None:
    """A map value as a COPY text field (None: cannot be one exactly)."""
    if value is None:
        return NULL
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        return None
    return escape(str(value).encode())


def _rule_fn(column: str, rule: ColumnRule, src_type: str) -> Callable[[bytes], bytes] | None:
    """The rule applied to a text field, or None if it cannot be (the normal path takes it)."""
    steps = [rule.map is not None, rule.format is not None, rule.mask is not None, rule.currency is not None,
             rule.expr is not None]
    if sum(steps) != 1:
        return None
    if rule.map is not None:
        if not (src_type in ("text", "smallint", "integer", "bigint") or src_type.startswith(_TEXT_TYPES[1:])):
            return None
        table: dict[bytes, bytes] = {}
        for k, v in rule.map.items():
            out = _literal(v)
            if out is None or k is None or isinstance(k, (bool, float)):
                return None
            table[escape(str(k).encode())] = out
        has_default = "default" in rule.model_fields_set
        default = _literal(rule.default) if has_default else None
        if has_default and default is None:
            return None
        where = f"columns.{column}.map"

        def lookup(field: bytes) -> bytes:
            if field is NULL:
                return NULL
            out = table.get(field)
            if out is None:
                if default is None:
                    raise Rejected(where, f"value {_text(field)!r} is not in the map and there is no default")
                return default
            return out

        _INLINE[lookup] = ("({T}.get({x}) or {g}({x}))", {"T": table})
        return lookup
    if rule.format is not None:
        if src_type != "date":
            return None
        from ..formats import date_format

        to_text = date_format(rule.format, timezone=rule.timezone).to_target
        where = f"columns.{column}.format"
        # A date column holds few distinct values (36,525 days in a century): remember them.
        seen: dict[bytes, bytes] = {}

        def fmt(field: bytes) -> bytes:
            if field is NULL:
                return NULL
            out = seen.get(field)
            if out is not None:
                return out
            try:
                out = escape(to_text(date.fromisoformat(field.decode())).encode())
            except ValueError as exc:
                raise Rejected(where, str(exc)) from None
            if len(seen) < DATE_CACHE:
                seen[field] = out
            return out

        _INLINE[fmt] = ("({C}.get({x}) or {g}({x}))", {"C": seen})
        return fmt
    if rule.mask is not None:
        if not (src_type == "text" or src_type.startswith(_TEXT_TYPES[1:])):
            return None
        if rule.mask == "redact":
            return lambda field: NULL
        algo: str = rule.mask
        key = rule.mask_key.encode() if rule.mask_key is not None else None

        if key is not None:
            def keyed(field: bytes) -> bytes:
                if field is NULL:
                    return NULL
                return hmac.new(key, unescape(field), algo).hexdigest().encode()

            return keyed
        ctor = getattr(hashlib, algo)

        def mask(field: bytes) -> bytes:
            if field is NULL:
                return NULL
            return hexlify(ctor(field if b"\\" not in field else unescape(field)).digest())

        _INLINE[mask] = ("({g}({x}) if {x} is {N} or {B} in {x} else {H}({S}({x}).digest()))",
                         {"N": NULL, "B": b"\\", "H": hexlify, "S": ctor})
        return mask
    return None


FILTER_MEMO = 10_000  # distinct filter inputs remembered per table


def _memo_filter(predicate: Callable[[Any], bool], decode: Callable[[list[bytes]], Any],
                 indices: list[int]) -> Callable[[list[bytes]], bool]:
    """The filter as a function of a row's fields, remembering its result per distinct input:
    filters mostly read few, repetitive columns (status, country), so most rows cost one
    dictionary lookup instead of decoding and evaluating. The result depends only on those
    fields' text (the predicate is pure), so remembering it is exact."""
    key: Callable[[list[bytes]], Any]
    if not indices:
        key = lambda fields: None  # noqa: E731  # the filter reads no column
    elif len(indices) == 1:
        only = indices[0]
        key = lambda fields: fields[only]  # noqa: E731
    else:
        from operator import itemgetter

        key = itemgetter(*indices)  # type: ignore[assignment]
    seen: dict[Any, bool] = {}

    def matches(fields: list[bytes]) -> bool:
        k = key(fields)
        hit = seen.get(k)
        if hit is None:
            try:
                hit = predicate(decode(fields)) is True
            except ExprEvalError as exc:
                raise Rejected("filter", str(exc)) from None
            if len(seen) < FILTER_MEMO:
                seen[k] = hit
        return hit

    return matches


class RawTransform:
    """Applies a table's mapping to :class:`RawRows` (see module docstring)."""

    def __init__(self, rt: RowTransform, names: tuple[str, ...], plain: list[int], rules: list[tuple[int, Callable[[bytes], bytes]]],
                 out_names: tuple[str, ...], defaults: list[bytes], filter_cols: list[tuple[str, int, Callable[[bytes], Any]]],
                 check_cols: list[tuple[str, int, Callable[[bytes], Any]]]) -> None:
        self.rt = rt
        self.names = names  # the source column list the plan was made for
        self.decoders: dict[str, Callable[[bytes], Any]] = {}
        self.out_names = out_names
        parts: list[tuple[int, Callable[[bytes], Any] | None]] = [(i, None) for i in plain]
        parts += [(i, fn) for i, fn in rules]
        self._row = _builder(parts, defaults)
        decoders: list[tuple[int, Callable[[bytes], Any] | None]] = [(i, dec) for _n, i, dec in filter_cols]
        self._filter_row = _builder(decoders, [], [n for n, _i, _d in filter_cols], nullable=True)
        self._check_cols = check_cols
        self._filter: Callable[[list[bytes]], bool] | None = None
        if rt.filter is not None:
            self._filter = _memo_filter(rt.filter.predicate or rt.filter.test, self._filter_row,
                                        [i for _n, i, _d in filter_cols])
        self._checks = bool(rt.validate or rt.fits)

    def apply(self, item: RawRows) -> tuple[list[RawRows], list[tuple[Any, dict[str, Any], Rejected]]]:
        """The groups to write (in order) and the rejected rows (key, sanitized row, why)."""
        if item.names != self.names:
            raise Replan
        out: list[RawRows] = []
        rejected: list[tuple[Any, dict[str, Any], Rejected]] = []
        if item.op == "d":
            return [RawRows(item.table, self.out_names, "d", item.keys, [])], rejected
        make_row, flt = self._row, self._filter
        keep_keys: list[Any] = []
        keep_fields: list[list[bytes]] = []
        gone: list[Any] = []
        update = item.op == "u"
        current = ""  # the kind of the open group: "w" rows to write, "d" keys to delete

        def close() -> None:
            if keep_keys:
                out.append(RawRows(item.table, self.out_names, item.op, keep_keys[:], keep_fields[:]))
                del keep_keys[:], keep_fields[:]
            if gone:
                out.append(RawRows(item.table, self.out_names, "d", gone[:], []))
                del gone[:]

        for key, fields in zip(item.keys, item.fields):
            try:
                if flt is not None and not flt(fields):
                    if update:
                        if current == "w":
                            close()
                        current = "d"
                        gone.append(key)
                    continue
                row = make_row(fields)
                if self._checks:
                    self._check(fields, row)
            except Rejected as exc:
                rejected.append((key, self._sanitized(fields), exc))
                continue
            if current == "d":
                close()
            current = "w"
            keep_keys.append(key)
            keep_fields.append(row)
        close()
        return out, rejected

    def _check(self, fields: list[bytes], row: list[bytes]) -> None:
        values = _decode(self._check_cols, row)
        rt = self.rt
        for name, value in values.items():
            fit = rt.fits.get(name)
            if fit is not None:
                problem = fit(value)
                if problem:
                    raise Rejected(f"columns.{name}", problem)
        if rt.validate:
            rt.check({}, values)

    def _sanitized(self, fields: list[bytes]) -> dict[str, Any]:
        """The row as the values path shows it in a dead letter: excluded columns left out,
        masked ones masked; values decoded where this module can, else their text."""
        rt = self.rt
        out: dict[str, Any] = {}
        for name, field in zip(self.names, fields):
            if name in rt.excluded:
                continue
            value = None if field is NULL else self.decoders.get(name, _text)(field)
            out[name] = rt._mask_for_show(name, value) if name in rt.masked else value
        return out

    def key_row(self, key: Any, columns: tuple[str, ...]) -> dict[str, Any]:
        """A passthrough key (raw text) as a row of source values."""
        parts = key if isinstance(key, tuple) else (key,)
        out: dict[str, Any] = {}
        for c, p in zip(columns, parts):  # keys are unescaped already
            dec = self.decoders.get(c)
            out[c] = p.decode() if dec is None or dec is _text else dec(p)
        return out


class Replan(Exception):
    """The rows' column list is not the one the plan was made for (a DDL on the source)."""


def plan(table: TableConfig, rt: RowTransform, source: TableInfo, target: TableInfo,
         names: tuple[str, ...] | None = None) -> RawTransform | None:
    """The raw plan for ``rt`` over the source columns ``names``, or None if not eligible."""
    if rt.computed or table.reversed:
        return None
    names = names or source.column_names
    src_types = {c.name: c.type for c in source.columns}
    dst_types = {c.name: c.type for c in target.columns}
    mapping = rt.mapping
    plain: list[int] = []
    out_names: list[str] = []
    rules: list[tuple[int, Callable[[bytes], bytes]]] = []
    rule_out: list[str] = []
    by_rule = {src: dst for src, dst, _fn in rt.rules}
    for i, name in enumerate(names):
        if name in rt.dropped:
            continue
        if name in by_rule:
            rule = table.rule(name)
            fn = _rule_fn(name, rule, src_types.get(name, "")) if rule is not None else None
            if fn is None:
                return None
            rules.append((i, fn))
            rule_out.append(by_rule[name])
            continue
        out = mapping.target_name(name)
        if dst_types.get(out) != src_types.get(name):
            return None  # a plain column must have the very same type on both sides
        plain.append(i)
        out_names.append(out)
    if not plain:
        return None
    key_inputs = {mapping.target_name(n) for n in names if n not in rt.dropped and n not in by_rule}
    if any(k not in key_inputs or dst_types.get(k) not in KEY_TYPES and not dst_types.get(k, "").startswith(
            ("character varying", "character(")) for k in rt.target_key):
        return None
    defaults: list[bytes] = []
    for name, value in rt.defaults.items():
        lit = _literal(value)
        if lit is None:
            return None
        defaults.append(lit)
    all_out = tuple(out_names + rule_out + list(rt.defaults))
    index = {n: i for i, n in enumerate(names)}
    filter_cols: list[tuple[str, int, Callable[[bytes], Any]]] = []
    if rt.filter is not None:
        for col in rt.filter.columns:
            dec = _decoder(src_types.get(col, ""))
            if dec is None or col not in index:
                return None
            filter_cols.append((col, index[col], dec))
    check_cols: list[tuple[str, int, Callable[[bytes], Any]]] = []
    needed = set(rt.fits) & set(all_out)
    for expr in rt.validate:
        needed |= set(expr.columns)
    out_index = {n: i for i, n in enumerate(all_out)}
    for col in sorted(needed):
        dec = _decoder(dst_types.get(col, ""))
        if dec is None or col not in out_index:
            return None
        check_cols.append((col, out_index[col], dec))
    raw = RawTransform(rt, tuple(names), plain, rules, all_out, defaults, filter_cols, check_cols)
    for name in names:
        dec = _decoder(src_types.get(name, ""))
        if dec is not None:
            raw.decoders[name] = dec
    return raw


def raw_key(rt: RowTransform) -> tuple[str, ...]:
    """The source columns of the target key (plain columns, checked by :func:`plan`)."""
    by_target = {t: s for s, t in rt.mapping._names.items()}
    return tuple(by_target[k] for k in rt.target_key)
