"""Stage 4 — ``risk_model``: what the optimiser and the VaR/CVaR limits think can happen
tomorrow.

The last ``scenario_sessions`` (504 by default, two years) daily close-to-close returns of every
scored symbol, taken only from sessions before the partition date. They are the historical
scenarios behind CVaR and historical VaR, and the sample from which the shrunk (Ledoit–Wolf)
covariance is estimated (:mod:`ibkr_assets.quant.risk_model`). The model is stored in its factor
form as one long table (:data:`RISK_MODEL`, :func:`risk_model_frame`): the ``T x n`` scenarios
(from which :attr:`~ibkr_assets.quant.risk_model.RiskModel.loadings` are ``√((1 − δ)/T)`` times
their demeaned values), each name's mean, and the shrinkage ``δ`` and its target ``μ`` (the
covariance is ``L'L + δμ·I``) — ``T·n + n + 4`` rows, never the ``n²`` covariance entries (25
million rows at 5,000 names). The later stages read it back with :func:`risk_model_from_frame`
and form only what they need (the optimiser's factors, the names' volatilities, the held names'
covariance block).
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
        "kind": (
            "string",
            "scenario, mean, shrinkage, shrinkage_target, periods_per_year or dropped",
        ),
        "row": ("string", "scenario: its session; dropped: the reason"),
        "symbol": ("string", "the symbol; empty for the scalars"),
        "value": (
            "float64",
            "scenario: daily simple return, fraction; mean: annualised mean return, fraction; "
            "shrinkage: Ledoit-Wolf intensity, 0-1; shrinkage_target: the identity target's "
            "daily variance (the names' mean sample variance), fraction²; periods_per_year: "
            "sessions a year",
        ),
    }
)
#: The scalar rows of a stored model, in order.
SCALARS = ("shrinkage", "shrinkage_target", "periods_per_year")


def risk_model_frame(model: RiskModel) -> pd.DataFrame:
    """A risk model as one long table (kind, row, symbol, value) for the warehouse: the daily
    scenarios (session by session, each session's names in the model's order), the annualised
    mean, the shrinkage and its target, sessions a year, and the symbols left out."""
    sessions, symbols = model.scenarios.index.astype(str), np.asarray(model.symbols, dtype=object)
    scen = pd.DataFrame(
        {
            "kind": "scenario",
            "row": np.repeat(sessions.to_numpy(dtype=object), len(symbols)),
            "symbol": np.tile(symbols, len(sessions)),
            "value": model.scenarios.to_numpy(dtype="float64").ravel(),
        }
    )
    mean = pd.DataFrame({"kind": "mean", "row": "", "symbol": symbols, "value": model.mean})
    scalars = pd.DataFrame(
        {
            "kind": list(SCALARS),
            "row": "",
            "symbol": "",
            "value": [model.shrinkage, model.shrinkage_target, float(model.periods_per_year)],
        }
    )
    dropped = pd.DataFrame(
        {"kind": "dropped", "row": list(model.dropped.values()), "symbol": list(model.dropped)}
    ).assign(value=float("nan"))
    frame = pd.concat([scen, mean, scalars, dropped], ignore_index=True)
    return frame[RISK_MODEL.names].astype(RISK_MODEL.dtypes)


def risk_model_from_frame(frame: pd.DataFrame) -> RiskModel:
    """The :class:`RiskModel` a ``risk_model`` table holds (inverse of risk_model_frame): its
    symbols in the order of the ``mean`` rows, the scenario rows in any order. Raises
    ``ValueError`` naming what is missing when the table is not a whole model (e.g. one stored
    before the factor form, without ``shrinkage_target``)."""
    # one hash pass per string column (a comparison per kind costs a pass each: ~0.3 s at
    # 5,000 names' 2.5 million rows)
    kind_codes, kinds = pd.factorize(frame["kind"])
    rows = {str(k): np.flatnonzero(kind_codes == i) for i, k in enumerate(kinds)}
    scalar = {k: frame["value"].to_numpy(dtype="float64")[rows.get(k, [])] for k in SCALARS}
    missing = [k for k, v in scalar.items() if len(v) != 1]
    if missing:
        raise ValueError(
            f"the risk_model table has no single {', '.join(missing)} row: it was stored by an "
            "older version or is damaged; materialise risk_model for the partition again"
        )
    means = frame.iloc[rows.get("mean", [])]
    symbols = [str(s) for s in means["symbol"]]
    scen = frame.iloc[rows.get("scenario", [])]
    row_codes, sessions = pd.factorize(scen["row"])
    symbol_codes, named = pd.factorize(scen["symbol"])
    columns = pd.Index(symbols).get_indexer([str(s) for s in named])[symbol_codes]
    values = np.full((len(sessions), len(symbols)), np.nan)
    if (columns >= 0).all():
        values[row_codes, columns] = scen["value"].to_numpy(dtype="float64")
    if np.isnan(values).any():
        raise ValueError(
            f"the risk_model table's scenarios do not cover its {len(symbols)} symbols on each "
            f"of its {len(sessions)} sessions: materialise risk_model for the partition again"
        )
    index = pd.to_datetime(pd.Index([str(s) for s in sessions]))
    order = np.argsort(index.to_numpy(), kind="stable")
    # column-major as build_risk_model's scenarios: the loadings' column means then sum in the
    # same order, so the model read back is the one built, bit for bit
    scenarios = np.asfortranarray(values[order])
    dropped = frame.iloc[rows.get("dropped", [])]
    return RiskModel(
        symbols=symbols,
        scenarios=pd.DataFrame(scenarios, index=index[order], columns=symbols),
        mean=pd.Series(means["value"].to_numpy(dtype="float64"), index=symbols, name="mean"),
        shrinkage=float(scalar["shrinkage"][0]),
        shrinkage_target=float(scalar["shrinkage_target"][0]),
        periods_per_year=int(scalar["periods_per_year"][0]),
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
    vols = model.daily_volatility() * np.sqrt(model.periods_per_year)
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
