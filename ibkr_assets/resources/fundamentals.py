"""Fundamentals: quarterly statements and forward EPS per symbol, as of a date.

Two sources behind one interface (:class:`FundamentalsResource`):

* ``SimFundamentalsResource`` (the default) reads the simulated market's quarterly statements and
  consensus forward EPS through the sim broker;
* ``FMPFundamentalsResource`` calls Financial Modeling Prep's ``stable`` REST API
  (https://site.financialmodelingprep.com/developer/docs): ``income-statement``,
  ``balance-sheet-statement`` and ``cash-flow-statement`` with ``period=quarter``, and
  ``analyst-estimates`` for forward EPS. The API key is the secret ``FMP_API_KEY`` (its variable,
  the file ``FMP_API_KEY_FILE`` names, or Vault: :mod:`ibkr_assets.settings.secret`), read at
  each fetch and sent as the ``apikey`` header, so it never appears in a URL, a log line or an
  error.
  Rate limits (HTTP 429) and server errors are retried with exponential backoff (tenacity).

Either way only statements *filed before* the as-of date are returned (no look-ahead). A symbol
with no data — unknown to IB (error 200), no fundamentals for the security (IB error 430, e.g.
an ETF), no statements yet, or FMP answering HTTP 404 or an empty list — is listed in
:attr:`Fundamentals.missing` with the reason and named in one warning per fetch, instead of
failing the run; any other error (a lost connection, a refused key, a malformed answer) raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import httpx
import numpy as np
import pandas as pd
from pydantic import Field
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError, ContractNotFound
from ibkr_assets.quant.fundamental import STATEMENT_COLUMNS
from ibkr_assets.settings.secret import FMP_API_KEY
from ibkr_spec.errors import NO_FUNDAMENTALS, NO_SECURITY_DEFINITION, IBError

log = dg.get_dagster_logger(__name__)
#: IB's codes for "nothing to fetch for this symbol".
NO_DATA_CODES = frozenset({NO_SECURITY_DEFINITION, NO_FUNDAMENTALS})


@dataclass
class Fundamentals:
    """Statements (long, one row per symbol and quarter), forward EPS per symbol, and the
    symbols that had no data: ``missing`` maps each to the reason (for the asset's metadata)."""

    statements: pd.DataFrame
    forward_eps: pd.DataFrame  # symbol, forward_eps
    missing: dict[str, str] = field(default_factory=dict)


def _no_data(exc: BrokerError | IBError) -> bool:
    """Whether an IB-coded error means the symbol has nothing to fetch (not a failure)."""
    return isinstance(exc, ContractNotFound) or exc.code in NO_DATA_CODES


def _warn_missing(what: str, missing: dict[str, str], asked: int) -> None:
    """One warning naming every symbol without data and why."""
    if missing:
        listed = "; ".join(f"{symbol}: {why}" for symbol, why in missing.items())
        log.warning("%s: no data for %d of %d symbols (%s)", what, len(missing), asked, listed)


def _finish(
    frames: list[pd.DataFrame], eps: dict[str, float], missing: dict[str, str], as_of: date
) -> Fundamentals:
    statements = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({c: pd.Series(dtype="float64") for c in STATEMENT_COLUMNS})
    )
    statements = statements.reindex(columns=list(STATEMENT_COLUMNS))
    statements = statements.assign(
        symbol=statements["symbol"].astype("string"),
        period_end=pd.to_datetime(statements["period_end"]),
        report_date=pd.to_datetime(statements["report_date"]),
    )
    statements = statements.loc[statements["report_date"] < pd.Timestamp(as_of)]
    statements = statements.sort_values(["symbol", "period_end"]).reset_index(drop=True)
    forward = pd.DataFrame(
        {"symbol": pd.Series(list(eps), dtype="string"), "forward_eps": list(eps.values())}
    )
    return Fundamentals(statements=statements, forward_eps=forward, missing=missing)


class FundamentalsResource(dg.ConfigurableResource):
    """Where fundamentals come from. Subclasses implement :meth:`fetch`."""

    def fetch(self, broker: Broker, symbols: Sequence[str], as_of: date) -> Fundamentals:
        """Statements filed before ``as_of`` and forward EPS for ``symbols``."""
        raise NotImplementedError

    def forward_eps_history(
        self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]
    ) -> pd.DataFrame:
        """Forward EPS of ``symbols`` as :meth:`fetch` gives it on each of ``sessions``
        (columns session, symbol, forward_eps): what a backtest replays. A symbol without data
        has no rows (named in a warning; :attr:`Fundamentals.missing` of :meth:`fetch` holds
        the reason)."""
        frames = [
            self.fetch(broker, symbols, as_of=day).forward_eps.assign(session=pd.Timestamp(day))
            for day in sessions
        ]
        return pd.concat(frames, ignore_index=True).loc[:, ["session", "symbol", "forward_eps"]]


