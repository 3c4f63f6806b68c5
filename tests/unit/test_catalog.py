"""The asset catalog explains itself: every asset has owners, tags, kinds and a code reference;
every table its columns with meanings; the compliance gate is findable by name; metadata floats
are rounded for reading."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ibkr_assets import definitions
from ibkr_assets.assets.catalog import SOURCE, STAGE, TRADING_CRITICAL
from ibkr_assets.assets.execution import order_ticket
from ibkr_assets.assets.partition import PARTITION_COLUMN
from ibkr_assets.definitions import defs
from ibkr_assets.metadata import readable, readable_number
from ibkr_assets.resources.warehouse_io import WAREHOUSE_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
GRAPH = defs.resolve_asset_graph()
ASSETS = {key.to_user_string(): GRAPH.get(key) for key in GRAPH.get_all_asset_keys()}
#: The assets whose value the DuckDB IO manager stores (all but the journal and the backtest).
WAREHOUSE = sorted(n for n, a in ASSETS.items() if WAREHOUSE_SCHEMA in a.metadata)


def test_every_asset_has_owners_tags_kinds_and_a_description() -> None:
    assert len(ASSETS) == 23  # signal_evidence joined stage 3
    for name, asset in ASSETS.items():
        assert asset.owners == ["team:trading"], name
        assert {STAGE, SOURCE, TRADING_CRITICAL} <= set(asset.tags), name
        assert asset.tags[TRADING_CRITICAL] in ("true", "false"), name
        assert asset.kinds, name
        assert asset.description, name
        assert "schema" not in asset.metadata, f"{name}: Dagster's 'schema' key is back"
    critical = {n for n, a in ASSETS.items() if a.tags[TRADING_CRITICAL] == "true"}
    assert {"portfolio_snapshot", "risk_report", "order_ticket", "decision_journal"} <= critical
    assert "top_movers" not in critical
    assert ASSETS["headlines"].tags[SOURCE] == "ib-news"
    assert ASSETS["fundamentals"].tags[SOURCE] in ("sim", "fmp")
    assert ASSETS["social_chatter"].tags[SOURCE] in ("sim", "reddit", "stocktwits", "none")
    assert {"cvxpy"} <= ASSETS["target_weights"].kinds
    assert {"talib", "duckdb", "pandas"} <= ASSETS["feature_matrix"].kinds


def test_every_table_declares_its_columns_with_meanings() -> None:
    assert len(WAREHOUSE) == 21
    for name in [*WAREHOUSE, "decision_journal", "rolling_backtest"]:
        schema = ASSETS[name].metadata["dagster/column_schema"]
        columns = {c.name: c for c in schema.columns}
        assert len(columns) == len(schema.columns), f"{name}: a column declared twice"
        for column in schema.columns:
            assert column.description and column.type, f"{name}.{column.name}"
        assert (PARTITION_COLUMN in columns) == (name in WAREHOUSE), name
    ticket = {c.name: c for c in ASSETS["order_ticket"].metadata["dagster/column_schema"].columns}
    assert "USD per share" in ticket["limit_price"].description
    weights = ASSETS["target_weights"].metadata["dagster/column_schema"].columns
    assert (
        "fraction of net liquidation" in {c.name: c for c in weights}["target_weight"].description
    )


def test_every_asset_links_to_the_line_that_defines_it() -> None:
    for name, asset in ASSETS.items():
        refs = asset.metadata["dagster/code_references"].code_references
        assert len(refs) == 1, name
        path = Path(refs[0].file_path)
        assert path.is_relative_to(ROOT / "ibkr_assets" / "assets"), (name, path)
        lines = path.read_text().splitlines()[refs[0].line_number - 1 :]
        # the definition starts at the line referenced: its decorators, then its def
        first_def = next(line for line in lines if line.startswith("def "))
        function = "headlines" if name == "headline_history" else name  # one multi-asset
        assert first_def.startswith(f"def {function}("), (name, lines[0])
        assert lines.index(first_def) < 25, (name, lines[0])


def test_a_github_origin_links_each_asset_to_its_file_at_the_commit(monkeypatch) -> None:
    answers = {
        ("config", "--get", "remote.origin.url"): "git@github.com:acme/ibkr-agent.git",
        ("rev-parse", "HEAD"): "0123abc",
    }
    monkeypatch.setattr(definitions, "_git", lambda *args: answers[args])
    assert definitions.source_remote() == ("https://github.com/acme/ibkr-agent", "0123abc")
    linked = definitions.with_code_references([order_ticket])
    url = linked[0].specs_by_key[dg.AssetKey("order_ticket")].metadata["dagster/code_references"]
    assert url.code_references[0].url.startswith(
        "https://github.com/acme/ibkr-agent/tree/0123abc/ibkr_assets/assets/execution.py#L"
    )
    answers[("config", "--get", "remote.origin.url")] = "https://git.example.com/acme/ibkr.git"
    assert definitions.source_remote() is None  # a host Dagster cannot link to: local only


def test_the_compliance_gate_is_found_by_name() -> None:
    """The UI's search matches names (assets, groups, jobs ...) and catalog tags word by word:
    "compliance gate" finds the gate's group and its stage tag; the gate's checks say so."""
    gate = ASSETS["risk_report"]
    assert gate.group_name == "compliance_gate"
    assert "compliance gate" in gate.tags[STAGE].replace("-", " ")
    assert "compliance gate" in (gate.description or "").lower()
    checks = [c for c in GRAPH.asset_check_keys if c.asset_key == dg.AssetKey("risk_report")]
    assert len(checks) == 6
    for key in checks:
        spec = GRAPH.get_check_spec(key)
        assert spec.blocking and "compliance gate" in (spec.description or ""), key
    others = [n for n, a in ASSETS.items() if n != "risk_report" and "compliance" in a.group_name]
    assert others == []


def test_rolling_backtest_reads_the_daily_bars() -> None:
    assert ASSETS["rolling_backtest"].parent_keys == {dg.AssetKey("daily_bars")}


def test_the_code_location_has_one_name() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    location = workspace["load_from"][0]["python_module"]
    dagster = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert location["location_name"] == dagster["code_location_name"] == "ibkr_assets"
    assert location["module_name"] == dagster["module_name"] == "ibkr_assets.definitions"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (0.9500000005734556, 0.95),
        (764363.7050000001, 764363.71),
        (0.0011385385968314817, 0.00113854),
        (-0.1361971995082792, -0.136197),
        (1080812.0, 1080812.0),
        (0.0, 0.0),
    ],
)
def test_metadata_floats_are_rounded_for_reading(raw: float, shown: float) -> None:
    assert readable_number(raw) == shown


def test_readable_rounds_only_floats() -> None:
    meta = readable(
        {
            "gross": 0.7099999999409209,
            "value": dg.MetadataValue.float(4.871500000000001),
            "orders": 12,
            "passed": True,
            "nan": math.nan,
            "path": "reports/x.json",
        }
    )
    assert meta["gross"] == 0.71 and meta["value"].value == 4.8715
    assert meta["orders"] == 12 and meta["passed"] is True and meta["path"] == "reports/x.json"
    assert math.isnan(meta["nan"])
