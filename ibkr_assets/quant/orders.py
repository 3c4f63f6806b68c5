"""From target weights to orders: share quantities, limit prices, idempotency keys, and the
what-if size-down loop.

**Diff.** For each symbol held or targeted, the target position is
``w · NAV / mid`` shares; the trade is the difference from the current shares, rounded *towards
zero* (whole shares, or whole round lots with ``even_lots``) so rounding never overshoots the
target. An exit (target weight 0) sells the whole position, odd lot included. Trades below
``min_notional`` are skipped and listed with the reason — they cost more in commission and
spread than they move the book.

**Limit price** ``mid ± f · spread`` (+ for buys, − for sells), rounded to the tick: ``f = 0``
joins the mid, ``f = 0.5`` pays the full half-spread (crosses to the touch). Without a two-sided
quote the last price is used with zero spread, and the reason says so.

**Idempotency.** :func:`order_ref` hashes partition, symbol, side and quantity into a short key
(``ibkr-agent:2026-11-24:3f9a0c1d2e4b``) sent as IB's ``orderRef``: a rerun of the partition
produces the same keys, so the submitter can see which orders already reached the broker.

**Margin what-if.** :func:`resize_until_margin_ok` asks a caller-supplied check (the broker's
what-if) whether an order fits the maintenance margin; each failure shrinks it by ``shrink``
(20%) down to whole lots, until it passes, ``max_tries`` is reached or it falls below the
minimum notional — then it is dropped (or kept, flagged). Every attempt is recorded.

This module produces plain dataclasses; the asset layer turns them into broker orders.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

Action = Literal["BUY", "SELL"]


@dataclass(frozen=True)
class ProposedOrder:
    """One order: ``quantity`` shares (positive) to BUY or SELL at ``limit_price``."""

    symbol: str
    action: Action
    quantity: int
    limit_price: float | None
    mid: float
    notional: float
    current_shares: float
    target_shares: float
    target_weight: float
    reason: str

    def with_quantity(self, quantity: int) -> ProposedOrder:
        """The same order for a different size (notional recomputed at the mid)."""
        return replace(self, quantity=int(quantity), notional=abs(quantity) * self.mid)


@dataclass(frozen=True)
class SkippedTrade:
    """A symbol whose difference to target was not turned into an order, and why."""

    symbol: str
    shares: float
    notional: float
    reason: str


@dataclass(frozen=True)
class OrderDiff:
    """Proposed orders (sells first, then buys, each by symbol) and skipped trades."""

    orders: list[ProposedOrder]
    skipped: list[SkippedTrade]

    def frame(self) -> pd.DataFrame:
        """The orders as a DataFrame (one row per order, ProposedOrder fields as columns)."""
        cols = list(ProposedOrder.__dataclass_fields__)
        return pd.DataFrame([asdict(o) for o in self.orders], columns=cols)


def _series(values: pd.Series | Mapping[str, float] | None, what: str) -> pd.Series:
    s = pd.Series({} if values is None else values, dtype="float64")
    s.index = s.index.map(str)
    bad = s.index[~np.isfinite(s.to_numpy())].tolist()
    if bad:
        raise ValueError(f"NaN or infinite {what} for {bad}")
    return s


def _quote_rows(quotes: pd.DataFrame, symbols: list[str]) -> dict[str, tuple[float, float, float]]:
    """Each quoted one of ``symbols``' ``(bid, ask, price)``, USD, NaN where the quotes have no
    such column (``quotes`` indexed by symbol, one row each)."""
    rows = quotes.index.get_indexer(symbols)
    columns = [
        np.append(quotes[c].to_numpy(dtype="float64", na_value=np.nan), np.nan)[rows].tolist()
        if c in quotes
        else [np.nan] * len(rows)
        for c in ("bid", "ask", "price")
    ]
    quoted = zip(symbols, rows.tolist(), *columns, strict=True)
    return {s: (bid, ask, price) for s, row, bid, ask, price in quoted if row >= 0}


def _mid_spread(
    quoted: dict[str, tuple[float, float, float]], symbol: str
) -> tuple[float, float, str]:
    """``symbol``'s mid and spread (USD) from ``quoted`` (:func:`_quote_rows`): the two-sided
    quote's, else the last price with a zero spread (and a note saying so)."""
    if symbol not in quoted:
        raise ValueError(f"no quote for {symbol}")
    bid, ask, price = quoted[symbol]
    if np.isfinite(bid) and np.isfinite(ask) and 0 < bid <= ask:
        return (bid + ask) / 2, ask - bid, ""
    if np.isfinite(price) and price > 0:
        return price, 0.0, " (no two-sided quote: last price, zero spread)"
    raise ValueError(f"no usable price for {symbol} (bid {bid}, ask {ask}, price {price})")


