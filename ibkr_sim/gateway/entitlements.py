"""Market-data entitlements: which market-data type a quote request is served with.

When the realism profile models entitlements (``ib-paper``), a request follows IB's rules
[MDTYPE] [DELAYED] (tws.md, "Market data types and entitlement errors"):

- live or frozen data (type 1 / 2) for a contract the account has no real-time subscription
  for is refused: 10089 "Requested market data requires additional subscription for API ...
  Delayed market data is available." when delayed data is enabled, 354 "Requested market data
  is not subscribed." when it is not ("Errors when there is no subscription"; wording partly
  UNCERTAIN there);
- delayed data (type 3 / 4) is served as ticks 66-76 with a ``marketDataType`` callback (3, or 4
  for delayed-frozen while the market is closed), or refused with 10168 "... Delayed market data
  is not enabled." when the login has delayed data off;
- with a subscription, live data is sent whatever type was asked ("If live data is available it
  is always sent instead of delayed" [DELAYED]) with a ``marketDataType`` callback of 1 (2 for
  frozen while the market is closed): "a marketDataType(1) callback comes automatically after
  reqMktData if the user has live permission" [MDTYPE].

Without entitlements (``ideal``) every type is served as asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ibkr_spec.errors import NO_MARKET_DATA

if TYPE_CHECKING:
    from ibkr_sim.gateway.session import Session
    from ibkr_sim.universe import Instrument

NEW_YORK = ZoneInfo("America/New_York")
NEEDS_SUBSCRIPTION = 10089
DELAYED_NOT_ENABLED = 10168


def served_type(s: Session, req_id: int, inst: Instrument) -> int | None:
    """The market-data type a request is served with (1 live, 2 frozen, 3 delayed, 4
    delayed-frozen), or None after answering IB's entitlement error (see the module docstring).
    Without an entitlement model: the session's type, as asked."""
    asked = s.market_data_type
    profile = s.state.profile
    if profile.live_data is None:
        return asked
    account = s.state.managed_accounts()[0]
    now = s.state.now()
    hours = s.state.market.trading_hours(inst.conid, now.astimezone(NEW_YORK).date())
    closed = not any(start <= now < end for start, end in hours)
    if profile.has_live_data(account, inst.sec_type):
        return 2 if closed and asked in (2, 4) else 1
    where = f"{inst.symbol} {inst.primary_exchange or inst.exchange}/TOP/ALL"
    if asked in (1, 2):
        if profile.delayed_data:
            s.error(
                req_id,
                NEEDS_SUBSCRIPTION,
                "Requested market data requires additional subscription for API. See link in "
                f"'Market Data Connections' dialog for more details.Delayed market data is "
                f"available.{where}",
            )
        else:
            s.error(req_id, NO_MARKET_DATA, f"Requested market data is not subscribed.{where}")
        return None
    if not profile.delayed_data:
        s.error(
            req_id,
            DELAYED_NOT_ENABLED,
            f"Requested market data is not subscribed. Delayed market data is not enabled.{where}",
        )
        return None
    return 4 if closed and asked == 4 else 3
