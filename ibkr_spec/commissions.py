"""IB's commissions (IBKR Pro **tiered** pricing, approximated): what the paper exchange
charges and what the backtest assumes.

US stocks and ETFs, per order:

- **IB commission**: a per-share rate that falls with the account's month-to-date volume
  (<= 300,000 shares $0.0035; <= 3,000,000 $0.0020; <= 20,000,000 $0.0015;
  <= 100,000,000 $0.0010; above $0.0005), at least $0.35 per order and at most 1 % of the
  trade value. As on IB's price list, "if the calculated maximum per order is less than the
  minimum per order, the maximum is assessed": a $20 order pays $0.20.
- **Exchange fee** (approximated): $0.0030 per share, what the lit venues charge for removing
  liquidity (every simulated fill takes displayed liquidity, so no rebates are modelled).
- **Clearing fee** (NSCC/DTC): $0.00020 per share.
- **Regulatory fees on sales**: SEC transaction fee $27.80 per million of proceeds and FINRA
  trading activity fee $0.000166 per share sold (at most $8.30 per order).

The tier applies to the whole order at the volume reached before it. Partial fills share the
order's minimum: each execution is charged the order's cumulative commission after the fill
minus the cumulative commission before it, so the executions of an order add up to the
commission of one order of the same size.

Options: $0.65 per contract, at least $1.00 per order. Futures: $0.85 per contract plus an
approximate $1.20 exchange and regulatory fee. FX on IDEALPRO: 0.2 basis points of the trade
value, at least $2.00.

Reference: Interactive Brokers, "Commissions - Stocks, ETFs and Warrants (IBKR Pro tiered)",
interactivebrokers.com/en/pricing/commissions-stocks.php.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: (month-to-date shares up to, USD per share)
US_STOCK_TIERS: tuple[tuple[float, float], ...] = (
    (300_000, 0.0035),
    (3_000_000, 0.0020),
    (20_000_000, 0.0015),
    (100_000_000, 0.0010),
    (math.inf, 0.0005),
)
STOCK_MIN_PER_ORDER = 0.35
STOCK_MAX_RATE = 0.01
EXCHANGE_FEE_PER_SHARE = 0.0030
CLEARING_FEE_PER_SHARE = 0.00020
SEC_FEE_RATE = 27.80 / 1_000_000
FINRA_TAF_PER_SHARE = 0.000166
FINRA_TAF_MAX = 8.30
OPTION_PER_CONTRACT = 0.65
OPTION_MIN_PER_ORDER = 1.00
FUTURE_PER_CONTRACT = 0.85
FUTURE_FEES_PER_CONTRACT = 1.20
FX_RATE = 0.2e-4
FX_MIN_PER_ORDER = 2.00


def stock_tier_rate(month_shares: float) -> float:
    """USD per share of IB's tiered commission at ``month_shares`` already traded this month."""
    for limit, rate in US_STOCK_TIERS:
        if month_shares < limit:
            return rate
    return US_STOCK_TIERS[-1][1]


def stock_commission(
    shares: ArrayLike, value: ArrayLike, sell: bool, month_shares: float = 0.0
) -> Any:
    """Total commission (IB + exchange + clearing + regulatory) of one US stock order, USD —
    or of many orders at once, elementwise: the one implementation of the schedule.

    ``shares`` executed (positive; an order of none costs nothing), ``value`` their total price
    (USD), ``sell`` for sales (regulatory fees), ``month_shares`` the account's volume this month
    before the order(s). Scalars give a ``float``, arrays (``shares`` and ``value`` broadcast
    together) an array of USD.
    """
    q = np.asarray(shares, dtype="float64")
    v = np.asarray(value, dtype="float64")
    ib = np.minimum(
        np.maximum(stock_tier_rate(month_shares) * q, STOCK_MIN_PER_ORDER), STOCK_MAX_RATE * v
    )
    fees = (EXCHANGE_FEE_PER_SHARE + CLEARING_FEE_PER_SHARE) * q
    if sell:
        fees = fees + (SEC_FEE_RATE * v + np.minimum(FINRA_TAF_PER_SHARE * q, FINRA_TAF_MAX))
    total = np.where(q <= 0, 0.0, ib + fees)
    return float(total) if total.ndim == 0 else total


def order_commission(
    sec_type: str, quantity: float, value: float, sell: bool, month_shares: float = 0.0
) -> float:
    """Commission of one order of ``quantity`` units (shares, contracts, currency units) worth
    ``value`` in its currency (FX: USD), by security type."""
    if quantity <= 0:
        return 0.0
    if sec_type == "STK":
        return stock_commission(quantity, value, sell, month_shares)
    if sec_type == "OPT":
        return max(OPTION_PER_CONTRACT * quantity, OPTION_MIN_PER_ORDER)
    if sec_type == "FUT":
        return (FUTURE_PER_CONTRACT + FUTURE_FEES_PER_CONTRACT) * quantity
    if sec_type == "CASH":
        return max(FX_RATE * abs(value), FX_MIN_PER_ORDER)
    raise ValueError(f"no commission schedule for security type {sec_type!r}")


__all__ = [
    "US_STOCK_TIERS",
    "order_commission",
    "stock_commission",
    "stock_tier_rate",
]
