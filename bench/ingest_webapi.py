"""Benchmark the ingest through the Client Portal Web API: snapshot quotes and one year of daily
bars for 700 symbols, under IBKR's Web API rate limits, against the lower bound those limits allow.

The gateway is ``ibkr-sim webapi`` (HTTPS, logged in, the ``ideal`` realism profile) with IBKR's
rate limits on: it answers 429 to a request over a limit, as IBKR's gateway does. It runs as a
subprocess (its own interpreter and GIL, as IBKR's gateway is its own Java process) with its
clock started at the pre-open of ``--session``. The client is
the ``webapi`` backend as ``connect()`` builds it for the pipeline, called through the ingest's
own functions: :func:`~ibkr_assets.assets.market_data.quote_frame` (the ``quotes`` asset:
chunks of 100) and :func:`~ibkr_assets.assets.bar_cache.cached_bars` (the ``daily_bars``
asset, on an empty bar cache: one history request per symbol, ``request_workers`` threads,
i.e. the backend's ``history_concurrency``). The bars asked are the sessions of the year before
``--session``, as of its pre-open (08:00 New York).

**The lower bound** (the named baseline), from the one table of IBKR's limits,
:mod:`ibkr_spec.webapi`. The work needs R requests:

* 1 ``GET /iserver/accounts``: IBKR wants it before the first snapshot;
* 2 * ceil(N / SNAPSHOT_MAX_CONIDS) snapshots: N conids at most 100 per request, and each chunk
  asked twice, since the first request for a conid (the pre-flight) answers no values;
* N history requests, one per symbol (a year of daily bars is under HISTORY_MAX_POINTS).

N = 700: R = 1 + 2 * 7 + 700 = 715. The binding limit is the global one, 10 requests in any 1 s
(GLOBAL_LIMIT, a sliding window): request k (from 0) cannot arrive before floor(k / 10) s after
the first, so the last arrives no earlier than floor((R - 1) / 10) s = 71 s. The snapshot's own
limit (10/s) is no tighter. The 5 concurrent history requests (HISTORY_CONCURRENCY) bind only if
one takes longer than 5 / 10 s = 0.5 s: with t the median time of one history request on the idle
gateway (measured in the same run), N requests 5 at a time need ceil(N / 5) * t. The bound is the
larger of the two. The backend's pacer keeps a request in its windows until 1 s after its
answer (the latest it can have arrived, :mod:`ibkr_assets.broker.webapi.pacing`), so its own
floor, printed too, is about floor((R - 1) / 10) * (1 s + MARGIN + t).

Target: the ingest within 1.2x the bound, and no 429 (counted by the backend's session, which
sees every answer).

**The universe step** (:func:`~ibkr_assets.assets.market_data.universe_frame`: the N symbols
resolved and described, average volume included, no trading hours) is timed first, on its own,
with its own bound: ceil(N / STOCKS_PER_REQUEST) ``/trsrv/stocks`` + ceil(N / SECDEF_MAX_CONIDS)
``/trsrv/secdef`` + 1 ``/iserver/accounts`` + 2 * ceil(N / SNAPSHOT_MAX_CONIDS) snapshots (field
7282), plus 2 requests (``/iserver/secdef/search``, ``/iserver/contract/{conid}/info``) for each
symbol ``/trsrv/stocks`` cannot take (not capital letters only: ``BRK B``); N = 700: 4 + 4 + 1 + 14
+ 2 = 25 requests, floor(24 / 10) = 2 s. Target: within 1.5x.

Beside it, the ``tws`` figure: the same ingest functions through the ``tws`` backend against the
simulated TWS gateway (a subprocess, IB's pacing on: 50 messages/s), as ``ingest_gateway.py``
runs it, with IB's lower bound for those 2N messages; no target here (``ingest_gateway.py`` has
it). Exits non-zero when the target is missed, a 429 is met or a symbol fails.

Run: ``.venv/bin/python bench/ingest_webapi.py [--symbols 700] [--session 2024-06-03]
[--no-tws]``
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from _world import parse_world, world_parser
from ingest_gateway import gateway_process, message_lower_bound, warm_up

from ibkr_assets.assets.bar_cache import cached_bars
from ibkr_assets.assets.market_data import (
    quote_frame,
    request_workers,
    universe_frame,
)
from ibkr_assets.broker import Broker, BrokerSettings, connect
from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.webapi.contracts import STOCKS_PER_REQUEST, STOCKS_SYMBOL
from ibkr_assets.broker.webapi.pacing import MARGIN
from ibkr_assets.config import PipelineConfig
from ibkr_assets.partitions import previous_sessions
from ibkr_assets.resources.storage import StorageResource
from ibkr_sim.universe import Universe
from ibkr_spec.webapi import (
    GLOBAL_LIMIT,
    HISTORY_CONCURRENCY,
    SECDEF_MAX_CONIDS,
    SNAPSHOT_MAX_CONIDS,
)

TARGET_RATIO = 1.2  # webapi ingest / the Web API's lower bound
UNIVERSE_TARGET_RATIO = 1.5  # webapi universe step / its lower bound
NEW_YORK = ZoneInfo("America/New_York")
PROBES = 5  # history requests timed one by one on the idle gateway


@dataclass
class Run:
    """One measured ingest: wall seconds per phase, requests, 429s, failures by symbol."""

    label: str
    workers: int
    universe: float = 0.0  # the universe step, before the ingest (not in total)
    snapshot: float = 0.0
    history: float = 0.0
    bars: int = 0
    too_many_requests: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.snapshot + self.history


@dataclass(frozen=True)
class Bound:
    """The Web API's lower bound for N symbols (see the module docstring), seconds."""

    symbols: int
    history_seconds: float  # median time of one history request on the idle gateway

    @property
    def requests(self) -> int:
        return 1 + 2 * math.ceil(self.symbols / SNAPSHOT_MAX_CONIDS) + self.symbols

    @property
    def by_rate(self) -> float:
        count, seconds = GLOBAL_LIMIT
        return (self.requests - 1) // count * seconds

    @property
    def by_concurrency(self) -> float:
        return math.ceil(self.symbols / HISTORY_CONCURRENCY) * self.history_seconds

    @property
    def seconds(self) -> float:
        return max(self.by_rate, self.by_concurrency)

    @property
    def pacer_floor(self) -> float:
        """About the backend pacer's own floor: each window held one round trip longer."""
        count, seconds = GLOBAL_LIMIT
        return (self.requests - 1) // count * (seconds + MARGIN + self.history_seconds)


