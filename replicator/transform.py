"""Per-table value transforms: what a row becomes between reading it and writing it.

A table's mapping in the config (``columns``, ``filter``, ``defaults``, ``validate``) is
compiled once into a :class:`RowTransform`; per row it is a few dict operations and the
precompiled functions of the columns that have rules. Pure: no I/O.

Order per row: the filter decides whether the row belongs on the target at all; then each
source column is renamed, dropped (``exclude``), or run through its rule -- ``expr``
(computed from the source row), then ``map``, then ``format``/``currency``, then ``mask`` --
``defaults`` fill target columns without a source, and the ``validate`` rules check the row
as it will be written. Anything that fails raises :class:`Rejected` (a dead letter, never a
guess); the pipeline decides what happens with it.

Formats are chosen by the value's type, so they are their own inverse: a date becomes text in
the format, and text in the format becomes a date; an integer amount becomes a decimal of
``minor_units`` digits and a decimal becomes integer minor units. That is how a mapping
declared once runs in both directions: a ``direction: reverse`` flow reads the other side and
applies the inverse of every rule -- renames swapped, value maps inverted (they must be
one-to-one), formats as they are. Computed and masked columns cannot be inverted (the source
value is gone): a reverse flow rejects them unless they are marked ``one_way``. Columns that
exist only on the written side (``defaults``, ``one_way``) are left out when reading back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .config import ColumnRule, TableConfig
from .expr import Expr, ExprError, ExprEvalError, MissingColumn, compile_expr
from .mapping import ColumnInfo, TableInfo, TableMapping
from .records import DELETE, TRUNCATE, UPDATE, Change, Row


class MappingError(ValueError):
    """A mapping that cannot work, at a key path relative to its table (``columns.x.expr``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class Rejected(Exception):
    """This row cannot be written: ``rule`` names the check or column rule, ``reason`` says why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


ValueFn = Callable[[Any], Any]

# -- one column's rule ----------------------------------------------------------------------


def _mask_fn(rule: ColumnRule) -> ValueFn:
    if rule.mask == "redact":
        return lambda value: None
    algo: str = rule.mask or "sha256"
    key = rule.mask_key.encode() if rule.mask_key is not None else None

    def mask(value: Any) -> Any:
        if value is None:
            return None
        data = value if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode()
        if key is not None:
            return hmac.new(key, bytes(data), algo).hexdigest()
        return hashlib.new(algo, bytes(data)).hexdigest()

    return mask


def _map_fn(table: dict[Any, Any], default: tuple[Any] | None, column: str) -> ValueFn:
    """``default`` is a 1-tuple when set (its value may be None: SQL NULL)."""
    missing = object()
    has_null = None in table

    def lookup(value: Any) -> Any:
        if value is None and not has_null:
            return None
        out = table.get(value, missing)
        if out is missing and not isinstance(value, str):
            out = table.get(str(value), missing)
        if out is missing:
            if default is None:
                raise Rejected(f"columns.{column}.map", f"value {_show(value)} is not in the map and there is no default")
            return default[0]
        return out

    return lookup


def _typed(fmt: Any) -> ValueFn:
    """A text format applied by value type: text is parsed (``to_source``), any other value is
    formatted (``to_target``), so the same function serves both directions."""
    to_target, to_source = fmt.to_target, fmt.to_source

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return to_source(value)
        return to_target(value)

    return convert


def _format_fn(rule: ColumnRule) -> ValueFn | None:
    from . import formats

    if rule.format is not None:
        return _typed(formats.date_format(rule.format, timezone=rule.timezone))
    if rule.currency is not None:
        cur = rule.currency
        if cur.minor_units is not None:
            minor = formats.minor_units(cur.minor_units)
            to_target, to_source = minor.to_target, minor.to_source

            def amount(value: Any) -> Any:
                if value is None:
                    return None
                if isinstance(value, int) and not isinstance(value, bool):
                    return to_target(value)
                return to_source(value)

            return amount
        assert cur.locale is not None
        return _typed(formats.currency_text(cur.locale, cur.code, plain_spaces=not cur.nbsp))
    return None


def _chain(column: str, steps: list[tuple[str, ValueFn]]) -> ValueFn:
    """Run the steps in order; a failing step raises Rejected naming the column and rule."""
    from .formats import ValueFormatError

    if len(steps) == 1:
        name, only = steps[0]

        def one(value: Any) -> Any:
            try:
                return only(value)
            except Rejected:
                raise
            except (ValueFormatError, ValueError, ArithmeticError, TypeError) as exc:
                raise Rejected(f"columns.{column}.{name}", str(exc)) from None

        return one

    def run(value: Any) -> Any:
        for name, step in steps:
            try:
                value = step(value)
            except Rejected:
                raise
            except (ValueFormatError, ValueError, ArithmeticError, TypeError) as exc:
                raise Rejected(f"columns.{column}.{name}", str(exc)) from None
        return value

    return run


def check_table(table: TableConfig) -> None:
    """What can be checked without a database: formats, SQL syntax, and (for a reversed
    table) that every rule can be inverted. Raises MappingError."""
    from .formats import FormatError

    for column, rule in table.columns.items():
        path = f"columns.{column}"
        try:
            fn = _format_fn(rule)
        except FormatError as exc:
            raise MappingError(f"{path}.{'format' if rule.format else 'currency'}", str(exc)) from None
        if rule.expr is not None:
            _syntax(rule.expr, f"{path}.expr")
        if table.reversed and not rule.one_way and not rule.exclude:
            if rule.expr is not None:
                raise MappingError(f"{path}.expr", f"column {column!r} is computed by an expression, which cannot be"
                                   " inverted for the reverse direction: mark it one_way: true")
            if rule.mask is not None:
                raise MappingError(f"{path}.mask", f"column {column!r} is masked, which cannot be inverted for the"
                                   " reverse direction: mark it one_way: true")
            if rule.map is not None:
                _invert_map(rule.map, f"{path}.map", column)
            if rule.format is not None and fn is not None:
                from . import formats

                fmt = formats.date_format(rule.format, timezone=rule.timezone)
                if not getattr(fmt, "reversible", True):
                    raise MappingError(f"{path}.format", f"column {column!r}: the format {rule.format!r} cannot be"
                                       f" read back ({getattr(fmt, 'why', 'it loses information')}): mark it one_way: true")
    if table.filter is not None:
        _syntax(table.filter, "filter")
    for i, rule_sql in enumerate(table.validate_):
        _syntax(rule_sql, f"validate[{i}]")


def _syntax(sql: str, path: str) -> None:
    import sqlglot

    try:
        sqlglot.parse_one(sql, read="postgres")
    except Exception as exc:  # sqlglot raises ParseError, TokenError and others
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MappingError(path, f"invalid SQL expression {sql!r}: {first}") from None


def _invert_map(table: Mapping[Any, Any], path: str, column: str) -> dict[Any, Any]:
    inverse: dict[Any, Any] = {}
    for k, v in table.items():
        if v in inverse:
            raise MappingError(path, f"column {column!r}: the map sends both {_show(inverse[v])} and {_show(k)} to"
                               f" {_show(v)}, so it cannot be inverted for the reverse direction:"
                               " make it one-to-one or mark the column one_way: true")
        inverse[v] = k
    return inverse


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the compiled table transform -----------------------------------------------------------


@dataclass
class RowTransform:
    """A table's compiled mapping, reading ``input`` rows (the side being read, its column
    names) and producing rows under the written side's names."""

    mapping: TableMapping  # input table -> output table, plain renames
    dropped: frozenset[str]  # input columns that are never written
    rules: list[tuple[str, str, ValueFn]]  # (input column, output column, function)
    computed: list[tuple[str, Expr, ValueFn | None]]  # (output column, expression, then)
    defaults: dict[str, Any]
    filter: Expr | None = None
    filter_on_output: bool = False
    validate: list[Expr] = field(default_factory=list)
    validate_on_output: bool = True
    masked: frozenset[str] = frozenset()  # input columns whose value must never be shown
    excluded: frozenset[str] = frozenset()  # input columns that never leave the source
    fits: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)  # output column checks
    _special: frozenset[str] = frozenset()
    _key_inputs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._special = self.dropped | {r[0] for r in self.rules}
        key = set(self.mapping.target_key)
        self._key_inputs = frozenset(
            [src for src, out in self.mapping._names.items() if out in key and src not in self._special]
            + [src for src, dst, _fn in self.rules if dst in key]
        )
        # the batch gets rows under the target's names already
        self.output = TableMapping(self.mapping.target, self.mapping.target, {}, target_key=self.mapping.target_key)

    def convert(self, change: Change) -> list[Change]:
        """The change as it is written: target names and values, the filter applied (an
        update of a row that no longer matches deletes it on the target). Raises Rejected."""
        op = change.op
        if op == TRUNCATE:
            return [change]
        table = change.table
        if op == DELETE:
            gone_key = self.key(change.before or change.key or {})
            return [Change(DELETE, table, gone_key, gone_key, None)]
        after = change.after
        assert after is not None
        out = self.written(after)
        if op != UPDATE:
            return [] if out is None else [Change(op, table, None, None, out)]
        old = self.key(change.before) if change.before is not None else None
        if out is not None:
            return [Change(UPDATE, table, old, old, out, change.partial)]
        if change.before is not None and self.filter is not None and self.full(change.before):
            try:  # it did not match before either: nothing to delete
                if self.written(change.before) is None:
                    return []
            except Rejected:
                pass
        key = self.target_key
        new = self.key(after)
        gone = [Change(DELETE, table, new, new, None)]
        if old is not None and any(old.get(k) != new.get(k) for k in key):
            gone.append(Change(DELETE, table, old, old, None))
        return gone

    @property
    def target_key(self) -> tuple[str, ...]:
        return self.mapping.target_key

    def row(self, row: Row) -> Row:
        """The row to write (output names); raises Rejected."""
        special = self._special
        names = self.mapping._names
        name = self.mapping.target_name
        out: Row = {}
        for k, v in row.items():
            if k in special:
                continue
            out[names[k] if k in names else name(k)] = v
        for src, dst, fn in self.rules:
            if src in row:
                out[dst] = fn(row[src])
        for dst, expr, then in self.computed:
            present = [c in row for c in expr.columns]
            if all(present):
                value = _eval(expr, row, f"columns.{dst}.expr")
                out[dst] = value if then is None else then(value)
            elif any(present):
                missing = sorted(c for c in expr.columns if c not in row)
                raise Rejected(f"columns.{dst}.expr", f"the source did not send column(s) {', '.join(missing)}"
                               " (unchanged TOAST value): cannot compute the value")
        if self.defaults:
            for k, v in self.defaults.items():
                out.setdefault(k, v)
        fits = self.fits
        if fits:
            for k, check in fits.items():
                if k in out:
                    problem = check(out[k])
                    if problem:
                        raise Rejected(f"columns.{k}", problem)
        return out

    def written(self, row: Row) -> Row | None:
        """The row as it is written, or None when the filter leaves it out (a row outside the
        filter is not transformed at all); raises Rejected."""
        if self.filter is not None and not self.filter_on_output:
            if not self.matches(row, None):
                return None
            out = self.row(row)
        else:
            out = self.row(row)
            if not self.matches(row, out):
                return None
        self.check(row, out)
        return out

    def full(self, row: Row) -> bool:
        """The row carries more than the key (a full old row, not just its identity)."""
        return any(k not in self._key_inputs for k in row)

    def key(self, row: Row) -> Row:
        """The target key (target names) of an input row, which may carry only its key."""
        out: Row = {}
        inputs = self._key_inputs
        names = self.mapping._names
        for k, v in row.items():
            if k in inputs and k in names:
                out[names[k]] = v
        for src, dst, fn in self.rules:
            if src in inputs and src in row:
                out[dst] = fn(row[src])
        return out

    def matches(self, row: Row, out: Row | None) -> bool:
        """Whether the row belongs on the target (the filter over the input or output row)."""
        flt = self.filter
        if flt is None:
            return True
        subject = out if self.filter_on_output else row
        if subject is None:
            raise ValueError("the filter reads the written row: transform it first")
        try:
            return flt.fn(subject) is True
        except MissingColumn as exc:
            raise Rejected("filter", f"the source did not send column {exc.column} (unchanged TOAST value):"
                           " cannot evaluate the filter") from None
        except ExprEvalError as exc:
            raise Rejected("filter", str(exc)) from None

    def check(self, row: Row, out: Row) -> None:
        """The validate rules; raises Rejected naming the first rule that fails. A rule fails
        when it is false; NULL (unknown) passes, as in a SQL CHECK constraint."""
        subject = out if self.validate_on_output else row
        for rule in self.validate:
            try:
                result = rule(subject)
            except MissingColumn:
                continue  # a partial update: the column did not change
            except ExprEvalError as exc:
                raise Rejected(f"validate: {rule.sql}", str(exc)) from None
            if result is not None and not result:  # as a CHECK constraint: unknown passes
                raise Rejected(f"validate: {rule.sql}", "the row does not pass this rule")

    def sanitize(self, row: Row | None) -> Row | None:
        """The input row without what must never leave the source (for dead letters): dropped
        columns left out, masked ones masked."""
        if row is None:
            return None
        out: Row = {}
        for k, v in row.items():
            if k in self.excluded:
                continue
            out[k] = self._mask_for_show(k, v)
        return out

    def _mask_for_show(self, column: str, value: Any) -> Any:
        if column not in self.masked:
            return value
        for src, _dst, fn in self.rules:
            if src == column:
                try:
                    return fn(value)
                except Rejected:
                    return "<masked>"
        return "<masked>"