def limit_price(
    action: Action, mid: float, spread: float, fraction: float, tick: float = 0.01
) -> float:
    """``mid + fraction·spread`` for a buy, ``mid − fraction·spread`` for a sell, on the tick."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"limit spread fraction must be in [0, 1], got {fraction}")
    raw = mid + fraction * spread if action == "BUY" else mid - fraction * spread
    return round(round(raw / tick) * tick, 10)


def propose_orders(
    current_shares: pd.Series | Mapping[str, float],
    target_weights: pd.Series | Mapping[str, float],
    net_liquidation: float,
    quotes: pd.DataFrame,
    lot_sizes: pd.Series | Mapping[str, float] | None = None,
    min_notional: float = 0.0,
    even_lots: bool = False,
    limit_spread_fraction: float = 0.25,
    order_type: Literal["LMT", "MKT"] = "LMT",
    tick: float = 0.01,
) -> OrderDiff:
    """Orders that move ``current_shares`` to ``target_weights`` of ``net_liquidation``.

    ``quotes`` is indexed by symbol with ``bid`` and ``ask`` (and ``price`` as a fallback).
    Symbols held but absent from the targets are sold out (target 0).
    """
    if not (np.isfinite(net_liquidation) and net_liquidation > 0):
        raise ValueError(f"net liquidation must be positive, got {net_liquidation}")
    if min_notional < 0:
        raise ValueError(f"min_notional must be >= 0, got {min_notional}")
    current = _series(current_shares, "current shares")
    targets = _series(target_weights, "target weight")
    lots = _series(lot_sizes, "lot size")
    bad_lots = lots.index[lots <= 0].tolist()
    if bad_lots:
        raise ValueError(f"lot sizes must be positive: {bad_lots}")
    symbols = sorted(set(current.index[current != 0]) | set(targets.index))
    if quotes.index.has_duplicates:
        dupes = quotes.index[quotes.index.duplicated()].unique().tolist()
        raise ValueError(f"quotes must have one row per symbol; repeated: {dupes}")
    quoted = _quote_rows(quotes, symbols)
    held_of = dict(zip(current.index, current.tolist(), strict=True))
    weight_of = dict(zip(targets.index, targets.tolist(), strict=True))
    lot_of = dict(zip(lots.index, lots.tolist(), strict=True))
    orders, skipped = [], []
    for sym in symbols:
        held = held_of.get(sym, 0.0)
        w = weight_of.get(sym, 0.0)
        if held == 0 and w == 0:
            continue
        mid, spread, note = _mid_spread(quoted, sym)
        target_sh = w * net_liquidation / mid
        lot = lot_of.get(sym, 1.0) if even_lots else 1.0
        if w == 0:
            delta, why = -held, "exit (target 0)"
        else:
            delta = math.trunc((target_sh - held) / lot) * lot
            why = f"{held * mid / net_liquidation:+.2%} -> {w:+.2%} of NAV"
        notional = abs(delta) * mid
        if delta == 0:
            if abs(target_sh - held) > 0:
                skipped.append(
                    SkippedTrade(
                        sym,
                        target_sh - held,
                        abs(target_sh - held) * mid,
                        f"difference below one {'lot' if even_lots else 'share'}",
                    )
                )
            continue
        if notional < min_notional:
            skipped.append(
                SkippedTrade(sym, delta, notional, f"notional {notional:.2f} < {min_notional:g}")
            )
            continue
        action: Action = "BUY" if delta > 0 else "SELL"
        lmt = limit_price(action, mid, spread, limit_spread_fraction, tick)
        orders.append(
            ProposedOrder(
                symbol=sym,
                action=action,
                quantity=round(abs(delta)),
                limit_price=lmt if order_type == "LMT" else None,
                mid=mid,
                notional=notional,
                current_shares=held,
                target_shares=target_sh,
                target_weight=w,
                reason=why + note,
            )
        )
    orders.sort(key=lambda o: (o.action != "SELL", o.symbol))
    return OrderDiff(orders, skipped)


def order_ref(
    partition: str, symbol: str, side: str, quantity: float, prefix: str = "ibkr-agent"
) -> str:
    """Deterministic idempotency key: ``<prefix>:<partition>:<12 hex of sha256>``."""
    key = f"{partition}|{symbol.upper()}|{side.upper()}|{round(float(quantity))}"
    return f"{prefix}:{partition}:{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class ResizeAttempt:
    """One what-if: the size tried, whether it passed, and the check's explanation."""

    attempt: int
    quantity: int
    passed: bool
    detail: str


@dataclass(frozen=True)
class ResizeResult:
    """The final order (None when dropped), the decision and every attempt."""

    order: ProposedOrder | None
    decision: Literal["accepted", "resized", "dropped", "kept_failing"]
    attempts: list[ResizeAttempt] = field(default_factory=list)


def resize_until_margin_ok(
    order: ProposedOrder,
    check: Callable[[ProposedOrder], tuple[bool, str]],
    shrink: float = 0.2,
    max_tries: int = 5,
    lot_size: int = 1,
    min_notional: float = 0.0,
    on_failure: Literal["drop", "keep"] = "drop",
) -> ResizeResult:
    """Shrink ``order`` by ``shrink`` after each failed ``check`` until it passes.

    ``check(order) -> (passed, detail)`` is the margin what-if. Quantities stay whole
    multiples of ``lot_size`` and strictly decrease. After ``max_tries`` failures, or when the
    next size would be zero or below ``min_notional``, the order is dropped (``on_failure =
    "drop"``) or returned at its last size with decision ``kept_failing``. Note:
    ``shrink = 1 − DecideConfig.whatif_shrink``.
    """
    if not 0 < shrink < 1:
        raise ValueError(f"shrink must be in (0, 1), got {shrink}")
    if max_tries < 1 or lot_size < 1:
        raise ValueError("max_tries and lot_size must be at least 1")
    attempts: list[ResizeAttempt] = []
    current = order
    for i in range(1, max_tries + 1):
        passed, detail = check(current)
        attempts.append(ResizeAttempt(i, current.quantity, bool(passed), str(detail)))
        if passed:
            decision = "accepted" if current.quantity == order.quantity else "resized"
            return ResizeResult(current, decision, attempts)
        if i == max_tries:
            break
        smaller = math.floor(current.quantity * (1 - shrink) / lot_size) * lot_size
        smaller = min(smaller, current.quantity - lot_size)
        if smaller <= 0 or smaller * current.mid < min_notional:
            break
        current = current.with_quantity(smaller)
    if on_failure == "keep":
        return ResizeResult(current, "kept_failing", attempts)
    return ResizeResult(None, "dropped", attempts)
