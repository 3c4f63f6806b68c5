"""Benchmark the weekly backtest: 6 and 24 months of daily decisions replayed for the 700-stock
simulated world, each against its target (20 s and 90 s), beside the daily job's time per session.

Runs :func:`ibkr_assets.assets.backtest.run_backtest` (what the weekly asset and
``ibkr-agent backtest`` run: load, replay with IB-like fills, the statistics, the saved results)
for each window in a fresh temporary data root — a cold bar cache, so every bar is fetched
through the broker — then materialises the daily job (stages 1–9, every asset and check) for the
last session in another fresh root: the time per session of running the live job instead, the
baseline the replay is set against.

Prints each run's phases (load, replay, ...), its time per replayed session and the optimiser's
solve times, the ratio of its total to its target and to the daily job once per session; exits
with status 1 when a run misses its target.

Run: ``.venv/bin/python bench/backtest.py [--symbols 700] [--months 6 24] [--end 2024-06-28]
[--workers 1]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date

from _world import materialize_timed, parse_world, world_parser

#: Seconds a backtest of that many months of the 700-stock world may take (issue #18, item 8).
TARGETS = {6: 20.0, 24: 90.0}


def daily_job_seconds(session: str) -> float:
    """Wall time of the whole daily job for one session, cold data root."""
    from ibkr_assets.assets import daily_assets, daily_checks
    from ibkr_assets.resources import build_resources

    assets, checks = daily_assets(), daily_checks()
    with tempfile.TemporaryDirectory(prefix="bench-daily-") as root:
        elapsed, _ = materialize_timed(
            "the daily job", [*assets, *checks], session, build_resources(root)
        )
    return elapsed


def run(months: int, end: date, workers: int) -> tuple[float, int, dict[str, float]]:
    """One backtest of ``months`` ending ``end`` in a fresh root: its total seconds, the
    sessions replayed, and its phase timings (printed as it goes)."""
    from ibkr_assets.assets.backtest import run_backtest_on
    from ibkr_assets.resources import build_resources

    started = time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"  {phase} {done}/{total} at {time.perf_counter() - started:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as root:
        result = run_backtest_on(
            build_resources(root),
            end=end,
            months=months,
            label=f"bench-{months}m",
            workers=workers,
            progress=report,
        )
    sessions = int(result.row["sessions"])
    print(f"backtest, {months} months ({sessions} sessions)")
    print(f"{'phase':<40}{'seconds':>10}")
    for phase, seconds in result.timings.items():
        print(f"{phase:<40}{seconds:>10.2f}")
    print(f"{'replay per session':<40}{result.timings['replay'] / sessions:>10.3f}")
    solves = result.result.daily["solve_seconds"]
    print(f"{'  of which optimiser solve, mean':<40}{solves.mean():>10.3f}")
    print(f"{'  optimiser solve, max':<40}{solves.max():>10.3f}")
    print(
        f"sharpe {result.row['sharpe']:.2f}, max drawdown {result.row['max_drawdown']:.2%}, "
        f"turnover {result.row['avg_turnover']:.2%}/day"
    )
    return result.timings["total"], sessions, result.timings


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--months", type=int, nargs="+", default=sorted(TARGETS))
    parser.add_argument("--end", default="2024-06-28")
    parser.add_argument("--workers", type=int, default=1)
    args = parse_world(parser)
    end = date.fromisoformat(args.end)

    runs = {months: run(months, end, args.workers) for months in args.months}
    daily = daily_job_seconds(end.isoformat())
    print(f"\nbacktest of {args.symbols} symbols; the daily job, one session (cold): {daily:.1f} s")
    print(
        f"{'window':<10}{'sessions':>9}{'seconds':>9}{'s/session':>11}{'target':>8}"
        f"{'of target':>11}{'daily job x sessions':>22}{'ratio':>8}"
    )
    missed = []
    for months, (total, sessions, _) in runs.items():
        target = TARGETS.get(months)
        baseline = daily * sessions
        share = f"{total / target:.2f}x" if target else "-"
        print(
            f"{f'{months} months':<10}{sessions:>9}{total:>9.1f}{total / sessions:>11.3f}"
            f"{target or float('nan'):>8.0f}{share:>11}{baseline:>22.0f}{total / baseline:>8.3f}"
        )
        if target is not None and args.symbols == 700 and total > target:
            missed.append(f"{months} months: {total:.1f} s > {target:.0f} s")
    if missed:
        print("OVER target: " + "; ".join(missed))
        sys.exit(1)
    print("within target" if args.symbols == 700 else "targets apply to 700 symbols only")


if __name__ == "__main__":
    main()