def _eval(expr: Expr, row: Row, where: str) -> Any:
    try:
        return expr(row)
    except ExprEvalError as exc:
        raise Rejected(where, str(exc)) from None


def build(table: TableConfig, source: TableInfo, target: TableInfo) -> RowTransform:
    """Compile ``table``'s rules between the side being read (``source``) and the side being
    written (``target``), and bind its names. Raises MappingError, or SchemaError when the
    tables do not fit (a target column nothing feeds, a key not fed by the source)."""
    if table.reversed:
        return _build_reverse(table, source, target)
    src_cols = set(source.column_names)
    dst_cols = set(target.column_names)
    rules: list[tuple[str, str, ValueFn]] = []
    computed: list[tuple[str, Expr, ValueFn | None]] = []
    dropped: set[str] = set()
    masked: set[str] = set()
    for column, rule in table.columns.items():
        path = f"columns.{column}"
        if rule.expr is None:
            _need(column in src_cols, path, f"source table has no column {column!r}", src_cols)
        if rule.exclude:
            dropped.add(column)
            continue
        out = rule.name or column
        _need(out in dst_cols, path, f"target table has no column {out!r}", dst_cols)
        expr: Expr | None = None
        if rule.expr is not None:
            try:
                expr = compile_expr(rule.expr, source.column_names)
            except ExprError as exc:
                raise MappingError(f"{path}.expr", f"{exc} in {rule.expr!r}") from None
        steps: list[tuple[str, ValueFn]] = []
        if rule.map is not None:
            default = (rule.default,) if "default" in rule.model_fields_set else None
            steps.append(("map", _map_fn(dict(rule.map), default, column)))
        fmt = _format_fn(rule)
        if fmt is not None:
            steps.append(("format" if rule.format else "currency", fmt))
        if rule.mask is not None:
            steps.append(("mask", _mask_fn(rule)))
            masked.add(column)
        then = _chain(column, steps) if steps else None
        if expr is not None:
            computed.append((out, expr, then))
            if column in src_cols:
                dropped.add(column)
        elif then is not None:
            rules.append((column, out, then))
    for column in table.defaults:
        _need(column in dst_cols, f"defaults.{column}", f"target table has no column {column!r}", dst_cols)
    flt = _compile(table.filter, source.column_names, "filter") if table.filter else None
    validate = [_compile(v, target.column_names, f"validate[{i}]") for i, v in enumerate(table.validate_)]
    renames = {c: r.name or c for c, r in table.columns.items()
               if c not in dropped and c in src_cols}
    computed_outs = {c[0] for c in computed}
    for col in target.primary_key:
        if col in computed_outs:
            raise MappingError("columns", f"target key column {col!r} is computed by an expression: the key must"
                               " come from source columns (deletes carry only the key)")
    outputs: dict[str, str] = {}
    for column in source.column_names:
        if column not in dropped:
            _one_feed(outputs, renames.get(column, column), column)
    for out_col, _expr, _then in computed:
        _one_feed(outputs, out_col, f"an expression ({_expr.sql})")
    mapping = TableMapping(source.table, target.table, renames, skip=frozenset(dropped))
    mapping.bind(source, target)
    rt = RowTransform(mapping, frozenset(dropped), rules, computed, dict(table.defaults), flt, False,
                      validate, True, frozenset(masked), table.excluded)
    rt.fits = _fit_checks(target, {dst for _s, dst, _f in rules} | {c[0] for c in computed} | set(table.defaults)
                          | _retyped(mapping, source, target, dropped | {s for s, _d, _f in rules}))
    return rt


