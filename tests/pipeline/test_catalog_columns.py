"""Each table asset's declared column schema (what the UI's Columns panel shows) is what it
outputs: the daily job of one session on the simulated world (30 symbols), the decision journal
it appends to, and one short run of the weekly backtest's metrics."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ibkr_assets.assets import daily_assets, daily_checks
from ibkr_assets.assets.backtest import METRICS, run_backtest_on
from ibkr_assets.assets.journal import JOURNAL
from ibkr_assets.quant.journal import read_journal
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.alerts import AlertResource

pytestmark = pytest.mark.slow

SESSION = "2024-06-03"
ASSETS = daily_assets()
#: pandas' names for text columns, whichever way a frame was built
TEXT = {"object", "str", "string"}


def declared(asset: dg.AssetsDefinition, key: dg.AssetKey) -> list[tuple[str, str]]:
    schema = asset.specs_by_key[key].metadata["dagster/column_schema"]
    return [(c.name, c.type) for c in schema.columns]


def dtype(value: object) -> str:
    return "string" if str(value) in TEXT else str(value)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInProcessResult]:
    mp = pytest.MonkeyPatch()
    mp.setenv("IBKR_SIM_SYMBOLS", "30")
    mp.setenv("IBKR_SENTIMENT_MODEL", "lexicon")
    root = tmp_path_factory.mktemp("catalog")
    resources = build_resources(data_dir=str(root))
    resources["alerts"] = AlertResource(log_path=str(root / "alerts.jsonl"))
    result = dg.materialize(
        [*ASSETS, *daily_checks()],
        partition_key=SESSION,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    mp.undo()
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return root, result


def test_every_table_outputs_the_columns_it_declares(day) -> None:
    _, result = day
    checked = []
    for asset in ASSETS:
        for key in asset.keys:
            if "warehouse_schema" not in asset.specs_by_key[key].metadata:
                continue  # not a warehouse table (the journal: below)
            frame = result.output_for_node(
                asset.node_def.name, asset.get_output_name_for_asset_key(key)
            )
            assert isinstance(frame, pd.DataFrame), key
            actual = [(name, dtype(t)) for name, t in frame.dtypes.items()]
            assert actual == declared(asset, key), key.to_user_string()
            checked.append(key.to_user_string())
    assert len(checked) == 21


def test_the_journal_holds_the_columns_it_declares(day) -> None:
    root, _ = day
    journal = read_journal(root / "decision_log")
    assert len(journal) == 1
    assert [(n, dtype(t)) for n, t in journal.dtypes.items()] == [
        (name, dtype(t)) for name, t in JOURNAL.dtypes.items()
    ]


def test_the_backtest_writes_the_metrics_it_declares(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", "8")
    monkeypatch.setenv("IBKR_SENTIMENT_MODEL", "lexicon")
    run = run_backtest_on(
        build_resources(data_dir=str(tmp_path)), end=date(2024, 6, 28), months=1, label="test"
    )
    header = pd.read_csv(run.csv_path).columns.tolist()
    assert header == METRICS.names
