"""``ibkr-agent promote``: allow live trading after N green paper sessions, recorded in the
decision journal."""

from __future__ import annotations

import argparse
import json

from ibkr_assets.cli.instance import data_dir
from ibkr_assets.cli.output import console


def cmd_promote(args: argparse.Namespace) -> int:
    """Check the last N sessions' paper evidence; record the promotion when all of it is green,
    otherwise list each failing session and why, and write nothing."""
    from rich.markup import escape

    from ibkr_assets.promotion import promotion_check, record_promotion

    root = data_dir()
    try:
        check = promotion_check(root, args.sessions, args.account)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 2
    for evidence in check.sessions:
        mark = "[green]green[/]" if evidence.green else "[red]NOT green[/]"
        account = escape(evidence.account or "-")
        console.print(
            f"  {evidence.session}  {account:<10} {mark}  {escape(evidence.checks)}", soft_wrap=True
        )
        for problem in evidence.problems:
            console.print(f"      - {escape(problem)}", soft_wrap=True)
    if not check.ok:
        for problem in check.problems:
            console.print(f"[red]{escape(problem)}[/]", soft_wrap=True)
        failing = sum(not s.green for s in check.sessions)
        console.print(
            f"[red]not promoted[/]: {failing} of {len(check.sessions)} sessions not green "
            f"({check.required} green paper sessions needed); nothing was written",
            soft_wrap=True,
        )
        return 1
    row = record_promotion(root, check)
    # the evidence column holds the sessions listed above
    shown = {k: json.loads(v) if k == "sessions" else v for k, v in row.items() if k != "evidence"}
    console.print_json(json.dumps(shown))
    console.print(
        f"[green]promoted[/]: {check.required} green paper sessions on {escape(str(check.account))}"
        f"; recorded as journal row {row['seq']}"
    )
    return 0