def _build_reverse(table: TableConfig, source: TableInfo, target: TableInfo) -> RowTransform:
    """``table`` as declared for the other direction: ``source`` is the declared target side."""
    src_cols = set(source.column_names)  # the declared target's columns (being read now)
    dst_cols = set(target.column_names)  # the declared source's columns (being written now)
    rules: list[tuple[str, str, ValueFn]] = []
    dropped: set[str] = set()
    for column, rule in table.columns.items():
        path = f"columns.{column}"
        declared_out = rule.name or column
        if rule.exclude:
            continue
        if rule.one_way:
            if declared_out in src_cols:
                dropped.add(declared_out)
            continue
        _need(column in dst_cols, path, f"table has no column {column!r}", dst_cols)
        _need(declared_out in src_cols, path, f"table has no column {declared_out!r}", src_cols)
        steps: list[tuple[str, ValueFn]] = []
        fmt = _format_fn(rule)
        if fmt is not None:
            steps.append(("format" if rule.format else "currency", fmt))
        if rule.map is not None:
            inverse = _invert_map(rule.map, f"{path}.map", column)
            default = (rule.reverse_default,) if "reverse_default" in rule.model_fields_set else None
            steps.append(("map", _map_fn(inverse, default, column)))
        if steps:
            rules.append((declared_out, column, _chain(column, steps)))
    for column in table.defaults:
        if column in src_cols:
            dropped.add(column)
    flt = _compile(table.filter, target.column_names, "filter") if table.filter else None
    validate = [_compile(v, source.column_names, f"validate[{i}]") for i, v in enumerate(table.validate_)]
    renames = {out: column for column, out in _declared_pairs(table) if out not in dropped}
    mapping = TableMapping(source.table, target.table, renames, skip=frozenset(dropped))
    mapping.bind(source, target)
    rt = RowTransform(mapping, frozenset(dropped), rules, [], {}, flt, True, validate, False)
    rt.fits = _fit_checks(target, {dst for _s, dst, _f in rules}
                          | _retyped(mapping, source, target, dropped | {s for s, _d, _f in rules}))
    return rt


