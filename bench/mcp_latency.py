"""Benchmark the MCP server over streamable HTTP: a quote tool against a no-op tool, then load.

1. One client session calls ``ping`` (no-op: the floor of the MCP + HTTP + JSON stack) and
   ``quotes`` (one symbol, read from the in-process simulated broker on the server's event loop)
   ``--calls`` times each, interleaved, and prints p50/p99 of each. Baseline: ``ping`` measured
   in the same run. Target (issue #19 item 1): quote p50 <= 1.3 x ping p50. Beside the wall
   clock it prints each call's median CPU time of this process (client and server threads: the
   server runs in a thread here), a steadier figure than wall time on a machine others load.
2. ``--clients`` concurrent client sessions (default 50) call ``quotes`` in a loop for
   ``--duration`` seconds (default 30). Prints calls/s, p50/p99 and errors. Target: zero errors,
   and calls made (a run whose clients never got a call through is no pass).

Run: ``.venv/bin/python bench/mcp_latency.py [--calls 300] [--clients 50] [--duration 30]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime

import anyio
import numpy as np
from mcp import Client

TARGET_RATIO = 1.3


def _pct(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


async def _paired(url: str, calls: int) -> dict[str, tuple[list[float], list[float]]]:
    """Each tool's calls' (wall seconds, process CPU seconds), ``ping`` and ``quotes``
    interleaved."""
    timed: dict[str, tuple[list[float], list[float]]] = {"ping": ([], []), "quotes": ([], [])}
    async with Client(url) as client:
        await client.call_tool("quotes", {"symbols": ["AAPL"]})  # warm the broker
        for _ in range(calls):
            for name, arguments in (("ping", {}), ("quotes", {"symbols": ["AAPL"]})):
                wall, cpu = time.perf_counter(), time.process_time()
                r = await client.call_tool(name, arguments)
                timed[name][1].append(time.process_time() - cpu)
                timed[name][0].append(time.perf_counter() - wall)
                if r.is_error:
                    raise RuntimeError(r.content[0].text)
    return timed


async def _load(url: str, clients: int, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def worker() -> None:
        nonlocal errors
        try:
            async with Client(url) as client:
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    r = await client.call_tool("quotes", {"symbols": ["AAPL", "MSFT"]})
                    latencies.append(time.perf_counter() - t)
                    errors += int(r.is_error)
        except Exception:
            errors += 1

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(worker)
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="mcp-bench-")
    os.environ.update(
        {
            "IBKR_BACKEND": "sim",
            "IBKR_DATA_DIR": data,
            "IBKR_SIM_NOW": datetime(2026, 11, 20, 15, 30, tzinfo=UTC).isoformat(),
        }
    )
    from ibkr_assets.settings import MCPSettings
    from mcp_server.server import build_server, serve_in_thread

    server = build_server(MCPSettings(data_dir=data))
    with serve_in_thread(server) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        timed = anyio.run(_paired, url, args.calls)
        (ping, ping_cpu), (quote, quote_cpu) = timed["ping"], timed["quotes"]
        p50_ping, p99_ping = _pct(ping)
        p50_q, p99_q = _pct(quote)
        cpu_ping, cpu_q = _pct(ping_cpu)[0], _pct(quote_cpu)[0]
        ratio = p50_q / p50_ping
        print(
            f"ping   (no-op)  p50 {p50_ping:7.2f} ms  p99 {p99_ping:7.2f} ms  "
            f"CPU p50 {cpu_ping:6.2f} ms  n={len(ping)}"
        )
        print(
            f"quotes (1 sym)  p50 {p50_q:7.2f} ms  p99 {p99_q:7.2f} ms  "
            f"CPU p50 {cpu_q:6.2f} ms  n={len(quote)}"
        )
        verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"quote/ping p50 ratio {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}; "
            f"CPU p50 ratio {cpu_q / cpu_ping:.2f}x"
        )
        lat, errors = anyio.run(_load, url, args.clients, args.duration)
        p50, p99 = _pct(lat) if lat else (float("nan"), float("nan"))
        print(
            f"load: {args.clients} clients x {args.duration:g} s: {len(lat)} calls "
            f"({len(lat) / args.duration:.0f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"errors {errors} (target 0): {'OK' if errors == 0 and lat else 'MISSED'}"
        )
    server.app_state.close()


if __name__ == "__main__":
    main()
