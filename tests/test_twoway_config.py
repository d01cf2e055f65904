"""Config of two-way and multi-system flows (issue 6): expansion of ``direction: both``, the
checks at load time (loops of systems, unknown owners, rules not available), from strings."""

from __future__ import annotations

import pytest

from replicator.config import parse_config
from replicator.errors import ConfigError

SYSTEMS = """
systems:
  crm:  {url: "mysql://root@127.0.0.1/crm", priority: 1}
  shop: {url: "postgresql://postgres@127.0.0.1/shop", priority: 2}
  erp:  {url: "postgresql://postgres@127.0.0.1/erp", priority: 3}
  crm2: {url: "mysql://root@127.0.0.1/crm2"}
flows:
"""


def flow(name: str, source: str, target: str, extra: str = "", columns: str = "") -> str:
    return (f"  - name: {name}\n    source: {source}\n    target: {target}\n{extra}"
            f"    tables:\n      - source: contacts\n" + (f"        columns: {columns}\n" if columns else ""))


def test_both_is_two_flows_with_the_mapping_turned_around() -> None:
    c = parse_config(SYSTEMS + flow("cs", "crm", "shop", "    direction: both\n",
                                    "{firstName: first_name, stock: {owner: erp}}"))
    assert [(f.name, f.source, f.target, f.two_way) for f in c.flows] == [
        ("cs", "crm", "shop", True), ("cs-reverse", "shop", "crm", True)]
    fwd, back = c.flows
    assert fwd.tables[0].renames == {"firstName": "first_name"}
    assert back.tables[0].renames == {"first_name": "firstName"}
    assert back.tables[0].plain and back.tables[0].reversed
    assert c.systems["crm"].priority == 1 and fwd.conflicts == "priority"
    assert (fwd.snapshot, back.snapshot) == ("never", "never")  # a copy's truncate would come back


@pytest.mark.parametrize("flows, where, what", [
    (flow("a", "crm", "shop") + flow("b", "shop", "erp") + flow("c", "erp", "crm"), "flows[2]", "close a loop"),
    (flow("a", "crm", "shop", "    direction: both\n") + flow("b", "shop", "erp", "    direction: both\n")
     + flow("c", "crm", "erp"), "flows[2]", "close a loop"),
    (flow("a", "crm", "shop", columns="{stock: {owner: nobody}}"), "flows[0].tables[0].columns.stock.owner",
     "unknown system 'nobody'"),
    (flow("a", "crm", "crm2", "    direction: both\n    conflicts: last_writer_wins\n"), "flows[0].conflicts",
     "last_writer_wins needs a PostgreSQL system on one side"),
    (flow("a", "crm", "shop", "    direction: both\n    snapshot: initial\n"), "flows[0].snapshot",
     "starts from equal tables"),
    (flow("a", "crm", "shop", "    direction: both\n") + flow("a-reverse", "erp", "shop"), "flows[1].name",
     "two flows are named 'a-reverse'"),
])
def test_bad_multi_system_config_names_the_key(flows: str, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(SYSTEMS + flows)
    msg = str(info.value)
    assert f"config error at {where}" in msg and what in msg, msg


def test_chains_and_hubs_are_allowed() -> None:
    chain = parse_config(SYSTEMS + flow("a", "crm", "shop") + flow("b", "shop", "erp"))
    assert [f.name for f in chain.flows] == ["a", "b"]
    hub = parse_config(SYSTEMS + flow("a", "crm", "shop", "    direction: both\n")
                       + flow("b", "erp", "shop", "    direction: both\n"))
    assert [(f.source, f.target) for f in hub.flows] == [("crm", "shop"), ("shop", "crm"), ("erp", "shop"), ("shop", "erp")]