def _declared_pairs(table: TableConfig) -> list[tuple[str, str]]:
    """(declared source column, declared target column) of the columns that cross."""
    out: list[tuple[str, str]] = []
    for column, rule in table.columns.items():
        if not rule.exclude and rule.expr is None:
            out.append((column, rule.name or column))
    return out


def _compile(sql: str, columns: tuple[str, ...], path: str) -> Expr:
    try:
        return compile_expr(sql, columns)
    except ExprError as exc:
        raise MappingError(path, f"{exc} in {sql!r}") from None


def _need(ok: bool, path: str, message: str, known: set[str]) -> None:
    if not ok:
        raise MappingError(path, f"{message} (columns: {', '.join(sorted(known))})")


def _one_feed(outputs: dict[str, str], target_column: str, feeder: str) -> None:
    if target_column in outputs:
        raise MappingError(f"columns.{feeder}" if not feeder.startswith("an ") else "columns",
                           f"target column {target_column!r} is fed twice: by {outputs[target_column]} and by {feeder}")
    outputs[target_column] = feeder


# -- does a value fit its target column? ----------------------------------------------------

_LEN = re.compile(r"^(?:character varying|varchar|character|char|nvarchar|nchar|bpchar)\((\d+)\)", re.I)
_NUM = re.compile(r"^(?:numeric|decimal)\((\d+)(?:,\s*(\d+))?\)", re.I)
_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "tinyint": (-128, 127),
    "mediumint": (-(2**23), 2**23 - 1),
}


