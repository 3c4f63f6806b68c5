"""Fundamental signals from quarterly statements and forward EPS.

**Piotroski F-score** (Piotroski 2000, "Value investing: the use of historical financial
statement information to separate winners from losers", *Journal of Accounting Research*
38, 1-41): nine pass/fail tests of profitability, balance-sheet health and efficiency. High
scores (8-9) among cheap stocks earned about 7.5% a year more than low scores (0-1).

Quarterly data are annualised the usual way: flows (revenue, gross profit, net income,
operating cash flow) are **trailing-twelve-month sums** of the last four quarters; stocks
(assets, debt, current assets/liabilities, shares) are the **latest quarter**. "Last year" is
the same computation four quarters earlier. Ratios are scaled by **average total assets**
(latest and a year earlier; the latest alone when the year-earlier figure is missing). Only
statements with ``report_date <= as_of`` are used: what a trader could have known that day.

=====  ==========================  ==========================================================
#      criterion                   passes (scores 1) when
=====  ==========================  ==========================================================
1      ``f_roa``                   ROA = TTM net income / average assets > 0
2      ``f_cfo``                   TTM operating cash flow > 0
3      ``f_delta_roa``             ROA higher than a year earlier
4      ``f_accrual``               CFO / average assets > ROA (earnings backed by cash)
5      ``f_delta_leverage``        long-term debt / average assets lower than a year earlier
6      ``f_delta_liquidity``       current ratio (current assets / liabilities) higher
7      ``f_no_new_shares``         shares outstanding not above a year earlier
8      ``f_delta_margin``          TTM gross margin higher than a year earlier
9      ``f_delta_turnover``        asset turnover (TTM revenue / average assets) higher
=====  ==========================  ==========================================================

``piotroski`` is the number passed (0-9). It needs eight consecutive quarters (two TTM
windows, checked by the period-end dates); with fewer it is NaN. A criterion whose inputs are
missing counts as failed, as in the original paper (no evidence of strength is no point);
``piotroski_available`` says how many criteria had their inputs.

**Forward P/E** = price / consensus forward EPS, defined only for positive EPS. Its deviation
from the sector median (``forward_pe_rel_sector = P/E / sector median - 1``) is the value
signal: negative is cheap relative to peers (Basu 1977). ``forward_earnings_yield`` = EPS /
price is reported too; it stays meaningful for loss makers.

**Revenue growth** ``revenue_growth_yoy`` = TTM revenue / TTM revenue a year earlier - 1;
``revenue_growth_flag`` is 1 above 15% (a growth screen), else 0.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date, datetime

import numpy as np
import pandas as pd

from ibkr_assets.quant.frames import require_columns
from ibkr_assets.quant.market_clock import MARKET_TZ

STATEMENT_COLUMNS = (
    "symbol",
    "period_end",
    "report_date",
    "revenue",
    "gross_profit",
    "net_income",
    "total_assets",
    "operating_cash_flow",
    "long_term_debt",
    "current_assets",
    "current_liabilities",
    "shares_outstanding",
)
FLOWS = ("revenue", "gross_profit", "net_income", "operating_cash_flow")
CRITERIA = (
    "f_roa",
    "f_cfo",
    "f_delta_roa",
    "f_accrual",
    "f_delta_leverage",
    "f_delta_liquidity",
    "f_no_new_shares",
    "f_delta_margin",
    "f_delta_turnover",
)
FEATURE_COLUMNS = (
    *CRITERIA,
    "piotroski",
    "piotroski_available",
    "revenue_growth_yoy",
    "revenue_growth_flag",
    "forward_pe",
    "forward_pe_sector_median",
    "forward_pe_rel_sector",
    "forward_earnings_yield",
)
# Three quarters between the first and last period-end of a TTM window, four a year apart.
_TTM_SPAN_DAYS = (240, 310)
_YEAR_SPAN_DAYS = (330, 400)


def _known_statements(
    statements: pd.DataFrame, as_of: date | datetime | pd.Timestamp | None
) -> pd.DataFrame:
    require_columns(statements, "statements", STATEMENT_COLUMNS)
    frame = statements.loc[:, list(STATEMENT_COLUMNS)].assign(
        symbol=statements["symbol"].astype(str),
        period_end=pd.to_datetime(statements["period_end"], cache=False),
        report_date=pd.to_datetime(statements["report_date"], cache=False),
    )
    if as_of is not None:
        cutoff = pd.Timestamp(as_of)
        if cutoff.tz is not None:  # report dates are New York calendar days
            cutoff = cutoff.tz_convert(MARKET_TZ).tz_localize(None)
        frame = frame.loc[frame["report_date"] <= cutoff]
    frame = frame.sort_values(["symbol", "period_end", "report_date"], kind="stable")
    # A restated quarter: keep the latest report known as of the date.
    return frame.drop_duplicates(["symbol", "period_end"], keep="last").reset_index(drop=True)


def statement_metrics(
    statements: pd.DataFrame, as_of: date | datetime | pd.Timestamp | None = None
) -> pd.DataFrame:
    """Annualised metrics at each symbol's latest known quarter and a year earlier.

    Index ``symbol``; columns ``<metric>`` and ``<metric>_prev`` for roa, cfo_to_assets,
    leverage, current_ratio, gross_margin, asset_turnover, shares, revenue_ttm; plus
    ``net_income_ttm``, ``cfo_ttm`` and ``quarters`` (consecutive quarters available, capped
    at 8).
    """
    table = _metric_rows(_known_statements(statements, as_of))
    return table.groupby("symbol", sort=True).tail(1).set_index("symbol")


def _metric_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`statement_metrics` at every row of ``frame`` (known statements sorted by symbol
    and period end, one per period end), each from that row and the ones before it of its
    symbol; column ``symbol`` beside the metrics."""
    numeric = frame.loc[:, list(STATEMENT_COLUMNS[3:])].apply(pd.to_numeric, errors="coerce")
    group = numeric.groupby(frame["symbol"], sort=False)
    ends = frame.groupby("symbol", sort=False)["period_end"]

    def lag(values: pd.DataFrame | pd.Series, k: int) -> pd.DataFrame | pd.Series:
        return values.groupby(frame["symbol"], sort=False).shift(k)

    ttm_span = (frame["period_end"] - ends.shift(3)).dt.days
    year_span = (frame["period_end"] - ends.shift(4)).dt.days
    ttm_ok = ttm_span.between(*_TTM_SPAN_DAYS)
    year_ok = year_span.between(*_YEAR_SPAN_DAYS)
    flows = numeric.loc[:, list(FLOWS)]
    ttm = (
        flows
        + group[list(FLOWS)].shift(1)
        + group[list(FLOWS)].shift(2)
        + group[list(FLOWS)].shift(3)
    ).where(ttm_ok)
    assets = numeric["total_assets"].where(numeric["total_assets"] > 0)
    avg_assets = ((assets + lag(assets, 4).where(year_ok)) / 2).fillna(assets)
    with np.errstate(divide="ignore", invalid="ignore"):
        current = pd.DataFrame(
            {
                "roa": ttm["net_income"] / avg_assets,
                "cfo_to_assets": ttm["operating_cash_flow"] / avg_assets,
                "leverage": numeric["long_term_debt"] / avg_assets,
                "current_ratio": numeric["current_assets"]
                / numeric["current_liabilities"].where(numeric["current_liabilities"] > 0),
                "gross_margin": ttm["gross_profit"] / ttm["revenue"].where(ttm["revenue"] > 0),
                "asset_turnover": ttm["revenue"] / avg_assets,
                "shares": numeric["shares_outstanding"],
                "revenue_ttm": ttm["revenue"],
            }
        )
    previous = lag(current, 4).where(year_ok, axis=0).add_suffix("_prev")
    # Consecutive quarters ending at each row: a run breaks when a gap is not ~one quarter.
    step = (frame["period_end"] - ends.shift(1)).dt.days
    breaks = ~step.between(60, 120)
    run = breaks.astype("int64").groupby(frame["symbol"], sort=False).cumsum()
    quarters = frame.groupby([frame["symbol"], run], sort=False).cumcount() + 1
    return pd.concat([current, previous], axis=1).assign(
        net_income_ttm=ttm["net_income"],
        cfo_ttm=ttm["operating_cash_flow"],
        quarters=np.minimum(quarters.to_numpy(), 8),
        symbol=frame["symbol"],
    )


