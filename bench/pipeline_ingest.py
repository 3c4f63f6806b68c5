"""Benchmark stages 1–3 (ingest, feature matrix, alpha scores) for the 700-stock simulated world.

Runs the ``ingest_features`` assets twice for one session in a fresh temporary data root:

- run 1 starts with an empty daily-bar cache (600 sessions x 700 symbols fetched);
- run 2 is the same day again, bars served from the DuckDB cache.

Prints the time per stage of each run and two ratios: run 1 total against the 30 s target
(pacing off: the in-process ``sim`` backend), and run 1 / run 2 (target: at least 3x, the
cache's payoff). The baseline of the second ratio is run 1 measured in the same process.

Run: ``.venv/bin/python bench/pipeline_ingest.py [--symbols 700] [--session 2024-06-03]``
"""

from __future__ import annotations

import tempfile

import dagster as dg
from _world import materialize_timed, parse_world, world_parser

TARGET_SECONDS = 30.0
TARGET_SPEEDUP = 3.0


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--session", default="2024-06-03")
    args = parse_world(parser)

    from ibkr_assets.assets import features, ingest, portfolio, signals
    from ibkr_assets.resources import build_resources

    assets = dg.load_assets_from_modules([ingest, features, signals, portfolio])
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as root:
        resources = build_resources(root)
        first, steps1 = materialize_timed("stages 1-3", assets, args.session, resources)
        second, steps2 = materialize_timed("stages 1-3", assets, args.session, resources)

    print(f"stages 1-3, {args.symbols} symbols, session {args.session}")
    print(f"{'stage':<20}{'run 1 (s)':>12}{'run 2 (s)':>12}")
    for step in sorted(steps1, key=steps1.get, reverse=True):
        print(f"{step:<20}{steps1[step]:>12.2f}{steps2.get(step, float('nan')):>12.2f}")
    print(f"{'total (wall)':<20}{first:>12.2f}{second:>12.2f}")
    print(
        f"run 1 vs {TARGET_SECONDS:.0f} s target: {first / TARGET_SECONDS:.2f}x of the budget "
        f"({'ok' if first <= TARGET_SECONDS else 'OVER'})"
    )
    speedup = first / second
    verdict = "ok" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(
        f"run 1 / run 2 (cached bars), baseline run 1: {speedup:.2f}x "
        f"(target >= {TARGET_SPEEDUP:.0f}x: {verdict})"
    )


if __name__ == "__main__":
    main()
