"""Stages 1–3 of the pipeline (``IBKR_``, ``IBKR_SENTIMENT_``): watch-list, movers, history,
how the signals' evidence is read, and data quality; the headline scorer; where fundamentals
come from.

The fields the Dagster resources also show are declared once, in plain pydantic models the
section and its resource both inherit (:class:`PipelineFields`, :class:`SentimentFields`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: A ticker as IB spells it: letters, digits, '.', '-' or a space ("BRK B"), at most 12.
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9. -]{0,11}")


def env_list(value: object) -> object:
    """A list setting as written in the environment: a JSON list (``["AAPL","MSFT"]``) or
    comma-separated (``AAPL,MSFT``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not a JSON list ({exc.msg} at character {exc.pos}); "
            'write it as ["AAPL","MSFT"] or AAPL,MSFT'
        ) from None


#: A list of text from the environment: JSON or comma-separated (see :func:`env_list`).
EnvList = Annotated[list[str], NoDecode, BeforeValidator(env_list)]


# -- pipeline: stages 1–3 (IBKR_) ------------------------------------------------------------


class PipelineFields(BaseModel):
    """Watch-list, mover thresholds, history depth, signal evidence and data-quality limits."""

    watchlist: EnvList = Field(
        default_factory=list,
        description='symbols to follow, as JSON (["AAPL","MSFT"]) or comma-separated (holdings '
        "and the day's movers join; a real broker needs one); empty = the simulator's universe",
    )
    mover_min_change_pct: float = Field(5.0, gt=0, description="|% change| a mover must exceed")
    mover_min_volume_ratio: float = Field(
        2.0, gt=0, description="volume / average daily volume a mover must exceed"
    )
    scanner_codes: EnvList = Field(
        default_factory=lambda: ["TOP_PERC_GAIN", "TOP_PERC_LOSE", "HOT_BY_VOLUME"],
        description="IB scanners feeding top_movers",
    )
    scanner_location: str = Field("STK.US.MAJOR", description="IB scanner location code")
    scanner_limit: int = Field(50, ge=1, le=50, description="rows per scanner (IB: at most 50)")
    history_sessions: int = Field(600, ge=60, description="daily bars kept per symbol")
    request_workers: int = Field(
        8, ge=1, description="history/news requests in flight (the broker enforces IB pacing)"
    )
    headline_hours: float = Field(24.0, gt=0, description="news window before the run (hours)")
    headlines_per_symbol: int = Field(50, ge=1, description="most recent kept per symbol")
    headline_history_days: int = Field(30, ge=1, description="sentiment baseline window (days)")
    macro_sessions: int = Field(260, ge=30, description="history of the macro gauges")
    evidence_sessions: int = Field(
        250, ge=20, description="sessions of daily signal ICs behind the weights (about a year)"
    )
    evidence_t_threshold: float = Field(
        2.0,
        ge=0,
        description="Newey-West |t| of its mean IC a signal alone needs for a weight (tested "
        "together, at that level: Benjamini-Hochberg)",
    )
    evidence_prior_sd: float = Field(
        0.02, gt=0, description="prior spread of true daily ICs: shrinks a measured IC toward 0"
    )
    volatility_sessions: int = Field(
        60, ge=2, description="sessions of returns behind each name's daily volatility (E[r])"
    )
    min_universe_coverage: float = Field(
        0.95, gt=0, le=1, description="share of the universe the feature matrix must cover"
    )

    @field_validator("watchlist")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not SYMBOL.fullmatch(s.strip())]
        if bad:
            raise ValueError(
                f"not a ticker symbol: {', '.join(map(repr, bad[:5]))} (a symbol has letters, "
                "digits, '.', '-' or a space, at most 12 characters; separate symbols with commas)"
            )
        return value


class PipelineSettings(PipelineFields, BaseSettings):
    """Stages 1–3 from ``IBKR_<FIELD>`` (lists as JSON or comma-separated)."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")


class SentimentFields(BaseModel):
    """Which sentiment model scores the headlines (None = the finance lexicon)."""

    model: str | None = Field(
        None,
        description="FinBERT-style model directory or Hugging Face cache id (ProsusAI/finbert); "
        "unset = the finance lexicon",
    )
    batch_size: int = Field(32, ge=1, description="headlines per forward pass of the model")


class SentimentSettings(SentimentFields, BaseSettings):
    """The headline scorer from ``IBKR_SENTIMENT_*``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_SENTIMENT_", extra="ignore")


class FundamentalsSettings(BaseSettings):
    """Where the pipeline's fundamentals come from."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    fundamentals: Literal["sim", "fmp"] = Field(
        "sim", description="sim (the simulated world) or fmp (Financial Modeling Prep, FMP_API_KEY)"
    )