def statement_history(statements: pd.DataFrame) -> pd.DataFrame:
    """:func:`statement_metrics` as it stood after each filing: one row per symbol and distinct
    ``report_date`` (columns ``symbol``, ``known_from`` — that report date — then the metrics),
    sorted by both. A day's metrics are each symbol's last row known by then
    (:func:`~ibkr_assets.quant.features.assemble_feature_matrix` with
    ``FeatureInputs.statement_history``): a replay that assembles hundreds of days from the same
    statements computes them once, by the same function, instead of once a day."""
    require_columns(statements, "statements", STATEMENT_COLUMNS)
    frame = statements.assign(
        symbol=statements["symbol"].astype(str),
        report_date=pd.to_datetime(statements["report_date"], cache=False),
    )
    keys = (
        frame.loc[:, ["symbol", "report_date"]]
        .drop_duplicates()
        .rename(columns={"report_date": "known_from"})
        .sort_values(["symbol", "known_from"], ignore_index=True)
    )
    # A symbol whose quarters were each reported once, in order, stood after each filing at
    # its statements up to that one: one pass over its rows gives every state.
    known = _known_statements(frame, None)
    names = known["symbol"].to_numpy()
    reported = known["report_date"].to_numpy()
    out_of_order = np.r_[False, (names[1:] == names[:-1]) & ~(reported[1:] > reported[:-1])]
    filed = frame["symbol"].value_counts()
    kept = known["symbol"].value_counts().reindex(filed.index, fill_value=0)
    restated = set(names[out_of_order]) | set(filed.index[(filed != kept).to_numpy()])
    simple = set(names) - restated
    in_order = known.loc[known["symbol"].isin(simple).to_numpy()]
    rows = _metric_rows(in_order).assign(known_from=in_order["report_date"])
    # the others (restated or out-of-order filings): each filing's state, the symbol's
    # statements reported by then, under a key of its own
    keys = keys.assign(state=keys.index.astype(str))
    others = keys.loc[~keys["symbol"].isin(simple).to_numpy()]
    states = frame.merge(others, on="symbol")
    states = states.loc[states["report_date"] <= states["known_from"]]
    metrics = statement_metrics(states.assign(symbol=states["state"]))
    by_state = others.join(metrics, on="state").drop(columns="state")
    history = pd.concat([rows.loc[:, list(by_state.columns)], by_state], ignore_index=True)
    return history.sort_values(["symbol", "known_from"], ignore_index=True)


