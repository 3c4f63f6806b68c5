"""Settings of stages 1–3 (ingest, features, signals): one resource, ``pipeline``.

Every knob has a default a trader would start from and can be set by an ``IBKR_`` environment
variable named after the field (lists as JSON, e.g. ``IBKR_WATCHLIST='["AAPL","MSFT"]'``):

* universe: the watch-list (empty = every stock the simulator lists), plus holdings, plus the
  day's movers — a scanner hit joins when it moved more than ``mover_min_change_pct`` (5%) on
  volume above ``mover_min_volume_ratio`` (2×) its average daily volume;
* history depth (``history_sessions``, 600 sessions of daily bars) and the news window (24 h);
* the alpha blend: weights of the technical, fundamental and sentiment blocks and of the macro
  regime adjustment;
* data-quality thresholds (share of the universe that must reach the feature matrix).

A list may also be written comma-separated (``IBKR_WATCHLIST=AAPL,MSFT``). A malformed value
is named with its variable (:class:`~ibkr_assets.errors.ConfigurationError`), and the code
location still loads with the problem shown on the resource (see
:class:`~ibkr_assets.errors.SettingsResource`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, get_origin

from pydantic import BeforeValidator, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ibkr_assets.broker import Broker
from ibkr_assets.errors import SettingsResource, settings_error

#: A ticker as IB spells it: letters, digits, '.', '-' or a space ("BRK B"), at most 12.
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9. -]{0,11}")


class _EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")


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


class PipelineConfig(SettingsResource):
    """Watch-list, mover thresholds, history depth, alpha weights and data-quality limits."""

    watchlist: list[str] = Field(
        default_factory=list, description="symbols to follow; empty = the simulator's universe"
    )
    mover_min_change_pct: float = Field(5.0, gt=0, description="|% change| a mover must exceed")
    mover_min_volume_ratio: float = Field(
        2.0, gt=0, description="volume / average daily volume a mover must exceed"
    )
    scanner_codes: list[str] = Field(
        default_factory=lambda: ["TOP_PERC_GAIN", "TOP_PERC_LOSE", "HOT_BY_VOLUME"],
        description="IB scanners feeding top_movers",
    )
    scanner_location: str = "STK.US.MAJOR"
    scanner_limit: int = Field(50, ge=1, le=50, description="rows per scanner (IB: at most 50)")
    history_sessions: int = Field(600, ge=60, description="daily bars kept per symbol")
    request_workers: int = Field(
        8, ge=1, description="history/news requests in flight (the broker enforces IB pacing)"
    )
    headline_hours: float = Field(24.0, gt=0, description="news window before the run")
    headlines_per_symbol: int = Field(50, ge=1, description="most recent kept per symbol")
    headline_history_days: int = Field(30, ge=1, description="sentiment baseline window")
    macro_sessions: int = Field(260, ge=30, description="history of the macro gauges")
    weight_technical: float = Field(0.4, ge=0)
    weight_fundamental: float = Field(0.3, ge=0)
    weight_sentiment: float = Field(0.2, ge=0)
    weight_macro: float = Field(0.1, ge=0, description="strength of the macro-regime adjustment")
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

    @classmethod
    def from_env(cls) -> PipelineConfig:
        """Defaults overridden by ``IBKR_<FIELD>`` environment variables; raises
        :class:`~ibkr_assets.errors.ConfigurationError` naming a malformed one."""
        fields: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            if name == "problem":
                continue
            annotation = field.annotation
            if get_origin(annotation) is list:  # JSON or comma-separated, parsed by env_list
                annotation = Annotated[annotation, NoDecode, BeforeValidator(env_list)]
            fields[name] = (annotation, field)
        try:
            settings = create_model("PipelineSettings", __base__=_EnvSettings, **fields)()
            return cls(**settings.model_dump())
        except ValidationError as exc:
            raise settings_error(exc, cls.model_fields) from None


def watchlist_symbols(config: PipelineConfig, broker: Broker) -> list[str]:
    """The configured watch-list, or — when empty and the broker is the simulator — every stock
    the simulated market lists. A real broker needs an explicit watch-list."""
    if config.watchlist:
        return [s.strip().upper() for s in config.watchlist if s.strip()]
    if broker.name != "sim":
        raise ValueError(
            f"no watch-list configured for the {broker.name!r} backend: set IBKR_WATCHLIST "
            '(a JSON list such as ["AAPL","MSFT"])'
        )
    from ibkr_assets.broker.sim import listed_stocks  # the simulated world, for the sim only

    return listed_stocks(broker)
