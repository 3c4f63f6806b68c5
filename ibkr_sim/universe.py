"""The simulated universe: real US tickers with IB-style contract descriptions.

Stocks are the largest US listings under their real symbols, names, GICS sectors and industries
and primary exchanges (``data/universe.csv``, largest first; ``data/industries.csv`` maps the
industry keys to GICS names). Everything numeric is simulated and deterministic from the seed:

- **conId**: a stable hash of ``(sec_type, symbol, currency)`` into IB's conId range; a few
  well-known ones keep IB's real ids (AAPL 265598, MSFT 272093, SPY 756733, EUR.USD 12087792).
  The conId does not depend on the seed, so a position keeps its contract across seeds.
- **market cap** falls with rank like a power law (rank 1 ~ $3T, rank 700 ~ $8bn);
  **start price** (2019-01-02) is drawn per symbol, **shares outstanding** = cap / price, and
  **ADV** (average daily volume, shares) is a per-symbol turnover of 0.3 %-1.5 % of shares.
- **round lot** of the start price's tier (:func:`ibkr_spec.lots.round_lot`: 100 shares up to
  $250, 40 up to $1,000, ...); quotes and contract details re-tier it at each previous close.
  A min tick of one cent.

**Generated stocks.** A world of more than the :data:`LISTED_STOCKS` real tickers (up to
:data:`MAX_STOCKS`) continues with generated ones, ranks 808 onwards, flagged
``Instrument.generated`` and named ``Generated Stock 0808 (simulated)``. Their symbols are
``SIM`` plus three letters (``SIMAAA`` is rank 808, ``SIMAAB`` 809, ...): six capital letters
cannot be a real US listing (NYSE and Nasdaq roots have at most five letters; share classes and
suffixes follow a separator, IB's ``BRK B``), they hold no ``.``, ``-``, ``/`` or space, so
:meth:`Universe.lookup` never reads them as an FX pair or a share class, and letters only is what
the Client Portal's ``/trsrv/stocks`` accepts ("Symbols must contain only capitalized letters").
Sector, industry and primary exchange are drawn in the real universe's proportions (e.g. 545 of
the 807 listed stocks on NYSE); market cap continues the same power law (rank 807 ~ $7.3bn,
rank 2,000 ~ $3.2bn, rank 5,000 ~ $1.4bn; the real US tail is steeper, Russell 3000's smallest
are a few hundred million, so the generated tail is a mid-cap world), start price, turnover
(ADV) and round lot as for listed ones. They are drawn from their own random stream
(``SeedSequence([seed, 2])``), so the listed stocks' numbers do not change with the world's size.

``others`` holds the macro instruments: SPY and QQQ (STK, ``is_etf``), VIX and TNX (IND on CBOE;
TNX is the 10-year Treasury yield x 10 as IB quotes it), CL (NYMEX crude, the continuous front
month, so ``last_trade_date`` is left empty) and FX pairs on IDEALPRO in IB's own convention:
``EUR.USD``, ``GBP.USD``, ``AUD.USD`` are symbol EUR/GBP/AUD with currency USD, while
``USD.JPY``, ``USD.CHF``, ``USD.CAD`` are symbol USD with currency JPY/CHF/CAD.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ibkr_spec.errors import NO_SECURITY_DEFINITION, IBError
from ibkr_spec.lots import round_lot

#: IB's real conIds for a few contracts everybody knows; the rest are stable hashes.
KNOWN_CONIDS: dict[tuple[str, str, str], int] = {
    ("STK", "AAPL", "USD"): 265598,
    ("STK", "MSFT", "USD"): 272093,
    ("STK", "SPY", "USD"): 756733,
    ("CASH", "EUR", "USD"): 12087792,
}
_EXCHANGES = {"Q": "NASDAQ", "N": "NYSE", "A": "ARCA"}
#: the real tickers of ``data/universe.csv``
LISTED_STOCKS = 807
#: the largest world: the listed stocks, then generated ones (module docstring)
MAX_STOCKS = 5000
#: generated symbols: this prefix and the generated stock's index in three letters
GENERATED_PREFIX = "SIM"


@dataclass(frozen=True)
class Instrument:
    """One contract as IB describes it (``ContractDetails`` flattened)."""

    conid: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    name: str
    sector: str
    industry: str
    lot_size: int
    min_tick: float
    adv: float
    shares_outstanding: float
    multiplier: float = 1.0
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    underlying_conid: int = 0
    is_etf: bool = False
    #: a generated stock of a world above :data:`LISTED_STOCKS` names, not a real company
    generated: bool = False

    @property
    def local_symbol(self) -> str:
        """IB's local symbol: ``EUR.USD`` for FX pairs, OCC's for options, else the symbol."""
        if self.sec_type == "CASH":
            return f"{self.symbol}.{self.currency}"
        if self.sec_type == "OPT":
            strike = round(self.strike * 1000)
            return f"{self.symbol:<6}{self.last_trade_date[2:]}{self.right}{strike:08d}"
        return self.symbol


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts' text, the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hashed_conid(sec_type: str, symbol: str, currency: str, lo: int, hi: int) -> int:
    """A conId in ``[lo, hi)`` derived from the contract's identity (IB's or a stable hash)."""
    known = KNOWN_CONIDS.get((sec_type, symbol, currency))
    if known is not None:
        return known
    return lo + stable_int(sec_type, symbol, currency) % (hi - lo)


def generated_symbol(rank: int) -> str:
    """The symbol of the generated stock of ``rank`` (808 ..): ``SIM`` and three letters,
    the index ``rank - 808`` in base 26 (``SIMAAA``, ``SIMAAB``, ...)."""
    k = rank - LISTED_STOCKS - 1
    if not 0 <= k < 26**3:
        raise ValueError(f"no generated stock of rank {rank}")
    letters = "".join(chr(ord("A") + k // 26**p % 26) for p in (2, 1, 0))
    return GENERATED_PREFIX + letters


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("ibkr_sim.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _macro_instruments() -> list[Instrument]:
    def make(
        sec_type: str,
        symbol: str,
        currency: str,
        exchange: str,
        primary: str,
        name: str,
        min_tick: float,
        adv: float,
        is_etf: bool = False,
        multiplier: float = 1.0,
    ) -> Instrument:
        return Instrument(
            conid=hashed_conid(sec_type, symbol, currency, 10_000_000, 900_000_000),
            symbol=symbol,
            sec_type=sec_type,
            exchange=exchange,
            primary_exchange=primary,
            currency=currency,
            name=name,
            sector="",
            industry="",
            lot_size=1 if sec_type != "STK" else 100,
            min_tick=min_tick,
            adv=adv,
            shares_outstanding=0.0,
            multiplier=multiplier,
            is_etf=is_etf,
        )

    return [
        make("STK", "SPY", "USD", "SMART", "ARCA", "SPDR S&P 500 ETF Trust", 0.01, 6.5e7, True),
        make("STK", "QQQ", "USD", "SMART", "NASDAQ", "Invesco QQQ Trust Series 1", 0.01, 4e7, True),
        make("IND", "VIX", "USD", "CBOE", "", "CBOE Volatility Index", 0.01, 0.0),
        make("IND", "TNX", "USD", "CBOE", "", "CBOE 10-Year Treasury Note Yield Index", 0.001, 0),
        make(
            "FUT",
            "CL",
            "USD",
            "NYMEX",
            "NYMEX",
            "Light Sweet Crude Oil (front month)",
            0.01,
            3e5,
            multiplier=1000.0,
        ),
        make("CASH", "EUR", "USD", "IDEALPRO", "", "European Monetary Union Euro", 5e-5, 0.0),
        make("CASH", "GBP", "USD", "IDEALPRO", "", "British Pound", 5e-5, 0.0),
        make("CASH", "USD", "JPY", "IDEALPRO", "", "US Dollar vs Japanese Yen", 5e-3, 0.0),
        make("CASH", "USD", "CHF", "IDEALPRO", "", "US Dollar vs Swiss Franc", 5e-5, 0.0),
        make("CASH", "USD", "CAD", "IDEALPRO", "", "US Dollar vs Canadian Dollar", 5e-5, 0.0),
        make("CASH", "AUD", "USD", "IDEALPRO", "", "Australian Dollar", 5e-5, 0.0),
    ]


def _market_cap(rng: np.random.Generator, rank: np.ndarray) -> np.ndarray:
    """USD: a power law in rank (rank 1 ~ $3T, 700 ~ $8bn, 5,000 ~ $1.4bn), lognormal noise."""
    return 3.0e12 * rank**-0.9 * np.exp(rng.normal(0.0, 0.1, len(rank)))


def _start_price(rng: np.random.Generator, n: int) -> np.ndarray:
    """USD on 2019-01-02: log-uniform between $18 and $450, to the cent."""
    return np.round(np.exp(rng.uniform(np.log(18.0), np.log(450.0), n)), 2)


def _turnover(rng: np.random.Generator, n: int) -> np.ndarray:
    """ADV as a share of shares outstanding: log-uniform 0.3 %-1.5 % a day."""
    return np.exp(rng.uniform(np.log(0.003), np.log(0.015), n))


def _generated(
    seed: int, rows: list[dict[str, str]], industries: dict[str, tuple[str, str]]
) -> tuple[list[tuple[str, str, str, str, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Every generated stock of a seed (ranks 808 .. :data:`MAX_STOCKS`): (symbol, name, sector,
    industry, exchange key) rows, then start price, market cap and turnover; industry and exchange
    in the listed stocks' proportions, from their own stream so the listed stocks stay put."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    n = MAX_STOCKS - LISTED_STOCKS
    keys, counts = np.unique([r["industry"] for r in rows], return_counts=True)
    venues, venue_counts = np.unique([r["exchange"] for r in rows], return_counts=True)
    industry = rng.choice(keys, n, p=counts / counts.sum())
    venue = rng.choice(venues, n, p=venue_counts / venue_counts.sum())
    rank = np.arange(LISTED_STOCKS + 1, MAX_STOCKS + 1, dtype=np.float64)
    market_cap = _market_cap(rng, rank)
    start = _start_price(rng, n)
    turnover = _turnover(rng, n)
    described = [
        (
            generated_symbol(int(r)),
            f"Generated Stock {int(r):04d} (simulated)",
            *industries[str(key)],
            str(ex),
        )
        for r, key, ex in zip(rank, industry, venue, strict=True)
    ]
    return described, start, market_cap, turnover


#: how many macro instruments every world holds (``Universe.others``)
N_OTHERS = len(_macro_instruments())


class Universe:
    """``n_stocks`` stocks, largest first: the real US ones, then generated ones beyond
    :data:`LISTED_STOCKS` (module docstring), plus the macro instruments in ``others``."""

    def __init__(self, seed: int = 7, n_stocks: int = 700) -> None:
        if not 1 <= n_stocks <= MAX_STOCKS:
            raise ValueError(
                f"the simulated world holds 1 to {MAX_STOCKS} stocks ({LISTED_STOCKS} real "
                f"tickers, then generated ones), got {n_stocks}"
            )
        self.seed = seed
        industries = {r["key"]: (r["sector"], r["industry"]) for r in _read_csv("industries.csv")}
        rows = _read_csv("universe.csv")
        # Draw for every listed stock, then keep the first n: a stock's numbers never depend on
        # how many stocks were asked for.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        rank = np.arange(1, len(rows) + 1, dtype=np.float64)
        market_cap = _market_cap(rng, rank)
        start = _start_price(rng, len(rows))
        turnover = _turnover(rng, len(rows))
        listed = [
            (row["symbol"], row["name"], *industries[row["industry"]], row["exchange"])
            for row in rows
        ]
        if n_stocks > LISTED_STOCKS:
            drawn = _generated(seed, rows, industries)
            listed += drawn[0]
            start, market_cap, turnover = (
                np.concatenate([a, b])
                for a, b in zip((start, market_cap, turnover), drawn[1:], strict=True)
            )
        shares = np.round(market_cap / start, -3)
        #: price on the first simulated session (2019-01-02), per stock, in row order
        self.start_prices = start[:n_stocks]
        self.stocks: list[Instrument] = []
        for i, (symbol, name, sector, industry, exchange) in enumerate(listed[:n_stocks]):
            self.stocks.append(
                Instrument(
                    conid=hashed_conid("STK", symbol, "USD", 10_000_000, 900_000_000),
                    symbol=symbol,
                    sec_type="STK",
                    exchange="SMART",
                    primary_exchange=_EXCHANGES[exchange],
                    currency="USD",
                    name=name,
                    sector=sector,
                    industry=industry,
                    lot_size=round_lot(float(start[i])),
                    min_tick=0.01,
                    adv=float(np.round(shares[i] * turnover[i], -2)),
                    shares_outstanding=float(shares[i]),
                    generated=i >= LISTED_STOCKS,
                )
            )
        self.others: list[Instrument] = _macro_instruments()
        self._by_conid: dict[int, Instrument] = {}
        #: rebuilds contracts not listed up front (options) from their conId; set by the market
        self.resolver: Callable[[int], Instrument | None] | None = None
        self._by_symbol: dict[str, list[Instrument]] = {}
        for inst in self.stocks + self.others:
            self.register(inst)

    def register(self, inst: Instrument) -> Instrument:
        """Add a contract (e.g. an option) so ``by_conid`` and ``lookup`` find it."""
        known = self._by_conid.get(inst.conid)
        if known is not None and known != inst:
            raise ValueError(f"conid {inst.conid} already belongs to {known.symbol}")
        self._by_conid[inst.conid] = inst
        if inst.sec_type != "OPT" and known is None:
            self._by_symbol.setdefault(inst.symbol, []).append(inst)
            if inst.sec_type == "CASH":  # "JPY" finds USD.JPY as well as "USD" + JPY
                self._by_symbol.setdefault(inst.currency, []).append(inst)
        return inst

    def all(self) -> list[Instrument]:
        """Stocks then macro instruments (options registered later are not listed)."""
        return self.stocks + self.others

    def by_conid(self, conid: int) -> Instrument:
        """The contract with this conId; ``IBError(200)`` if there is none."""
        try:
            key = int(conid)
        except (TypeError, ValueError):
            key = -1
        found = self._by_conid.get(key)
        if found is None and self.resolver is not None and key > 0:
            rebuilt = self.resolver(key)
            found = self.register(rebuilt) if rebuilt is not None else None
        if found is None:
            raise IBError(
                NO_SECURITY_DEFINITION, f"No security definition has been found for conId {conid}"
            )
        return found

    def lookup(
        self, symbol: str, sec_type: str | None = None, currency: str | None = None
    ) -> Instrument:
        """Resolve a symbol (``AAPL``, ``BRK B``, ``EUR.USD``, ``USD`` + currency ``JPY``).

        Without ``sec_type`` a stock wins over other kinds with the same symbol (CL is Colgate;
        ask for ``FUT`` to get crude). Share classes may be written ``BRK.B`` or ``BRK-B`` too
        (IB's spelling is ``BRK B``). ``IBError(200)`` names the request when nothing matches.
        """
        sym = symbol.strip().upper()
        kind = sec_type.upper() if sec_type else None
        found = None
        if "." in sym and kind in (None, "CASH"):
            base, _, quote = sym.partition(".")
            if currency is None or currency.upper() == quote:
                found = self._find(base, "CASH", quote)
        if found is None:
            found = self._find(sym, kind, currency)
        if found is None and kind in (None, "STK", "ETF") and sym[-2:-1] in (".", "-", "/"):
            found = self._find(f"{sym[:-2]} {sym[-1]}", kind, currency)
        if found is None:
            request = " ".join(p for p in (symbol, sec_type, currency) if p)
            raise IBError(
                NO_SECURITY_DEFINITION,
                f"No security definition has been found for the request: {request}",
            )
        return found

    def _find(self, sym: str, kind: str | None, currency: str | None) -> Instrument | None:
        kinds = [kind] if kind else ["STK", "IND", "FUT", "CASH"]
        etf_only = kinds == ["ETF"]  # IB reports ETFs as STK; accept the common alias
        if etf_only:
            kinds = ["STK"]
        # a pair's own symbol first: "USD" is USD.JPY before it is EUR.USD's quote currency
        candidates = sorted(self._by_symbol.get(sym, []), key=lambda i: i.symbol != sym)
        for k in kinds:
            for inst in candidates:
                wanted = currency is None or inst.currency == currency.upper()
                if inst.sec_type == k and wanted and (inst.is_etf or not etf_only):
                    return inst
        return None

    def search(self, text: str, limit: int = 10) -> list[Instrument]:
        """Symbol matches first (exact, then prefix), then names containing the text."""
        q = text.strip().upper()
        if not q:
            return []
        everything = self.all()
        exact = [i for i in everything if i.symbol == q or i.local_symbol == q]
        prefix = [i for i in everything if i.symbol.startswith(q) and i not in exact]
        named = [i for i in everything if q in i.name.upper() and i not in exact + prefix]
        return (exact + prefix + named)[:limit]


__all__ = [
    "LISTED_STOCKS",
    "MAX_STOCKS",
    "N_OTHERS",
    "Instrument",
    "Universe",
    "generated_symbol",
    "hashed_conid",
    "stable_int",
]