class SimFundamentalsResource(FundamentalsResource):
    """The simulated market's statements and consensus EPS: the sim broker's own market's, or —
    behind the simulated gateway (``tws`` backend) — the same world's (``IBKR_SIM_SEED``,
    ``IBKR_SIM_SYMBOLS``, ``IBKR_SIM_EDGE``), drawn in this process from the stocks' quality
    and shares alone: the statements need no prices, which the gateway's process holds."""

    sim_seed: int = 7
    sim_symbols: int = 700
    sim_edge: str = "default"

    def fetch(self, broker: Broker, symbols: Sequence[str], as_of: date) -> Fundamentals:
        from ibkr_assets.broker.sim import simulated_market  # the simulated world, this source only

        market = simulated_market(broker, self.sim_seed, self.sim_symbols, self.sim_edge)
        stocks, missing, found = _sim_stocks(broker, market, symbols, as_of)
        # every stock's statements from the simulator's arrays at once (a replay asks for 700)
        eps = dict(zip(stocks, market.forward_eps_many(list(stocks.values()), as_of), strict=True))
        reported = set(found["conid"].tolist())
        for symbol, conid in stocks.items():
            if conid not in reported:
                missing[symbol] = "no statements reported"
        symbol_of = {conid: symbol for symbol, conid in stocks.items()}
        found.insert(0, "symbol", [symbol_of[c] for c in found.pop("conid").tolist()])
        _warn_missing("fundamentals (simulated)", missing, len(symbols))
        return _finish([found], eps, dict(sorted(missing.items(), key=_order(symbols))), as_of)

    def forward_eps_history(
        self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]
    ) -> pd.DataFrame:
        from ibkr_assets.broker.sim import simulated_market  # the simulated world, this source only

        market = simulated_market(broker, self.sim_seed, self.sim_symbols, self.sim_edge)
        # a symbol without fundamentals (an ETF) has no forward EPS
        stocks, skipped, _ = _sim_stocks(broker, market, symbols, sessions[0])
        _warn_missing("forward EPS history (simulated)", skipped, len(symbols))
        # every stock on every session in one call: (sessions, stocks), session-major rows
        eps = market.forward_eps_history(list(stocks.values()), sessions)
        return pd.DataFrame(
            {
                "session": np.array(sessions, dtype="datetime64[s]").repeat(len(stocks)),
                "symbol": pd.array(list(stocks) * len(sessions), dtype="string"),
                "forward_eps": eps.ravel(),
            }
        )


def _sim_stocks(
    broker: Broker, market: Any, symbols: Sequence[str], as_of: date
) -> tuple[dict[str, int], dict[str, str], pd.DataFrame]:
    """The simulated ``symbols`` (``market``: the simulator's ``SimMarket``, which only the
    sim backend may import) that have fundamentals (symbol -> conid, in order), why each
    other one has none, and the stocks' statements reported by ``as_of``
    (``SimMarket.fundamentals_many``); an error that is not "no data" is raised."""
    conids: dict[str, int] = {}
    missing: dict[str, str] = {}
    for symbol, found in broker.resolve_many(list(symbols)).items():
        if isinstance(found, BrokerError):
            if not _no_data(found):
                raise found
            missing[symbol] = f"{type(found).__name__}: {found}"
        else:
            conids[symbol] = found.conid
    statements, refused = market.fundamentals_many(list(conids.values()), as_of)
    stocks: dict[str, int] = {}
    for symbol, conid in conids.items():
        if (exc := refused.get(conid)) is None:
            stocks[symbol] = conid
        elif not _no_data(exc):
            raise exc
        else:
            missing[symbol] = f"{type(exc).__name__}: {exc}"
    return stocks, missing, statements


def _order(symbols: Sequence[str]) -> Callable[[tuple[str, str]], int]:
    """A sort key putting a ``(symbol, reason)`` item in the order of ``symbols``."""
    rank = {symbol: k for k, symbol in enumerate(symbols)}
    return lambda item: rank[item[0]]


class FMPError(RuntimeError):
    """Financial Modeling Prep answered with an error (the message never holds the key)."""


