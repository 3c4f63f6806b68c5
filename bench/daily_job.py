"""Benchmark the whole daily job (stages 1–9) for the 700-stock simulated world.

Materialises every daily asset and check — ingest, feature matrix and its data-quality checks,
alpha scores, portfolio snapshot, risk model, optimiser, news overlay, risk report and the
compliance gate, proposed orders, margin what-if, order ticket, submission (auto-submit off) and
the decision journal — for one session in a fresh temporary data root (cold bar cache).

Prints the time of every step, the split between stages 1–3 and stages 4–9, and two ratios:
the total against the 60 s target, and stages 4–9 against stages 1–3 measured in the same run
(the baseline: what the decision half costs relative to getting the data).

Run: ``.venv/bin/python bench/daily_job.py [--symbols 700] [--session 2024-06-03]``
"""

from __future__ import annotations

import os
import tempfile

from _world import materialize_timed, parse_world, world_parser

TARGET_SECONDS = 60.0
DECIDE_GROUP = "decide"


def main() -> None:
    parser = world_parser(__doc__)
    parser.add_argument("--session", default="2024-06-03")
    args = parse_world(parser)

    from ibkr_assets.assets import daily_assets, daily_checks
    from ibkr_assets.resources import build_resources

    assets, checks = daily_assets(), daily_checks()
    decide_steps = {
        key.path[-1] for a in assets for key in a.keys if a.group_names_by_key[key] == DECIDE_GROUP
    }
    with tempfile.TemporaryDirectory(prefix="bench-daily-") as root:
        total, steps = materialize_timed(
            "daily job", [*assets, *checks], args.session, build_resources(root)
        )
        ticket = os.path.join(root, "reports", f"order_ticket_{args.session}.json")
        wrote_ticket = os.path.exists(ticket)
    # the gate's checks run as their own steps, ``risk_report_<check>``
    stage2 = sum(t for s, t in steps.items() if s in decide_steps or s.startswith("risk_report_"))
    stage1 = sum(steps.values()) - stage2

    print(f"daily job, {args.symbols} symbols, session {args.session}")
    print(f"{'step':<40}{'seconds':>10}")
    for step in sorted(steps, key=steps.get, reverse=True):
        print(f"{step:<40}{steps[step]:>10.2f}")
    print(f"{'stages 1-3 (sum of steps)':<40}{stage1:>10.2f}")
    print(f"{'stages 4-9 (sum of steps)':<40}{stage2:>10.2f}")
    print(f"{'total (wall)':<40}{total:>10.2f}")
    print(f"order ticket written: {wrote_ticket}")
    print(
        f"total vs {TARGET_SECONDS:.0f} s target: {total / TARGET_SECONDS:.2f}x of the budget "
        f"({'ok' if total <= TARGET_SECONDS else 'OVER'})"
    )
    print(f"stages 4-9 / stages 1-3 (baseline: stages 1-3, same run): {stage2 / stage1:.2f}x")


if __name__ == "__main__":
    main()
