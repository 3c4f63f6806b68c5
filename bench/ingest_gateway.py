"""Benchmark the ingest's IB traffic through the simulated gateway: one bulk snapshot and one year
of daily TRADES bars for 700 symbols, over ib_async.

The gateway runs as a subprocess (``ibkr-sim gateway --port 0``, its own interpreter and GIL,
as IB Gateway is its own process) with its clock pinned to the pre-open of ``--session``. The
client is our ``tws`` Broker backend, called as the ``quotes`` and ``daily_bars`` assets call it:
``broker.quotes`` in chunks of 100, then ``broker.history(c, "1 Y", "1 day", end=as_of)`` per
symbol through ``fetch_each`` with ``--workers`` request workers. A second line measures plain
ib_async (no code of ours) doing the same work, as a reference. Each line also shows the CPU
seconds the gateway process spent on that client (connect to disconnect, after a warm-up
connection): well below the wall time, the client side or the pacing is what takes the time.

Two pacing modes, each with its own target:

- ``off``: the gateway does not pace and the client does not throttle (``IBKR_PACING=false``);
  targets: at most 15 s, and at most 1.2x plain ib_async's time.
- ``ib``: the gateway emulates IB's limits (:mod:`ibkr_sim.gateway.pacing`) and the client keeps
  its default pacing (a token bucket at IB's 50 msg/s, burst ``msg_burst``). The lower bound those
  limits allow is printed with its formula; target: at most 1.05x the bound, and no pacing error
  (100, 101, 162 pacing violation, 420).

The gateway runs the ``ideal`` realism profile: IB's pacing is measured here, not a paper login's
entitlements, farm drops or history gaps.

The symbols and conIds come from the simulated universe (the desk's watch-list); resolving them
is the ``universe`` asset's work and not timed here. Exits non-zero when a target is missed, a
pacing error occurs or a request fails.

Run: ``.venv/bin/python bench/ingest_gateway.py [--pacing off|ib|both] [--symbols 700]
[--workers N] [--msg-rate N] [--session 2024-06-03] [--profile-gateway DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import ib_async

from ibkr_assets.assets.market_data import fetch_each
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.broker.models import Contract
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.broker.tws import TwsBroker
from ibkr_assets.config import PipelineConfig
from ibkr_sim.gateway.pacing import MESSAGES_PER_SECOND, SMALL_BAR_SECONDS
from ibkr_sim.universe import Universe
from ibkr_spec.errors import is_pacing

TARGET_OFF_SECONDS = 15.0
TARGET_OFF_RATIO = 1.2  # tws backend / plain ib_async, pacing off
TARGET_IB_RATIO = 1.05  # tws backend / IB's lower bound, pacing ib
REQUEST_TIMEOUT = 60.0  # plain ib_async: seconds before an unanswered request counts as failed
QUOTE_CHUNK = 100  # the quotes asset asks for 100 contracts at a time
DURATION, BAR_SIZE = "1 Y", "1 day"
NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Run:
    """One measured pass: wall seconds per phase, pacing errors seen, failures."""

    label: str
    snapshot: float = 0.0
    history: float = 0.0
    throttle: int = 0  # the client's own limit, messages per second (0 = none)
    burst: int = 0  # messages it sends at once after a pause (its sliding window's, or bucket's)
    gateway_cpu: float = float("nan")  # CPU seconds the gateway process spent on the run
    bars: int = 0
    pacing_errors: list[tuple[int, str]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.snapshot + self.history


def message_lower_bound(messages: int) -> float:
    """Seconds IB's message pacing needs to accept ``messages`` requests from one client.

    The gateway (as IB) accepts a burst of 50 and then 50 per second (a token bucket of 50
    refilled at 50/s), so the last of M messages cannot be accepted before (M - 50) / 50 s.
    """
    return max(0, messages - MESSAGES_PER_SECOND) / MESSAGES_PER_SECOND


@contextmanager
def gateway_process(
    pacing: str, symbols: int, now: datetime, data_dir: Path, profile: Path | None
) -> Iterator[tuple[int, int]]:
    """``ibkr-sim gateway`` on a free loopback port (optionally under cProfile); yields
    (port, pid)."""
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    # the ideal profile: IB's pacing is what is measured, not a paper login's entitlements,
    # farm drops or history gaps (the gateway's default is ib-paper)
    cmd += [
        "-m",
        "ibkr_sim.cli",
        "gateway",
        "--port",
        "0",
        "--pacing",
        pacing,
        "--profile",
        "ideal",
    ]
    cmd += ["--symbols", str(symbols), "--data-dir", str(data_dir), "--now", now.isoformat()]
    cmd += ["--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ibkr-sim gateway listening on 127.0.0.1:PORT"
        if "listening on" not in line:
            raise SystemExit(f"the gateway did not start (exit code {proc.wait(10)})")
        yield int(line.rsplit(":", 1)[1]), proc.pid
    finally:
        proc.send_signal(signal.SIGINT)  # lets cProfile write its statistics
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_up(port: int) -> None:
    """One connection before the measured one: the gateway draws its market on first use."""

    async def connect() -> None:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", port, clientId=99, timeout=60)
        ib.disconnect()

    asyncio.run(connect())


def run_tws(
    port: int,
    contracts: list[Contract],
    as_of: datetime,
    pacing: str,
    workers: int,
    msg_rate: int | None,
) -> Run:
    """The ingest's calls through our ``tws`` backend (client-side pacing on against IB's
    limits, off against a gateway that does not pace: ``IBKR_PACING``)."""
    settings = BrokerSettings(backend="tws", port=port, client_id=11, pacing=pacing == "ib")
    if msg_rate is not None:
        settings.max_msg_rate = msg_rate
    broker = TwsBroker.from_settings(settings)
    rate = settings.max_msg_rate if settings.pacing else 0
    burst = settings.msg_burst if rate else 0
    label = f"tws backend ({workers} workers, {rate or 'no'} msg/s"
    label += f" bucket, burst {burst})" if rate else " throttle)"
    run = Run(label, throttle=rate, burst=burst)
    # the backend keeps every pacing error IB sent on this connection, answered or not
    run.pacing_errors = broker.pacing_violations
    try:
        start = time.perf_counter()
        for i in range(0, len(contracts), QUOTE_CHUNK):
            chunk = contracts[i : i + QUOTE_CHUNK]
            try:
                broker.quotes(chunk)
            except BrokerError as exc:  # counted as failed; the bench goes on and reports
                run.failures |= {c.symbol: f"quote: {exc}" for c in chunk}
        run.snapshot = time.perf_counter() - start
        start = time.perf_counter()
        bars, failed = fetch_each(
            lambda c: broker.history(c, DURATION, BAR_SIZE, end=as_of), contracts, workers
        )
        run.failures |= {s: f"history: {e}" for s, e in failed.items()}
        run.history = time.perf_counter() - start
        run.bars = sum(len(b) for b in bars.values())
    finally:
        broker.close()
    return run


def run_plain(
    port: int, contracts: list[Contract], as_of: datetime, pacing: str, msg_rate: int | None
) -> Run:
    """The same work in plain ib_async: snapshots in chunks of 100, all history requests at once
    (ib_async's own throttle, 45 msg/s by default, keeps the pace when IB's limits apply)."""
    rate = (msg_rate or ib_async.client.Client.MaxRequests) if pacing == "ib" else 0
    run = Run(f"plain ib_async ({rate or 'no'} msg/s throttle)", throttle=rate, burst=rate)

    async def work() -> None:
        ib = ib_async.IB()
        ib.client.MaxRequests = rate
        ib.errorEvent += lambda _req_id, code, msg, _c: (
            run.pacing_errors.append((code, msg)) if is_pacing(code, msg) else None
        )
        await ib.connectAsync("127.0.0.1", port, clientId=12, timeout=20)
        ibc = [ib_async.Contract(conId=c.conid, exchange="SMART") for c in contracts]
        try:
            start = time.perf_counter()
            for i in range(0, len(ibc), QUOTE_CHUNK):
                try:  # a request IB refused (error 100) is never answered
                    tickers = await asyncio.wait_for(
                        ib.reqTickersAsync(*ibc[i : i + QUOTE_CHUNK]), REQUEST_TIMEOUT
                    )
                except TimeoutError:
                    run.failures |= {c.symbol: "no quotes" for c in contracts[i : i + QUOTE_CHUNK]}
                    continue
                run.failures |= {
                    contracts[i + k].symbol: "no quote" for k, t in enumerate(tickers) if not t.bid
                }
            run.snapshot = time.perf_counter() - start
            start = time.perf_counter()
            results = await asyncio.gather(
                *(
                    ib.reqHistoricalDataAsync(
                        c, as_of, DURATION, BAR_SIZE, "TRADES", True, 2, timeout=REQUEST_TIMEOUT
                    )
                    for c in ibc
                )
            )
            run.history = time.perf_counter() - start
            run.bars = sum(len(b) for b in results)
            run.failures |= {contracts[k].symbol: "no bars" for k, b in enumerate(results) if not b}
        finally:
            ib.disconnect()

    asyncio.run(work())
    return run


def measure(
    pacing: str, contracts: list[Contract], as_of: datetime, args: argparse.Namespace
) -> list[Run]:
    runs = []
    passes: list[tuple[str, Callable[[int], Run]]] = [
        ("tws", lambda port: run_tws(port, contracts, as_of, pacing, args.workers, args.msg_rate)),
        ("plain", lambda port: run_plain(port, contracts, as_of, pacing, args.msg_rate)),
    ]
    for name, one in passes:
        # a fresh gateway per pass: no pacing history, no warm caches carried over
        with tempfile.TemporaryDirectory(prefix="bench-gw-") as root:
            profile = None
            if args.profile_gateway is not None and name == "tws":
                args.profile_gateway.mkdir(parents=True, exist_ok=True)
                profile = args.profile_gateway / f"gateway-{pacing}.prof"
            with gateway_process(pacing, args.symbols, as_of, Path(root), profile) as (port, pid):
                warm_up(port)
                cpu = cpu_seconds(pid)
                run = one(port)
                run.gateway_cpu = cpu_seconds(pid) - cpu
                runs.append(run)
            if profile is not None:
                print(f"gateway profile ({pacing}), top 15 by cumulative time: {profile}")
                pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(15)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pacing", choices=("off", "ib", "both"), default="both")
    parser.add_argument("--symbols", type=int, default=700)
    parser.add_argument("--session", type=date.fromisoformat, default=date(2024, 6, 3))
    parser.add_argument(
        "--workers",
        type=int,
        default=PipelineConfig.model_fields["request_workers"].default,
        help="request workers of fetch_each (default: the pipeline's request_workers)",
    )
    parser.add_argument(
        "--msg-rate",
        type=int,
        default=None,
        help="client throttle under --pacing ib, messages/s (default: the backend's max_msg_rate)",
    )
    parser.add_argument("--profile-gateway", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()

    as_of = datetime.combine(args.session, dtime(8, 0), NEW_YORK).astimezone(UTC)
    universe = Universe(n_stocks=args.symbols)
    contracts = [Contract(conid=i.conid, symbol=i.symbol, sec_type="STK") for i in universe.stocks]
    n = len(contracts)
    messages = 2 * n  # one reqMktData snapshot and one reqHistoricalData per symbol
    bound = message_lower_bound(messages)
    modes = ("off", "ib") if args.pacing == "both" else (args.pacing,)

    print(
        f"ingest through the gateway: {n} symbols, snapshot + {DURATION} of {BAR_SIZE} TRADES "
        f"bars, as of {as_of:%Y-%m-%d %H:%M} UTC, gateway in a subprocess"
    )
    problems: list[str] = []
    for pacing in modes:
        runs = measure(pacing, contracts, as_of, args)
        print(f"\npacing {pacing}")
        print(
            f"{'client':<46}{'snapshot s':>11}{'history s':>11}{'total s':>10}{'bars':>9}"
            f"{'gateway CPU s':>15}"
        )
        for r in runs:
            print(
                f"{r.label:<46}{r.snapshot:>11.2f}{r.history:>11.2f}{r.total:>10.2f}{r.bars:>9}"
                f"{r.gateway_cpu:>15.2f}"
            )
        tws = runs[0]
        if pacing == "off":
            verdict = "ok" if tws.total <= TARGET_OFF_SECONDS else "OVER"
            print(
                f"tws total vs {TARGET_OFF_SECONDS:.0f} s target: "
                f"{tws.total / TARGET_OFF_SECONDS:.2f}x of the budget ({verdict})"
            )
            if verdict != "ok":
                problems.append(f"pacing off: {tws.total:.1f} s > {TARGET_OFF_SECONDS:.0f} s")
            plain = runs[1]
            ratio = tws.total / plain.total if plain.total else float("inf")
            verdict = "ok" if ratio <= TARGET_OFF_RATIO else "OVER"
            print(
                f"tws total vs plain ib_async: {tws.total:.2f} / {plain.total:.2f} = {ratio:.2f}x "
                f"(target <= {TARGET_OFF_RATIO}x: {verdict})"
            )
            if verdict != "ok":
                problems.append(f"pacing off: {ratio:.2f}x plain ib_async > {TARGET_OFF_RATIO}x")
        else:
            print(
                f"lower bound from IB's limits: M = {n} snapshots + {n} history requests = "
                f"{messages} messages; {MESSAGES_PER_SECOND} msg/s with a burst of "
                f"{MESSAGES_PER_SECOND}: (M - {MESSAGES_PER_SECOND}) / {MESSAGES_PER_SECOND} = "
                f"{bound:.2f} s"
            )
            print(
                f"  (not binding: daily bars are not small bars (<= {SMALL_BAR_SECONDS} s) so the "
                f"60-per-10-min rule does not apply; one request per contract, none identical; "
                f"snapshots hold no market-data line)"
            )
            for r in runs:
                ratio = r.total / bound if bound else float("inf")
                verdict = "ok" if ratio <= TARGET_IB_RATIO else "OVER"
                print(
                    f"{r.label:<46} measured / bound = {r.total:.2f} / {bound:.2f} = {ratio:.2f}x "
                    f"(target <= {TARGET_IB_RATIO}x: {verdict})"
                )
                if r.throttle and bound:
                    floor = max(0, messages - r.burst) / r.throttle
                    print(
                        f"{'':<46} its own throttle's floor: (M - {r.burst}) / {r.throttle} = "
                        f"{floor:.2f} s = {floor / bound:.2f}x the bound"
                    )
            ratio = tws.total / bound if bound else float("inf")
            if ratio > TARGET_IB_RATIO:
                problems.append(f"pacing ib: {ratio:.2f}x the bound > {TARGET_IB_RATIO}x")
        for r in runs:
            print(f"{r.label:<46} pacing errors: {len(r.pacing_errors)}, failed: {len(r.failures)}")
            for code, msg in r.pacing_errors[:5]:
                print(f"    error {code}: {msg}")
            for symbol, err in list(r.failures.items())[:5]:
                print(f"    {symbol}: {err}")
            if r.pacing_errors:
                problems.append(f"pacing {pacing}, {r.label}: {len(r.pacing_errors)} pacing errors")
            if r.failures:
                problems.append(f"pacing {pacing}, {r.label}: {len(r.failures)} symbols failed")
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