def _passes(condition: pd.Series, *inputs: pd.Series) -> pd.Series:
    """1.0 / 0.0, NaN where any input is missing."""
    defined = np.logical_and.reduce([x.notna().to_numpy() for x in inputs])
    return pd.Series(
        np.where(defined, condition.to_numpy(dtype="float64"), np.nan), index=condition.index
    )


def piotroski_fscore(
    statements: pd.DataFrame, as_of: date | datetime | pd.Timestamp | None = None
) -> pd.DataFrame:
    """The nine criteria (1/0, NaN when inputs are missing), ``piotroski`` (0-9, NaN with fewer
    than eight consecutive quarters) and ``piotroski_available``, indexed by symbol."""
    return _piotroski(statement_metrics(statements, as_of))


def _piotroski(m: pd.DataFrame) -> pd.DataFrame:
    criteria = pd.DataFrame(
        {
            "f_roa": _passes(m["roa"] > 0, m["roa"]),
            "f_cfo": _passes(m["cfo_ttm"] > 0, m["cfo_ttm"]),
            "f_delta_roa": _passes(m["roa"] > m["roa_prev"], m["roa"], m["roa_prev"]),
            "f_accrual": _passes(m["cfo_to_assets"] > m["roa"], m["cfo_to_assets"], m["roa"]),
            "f_delta_leverage": _passes(
                m["leverage"] < m["leverage_prev"], m["leverage"], m["leverage_prev"]
            ),
            "f_delta_liquidity": _passes(
                m["current_ratio"] > m["current_ratio_prev"],
                m["current_ratio"],
                m["current_ratio_prev"],
            ),
            "f_no_new_shares": _passes(
                m["shares"] <= m["shares_prev"], m["shares"], m["shares_prev"]
            ),
            "f_delta_margin": _passes(
                m["gross_margin"] > m["gross_margin_prev"],
                m["gross_margin"],
                m["gross_margin_prev"],
            ),
            "f_delta_turnover": _passes(
                m["asset_turnover"] > m["asset_turnover_prev"],
                m["asset_turnover"],
                m["asset_turnover_prev"],
            ),
        },
        index=m.index,
    )
    enough = m["quarters"] >= 8
    return criteria.assign(
        piotroski=criteria.fillna(0.0).sum(axis=1).where(enough),
        piotroski_available=criteria.notna().sum(axis=1).astype("int64"),
    )


