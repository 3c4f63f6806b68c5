"""US round lots, tiered by price (Regulation NMS Rule 600(b)(93), as amended in 2024).

A round lot of an NMS stock is

- **100 shares** when its price is $250.00 or less,
- **40 shares** from $250.01 to $1,000.00,
- **10 shares** from $1,000.01 to $10,000.00,
- **1 share** above $10,000.00.

The exchanges and FINRA conformed their rules to these tiers for the compliance date of
3 November 2025; before it every stock's round lot was 100 shares. The primary listing exchange
assigns each stock its tier twice a year from its average closing price over a one-month
evaluation period (March's closes for the lot in force from the first business day of May,
September's for November); callers pass the price that stands for it (the simulator and the
pipeline use the previous close, so a stock near a tier's edge may be a tier off for a while).

Reference: SEC Release No. 34-101070 (18 September 2024), 89 FR 81620, "Regulation NMS: Minimum
Pricing Increments, Access Fees, and Transparency of Better Priced Orders"; exchange conforming
filings such as SR-CboeEDGX-2025-078 (Release No. 34-104196, 90 FR 52730); the evaluation
periods as Nasdaq's UTP Vendor Alert #2025-10 (7 May 2025) states them.
"""

from __future__ import annotations

import math

#: (highest price of the tier in USD, round lot in shares), cheapest tier first.
ROUND_LOT_TIERS: tuple[tuple[float, int], ...] = ((250.0, 100), (1_000.0, 40), (10_000.0, 10))


def round_lot(price: float) -> int:
    """The round lot, in shares, of a US stock priced at ``price`` USD (see the module's tiers):
    ``round_lot(180.0) == 100``, ``round_lot(1379.0) == 10``, ``round_lot(12_000.0) == 1``.

    Raises ``ValueError`` for a price that is not a positive finite number.
    """
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"round_lot needs a positive finite price in USD, got {price!r}")
    for highest, lot in ROUND_LOT_TIERS:
        if price <= highest:
            return lot
    return 1
