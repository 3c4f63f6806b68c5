"""Settings of stages 1–3 (ingest, features, signals): one resource, ``pipeline``.

Every knob has a default a trader would start from and can be set by an ``IBKR_`` environment
variable named after the field (lists as JSON, e.g. ``IBKR_WATCHLIST='["AAPL","MSFT"]'``, or
comma-separated, ``IBKR_WATCHLIST=AAPL,MSFT``); the fields are declared once, in
:class:`ibkr_assets.settings.PipelineFields`:

* universe: the watch-list (empty = every stock the simulator lists), plus holdings, plus the
  day's movers — a scanner hit joins when it moved more than ``mover_min_change_pct`` (5%) on
  volume above ``mover_min_volume_ratio`` (2×) its average daily volume;
* history depth (``history_sessions``, 600 sessions of daily bars) and the news window (24 h);
* the alpha blend: weights of the technical, fundamental and sentiment blocks and of the macro
  regime adjustment;
* data-quality thresholds (share of the universe that must reach the feature matrix).

A malformed value is named with its variable (:class:`~ibkr_assets.errors.ConfigurationError`),
and the code location still loads with the problem shown on the resource (see
:class:`~ibkr_assets.errors.SettingsResource`).
"""

from __future__ import annotations

from ibkr_assets.broker import Broker
from ibkr_assets.errors import SettingsResource
from ibkr_assets.settings import PipelineFields, Settings


class PipelineConfig(SettingsResource, PipelineFields):
    """Watch-list, mover thresholds, history depth, alpha weights and data-quality limits."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        """The ``pipeline`` section, carrying its problem when a variable was malformed."""
        return cls(**settings.pipeline.model_dump(), problem=settings.problem("pipeline"))


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
