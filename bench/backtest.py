"""Benchmark the weekly backtest: six months of daily decisions replayed for the 700-stock
simulated world, against the 60 s target and against running the daily job once per session.

Runs :func:`ibkr_assets.assets.backtest.run_backtest` (what the weekly asset and
``ibkr-agent backtest`` run) in a fresh temporary data root — a cold bar cache, so every bar is
fetched through the broker — then materialises the daily job (stages 1–9, every asset and
check) for the window's last session in another fresh root, the baseline: a replay that ran
the daily job for every session would take ``sessions x`` that.

Prints the time of each phase (load, replay) and per replayed session, the total against the
60 s target, and the ratio to the daily-job baseline measured in the same run.

Run: ``.venv/bin/python bench/backtest.py [--symbols 700] [--months 6] [--end 2024-06-28]
[--workers 1]``
"""

from __future__ import annotations

import tempfile
import time
from datetime import date

from _world import materialize_timed, parse_world, world_parser

TARGET_SECONDS = 60.0


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


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--end", default="2024-06-28")
    parser.add_argument("--workers", type=int, default=1)
    args = parse_world(parser)

    from ibkr_assets.assets.backtest import run_backtest_on
    from ibkr_assets.resources import build_resources

    end = date.fromisoformat(args.end)
    started = time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            print(f"  {phase} {done}/{total} at {time.perf_counter() - started:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as root:
        resources = build_resources(root)
        run = run_backtest_on(
            resources,
            end=end,
            months=args.months,
            label="bench",
            workers=args.workers,
            progress=report,
        )
    sessions = int(run.row["sessions"])
    total = run.timings["total"]
    daily = daily_job_seconds(end.isoformat())
    baseline = daily * sessions

    print(f"backtest, {args.symbols} symbols, {args.months} months ({sessions} sessions)")
    print(f"{'phase':<40}{'seconds':>10}")
    for phase, seconds in run.timings.items():
        print(f"{phase:<40}{seconds:>10.2f}")
    print(f"{'replay per session':<40}{run.timings['replay'] / sessions:>10.2f}")
    solves = run.result.daily["solve_seconds"]
    print(f"{'  of which optimiser solve, mean':<40}{solves.mean():>10.2f}")
    print(f"{'  optimiser solve, max':<40}{solves.max():>10.2f}")
    print(f"{'daily job, one session (cold root)':<40}{daily:>10.2f}")
    print(f"sharpe {run.row['sharpe']:.2f}, max drawdown {run.row['max_drawdown']:.2%}")
    print(
        f"total vs {TARGET_SECONDS:.0f} s target: {total / TARGET_SECONDS:.2f}x of the budget "
        f"({'ok' if total <= TARGET_SECONDS else 'OVER'})"
    )
    print(
        f"backtest / daily job once per session (baseline: {sessions} x {daily:.1f} s = "
        f"{baseline:.0f} s, same run): {total / baseline:.3f}x "
        f"({baseline / total:.1f}x faster)"
    )


if __name__ == "__main__":
    main()
