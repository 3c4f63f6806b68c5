"""Stages 4–9 (risk model to decision journal): their limits and switches, from the YAML file
``IBKR_DECIDE_CONFIG`` names (:func:`read_decide_file`)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.errors import ConfigurationError
from ibkr_assets.quant.overlay import DEFAULT_RULES_PATH


class DecideLimits(BaseModel):
    """Limits and switches of the decision stages (risk model to decision journal); the keys of
    the YAML file ``IBKR_DECIDE_CONFIG`` names."""

    # -- risk model ----------------------------------------------------------------------------
    scenario_sessions: int = Field(504, ge=60, description="historical return scenarios (sessions)")
    # -- optimiser: max E[r]·w − λ_var·w'Σw − λ_cvar·CVaR − amortised turnover cost -------------
    risk_aversion: float = Field(2.0, ge=0, description="λ_var on the variance w'Σw (daily)")
    cvar_aversion: float = Field(0.02, ge=0, description="λ_cvar on CVaR of the scenarios")
    cvar_alpha: float = Field(0.95, gt=0.5, lt=1, description="CVaR confidence level")
    turnover_cost: float = Field(
        0.0008,
        ge=0,
        description="one-off cost per unit of |Δw| traded of a name the cost model cannot price "
        "(no two-sided quote or ADV; the others pay their own half spread, IB commission and "
        "impact): fraction of the value traded, about 8 bp measured on the simulated market",
    )
    holding_period_sessions: float = Field(
        10.0,
        ge=1,
        description="expected holding period: the optimiser weighs turnover_cost / this against "
        "one session's expected return (a trade's cost is paid once, its alpha earned daily)",
    )
    max_gross: float = Field(1.2, gt=0, description="Σ|w| at most")
    max_weight: float = Field(0.12, gt=0, le=1, description="|w_i| at most")
    cash_buffer: float = Field(0.05, ge=0, lt=1, description="Σw at most 1 − cash buffer")
    long_only: bool = True
    sector_cap: float | None = Field(0.35, description="|Σ_sector w| at most; None = no cap")
    # -- news & sentiment overlay ---------------------------------------------------------------
    overlay_rules: str = Field(str(DEFAULT_RULES_PATH), description="YAML news rules file")
    # -- compliance gate --------------------------------------------------------------------------
    gross_change_max: float = Field(
        1.0, ge=0, description="|Δ gross exposure| at most (1.0 lets a new account invest)"
    )
    var_confidence: float = Field(0.99, gt=0.5, lt=1, description="VaR confidence level")
    var_historical_max: float = Field(0.03, gt=0, description="1-day historical VaR, of NAV")
    var_parametric_max: float = Field(0.03, gt=0, description="1-day Gaussian VaR, of NAV")
    concentration_max: float = Field(0.12, gt=0, description="largest |w_i| at most")
    liquidity_max_adv: float = Field(0.10, gt=0, description="each trade at most this × ADV")
    sector_max: float = Field(0.40, gt=0, description="largest sector gross weight at most")
    # -- orders -----------------------------------------------------------------------------------
    order_type: Literal["LMT", "MKT"] = "LMT"
    limit_spread_fraction: float = Field(
        0.25, ge=0, le=1, description="limit = mid ± this × spread (+ for buys)"
    )
    min_notional: float = Field(500.0, ge=0, description="drop trades smaller than this (USD)")
    even_lots: bool = Field(
        True, description="round quantities to whole round lots (as the seed's ticket does)"
    )
    whatif_shrink: float = Field(0.8, gt=0, lt=1, description="size multiplier per failed what-if")
    whatif_max_attempts: int = Field(5, ge=1, description="what-if tries before dropping")
    whatif_on_failure: Literal["drop", "keep"] = Field(
        "drop", description="after the last failed attempt: drop the order or keep it flagged"
    )
    # -- submission -------------------------------------------------------------------------------
    auto_submit: bool = Field(False, description="send the ticket to the broker (paper default)")
    order_ref_prefix: str = Field("ibkr-agent", description="prefix of every order_ref")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse a per-name limit above the aggregate limit that contains it."""
        pairs = [
            ("max_weight", self.max_weight, "max_gross", self.max_gross),
            ("concentration_max", self.concentration_max, "sector_max", self.sector_max),
        ]
        if self.long_only:  # a long-short book may offset a name within its sector and net
            net = 1 - self.cash_buffer
            pairs.append(("max_weight", self.max_weight, "1 - cash_buffer (long only)", net))
            if self.sector_cap is not None:
                pairs.append(("max_weight", self.max_weight, "sector_cap", self.sector_cap))
        contradictions = [
            f"{name} {value:g} is above {limit_name} {limit:g}"
            for name, value, limit_name, limit in pairs
            if value > limit + 1e-12
        ]
        if contradictions:
            raise ValueError(
                "; ".join(contradictions)
                + ": one position may not exceed the total it is part of; lower the first or "
                "raise the second"
            )
        return self


class DecideFileSettings(BaseSettings):
    """Where the decision stages' limits come from (``IBKR_DECIDE_CONFIG``)."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    decide_config: Path | None = Field(
        None,
        description="YAML file with optimiser and compliance limits and auto_submit (keys: the "
        "fields of ibkr_assets.settings.DecideLimits); unset = the defaults",
    )

    @field_validator("decide_config", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def read_decide_file(path: Path | None) -> DecideLimits:
    """The limits the YAML file at ``path`` sets (the defaults when ``path`` is None); raises
    :class:`~ibkr_assets.errors.ConfigurationError` naming the file and the key."""
    if path is None:
        return DecideLimits()
    where = f"IBKR_DECIDE_CONFIG={path}"
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{where}: cannot read the YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigurationError(f"{where}: expected a mapping of field: value")
    fields = list(DecideLimits.model_fields)
    unknown = [str(key) for key in values if key not in fields]
    if unknown:
        raise ConfigurationError(
            f"{where}: " + "; ".join(_unknown_key(key, fields) for key in unknown)
        )
    try:
        return DecideLimits(**values)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'limits'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise ConfigurationError(f"{where}: " + "; ".join(problems)) from None


def _unknown_key(key: str, fields: list[str]) -> str:
    """``key`` is not a field: name it, with the closest field when one is close."""
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(fields)}"
    return f"unknown key {key!r} ({hint})"
