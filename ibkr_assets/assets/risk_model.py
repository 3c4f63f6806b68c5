"""Stage 4 — ``risk_model``: what the optimiser and the VaR/CVaR limits think can happen
tomorrow.

The last ``scenario_sessions`` (504 by default, two years) daily close-to-close returns of every
scored symbol, taken only from sessions before the partition date. They are the historical
scenarios behind CVaR and historical VaR, and the sample from which the shrunk (Ledoit–Wolf)
covariance is estimated (:mod:`ibkr_assets.quant.risk_model`). The model is stored as one long
table (:data:`RISK_MODEL`, :func:`risk_model_frame`) that the later stages read back with
:func:`risk_model_from_frame`.
"""

import dagster as dg
import numpy as np
import pandas as pd

from ibkr_assets.assets.catalog import Table, decide_asset
from ibkr_assets.assets.materialization import listing
from ibkr_assets.assets.partition import with_partition
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.metadata import readable
from ibkr_assets.quant.decision import close_panel
from ibkr_assets.quant.risk_model import RiskModel, build_risk_model

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
        # Ledoit-Wolf's target: the mean of the shrunk matrix's diagonal (daily)
        shrinkage_target=float(np.mean(np.diag(cov.loc[symbols, symbols]))) / scalars[1],
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


@decide_asset(
    RISK_MODEL,
    stage="4-risk-model",
    kinds={"scikitlearn"},
    ins={"daily_bars": dg.AssetIn(), "alpha_scores": dg.AssetIn()},
)
def risk_model(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    daily_bars: pd.DataFrame,
    alpha_scores: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Historical return scenarios and the shrunk covariance of every scored symbol: what the
    optimiser and the VaR/CVaR limits think can happen tomorrow."""
    symbols = pd.Index(alpha_scores["symbol"].astype(str))
    model = build_risk_model(
        close_panel(daily_bars, symbols), scenario_sessions=decide.scenario_sessions
    )
    no_bars = sorted(set(symbols) - set(model.symbols) - set(model.dropped))
    vols = np.sqrt(np.diag(model.cov.to_numpy()))
    return dg.Output(
        with_partition(risk_model_frame(model), context.partition_key),
        metadata=readable(
            {
                "symbols": len(model.symbols),
                "sessions": len(model.scenarios),
                "first_session": str(model.scenarios.index.min()),
                "last_session": str(model.scenarios.index.max()),
                "left_out": listing({**model.dropped, **dict.fromkeys(no_bars, "no daily bars")}),
                "shrinkage": float(model.shrinkage),
                "median_annual_vol": float(np.median(vols)),
            }
        ),
    )
