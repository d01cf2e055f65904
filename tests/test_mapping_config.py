"""Unit tests of the mapping part of the configuration (``replicator.config``): column rules,
limits, audit, validate, the table helpers and ``direction: reverse`` (``reverse_table``).

Assertion messages starting with ``regression:`` describe a defect these tests found (fixed since).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from replicator.config import (
    AuditConfig,
    ColumnRule,
    Config,
    CurrencyConfig,
    LimitsConfig,
    TableConfig,
    parse_config,
    reverse_table,
)
from replicator.errors import ConfigError
from replicator.records import TableId

from mapping_yaml import FLOW_TABLES

HEAD = (
    "systems:\n"
    '  crm: {url: "mysql://root@127.0.0.1:3306/crm"}\n'
    '  shop: {url: "postgresql://postgres@127.0.0.1:5432/shop"}\n'
    "flows:\n"
    "  - name: crm-to-shop\n"
    "    source: crm\n"
    "    target: shop\n"
)



def config(tables: str = "      - source: contacts\n", extra: str = "") -> Config:
    return parse_config(HEAD + extra + "    tables:\n" + tables)


def table(tables: str, extra: str = "") -> TableConfig:
    return config(tables, extra).flows[0].tables[0]


def error(tables: str = "      - source: contacts\n", extra: str = "") -> str:
    with pytest.raises(ConfigError) as exc:
        config(tables, extra)
    return str(exc.value)


def column(rule: str) -> str:
    return f"      - source: contacts\n        columns:\n          c: {rule}\n"


# ------------------------------------------------------------------------- ColumnRule consistency

INCONSISTENT = [
    ("{exclude: true, name: x}", "an excluded column takes no other option"),
    ("{exclude: true, mask: md5}", "an excluded column takes no other option"),
    ("{exclude: true, one_way: true}", "an excluded column takes no other option"),
    ("{exclude: true, map: {a: b}}", "an excluded column takes no other option"),
    ("{default: x}", "default / reverse_default go with map"),
    ("{reverse_default: x}", "default / reverse_default go with map"),
    ("{default: null}", "default / reverse_default go with map"),
    ("{format: '%Y', default: x}", "default / reverse_default go with map"),
    ("{timezone: UTC}", "timezone goes with format"),
    ("{mask_key: k}", "mask_key goes with mask: sha256 or md5"),
    ("{mask: redact, mask_key: k}", "mask_key goes with mask: sha256 or md5"),
    ("{format: '%Y-%m-%d', currency: {minor_units: 2}}", "give format or currency, not both"),
    ("{map: {}}", "map is empty"),
]
CURRENCY = [
    ("{currency: {}}", "give either minor_units (e.g. 2) or locale (e.g. de_DE, with code: EUR)"),
    ("{currency: {minor_units: 2, locale: de_DE}}", "give either minor_units (e.g. 2) or locale (e.g. de_DE, with code: EUR)"),
    ("{currency: {code: EUR}}", "give either minor_units (e.g. 2) or locale (e.g. de_DE, with code: EUR)"),
    ("{currency: {minor_units: 2, code: EUR}}", "code goes with locale (text amounts); minor_units needs no code"),
]


def _rule_dict(rule: str) -> Any:
    import yaml

    return yaml.safe_load(rule)


@pytest.mark.parametrize(("rule", "reason"), INCONSISTENT + CURRENCY, ids=[r for r, _ in INCONSISTENT + CURRENCY])
def test_column_rule_model_refuses_inconsistent_options(rule: str, reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ColumnRule.model_validate(_rule_dict(rule))
    errors = exc.value.errors()
    assert [(e["type"], e["msg"]) for e in errors] == [("value_error", f"Value error, {reason}")]


FIELD_ERRORS = [
    ("{mask: sha1}", "Input should be 'sha256', 'md5' or 'redact'"),
    ("{name: ''}", "String should have at least 1 character"),
    ("{bogus: 1}", "unknown key (check the spelling; see the config reference in README.md)"),
    ("{currency: {minor_units: 19}}", "Input should be less than or equal to 18"),
]


def test_parse_config_names_the_column_and_the_reason() -> None:
    """Every invalid column rule is one line: ``config error at <path of the column>: <reason>``.
    (One test over all cases: they share one cause.)"""
    wrong = []
    for rule, reason in INCONSISTENT + CURRENCY + FIELD_ERRORS:
        message = error(column(rule))
        ok = (message.startswith("<config>: config error at flows[0].tables[0].columns.c")
              and message.endswith(f": {reason}") and "valid string" not in message)
        if not ok:
            wrong.append(f"{rule} -> {message!r} (expected the reason {reason!r})")
    assert wrong == [], (
        "regression: config.parse_config reports the first pydantic error, and for TableConfig.columns"
        " (`dict[str, str | ColumnRule]`) that is always the `str` branch's: every invalid column rule"
        " reads 'config error at flows[0].tables[0].columns.c.str: Input should be a valid string"
        " (and 1 more problem(s))' and its real reason is never shown:\n" + "\n".join(wrong))


def test_column_rule_errors_that_are_not_hidden() -> None:
    # checked after the model (formats, SQL): these name the path and the reason
    assert error(column("{currency: {locale: xx_YY, code: EUR}}")) == (
        "<config>: config error at flows[0].tables[0].columns.c.currency: unknown locale 'xx_YY': use a CLDR"
        " locale such as 'de_DE', 'en_US' or 'fr_CH' (babel.localedata.locale_identifiers() lists them)")
    assert error(column('{expr: "a +"}')).startswith(
        "<config>: config error at flows[0].tables[0].columns.c.expr: invalid SQL expression 'a +': ")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{exclude: true}", ColumnRule(exclude=True)),
        ("{exclude: false, name: x}", ColumnRule(name="x")),
        ("{map: {a: b}, default: null}", ColumnRule(map={"a": "b"}, default=None)),
        ("{map: {a: b}, default: x, reverse_default: y}", ColumnRule(map={"a": "b"}, default="x", reverse_default="y")),
        ("{mask: sha256, mask_key: k}", ColumnRule(mask="sha256", mask_key="k")),
        ("{mask: md5, mask_key: k}", ColumnRule(mask="md5", mask_key="k")),
        ("{mask: redact}", ColumnRule(mask="redact")),
        ("{format: '%Y-%m-%d %H:%M', timezone: Europe/Berlin}",
         ColumnRule(format="%Y-%m-%d %H:%M", timezone="Europe/Berlin")),
        ("{currency: {minor_units: 0}}", ColumnRule(currency=CurrencyConfig(minor_units=0))),
        ("{currency: {locale: de_DE, code: EUR}}", ColumnRule(currency=CurrencyConfig(locale="de_DE", code="EUR"))),
        ("{currency: {locale: de_DE}}", ColumnRule(currency=CurrencyConfig(locale="de_DE"))),
        ('{name: total, expr: "a + b", one_way: true}', ColumnRule(name="total", expr="a + b", one_way=True)),
    ],
)
def test_consistent_column_rules(rule: str, expected: ColumnRule) -> None:
    assert table(column(rule)).columns == {"c": expected}


def test_map_default_null_is_set_and_differs_from_no_default() -> None:
    with_null = table(column("{map: {a: b}, default: null}")).columns["c"]
    without = table(column("{map: {a: b}}")).columns["c"]
    assert isinstance(with_null, ColumnRule) and isinstance(without, ColumnRule)
    assert ("default" in with_null.model_fields_set, "default" in without.model_fields_set) == (True, False)
    assert (with_null.default, without.default) == (None, None)


def test_column_rule_transforms() -> None:
    assert [ColumnRule(name="x").transforms, ColumnRule(name="x", one_way=True).transforms,
            ColumnRule(map={"a": "b"}).transforms, ColumnRule(mask="md5").transforms,
            ColumnRule(exclude=True).transforms, ColumnRule().transforms] == [False, False, True, True, True, False]


def test_string_columns_are_renames() -> None:
    t = table("      - source: contacts\n        columns: {first_name: firstName, b: c}\n")
    assert t.columns == {"first_name": ColumnRule(name="firstName"), "b": ColumnRule(name="c")}
    assert (t.renames, t.plain) == ({"first_name": "firstName", "b": "c"}, True)


# ------------------------------------------------------------------------------ limits and audit


def test_limits() -> None:
    flow = config(extra="    limits: {max_rows_per_transaction: 5, action: pause}\n").flows[0]
    assert flow.limits == LimitsConfig(max_rows_per_transaction=5)
    flow = config(extra="    limits: {max_changes_per_minute: 1000, max_changes_per_key_per_minute: 3,"
                        " action: alert}\n").flows[0]
    assert flow.limits == LimitsConfig(max_changes_per_minute=1000, max_changes_per_key_per_minute=3, action="alert")
    assert config(extra="    limits: {}\n").flows[0].limits == LimitsConfig(
        max_rows_per_transaction=None, max_changes_per_minute=None, max_changes_per_key_per_minute=None, action="pause")
    assert config().flows[0].limits is None


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("{max_rows_per_transaction: 0}",
         "flows[0].limits.max_rows_per_transaction: Input should be greater than or equal to 1"),
        ("{max_changes_per_minute: -5}",
         "flows[0].limits.max_changes_per_minute: Input should be greater than or equal to 1"),
        ("{max_changes_per_key_per_minute: many}",
         "flows[0].limits.max_changes_per_key_per_minute: Input should be a valid integer, unable to parse string as"
         " an integer"),
        ("{action: stop}", "flows[0].limits.action: Input should be 'pause' or 'alert'"),
        ("{max_rows: 5}", "flows[0].limits.max_rows: unknown key (check the spelling; see the config reference in"
                          " README.md)"),
    ],
)
def test_limits_errors(limits: str, message: str) -> None:
    assert error(extra=f"    limits: {limits}\n") == f"<config>: config error at {message}"


def test_audit_true_is_the_defaults_and_false_is_none() -> None:
    assert config(extra="    audit: true\n").flows[0].audit == AuditConfig(enabled=True, retention_days=30, file=None)
    assert config(extra="    audit: false\n").flows[0].audit is None
    assert config(extra="    audit: null\n").flows[0].audit is None
    assert config().flows[0].audit is None
    assert config(extra="    audit: {}\n").flows[0].audit == AuditConfig()
    assert config(extra="    audit: {retention_days: 7.5, file: /var/log/audit.jsonl}\n").flows[0].audit == AuditConfig(
        enabled=True, retention_days=7.5, file="/var/log/audit.jsonl")


def test_audit_errors() -> None:
    assert error(extra="    audit: {retention_days: 0}\n") == (
        "<config>: config error at flows[0].audit.retention_days: Input should be greater than 0")
    assert error(extra="    audit: {keep: 3}\n") == (
        "<config>: config error at flows[0].audit.keep: unknown key (check the spelling; see the config reference in"
        " README.md)")


def test_audit_enabled_false_turns_auditing_off() -> None:
    audit = config(extra="    audit: {enabled: false}\n").flows[0].audit
    assert audit is None, (
        "regression: `audit: {enabled: false}` parses to AuditConfig(enabled=False), but nothing reads"
        " AuditConfig.enabled: pipeline.py, binding.py and cli.py audit whenever flow.audit is not None,"
        f" so the flow is audited anyway (expected it normalised to None, as `audit: false`); got {audit!r}")


# ----------------------------------------------------------------------------------- validate


def test_validate_takes_one_string_or_a_list() -> None:
    assert table("      - source: contacts\n        validate: \"price >= 0\"\n").validate_ == ["price >= 0"]
    assert table("      - source: contacts\n        validate: [\"a > 0\", \"b > 0\"]\n").validate_ == ["a > 0", "b > 0"]
    assert table(FLOW_TABLES).validate_ == ["first_name IS NOT NULL AND first_name <> ''", "price >= 0"]
    assert table("      - source: contacts\n").validate_ == []
    assert TableConfig.model_validate({"source": "t", "validate": "x = 1"}).validate_ == ["x = 1"]
    assert TableConfig.model_validate({"source": "t", "validate_": ["x = 1"]}).validate_ == ["x = 1"]


def test_validate_errors() -> None:
    assert error("      - source: contacts\n        validate: 5\n") == (
        "<config>: config error at flows[0].tables[0].validate: Input should be a valid list")
    assert error("      - source: contacts\n        validate: [\"a >\"]\n").startswith(
        "<config>: config error at flows[0].tables[0].validate[0]: invalid SQL expression 'a >': ")


def test_table_errors() -> None:
    assert error("      - source: contacts\n        filter: ''\n") == (
        "<config>: config error at flows[0].tables[0].filter: String should have at least 1 character")
    assert error("      - source: contacts\n        defaults: [a]\n") == (
        "<config>: config error at flows[0].tables[0].defaults: Input should be a valid dictionary")
    assert error("      - source: contacts\n        colums: {a: b}\n") == (
        "<config>: config error at flows[0].tables[0].colums: unknown key (check the spelling; see the config"
        " reference in README.md)")


# ------------------------------------------------------------------------ plain / renames / excluded


def test_issue_mapping_helpers() -> None:
    t = table(FLOW_TABLES)
    assert t.plain is False
    assert t.renames == {"firstName": "first_name", "birthDate": "birth_date", "price_cents": "price"}
    assert t.excluded == frozenset({"ssn", "internal_notes"})
    assert t.reversed is False
    assert t.rule("firstName") == ColumnRule(name="first_name")  # a plain rename
    assert t.rule("status") == ColumnRule(map={"A": "active", "I": "inactive"}, default="unknown")
    assert t.rule("nope") is None
    assert t.defaults == {"source_system": "crm"}
    assert t.filter == "status <> 'draft' AND country IN ('DE', 'FR')"


@pytest.mark.parametrize(
    ("entry", "plain"),
    [
        ("      - source: contacts\n", True),
        ("      - source: contacts\n        target: customers\n", True),
        ("      - source: contacts\n        columns: {first_name: firstName}\n", True),
        ("      - source: contacts\n        columns: {first_name: {name: firstName}}\n", True),
        ("      - source: contacts\n        columns: {first_name: {name: firstName, one_way: true}}\n", False),
        ("      - source: contacts\n        columns: {ssn: {exclude: true}}\n", False),
        ("      - source: contacts\n        columns: {s: {map: {a: b}}}\n", False),
        ("      - source: contacts\n        filter: \"a = 1\"\n", False),
        ("      - source: contacts\n        defaults: {a: 1}\n", False),
        ("      - source: contacts\n        validate: \"a = 1\"\n", False),
    ],
)
def test_plain(entry: str, plain: bool) -> None:
    assert table(entry).plain is plain


def test_renames_and_excluded() -> None:
    t = table("      - source: contacts\n        columns:\n          a: x\n          b: {name: y, map: {1: 2}}\n"
              "          c: {map: {1: 2}}\n          d: {exclude: true}\n          e: {name: z, one_way: true}\n")
    assert t.renames == {"a": "x", "b": "y", "e": "z"}
    assert t.excluded == frozenset({"d"})
    assert table("      - source: contacts\n").renames == {}
    assert table("      - source: contacts\n").excluded == frozenset()


# ---------------------------------------------------------------------------------- reverse_table


@pytest.mark.parametrize(
    ("source", "target", "reversed_source", "reversed_target"),
    [
        ("crm.contacts", "shop.customers", "shop.customers", "crm.contacts"),
        ("contacts", "customers", "customers", "contacts"),
        ("crm.contacts", None, "contacts", "crm.contacts"),
        ("contacts", None, "contacts", "contacts"),
        ("crm.contacts", "customers", "customers", "crm.contacts"),
    ],
)
def test_reverse_table_swaps_names(source: str, target: str | None, reversed_source: str,
                                   reversed_target: str) -> None:
    declared = TableConfig.model_validate({"source": source, "target": target, "columns": {"a": "b"},
                                           "filter": "b = 1", "defaults": {"c": 1}, "validate": ["b > 0"]})
    out = reverse_table(declared)
    assert (out.source, out.target, out.reversed) == (reversed_source, reversed_target, True)
    assert (out.columns, out.filter, out.defaults, out.validate_) == (
        {"a": ColumnRule(name="b")}, "b = 1", {"c": 1}, ["b > 0"])
    assert (declared.source, declared.target, declared.reversed) == (source, target, False)  # not changed
    assert out.plain is False  # a reversed table always goes through the transform


def test_reverse_table_keeps_reversed_through_copies() -> None:
    out = reverse_table(TableConfig(source="contacts"))
    assert out.model_copy().reversed is True


def test_reverse_flow_swaps_systems_and_tables() -> None:
    cfg = config("      - source: crm.contacts\n        target: customers\n        columns: {firstName: first_name}\n"
                 "      - source: orders\n", "    direction: reverse\n")
    flow = cfg.flows[0]
    assert (flow.source, flow.target, flow.direction) == ("shop", "crm", "reverse")
    assert [(t.source, t.target, t.reversed) for t in flow.tables] == [
        ("customers", "crm.contacts", True), ("orders", "orders", True)]
    assert [(cfg.source_table(flow, t), cfg.target_table(flow, t)) for t in flow.tables] == [
        (TableId("public", "customers"), TableId("crm", "contacts")),
        (TableId("public", "orders"), TableId("crm", "orders")),
    ]
    assert flow.tables[0].columns == {"firstName": ColumnRule(name="first_name")}  # declared as for the other direction


def test_one_way_flow_is_not_reversed() -> None:
    cfg = config("      - source: crm.contacts\n        target: customers\n")
    flow = cfg.flows[0]
    assert (flow.source, flow.target, flow.direction) == ("crm", "shop", "one-way")
    assert (flow.tables[0].source, flow.tables[0].target, flow.tables[0].reversed) == ("crm.contacts", "customers", False)


def test_reverse_flow_refuses_reading_one_table_twice() -> None:
    """Two tables that write into the same target table are fine one way; turned around, the flow
    would read that one table twice, which a one-way flow refuses ("listed twice")."""
    tables = "      - source: a.contacts\n        target: customers\n      - source: b.contacts\n        target: customers\n"
    assert [t.source for t in config(tables).flows[0].tables] == ["a.contacts", "b.contacts"]
    assert error("      - source: customers\n      - source: customers\n") == (
        "<config>: config error at flows[0].tables[1].source: crm.customers is listed twice")
    try:
        got: Any = [(t.source, t.target) for t in config(tables, "    direction: reverse\n").flows[0].tables]
    except ConfigError as exc:
        got = str(exc)
    assert isinstance(got, str) and "listed twice" in got, (
        "regression: config.Config._cross_references checks 'listed twice' on the declared sources, before"
        " _checked() turns a reverse flow around: a reverse flow whose tables share a declared target"
        " reads that table twice (the pipeline keeps one transform per source table, so one mapping"
        f" silently replaces the other); got {got!r}")


def test_reverse_flow_config_errors_name_the_declared_path() -> None:
    assert error(FLOW_TABLES, "    direction: reverse\n") == (
        "<config>: config error at flows[0].tables[0].columns.price_cents.expr: column 'price_cents' is computed by"
        " an expression, which cannot be inverted for the reverse direction: mark it one_way: true")
    assert error(column("{mask: md5}"), "    direction: reverse\n") == (
        "<config>: config error at flows[0].tables[0].columns.c.mask: column 'c' is masked, which cannot be"
        " inverted for the reverse direction: mark it one_way: true")
    assert error(column("{map: {1: x, 2: x}}"), "    direction: reverse\n") == (
        "<config>: config error at flows[0].tables[0].columns.c.map: column 'c': the map sends both 1 and 2 to 'x',"
        " so it cannot be inverted for the reverse direction: make it one-to-one or mark the column one_way: true")
    # excluded or one_way columns need no inverse
    assert table(column("{mask: md5, one_way: true}"), "    direction: reverse\n").reversed is True
    assert table(column("{exclude: true}"), "    direction: reverse\n").reversed is True


def test_direction_must_be_known() -> None:
    assert error(extra="    direction: backwards\n") == (
        "<config>: config error at flows[0].direction: Input should be 'one-way', 'reverse' or 'both'")