class FMPNoData(FMPError):
    """FMP has nothing for the symbol: HTTP 404 or an empty list."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, _RetryableStatus)


class _RetryableStatus(FMPError):
    pass


# FMP field -> our column, per statement endpoint
_FMP_FIELDS: dict[str, dict[str, str]] = {
    "income-statement": {
        "revenue": "revenue",
        "grossProfit": "gross_profit",
        "netIncome": "net_income",
        "weightedAverageShsOutDil": "shares_outstanding",
    },
    "balance-sheet-statement": {
        "totalAssets": "total_assets",
        "longTermDebt": "long_term_debt",
        "totalCurrentAssets": "current_assets",
        "totalCurrentLiabilities": "current_liabilities",
    },
    "cash-flow-statement": {"operatingCashFlow": "operating_cash_flow"},
}


class FMPFundamentalsResource(FundamentalsResource):
    """Financial Modeling Prep over HTTPS, with the API key the secret ``FMP_API_KEY`` holds when
    a fetch starts."""

    base_url: str = "https://financialmodelingprep.com/stable"
    quarters: int = Field(12, ge=5, description="quarters of statements per symbol")
    timeout: float = Field(20.0, gt=0)
    max_attempts: int = Field(4, ge=1, description="tries per request (429 / 5xx / network)")
    backoff_seconds: float = Field(1.0, ge=0, description="first retry wait, doubled each time")

    def _get(self, client: httpx.Client, endpoint: str, params: dict[str, str | int]) -> list:
        @retry(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30),
            reraise=True,
        )
        def call() -> list:
            response = client.get(f"/{endpoint}", params=params)
            where = f"FMP {endpoint} {params.get('symbol', '')}: HTTP {response.status_code}"
            if response.status_code == 429 or response.status_code >= 500:
                raise _RetryableStatus(where)
            if response.status_code in (401, 403):
                raise FMPError(f"{where}: the API key (FMP_API_KEY) was refused")
            if response.status_code == 404:
                raise FMPNoData(f"{where}: not found")
            if response.status_code >= 400:
                raise FMPError(f"{where}: {response.text[:200]}")
            payload = response.json()
            if isinstance(payload, dict):  # FMP reports errors as {"Error Message": ...}
                raise FMPError(f"{where}: {payload.get('Error Message', payload)}")
            return payload

        return call()

    def _statement(
        self, client: httpx.Client, endpoint: str, fields: dict[str, str], symbol: str
    ) -> pd.DataFrame:
        """One statement endpoint as (period_end, report_date, our columns); a field FMP does
        not report is NaN."""
        rows = self._get(
            client, endpoint, {"symbol": symbol, "period": "quarter", "limit": self.quarters}
        )
        if not rows:
            raise FMPNoData(f"FMP has no {endpoint} for {symbol}")
        raw = pd.DataFrame(rows)
        filed = raw.get("filingDate", raw.get("fillingDate", raw["date"]))
        nan = pd.Series(float("nan"), index=raw.index)
        return pd.DataFrame(
            {
                "period_end": pd.to_datetime(raw["date"]),
                "report_date": pd.to_datetime(filed),
                **{ours: pd.to_numeric(raw.get(theirs, nan)) for theirs, ours in fields.items()},
            }
        )

    def _symbol(self, client: httpx.Client, symbol: str, as_of: date) -> tuple[pd.DataFrame, float]:
        income, *others = [
            self._statement(client, endpoint, fields, symbol)
            for endpoint, fields in _FMP_FIELDS.items()
        ]
        merged = functools.reduce(
            lambda left, right: left.merge(
                right.drop(columns="report_date"), on="period_end", how="inner"
            ),
            others,
            income,
        )
        estimates = self._get(client, "analyst-estimates", {"symbol": symbol, "period": "annual"})
        future = sorted(
            (e for e in estimates if date.fromisoformat(str(e["date"])[:10]) > as_of),
            key=lambda e: e["date"],
        )
        eps = float(future[0]["epsAvg"]) if future else float("nan")
        return merged.assign(symbol=symbol), eps

    def fetch(self, broker: Broker, symbols: Sequence[str], as_of: date) -> Fundamentals:
        frames: list[pd.DataFrame] = []
        eps: dict[str, float] = {}
        missing: dict[str, str] = {}
        key = FMP_API_KEY.required().get_secret_value()
        headers = {"apikey": key, "Accept": "application/json"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout) as client:
            for symbol in symbols:
                try:
                    frame, eps[symbol] = self._symbol(client, symbol, as_of)
                except FMPNoData as exc:
                    missing[symbol] = str(exc)
                    continue
                except _RetryableStatus as exc:
                    missing[symbol] = f"{exc} after {self.max_attempts} attempts"
                    continue
                frames.append(frame)
        _warn_missing("fundamentals (FMP)", missing, len(symbols))
        return _finish(frames, eps, missing, as_of)