@dataclass(frozen=True)
class UniverseBound:
    """The Web API's lower bound of the universe step for ``symbols`` (see the module
    docstring), seconds."""

    symbols: list[str]

    @property
    def requests(self) -> int:
        n = len(self.symbols)
        alone = sum(not STOCKS_SYMBOL.fullmatch(s) for s in self.symbols)
        batched = n - alone
        return (
            math.ceil(batched / STOCKS_PER_REQUEST)
            + math.ceil(n / SECDEF_MAX_CONIDS)
            + 1
            + 2 * math.ceil(n / SNAPSHOT_MAX_CONIDS)
            + 2 * alone
        )

    @property
    def seconds(self) -> float:
        count, seconds = GLOBAL_LIMIT
        return (self.requests - 1) // count * seconds


def timed_universe(run: Run, broker: Broker, contracts: list[Contract]) -> None:
    """The universe step's call for the symbols of ``contracts`` (all on the watch-list),
    timed into ``run``; a symbol the broker does not know is a failure."""
    start = time.perf_counter()
    frame, unknown = universe_frame(
        broker, dict.fromkeys((c.symbol for c in contracts), "watchlist")
    )
    run.universe = time.perf_counter() - start
    run.failures |= {s: f"universe: {e}" for s, e in unknown.items()}
    if len(frame) + len(unknown) != len(contracts):
        run.failures["(universe)"] = f"{len(frame)} rows for {len(contracts)} symbols"


def one_year(session: date) -> list[date]:
    """The NYSE sessions of the year before ``session``, oldest first."""
    return [d for d in previous_sessions(session, 260) if d > session - timedelta(days=365)]


