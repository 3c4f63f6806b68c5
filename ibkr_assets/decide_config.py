"""The limits and switches of stages 4–9 (optimise, overlay, gate, orders, submit, journal).

One resource, ``decide``, holds every knob so the optimiser, the compliance gate and the order
stages read the same numbers. Defaults are those of a conservative long-only book; an operator
overrides them with a YAML file named by ``IBKR_DECIDE_CONFIG`` (keys = the fields of
:class:`ibkr_assets.settings.DecideLimits`, read by :func:`ibkr_assets.settings.read_decide_file`),
and tests pass fields directly (``DecideConfig(concentration_max=0.01)``).

Two kinds of limits, deliberately separate:

* optimiser limits (``max_weight``, ``max_gross``, ``cash_buffer``, ``sector_cap``) shape the
  target portfolio;
* compliance limits (``concentration_max``, ``var_*_max``, ``gross_change_max``,
  ``liquidity_max_adv``, ``sector_max``) are the gate a risk officer sets: a target that breaches
  any of them is never turned into an order ticket.

A key of the YAML file that is not a field is named with the closest field (``max_gros``: did
you mean ``max_gross``?), and limits that contradict each other (a per-name limit above the
aggregate limit that contains it, such as ``max_weight`` above ``max_gross``) are refused naming
both. Either problem is a :class:`~ibkr_assets.errors.ConfigurationError`; the code location
still loads with the problem shown on the ``decide`` resource, and a run that uses it fails at
start with the message.
"""

from __future__ import annotations

from ibkr_assets.errors import SettingsResource
from ibkr_assets.quant.compliance import ComplianceLimits
from ibkr_assets.quant.optimiser import OptimiserConfig
from ibkr_assets.settings import DecideLimits, Settings


class DecideConfig(SettingsResource, DecideLimits):
    """Limits and switches of the decision stages (risk model to decision journal)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DecideConfig:
        """The limits the settings' YAML file sets, carrying its problem when it had one."""
        return cls(**settings.decide.model_dump(), problem=settings.problem("decide"))

    def optimiser_config(self) -> OptimiserConfig:
        """The optimiser's limits and penalties (its fields are named as these), with the
        one-off ``turnover_cost`` amortised over ``holding_period_sessions``: the objective is
        one session's expected return, so a trade is charged the share of its cost one session
        of holding bears."""
        fields = self.model_dump(include=set(OptimiserConfig.model_fields))
        fields["turnover_cost"] = self.turnover_cost / self.holding_period_sessions
        return OptimiserConfig(**fields)

    def compliance_limits(self) -> ComplianceLimits:
        """The compliance gate's limits (its fields are named as these)."""
        return ComplianceLimits(**self.model_dump(include=set(ComplianceLimits.model_fields)))
