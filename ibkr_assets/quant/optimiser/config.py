"""The optimiser's settings: objective weights and portfolio limits, and the solvers it may use.

Weights and limits are fractions of net asset value (0.12 = 12%); the objective weights are
per unit of the objective's terms (see :mod:`ibkr_assets.quant.optimiser`), so they apply to
returns in the units of the expected returns and scenarios (daily, from a risk model).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

SOLVERS = ("CLARABEL", "HIGHS", "SCS", "ECOS")
"""The solvers tried, in this order after the first choice (``OptimiserConfig.solver``)."""


class OptimiserConfig(BaseModel):
    """Objective weights and portfolio limits (field names as in ``DecideConfig``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_aversion: float = Field(2.0, ge=0, description="λ_var on w'Σw")
    cvar_aversion: float = Field(0.02, ge=0, description="λ_cvar on CVaR of the scenarios")
    cvar_alpha: float = Field(0.95, gt=0.5, lt=1, description="CVaR confidence level")
    turnover_cost: float = Field(0.0005, ge=0, description="cost per unit of ‖w − w0‖₁")
    max_gross: float = Field(1.2, gt=0, description="Σ|w| at most")
    max_weight: float = Field(0.12, gt=0, le=1, description="|w_i| at most")
    cash_buffer: float = Field(0.05, ge=0, lt=1, description="Σw at most 1 − cash_buffer")
    min_net: float | None = Field(None, description="Σw at least this (None = no floor)")
    long_only: bool = True
    sector_cap: float | None = Field(None, gt=0, description="|Σ_sector w| at most, all sectors")
    sector_caps: dict[str, float] = Field(
        default_factory=dict, description="per-sector caps overriding sector_cap"
    )
    # 50, not 40: the first set (these plus the book and the last targets, ~60 names at 700) then
    # needs a second round of ~110 names in 6 of 125 sessions instead of 21 of 125, and HiGHS's
    # time grows with the names: solve CPU ~20% less, 6-month 700-name replay (session 17, #18.8)
    working_set: int | None = Field(
        50,
        ge=1,
        description="best-alpha names in the first working set of a large long-only book "
        "(None: always solve the full problem)",
    )
    solver: str = Field(
        "AUTO",
        description="first solver tried (AUTO: HiGHS for a large long-only book, else Clarabel)",
    )

    @model_validator(mode="after")
    def _check(self) -> OptimiserConfig:
        bad = {k: v for k, v in self.sector_caps.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"sector caps must be finite and >= 0: {bad}")
        if self.solver.upper() not in (*SOLVERS, "AUTO"):
            raise ValueError(f"solver must be AUTO or one of {SOLVERS}, got {self.solver!r}")
        return self

    @property
    def max_net(self) -> float:
        """The net exposure ceiling ``1 − cash_buffer``."""
        return 1.0 - self.cash_buffer
