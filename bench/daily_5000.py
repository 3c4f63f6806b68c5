"""Benchmark the daily job on a 5,000-stock simulated world against the 700-stock one (#19 item 4).

Runs the whole daily job (stages 1-9: every daily asset and check, as ``bench/daily_job.py``)
for one session in a fresh data root (cold bar cache), four times, each run in its own process
so its memory is its own: the baseline world (700 stocks) and the large one (``--symbols``,
default 5,000: the 807 real tickers, then generated ones), each through the in-process sim
backend and through ``ibkr-sim gateway --pacing off`` (started by the run on loopback, clock
pinned to the session's run time; the tws backend with ``IBKR_PACING=false`` and the world's
tickers as the watch-list).

Prints, per run: the job's wall time (the materialisation; the gateway's start-up, which draws
the world before it listens, beside it), the peak RSS of the process tree (the run's own
``ru_maxrss`` plus the gateway's, an upper bound since they run together; and, when psutil is
installed, the tree's RSS sampled every 0.2 s, whose largest sample within each step's start and
end in the run's log is shown beside the step), then the large world's ratios to the baseline
measured in the same invocation, and the top steps (Dagster step durations from the run's
events) of each backend, baseline beside. Targets (issue #19 item 4, this 2-core machine): the
large world <= 300 s and <= 4 GiB through each backend, optimiser included; the baseline
through the gateway <= 15 s. Exit status 1 when a target is missed, 2 when a run fails.

Run: ``.venv/bin/python bench/daily_5000.py [--symbols 5000] [--baseline 700]
[--session 2024-06-03] [--backend sim|gateway]`` (``--symbols 1000`` for a quick try).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

BACKENDS = ("sim", "gateway")
#: targets of issue #19 item 4 on the 2-core machine
LARGE_SECONDS = 300.0
LARGE_BYTES = 4 * 1024**3
BASELINE_GATEWAY_SECONDS = 15.0
TOP_STEPS = 8
#: the decision limits of the bench's runs (IBKR_DECIDE_CONFIG): the compliance gate's 1-day
#: Gaussian VaR limit lifted from 3 % to 5 % of NAV, because on seed 7, 2024-06-03 the 5,000-name
#: book's is 3.1 % (measured) and a blocked gate stops the job before the orders, the what-if
#: and the ticket; the bench measures every stage's time and memory, not the gate's verdict
BENCH_LIMITS = "var_parametric_max: 0.05\n"
SAMPLE_SECONDS = 0.2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000, help="the large world (stocks)")
    parser.add_argument("--baseline", type=int, default=700, help="the baseline world (stocks)")
    parser.add_argument("--session", default="2024-06-03", help="the partition (NYSE session)")
    parser.add_argument("--backend", choices=BACKENDS, help="only this backend (default both)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


# -- one run (a child process) ------------------------------------------------------------------


def _start_gateway(root: Path, symbols: int, session: str) -> tuple[subprocess.Popen[str], int]:
    """``ibkr-sim gateway --pacing off`` on a free loopback port, its clock at the session's run
    time; returns once it listens (it draws the world first)."""
    from ibkr_assets.partitions import as_of

    command = [
        sys.executable,
        "-m",
        "ibkr_sim.cli",
        "gateway",
        "--port",
        "0",
        "--symbols",
        str(symbols),
        "--data-dir",
        str(root / "gateway"),
        "--now",
        as_of(session).isoformat(),
        "--pacing",
        "off",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    if "listening on 127.0.0.1:" not in banner:
        proc.kill()
        raise SystemExit(f"ibkr-sim gateway did not start: {banner!r}")
    return proc, int(banner.rsplit(":", 1)[1])


def _run_child(backend: str, symbols: int, session: str, result: Path) -> None:
    """One daily job in this process, through ``backend``; writes its figures to ``result``."""
    os.environ["IBKR_SIM_SYMBOLS"] = str(symbols)
    with tempfile.TemporaryDirectory(prefix="bench-daily5000-") as tmp:
        root = Path(tmp)
        limits = root / "decide.yaml"
        limits.write_text(BENCH_LIMITS)
        os.environ["IBKR_DECIDE_CONFIG"] = str(limits)
        gateway = None
        startup = 0.0
        if backend == "gateway":
            from ibkr_assets.broker.sim import simulated_stocks

            start = time.perf_counter()
            gateway, port = _start_gateway(root, symbols, session)
            startup = time.perf_counter() - start
            os.environ.update(
                IBKR_BACKEND="tws",
                IBKR_HOST="127.0.0.1",
                IBKR_PORT=str(port),
                IBKR_PACING="false",
                IBKR_WATCHLIST=json.dumps(simulated_stocks(7, symbols)),
            )
        else:
            os.environ["IBKR_BACKEND"] = "sim"
        from _world import materialize_timed

        from ibkr_assets.assets import daily_assets, daily_checks
        from ibkr_assets.resources import build_resources

        try:
            wall, steps = materialize_timed(
                f"daily job ({backend}, {symbols} stocks)",
                [*daily_assets(), *daily_checks()],
                session,
                build_resources(str(root / "data")),
            )
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(30)
    figures = {
        "wall": wall,
        "startup": startup,
        "steps": steps,
        # Linux reports ru_maxrss in KiB; the gateway is this process's only child
        "run_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gateway_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if backend == "gateway"
        else 0,
    }
    result.write_text(json.dumps(figures))


# -- the bench (the parent) ---------------------------------------------------------------------


#: a Dagster event line of the run's log: its time (UTC, to the second), step and event
EVENT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 - dagster - \w+ - \S+ - \S+ - \d+ - "
    r"(\w+) - (STEP_START|STEP_SUCCESS)"
)


def _step_memory(log: str, samples: list[tuple[float, int]]) -> dict[str, int]:
    """Each step's largest sampled tree RSS (bytes) between its start and end, from the run's
    log lines (times to the second) and the ``(epoch seconds, bytes)`` samples."""
    started: dict[str, float] = {}
    peaks: dict[str, int] = {}
    for line in log.splitlines():
        found = EVENT_LINE.match(line)
        if found is None:
            continue
        at = datetime.fromisoformat(found[1] + "+00:00").timestamp()
        if found[3] == "STEP_START":
            started[found[2]] = at
        elif found[2] in started:
            lo, hi = started[found[2]], at + 1.0
            peaks[found[2]] = max((rss for t, rss in samples if lo <= t <= hi), default=0)
    return peaks


def _sample_tree(
    pid: int, stop: threading.Event, peak: list[int], samples: list[tuple[float, int]]
) -> None:
    """Keep ``peak[0]`` at the largest summed RSS of ``pid`` and its descendants (psutil), and
    every sample in ``samples`` as (epoch seconds, bytes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        while not stop.is_set():
            total = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            peak[0] = max(peak[0], total)
            samples.append((time.time(), total))
            stop.wait(SAMPLE_SECONDS)
    except psutil.NoSuchProcess:
        return


def _measure(backend: str, symbols: int, session: str) -> dict[str, Any]:
    """Run one daily job in a child process: its figures and the tree's sampled peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-daily5000-result-") as tmp:
        result = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--child", backend, "--symbols", str(symbols)]
        command += ["--session", session, "--result", str(result)]
        print(f"running the daily job: {backend}, {symbols} stocks ...", flush=True)
        log = Path(tmp) / "run.log"  # Dagster's event log lines, shown when the run fails
        with log.open("w") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        stop, peak, samples = threading.Event(), [0], []
        sampler = None
        try:
            import psutil  # noqa: F401  (optional: the tree's RSS sampled)

            sampler = threading.Thread(target=_sample_tree, args=(proc.pid, stop, peak, samples))
            sampler.start()
        except ImportError:
            pass
        code = proc.wait()
        stop.set()
        if sampler is not None:
            sampler.join()
        if code != 0 or not result.exists():
            print("".join(log.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
            raise SystemExit(2)
        figures: dict[str, Any] = json.loads(result.read_text())
        figures["step_rss"] = _step_memory(log.read_text(), samples)
    figures["sampled_peak"] = peak[0]
    figures["tree_peak"] = figures["run_peak"] + figures["gateway_peak"]
    return figures


def _gib(n: float) -> str:
    return f"{n / 1024**3:.2f}"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    args = _parser().parse_args()
    if args.child:
        _run_child(args.child, args.symbols, args.session, Path(args.result))
        return 0
    backends = [args.backend] if args.backend else list(BACKENDS)
    runs = {
        (backend, n): _measure(backend, n, args.session)
        for n in (args.baseline, args.symbols)
        for backend in backends
    }

    print(f"\ndaily job, session {args.session}: {args.baseline} vs {args.symbols} stocks")
    print(
        f"machine: {os.cpu_count()} cores, shared with other work (wall times are noisy); "
        "RSS tree = the run's peak + the gateway's (upper bound), sampled = psutil every 0.2 s; "
        f"decision limits: {BENCH_LIMITS.strip()} (BENCH_LIMITS)"
    )
    header = f"{'backend':<9}{'stocks':>7}{'job wall s':>12}{'gw start s':>12}"
    print(header + f"{'RSS tree GiB':>14}{'run':>7}{'gateway':>9}{'sampled':>9}")
    for (backend, n), f in runs.items():
        print(
            f"{backend:<9}{n:>7}{f['wall']:>12.1f}{f['startup']:>12.1f}{_gib(f['tree_peak']):>14}"
            f"{_gib(f['run_peak']):>7}{_gib(f['gateway_peak']):>9}{_gib(f['sampled_peak']):>9}"
        )
    for backend in backends:
        small, large = runs[(backend, args.baseline)], runs[(backend, args.symbols)]
        print(
            f"{backend}: {args.symbols} / {args.baseline} stocks (baseline: the {args.baseline}-"
            f"stock run above): wall {large['wall'] / small['wall']:.2f}x, peak RSS "
            f"{large['tree_peak'] / small['tree_peak']:.2f}x"
        )
        print(
            f"  top steps, seconds{'':<22}{args.baseline:>8}{args.symbols:>8}{'ratio':>8}"
            f"   tree RSS in the step, GiB: {args.baseline:>5}{args.symbols:>6}"
        )
        for step in sorted(large["steps"], key=large["steps"].get, reverse=True)[:TOP_STEPS]:
            before = small["steps"].get(step, float("nan"))
            after = large["steps"][step]
            rss = [_gib(run.get("step_rss", {}).get(step, 0)) for run in (small, large)]
            print(
                f"  {step:<40}{before:>8.1f}{after:>8.1f}{after / before:>7.1f}x"
                f"{'':<29}{rss[0]:>5}{rss[1]:>6}"
            )
        worst = max(large.get("step_rss", {}).items(), key=lambda kv: kv[1], default=None)
        if worst is not None:
            print(f"  largest tree RSS in a step: {worst[0]}, {_gib(worst[1])} GiB")

    missed = []
    for backend in backends:
        f = runs[(backend, args.symbols)]
        wall_ok, rss_ok = f["wall"] <= LARGE_SECONDS, f["tree_peak"] <= LARGE_BYTES
        print(
            f"target {backend} {args.symbols} stocks: wall {f['wall']:.1f} s <= "
            f"{LARGE_SECONDS:.0f} s {_verdict(wall_ok)}; peak RSS {_gib(f['tree_peak'])} GiB <= "
            f"{_gib(LARGE_BYTES)} GiB {_verdict(rss_ok)}"
        )
        missed += [] if wall_ok and rss_ok else [backend]
    if "gateway" in backends:
        wall = runs[("gateway", args.baseline)]["wall"]
        ok = wall <= BASELINE_GATEWAY_SECONDS
        print(
            f"target gateway {args.baseline} stocks: wall {wall:.1f} s <= "
            f"{BASELINE_GATEWAY_SECONDS:.0f} s {_verdict(ok)}"
        )
        missed += [] if ok else ["gateway baseline"]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