def revenue_growth(m: pd.DataFrame, threshold: float = 0.15) -> pd.DataFrame:
    """YoY TTM revenue growth and the above-threshold flag from :func:`statement_metrics`."""
    prev = m["revenue_ttm_prev"].where(m["revenue_ttm_prev"] > 0)
    growth = m["revenue_ttm"] / prev - 1.0
    return pd.DataFrame(
        {
            "revenue_growth_yoy": growth,
            "revenue_growth_flag": (growth > threshold).astype("float64").where(growth.notna()),
        },
        index=m.index,
    )


def forward_pe(price: pd.Series, forward_eps: pd.Series, sector: pd.Series) -> pd.DataFrame:
    """Forward P/E, its sector median and relative deviation, and the forward earnings yield.

    All three inputs are indexed by symbol (aligned here). P/E is NaN for EPS <= 0 or a
    non-positive price; the sector median is over the names with a defined P/E.
    """
    frame = pd.DataFrame({"price": price, "eps": forward_eps, "sector": sector})
    price_ok, eps = (
        pd.to_numeric(frame[c], errors="coerce").to_numpy("float64", na_value=np.nan)
        for c in ("price", "eps")
    )
    price_ok = np.where(price_ok > 0, price_ok, np.nan)
    pe = price_ok / np.where(eps > 0, eps, np.nan)
    sectors, names = pd.factorize(frame["sector"].fillna("Unknown"))
    median = np.full(len(pe), np.nan)
    for k in range(len(names)):  # a dozen sectors
        members = sectors == k
        known = pe[members][~np.isnan(pe[members])]
        median[members] = np.median(known) if len(known) else np.nan
    return pd.DataFrame(
        {
            "forward_pe": pe,
            "forward_pe_sector_median": median,
            "forward_pe_rel_sector": pe / median - 1.0,
            "forward_earnings_yield": eps / price_ok,
        },
        index=frame.index,
    )


def statement_signals(metrics: pd.DataFrame, growth_threshold: float = 0.15) -> pd.DataFrame:
    """The statements' features, row by row of ``metrics`` (:func:`statement_metrics`'s
    columns; any index): the Piotroski criteria and score, and the revenue growth and its flag
    (above ``growth_threshold``)."""
    return pd.concat([_piotroski(metrics), revenue_growth(metrics, growth_threshold)], axis=1)


def fundamental_features(
    metrics: pd.DataFrame,
    forward_eps: pd.Series,
    price: pd.Series,
    sector: pd.Series,
    growth_threshold: float = 0.15,
    symbols: list[Hashable] | None = None,
) -> pd.DataFrame:
    """Every fundamental feature (:data:`FEATURE_COLUMNS`), one row per symbol, from the
    statements' :func:`statement_metrics` as of the day.

    Rows are ``symbols`` when given (NaN where a symbol has no statements), else the union of
    symbols in the metrics and in ``price``.
    """
    return fundamental_columns(
        statement_signals(metrics, growth_threshold), forward_eps, price, sector, symbols
    )


def fundamental_columns(
    signals: pd.DataFrame,
    forward_eps: pd.Series,
    price: pd.Series,
    sector: pd.Series,
    symbols: list[Hashable] | None = None,
) -> pd.DataFrame:
    """:func:`fundamental_features` from the statements' :func:`statement_signals` as of the day
    (indexed by symbol; a replay takes them row by row from the signals of the whole
    :func:`statement_history`, computed once) and the day's forward EPS, price and sector."""
    index = pd.Index(
        symbols if symbols is not None else signals.index.union(price.index), name="symbol"
    )
    blocks = signals.reindex(index)
    valuation = forward_pe(price.reindex(index), forward_eps.reindex(index), sector.reindex(index))
    columns = {**dict(blocks.items()), **dict(valuation.items())}
    columns["piotroski_available"] = columns["piotroski_available"].fillna(0).astype("int64")
    return pd.DataFrame({c: columns[c] for c in FEATURE_COLUMNS}, index=index)
