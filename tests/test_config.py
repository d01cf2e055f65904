"""Config loading: interpolation, validation errors with key paths, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.config import load_config, parse_config
from replicator.errors import ConfigError
from replicator.records import TableId

ISSUE_EXAMPLE = """
systems:
  shop:
    url: postgresql://postgres@127.0.0.1:5432/shop
  crm:
    url: mysql://root@127.0.0.1:3306/crm      # MySQL or MariaDB
flows:
  - name: shop-to-crm
    source: shop
    target: crm
    tables:
      - source: customers          # PostgreSQL: [schema.]table, default schema public
        target: contacts           # default: the same name
        columns:                   # source column -> target column; unlisted keep their name
          first_name: firstName
      - source: orders
"""


def test_issue_example_parses_with_defaults_and_table_names() -> None:
    cfg = parse_config(ISSUE_EXAMPLE)
    flow = cfg.flows[0]
    assert [t.source for t in flow.tables] == ["customers", "orders"]
    assert cfg.source_table(flow, flow.tables[0]) == TableId("public", "customers")
    assert cfg.target_table(flow, flow.tables[0]) == TableId("crm", "contacts")
    assert cfg.target_table(flow, flow.tables[1]) == TableId("crm", "orders")
    assert flow.tables[0].renames == {"first_name": "firstName"}
    assert flow.slot_name == "replicator_shop_to_crm"
    assert flow.publication_name == "replicator_shop_to_crm"
    assert (flow.batch.max_rows, flow.batch.max_delay_ms) == (20000, 500)
    assert cfg.state_schema == "_replicator"


def test_schema_qualified_source_table() -> None:
    cfg = parse_config(ISSUE_EXAMPLE.replace("source: orders", "source: sales.orders"))
    flow = cfg.flows[0]
    assert cfg.source_table(flow, flow.tables[1]) == TableId("sales", "orders")
    assert cfg.target_table(flow, flow.tables[1]) == TableId("crm", "orders")


def test_environment_interpolation_with_and_without_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PW", "s3cret")
    monkeypatch.delenv("CRM_HOST", raising=False)
    text = ISSUE_EXAMPLE.replace(
        "postgresql://postgres@127.0.0.1", "postgresql://postgres:${SHOP_PW}@127.0.0.1"
    ).replace("mysql://root@127.0.0.1", "mysql://root@${CRM_HOST:-10.1.2.3}")
    cfg = parse_config(text)
    assert cfg.systems["shop"].url == "postgresql://postgres:s3cret@127.0.0.1:5432/shop"
    assert cfg.systems["crm"].url == "mysql://root@10.1.2.3:3306/crm"
    assert cfg.secrets() == ["s3cret"]


def test_missing_environment_variable_names_the_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError) as exc:
        parse_config(ISSUE_EXAMPLE.replace("url: mysql://root@127.0.0.1:3306/crm", "url: ${NOPE}"))
    assert "systems.crm.url" in str(exc.value)
    assert "NOPE is not set" in str(exc.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    target: crm\n", "    target: crm\n    tabels: []\n"), "config error at flows[0].tabels: unknown key"),
        (("    target: crm\n", "    target: erp\n"), "config error at flows[0].target: unknown system 'erp' (known: crm, shop)"),
        (("  - name: shop-to-crm\n", "  - name: shop to crm\n"), "config error at flows[0].name: a flow name is"),
        (("      - source: orders\n", "      - source: orders\n        columns: [a]\n"), "config error at flows[0].tables[1].columns"),
        (("url: mysql://root@127.0.0.1:3306/crm", "url: redis://x/0"), "config error at systems.crm.url: unsupported URL scheme 'redis'"),
        (("url: mysql://root@127.0.0.1:3306/crm", "url: mysql://root@127.0.0.1:3306"), "config error at systems.crm.url: the URL names no database"),
        (("      - source: orders\n", "      - source: customers\n"), "config error at flows[0].tables[1].source: public.customers is listed twice"),
        (("    source: shop\n    target: crm\n", "    source: shop\n    target: shop\n"), "config error at flows[0].target: source and target are the same system"),
        (("    target: crm\n", "    target: crm\n    zero_dates: zero\n"), "config error at flows[0].zero_dates: Input should be 'error' or 'null'"),
    ],
)
def test_invalid_config_errors_name_the_key_path(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in ISSUE_EXAMPLE
    with pytest.raises(ConfigError) as exc:
        parse_config(ISSUE_EXAMPLE.replace(old, new, 1), "cfg.yaml")
    assert str(exc.value).startswith("cfg.yaml: ")
    assert expected in str(exc.value)
    assert exc.value.exit_code == 2


def test_malformed_yaml_reports_line_and_column() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("systems:\n  shop: {url: [unclosed\n", "cfg.yaml")
    assert str(exc.value).startswith("cfg.yaml: malformed YAML (line ")


def test_password_never_in_validation_error() -> None:
    text = ISSUE_EXAMPLE.replace("postgres@127.0.0.1", "postgres:hunter2@127.0.0.1").replace(
        "    target: crm\n", "    target: nowhere\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert "hunter2" not in str(exc.value)


def test_config_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "a.yaml"
    explicit.write_text(ISSUE_EXAMPLE)
    from_env = tmp_path / "b.yaml"
    from_env.write_text(ISSUE_EXAMPLE.replace("shop-to-crm", "from-env"))
    monkeypatch.setenv("REPLICATOR_CONFIG", str(from_env))
    assert load_config(explicit).flows[0].name == "shop-to-crm"
    assert load_config(None).flows[0].name == "from-env"
    monkeypatch.delenv("REPLICATOR_CONFIG")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(None)
    assert "config file config/replicator.yaml not found" in str(exc.value)