def _retyped(mapping: TableMapping, source: TableInfo, target: TableInfo, skip: set[str]) -> set[str]:
    """Target columns fed as they are by a source column of another declared type (a value
    may not fit: varchar(200) into varchar(50)); same-typed columns always fit."""
    out: set[str] = set()
    for col in source.columns:
        if col.name in skip:
            continue
        name = mapping.target_name(col.name)
        dst = target.column(name)
        if dst is not None and dst.type != col.type:
            out.add(name)
    return out


def _fit_checks(target: TableInfo, columns: set[str]) -> dict[str, Callable[[Any], str | None]]:
    """Checks for transformed output columns, so that a value the target cannot hold is a
    dead letter naming the column instead of a failed batch."""
    checks: dict[str, Callable[[Any], str | None]] = {}
    for name in columns:
        col = target.column(name)
        if col is not None:
            check = _fit(col)
            if check is not None:
                checks[name] = check
    return checks


def _fit(col: ColumnInfo) -> Callable[[Any], str | None] | None:
    t = col.type.lower().strip()
    nullable = col.nullable
    tests: list[Callable[[Any], str | None]] = []
    m = _LEN.match(t)
    if m:
        limit = int(m.group(1))
        tests.append(lambda v: f"value {_show(v)} is longer than {limit} characters ({col.type})"
                     if isinstance(v, str) and len(v) > limit else None)
    m = _NUM.match(t)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2) or 0)

        def num(v: Any) -> str | None:
            if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
                d = Decimal(v)
                if not d.is_finite():
                    return None
                exponent = d.as_tuple().exponent
                assert isinstance(exponent, int)
                if exponent < -scale and d != d.quantize(Decimal(1).scaleb(-scale)):
                    return f"value {v} has more than {scale} decimal places ({col.type})"
                if d and d.adjusted() + 1 > precision - scale:  # digits before the point
                    return f"value {v} does not fit {col.type}"
            return None

        tests.append(num)
    base = t.split("(")[0].replace(" unsigned", "").strip()
    if base in _INT_RANGES:
        lo, hi = _INT_RANGES[base]
        if "unsigned" in t:
            lo, hi = 0, 2 * hi + 1
        tests.append(lambda v: f"value {v} is out of range for {col.type}"
                     if isinstance(v, int) and not isinstance(v, bool) and not lo <= v <= hi else None)
    if not nullable:
        tests.append(lambda v: f"NULL in NOT NULL column {col.name}" if v is None else None)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]

    def all_tests(v: Any) -> str | None:
        for test in tests:
            problem = test(v)
            if problem:
                return problem
        return None

    return all_tests
