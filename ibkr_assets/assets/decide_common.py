"""Shared wiring of the decision stages (4–9): the asset decorator, the partition column, and the
frame conversions every stage needs. No business logic lives here.

Every decision stage is trading-critical in the catalog: a failure or a late run leaves the
desk without today's orders (or their record)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import DERIVED, Table, daily_asset_kwargs
from ibkr_assets.quant.risk_model import RiskModel

GROUP = "decide"


def decide_asset(
    table: Table,
    *,
    stage: str,
    source: str = DERIVED,
    kinds: Iterable[str] = (),
    group: str = GROUP,
    **kwargs: Any,
) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` of a decision stage storing ``table``: the daily partitions, the ``decide``
    warehouse schema and the partition column (so a rerun replaces its partition's rows), and
    its catalog entry (``group``, ``stage``, ``source``, ``kinds``, trading-critical);
    ``kwargs`` go to ``dg.asset``."""
    base = daily_asset_kwargs(
        group, table, stage=stage, source=source, kinds=kinds, critical=True, warehouse_schema=GROUP
    )
    return dg.asset(**base, **kwargs)


#: The long table a risk model is stored as (:func:`risk_model_frame`).
RISK_MODEL = Table(
    {
        "kind": ("string", "scenario, cov, mean, shrinkage, periods_per_year or dropped"),
        "row": ("string", "scenario: its session; cov: the first symbol; dropped: the reason"),
        "symbol": ("string", "the symbol (cov: the second one); empty for the scalars"),
        "value": (
            "float64",
            "scenario: daily simple return, fraction; cov: annualised covariance of returns; "
            "mean: annualised mean return, fraction; shrinkage: Ledoit-Wolf intensity, 0-1; "
            "periods_per_year: sessions a year",
        ),
    }
)


def risk_model_frame(model: RiskModel) -> pd.DataFrame:
    """A risk model as one long table (kind, row, symbol, value) for the warehouse: daily
    scenarios, the annualised covariance and mean, the shrinkage, and the symbols left out."""
    scen = model.scenarios.rename_axis(index="row", columns="symbol").stack().rename("value")
    scen = scen.reset_index().assign(kind="scenario", row=lambda f: f["row"].astype(str))
    cov = model.cov.rename_axis(index="row", columns="symbol").stack().rename("value")
    cov = cov.reset_index().assign(kind="cov")
    mean = pd.DataFrame({"kind": "mean", "row": "", "symbol": model.symbols, "value": model.mean})
    scalars = pd.DataFrame(
        {
            "kind": ["shrinkage", "periods_per_year"],
            "row": "",
            "symbol": "",
            "value": [model.shrinkage, float(model.periods_per_year)],
        }
    )
    dropped = pd.DataFrame(
        {"kind": "dropped", "row": list(model.dropped.values()), "symbol": list(model.dropped)}
    ).assign(value=float("nan"))
    frame = pd.concat([scen, cov, mean, scalars, dropped], ignore_index=True)
    return frame[RISK_MODEL.names].astype(RISK_MODEL.dtypes)


def risk_model_from_frame(frame: pd.DataFrame) -> RiskModel:
    """The :class:`RiskModel` a ``risk_model`` table holds (inverse of risk_model_frame)."""
    by_kind = {k: g for k, g in frame.groupby("kind")}
    scen = by_kind["scenario"].pivot(index="row", columns="symbol", values="value")
    symbols = [str(s) for s in by_kind["mean"]["symbol"]]
    scen.index = pd.to_datetime(scen.index)
    cov = by_kind["cov"].pivot(index="row", columns="symbol", values="value")
    scalars = by_kind["shrinkage"]["value"].iloc[0], by_kind["periods_per_year"]["value"].iloc[0]
    dropped = by_kind.get("dropped", pd.DataFrame(columns=["row", "symbol"]))
    mean = by_kind["mean"].set_index("symbol")["value"]
    return RiskModel(
        symbols=symbols,
        cov=pd.DataFrame(cov.loc[symbols, symbols].to_numpy(), index=symbols, columns=symbols),
        scenarios=pd.DataFrame(
            scen.sort_index().loc[:, symbols].to_numpy(),
            index=scen.index.sort_values(),
            columns=symbols,
        ),
        mean=pd.Series(mean.loc[symbols].to_numpy(), index=symbols, name="mean"),
        shrinkage=float(scalars[0]),
        periods_per_year=int(scalars[1]),
        dropped=dict(zip(dropped["symbol"].astype(str), dropped["row"].astype(str), strict=True)),
    )


def holdings(portfolio_snapshot: pd.DataFrame) -> pd.DataFrame:
    """The snapshot's security positions (without its ``CASH`` row)."""
    return portfolio_snapshot[portfolio_snapshot["sec_type"] != "CASH"]


def current_weights(portfolio_snapshot: pd.DataFrame) -> pd.Series:
    """Signed weight of each held symbol (market value / net liquidation)."""
    return holdings(portfolio_snapshot).groupby("symbol")["weight"].sum().astype(float)


def current_quantities(portfolio_snapshot: pd.DataFrame) -> pd.Series:
    """Signed shares held of each symbol."""
    return holdings(portfolio_snapshot).groupby("symbol")["quantity"].sum().astype(float)


def net_liquidation(portfolio_snapshot: pd.DataFrame) -> float:
    """Net liquidation value: the market values of the positions and the cash row summed."""
    value = float(portfolio_snapshot["market_value"].sum())
    if not value > 0:
        raise ValueError(f"portfolio_snapshot: net liquidation must be positive (got {value})")
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records of a frame (NaN -> null, timestamps ISO)."""
    return json.loads(frame.to_json(orient="records", date_format="iso", double_precision=12))