def ingest(
    what: str, broker: Broker, contracts: list[Contract], as_of: datetime, root: Path
) -> Run:
    """The ``quotes`` and ``daily_bars`` assets' calls on an empty bar cache, timed."""
    session = as_of.astimezone(NEW_YORK).date()
    workers = request_workers(broker, PipelineConfig())
    run = Run(what, workers)
    storage = StorageResource(data_dir=str(root))
    start = time.perf_counter()
    quotes, missing = quote_frame(broker, contracts)
    run.snapshot = time.perf_counter() - start
    run.failures |= {s: f"quote: {e}" for s, e in missing.items()}
    start = time.perf_counter()
    bars, _, failed, _ = cached_bars(
        storage, broker, contracts, one_year(session), as_of, session, workers
    )
    run.history = time.perf_counter() - start
    run.failures |= {s: f"history: {e}" for s, e in failed.items()}
    run.bars = len(bars)
    if len(quotes) + len(missing) != len(contracts):
        run.failures["(quotes)"] = f"{len(quotes)} quotes for {len(contracts)} symbols"
    return run


@contextmanager
def webapi_process(symbols: int, now: datetime, data_dir: Path) -> Iterator[tuple[str, Path]]:
    """``ibkr-sim webapi`` on a free loopback port, logged in, IBKR's rate limits on; yields
    its base URL and the certificate to trust."""
    cmd = [sys.executable, "-m", "ibkr_sim.cli", "webapi", "--port", "0", "--authenticated"]
    cmd += ["--profile", "ideal", "--symbols", str(symbols), "--data-dir", str(data_dir)]
    cmd += ["--now", now.isoformat(), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # "ibkr-sim webapi listening on https://127.0.0.1:PORT/v1/api (self-signed certificate C)"
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"ibkr-sim webapi did not start (exit code {proc.wait(10)})")
        url = line.split("listening on ", 1)[1].split()[0]
        yield url, data_dir / "sim" / "webapi" / "cert.pem"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_webapi(symbols: int, contracts: list[Contract], as_of: datetime) -> tuple[Run, Bound]:
    """The ingest through the webapi backend against ``ibkr-sim webapi`` with IBKR's limits;
    also the median time of one history request on the idle gateway (for the bound)."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-webapi-") as root,
        webapi_process(symbols, as_of, Path(root)) as (url, cert),
    ):
        settings = BrokerSettings(
            backend="webapi", data_dir=Path(root), webapi_url=url, webapi_ca_file=cert, pacing=True
        )
        broker = connect(settings)
        try:
            probes = []
            for c in contracts[-PROBES:]:  # the market is drawn on first use: warm it
                broker.history(c, "1 Y", "1 day", end=as_of)
                start = time.perf_counter()
                broker.history(c, "1 Y", "1 day", end=as_of)
                probes.append(time.perf_counter() - start)
            time.sleep(GLOBAL_LIMIT[1] + MARGIN)  # the probes leave the gateway's windows
            universe = Run("webapi backend", 1)
            timed_universe(universe, broker, contracts)
            time.sleep(GLOBAL_LIMIT[1] + MARGIN)
            run = ingest("webapi backend", broker, contracts, as_of, Path(root))
            run.universe, run.failures = universe.universe, universe.failures | run.failures
            run.too_many_requests = broker.session.too_many_requests
        finally:
            broker.close()
    return run, Bound(len(contracts), statistics.median(probes))


def run_tws(symbols: int, contracts: list[Contract], as_of: datetime) -> Run:
    """The ingest through the tws backend against the simulated TWS gateway with IB's pacing."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-tws-") as root,
        gateway_process("ib", symbols, as_of, Path(root), None) as (port, _pid),
    ):
        warm_up(port)
        settings = BrokerSettings(
            backend="tws", port=port, client_id=11, data_dir=Path(root), pacing=True
        )
        broker = connect(settings)
        try:
            universe = Run("tws backend", 1)
            timed_universe(universe, broker, contracts)
            run = ingest("tws backend", broker, contracts, as_of, Path(root))
            run.universe, run.failures = universe.universe, universe.failures | run.failures
            run.too_many_requests = len(broker.pacing_violations)
        finally:
            broker.close()
    return run


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--session", type=date.fromisoformat, default=date(2024, 6, 3))
    parser.add_argument("--no-tws", dest="tws", action="store_false", help="skip the tws figure")
    args = parse_world(parser)
    as_of = datetime.combine(args.session, dtime(8, 0), NEW_YORK).astimezone(UTC)
    universe = Universe(n_stocks=args.symbols)
    contracts = [Contract(conid=i.conid, symbol=i.symbol, sec_type="STK") for i in universe.stocks]
    n = len(contracts)
    year = one_year(args.session)
    print(
        f"ingest through the Web API: {n} symbols, snapshot + daily bars of {len(year)} sessions "
        f"({year[0]} to {year[-1]}), as of {as_of:%Y-%m-%d %H:%M} UTC, IBKR's rate limits on"
    )
    webapi, bound = run_webapi(args.symbols, contracts, as_of)
    runs = [webapi]
    if args.tws:
        runs.append(run_tws(args.symbols, contracts, as_of))

    print(
        f"\n{'client':<22}{'workers':>8}{'snapshot s':>12}{'history s':>11}{'total s':>10}"
        f"{'bars':>9}{'429s/pacing':>13}{'failed':>8}"
    )
    for r in runs:
        print(
            f"{r.label:<22}{r.workers:>8}{r.snapshot:>12.2f}{r.history:>11.2f}{r.total:>10.2f}"
            f"{r.bars:>9}{r.too_many_requests:>13}{len(r.failures):>8}"
        )
    count, seconds = GLOBAL_LIMIT
    print(
        f"\nlower bound from IBKR's Web API limits: R = 1 /iserver/accounts + 2 x ceil({n} / "
        f"{SNAPSHOT_MAX_CONIDS}) snapshots (pre-flight + values) + {n} history = "
        f"{bound.requests} requests"
    )
    print(
        f"  global {count} per {seconds:g} s: floor((R - 1) / {count}) x {seconds:g} s = "
        f"{bound.by_rate:.2f} s"
    )
    print(
        f"  {HISTORY_CONCURRENCY} concurrent history: ceil({n} / {HISTORY_CONCURRENCY}) x "
        f"{bound.history_seconds * 1000:.1f} ms (median of {PROBES} on the idle gateway) = "
        f"{bound.by_concurrency:.2f} s"
    )
    print(
        f"  bound = {bound.seconds:.2f} s; the pacer's own floor (a window held until "
        f"{seconds:g} s + {MARGIN:g} s after each answer): about {bound.pacer_floor:.2f} s = "
        f"{bound.pacer_floor / bound.seconds:.2f}x"
    )
    universe_bound = UniverseBound([c.symbol for c in contracts])
    universe_ratio = webapi.universe / universe_bound.seconds
    print(
        f"universe: {webapi.universe:.2f} s, lower bound {universe_bound.seconds:.2f} s "
        f"({universe_bound.requests} requests: /trsrv/stocks, /trsrv/secdef, snapshots of field "
        f"7282) = {universe_ratio:.2f}x (target <= {UNIVERSE_TARGET_RATIO}x)"
        + (f"; tws backend {runs[1].universe:.2f} s" if args.tws else "")
    )
    ratio = webapi.total / bound.seconds
    verdict = "ok" if ratio <= TARGET_RATIO else "OVER"
    print(
        f"webapi backend measured / bound = {webapi.total:.2f} / {bound.seconds:.2f} = "
        f"{ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict}); 429 answers: "
        f"{webapi.too_many_requests} (target 0)"
    )
    if args.tws:
        tws = runs[1]
        tws_bound = message_lower_bound(2 * n)
        print(
            f"tws backend (IB pacing, 50 msg/s): {tws.total:.2f} s, IB's bound for {2 * n} "
            f"messages {tws_bound:.2f} s ({tws.total / tws_bound:.2f}x); webapi / tws = "
            f"{webapi.total / tws.total:.2f}x"
        )
    problems = []
    if ratio > TARGET_RATIO:
        problems.append(f"webapi {ratio:.2f}x the bound > {TARGET_RATIO}x")
    if universe_ratio > UNIVERSE_TARGET_RATIO:
        problems.append(
            f"webapi universe {universe_ratio:.2f}x its bound > {UNIVERSE_TARGET_RATIO}x"
        )
    for r in runs:
        for symbol, err in list(r.failures.items())[:5]:
            print(f"  {r.label}: {symbol}: {err}")
        if r.too_many_requests:
            problems.append(f"{r.label}: {r.too_many_requests} 429 answers / pacing errors")
        if r.failures:
            problems.append(f"{r.label}: {len(r.failures)} symbols failed")
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
