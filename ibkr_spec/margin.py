"""Reg-T margin of a paper account, the way IB reports it for a US margin account.

Per position (values in the account's base currency):

- **Stocks and ETFs**: initial 50 % of market value (Federal Reserve Regulation T), maintenance
  25 % of a long position's value and 30 % of a short one's (IB's house rule for shorts).
- **US options**: long options have no loan value (they are paid in full and excluded from
  equity with loan value) and no requirement; a short option needs its premium plus
  max(20 % of the underlying value - the out-of-the-money amount, 10 % of the underlying value)
  (the CBOE rule IB applies), initial = maintenance.
- **Futures**: a SPAN stand-in of 12 % of notional initial and 10 % maintenance.

Account numbers (IB's account-summary tags):

- ``EquityWithLoanValue`` = net liquidation - value of US options.
- ``AvailableFunds`` = equity with loan - initial margin; ``ExcessLiquidity`` = equity with loan -
  maintenance margin; ``Cushion`` = excess liquidity / net liquidation.
- ``BuyingPower`` = 2 x available funds (Reg-T overnight buying power, floored at 0): the largest
  stock purchase whose 50 % initial margin the available funds cover. IB shows 4x during the day
  for pattern-day-trader accounts; the simulator uses the overnight figure everywhere, so an order
  passes the pre-trade check exactly when it stays within the buying power reported.

Reference: Interactive Brokers, "Margin Requirements - Reg T" (interactivebrokers.com/en/trading/
margin-stocks.php) and "Options margin requirements".
"""

from __future__ import annotations

STOCK_INITIAL = 0.50
STOCK_MAINT_LONG = 0.25
STOCK_MAINT_SHORT = 0.30
OPTION_UNDERLYING = 0.20
OPTION_UNDERLYING_MIN = 0.10
FUTURE_INITIAL = 0.12
FUTURE_MAINT = 0.10
BUYING_POWER_MULTIPLE = 2.0


def position_margin(
    sec_type: str,
    quantity: float,
    price: float,
    multiplier: float = 1.0,
    fx: float = 1.0,
    underlying_price: float = 0.0,
    strike: float = 0.0,
    right: str = "",
) -> tuple[float, float]:
    """(initial, maintenance) requirement of one position in base currency.

    ``quantity`` is signed (negative = short); ``price`` and ``underlying_price`` in the
    instrument's currency, ``fx`` base currency per unit of it.
    """
    value = abs(quantity) * price * multiplier * fx
    if quantity == 0 or sec_type == "CASH":
        return 0.0, 0.0
    if sec_type == "STK":
        maint = STOCK_MAINT_LONG if quantity > 0 else STOCK_MAINT_SHORT
        return STOCK_INITIAL * value, maint * value
    if sec_type == "OPT":
        if quantity > 0:
            return 0.0, 0.0
        underlying = abs(quantity) * underlying_price * multiplier * fx
        otm_per_unit = max(strike - underlying_price, 0.0) if right == "C" else 0.0
        if right == "P":
            otm_per_unit = max(underlying_price - strike, 0.0)
        otm = abs(quantity) * otm_per_unit * multiplier * fx
        req = value + max(OPTION_UNDERLYING * underlying - otm, OPTION_UNDERLYING_MIN * underlying)
        return req, req
    if sec_type == "FUT":
        return FUTURE_INITIAL * value, FUTURE_MAINT * value
    raise ValueError(f"no margin rule for security type {sec_type!r}")


def buying_power(available_funds: float) -> float:
    """Reg-T overnight buying power: twice the available funds, never negative."""
    return max(BUYING_POWER_MULTIPLE * available_funds, 0.0)


__all__ = ["buying_power", "position_margin"]
